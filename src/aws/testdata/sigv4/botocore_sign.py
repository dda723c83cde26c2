"""Signs one request with botocore's SigV4Auth and prints its Authorization
header: an independent check of src/aws/sigv4 (sigv4_test.cc runs it).

    botocore_sign.py URL REGION SERVICE AMZ_DATE KEY SECRET TOKEN BODY
"""
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

url, region, service, amz_date, key, secret, token, body = sys.argv[1:9]
req = AWSRequest(method="POST", url=url, data=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
auth = SigV4Auth(Credentials(key, secret, token or None), service, region)
req.context["timestamp"] = amz_date  # what add_auth would take from the clock
auth._modify_request_before_signing(req)
canonical = auth.canonical_request(req)
signature = auth.signature(auth.string_to_sign(req, canonical), req)
print(f"AWS4-HMAC-SHA256 Credential={auth.scope(req)}, "
      f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(req))}, Signature={signature}")
