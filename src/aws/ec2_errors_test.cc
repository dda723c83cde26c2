// EC2 error documents: parsing (both Query API shapes, namespaces),
// classification, the missing IAM action, and the Status users see.
#include "aws/ec2_errors.h"

#include <gtest/gtest.h>

namespace yard::aws {
namespace {

TEST(ClassifyEc2Error, CapacityCodesFallBack) {
  for (const char* code : {"InsufficientInstanceCapacity", "InstanceLimitExceeded",
                           "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "Unsupported",
                           "InsufficientFreeAddressesInSubnet", "RequestLimitExceeded"}) {
    EXPECT_EQ(ClassifyEc2Error(code, 500), Ec2ErrorKind::kCapacity) << code;
  }
}

TEST(ClassifyEc2Error, AuthBadRequestNotFoundTransient) {
  EXPECT_EQ(ClassifyEc2Error("AuthFailure", 401), Ec2ErrorKind::kAuth);
  EXPECT_EQ(ClassifyEc2Error("Client.UnauthorizedOperation", 403), Ec2ErrorKind::kAuth);
  EXPECT_EQ(ClassifyEc2Error("SignatureDoesNotMatch", 403), Ec2ErrorKind::kAuth);
  EXPECT_EQ(ClassifyEc2Error("InvalidAMIID.NotFound", 400), Ec2ErrorKind::kBadRequest);
  EXPECT_EQ(ClassifyEc2Error("InvalidParameterValue", 400), Ec2ErrorKind::kBadRequest);
  EXPECT_EQ(ClassifyEc2Error("InvalidInstanceID.NotFound", 400), Ec2ErrorKind::kNotFound);
  EXPECT_EQ(ClassifyEc2Error("InternalError", 500), Ec2ErrorKind::kTransient);
  EXPECT_EQ(ClassifyEc2Error("SomethingNew", 503), Ec2ErrorKind::kTransient);
  EXPECT_EQ(ClassifyEc2Error("SomethingNew", 400), Ec2ErrorKind::kBadRequest);
  EXPECT_STREQ(Ec2ErrorKindName(Ec2ErrorKind::kCapacity), "capacity");
}

TEST(ParseEc2Error, Ec2DocumentShape) {
  auto e = ParseEc2Error(R"(<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>
<Message>We currently do not have sufficient p2.xlarge capacity.</Message></Error></Errors>
<RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>)",
                         500, "RunInstances");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "InsufficientInstanceCapacity");
  EXPECT_EQ(e->message, "We currently do not have sufficient p2.xlarge capacity.");
  EXPECT_EQ(e->request_id, "ea966190-f9aa-478e-9ede-example");
  EXPECT_EQ(e->kind, Ec2ErrorKind::kCapacity);
  EXPECT_EQ(e->http_status, 500);
  EXPECT_EQ(e->missing_action, "");
  Status s = Ec2ErrorStatus(*e, "RunInstances");
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "EC2 RunInstances: InsufficientInstanceCapacity: We currently do not "
            "have sufficient p2.xlarge capacity. (request id "
            "ea966190-f9aa-478e-9ede-example)");
}

TEST(ParseEc2Error, QueryErrorResponseShapeWithNamespace) {
  auto e = ParseEc2Error(
      R"(<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>)"
      R"(<Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/alice )"
      R"(is not authorized to perform: ec2:RunInstances</Message></Error>)"
      R"(<RequestId>r-1</RequestId></ErrorResponse>)",
      403, "RunInstances");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, Ec2ErrorKind::kAuth);
  EXPECT_EQ(e->request_id, "r-1");
  EXPECT_EQ(e->missing_action, "ec2:RunInstances");
  Status s = Ec2ErrorStatus(*e, "RunInstances");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("lack the IAM permission ec2:RunInstances"), std::string::npos);
  EXPECT_EQ(s.message().find("did not name it"), std::string::npos);
}

TEST(ParseEc2Error, UnauthorizedWithoutNamedActionUsesTheCallsAction) {
  auto e = ParseEc2Error(
      "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not "
      "authorized to perform this operation. Encoded authorization failure message: xyz"
      "</Message></Error></Errors><RequestID>r-2</RequestID></Response>",
      403, "TerminateInstances");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->missing_action, "ec2:TerminateInstances");
  Status s = Ec2ErrorStatus(*e, "TerminateInstances");
  EXPECT_NE(s.message().find("Encoded authorization failure message: xyz"), std::string::npos);
  EXPECT_NE(s.message().find("EC2 did not name it"), std::string::npos);
}

TEST(ParseEc2Error, NamedActionInRealEc2Wording) {
  EXPECT_EQ(ActionNamedIn("You are not authorized to perform this operation. User: "
                          "arn:aws:iam::1:user/x is not authorized to perform: "
                          "ec2:RunInstances on resource: arn:aws:ec2:us-east-1:1:instance/*"),
            "ec2:RunInstances");
  EXPECT_EQ(ActionNamedIn("You are not authorized to perform this operation."), "");
}

TEST(ParseEc2Error, NotAnErrorDocument) {
  EXPECT_FALSE(ParseEc2Error("<html><body>502 Bad Gateway</body></html>", 502, "X").has_value());
  EXPECT_FALSE(ParseEc2Error("not xml at all", 500, "X").has_value());
  EXPECT_FALSE(ParseEc2Error("", 500, "X").has_value());
}

}  // namespace
}  // namespace yard::aws
