// /v1/tokens: a user's own API tokens (scope admin): list, create (of any
// scope up to admin, with an optional lifetime) and revoke. The operator's
// `yard token` works on the server's home for every user.
#include <httplib.h>

#include "common/clock.h"
#include "server/http_server.h"
#include "server/request_json.h"
#include "server/token_auth.h"

namespace yard {
namespace {

double Now() { return RealClock().Now(); }

Status ListTokens(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(std::vector<TokenRecord> tokens, ctx.store->ListTokens(call.who.user));
  Json out = Json::array();
  double now = Now();
  for (const auto& t : tokens)
    if (t.kind == "user") out.push_back(TokenJson(t, now));
  call.ReplyJson({{"tokens", out}});
  return Status::Ok();
}

Status Create(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"scope", "expires"}));
  YARD_ASSIGN_OR_RETURN(std::string scope, GetString(body, "scope", true));
  YARD_ASSIGN_OR_RETURN(std::string expires, GetString(body, "expires", false));
  if (scope != kScopeRead && scope != kScopeSubmit && scope != kScopeAdmin)
    return InvalidArgument(
        "\"scope\" must be read, submit or admin (metrics tokens are made by the "
        "server's operator: `yard token create NAME --scope metrics`)");
  double expires_at = 0;
  if (!expires.empty()) {
    YARD_ASSIGN_OR_RETURN(double lifetime, ParseTokenLifetime(expires));
    expires_at = Now() + lifetime;
  }
  YARD_ASSIGN_OR_RETURN(std::string token,
                        ctx.store->CreateToken(call.who.user, scope, expires_at));
  YARD_ASSIGN_OR_RETURN(TokenRecord t, ctx.store->FindToken(token));
  Json j = TokenJson(t, Now());
  j["token"] = token;
  call.ReplyJson(j, 201);
  return Status::Ok();
}

Status Revoke(ApiContext& ctx, Call& call) {
  YARD_RETURN_IF_ERROR(ParseStrictObject(call.Body().empty() ? "{}" : call.Body(), {}).status());
  YARD_ASSIGN_OR_RETURN(TokenRecord t, ctx.store->RevokeToken(call.Param(1), call.who.user, Now()));
  call.ReplyJson(TokenJson(t, Now()));
  return Status::Ok();
}

}  // namespace

std::vector<Route> TokenRoutes(ApiContext& ctx) {
  return {
      {"GET", "/v1/tokens", Access::kUserAdmin, Bind(ctx, ListTokens)},
      {"POST", "/v1/tokens", Access::kUserAdmin, Bind(ctx, Create)},
      {"POST", R"(/v1/tokens/([0-9a-f]{12})/revoke)", Access::kUserAdmin, Bind(ctx, Revoke)},
  };
}

}  // namespace yard
