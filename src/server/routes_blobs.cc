// /v1/blobs: content-addressed chunks. Users see only chunks they uploaded
// or that their jobs produced; "missing" answers per caller, so it reveals
// nothing about other users' data. An agent reads only the chunks of the job
// attempt its instance runs now, writes chunks only while it runs one, and
// is answered "missing" as its instance's user would be.
#include <httplib.h>

#include <algorithm>
#include <memory>

#include "common/hashing.h"
#include "server/http_server.h"
#include "server/request_json.h"

namespace yard {
namespace {

constexpr const char* kBlobPath = R"(/v1/blobs/([0-9a-f]{64}))";

Status Missing(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"hashes"}));
  YARD_ASSIGN_OR_RETURN(auto hashes, GetStringList(body, "hashes", true));
  for (const auto& h : hashes)
    if (!IsSha256Hex(h)) return InvalidArgument("'" + h + "' is not a lower-case hex sha256");
  std::vector<std::string> missing = ctx.blobs->Missing(hashes);
  // Per user, agents included (as their instance's user): whether another
  // user holds some content is not told. The agent then uploads a chunk the
  // server had already; its artifact record makes the chunk the user's.
  std::set<std::string> absent(missing.begin(), missing.end());
  YARD_ASSIGN_OR_RETURN(auto owned, ctx.store->OwnedBlobs(call.who.user, hashes));
  std::set<std::string> mine(owned.begin(), owned.end());
  missing.clear();
  for (const auto& h : hashes) {
    if (absent.count(h) || !mine.count(h)) missing.push_back(h);
    // The caller names what it holds next (a submit, an artifact): fresh,
    // it is safe from the collector until then (blob_collector.h).
    else
      ctx.blobs->Touch(h);
  }
  call.ReplyJson({{"missing", missing}});
  return Status::Ok();
}

Status Put(ApiContext& ctx, Call& call) {
  std::string hash = call.Param(1);
  if (call.is_agent() && !ctx.controller->credentials().HasJob(call.who.instance))
    return PermissionDenied("instance " + call.who.instance + " runs no job: nothing to upload");
  YARD_RETURN_IF_ERROR(ctx.blobs->Put(hash, call.Body()));
  // The bytes matched their hash: the uploader holds them. An agent's upload
  // is its instance's user's, so only uploaded chunks can be named by that
  // user's artifacts (Controller::CheckArtifactChunks).
  if (!call.who.user.empty()) YARD_RETURN_IF_ERROR(ctx.store->AddBlobOwners(call.who.user, {hash}));
  call.ReplyJson({{"stored", hash}});
  return Status::Ok();
}

Status Get(ApiContext& ctx, Call& call) {
  std::string hash = call.Param(1);
  if (call.is_agent()) {
    // Not confirmed to exist either: the same answer as for a chunk that is not there.
    if (!ctx.controller->credentials().MayRead(call.who.instance, hash))
      return NotFound("no chunk " + hash + " in the job instance " + call.who.instance +
                      " runs now");
  } else {
    YARD_ASSIGN_OR_RETURN(bool mine, ctx.store->UserOwnsBlob(call.who.user, hash));
    if (!mine) return NotFound("no chunk " + hash);
  }
  YARD_ASSIGN_OR_RETURN(std::string bytes, ctx.blobs->Get(hash));
  // Sent from the buffer it was read into: httplib's set_content would copy
  // the chunk once more. Not checked against its hash here: every reader
  // checks each chunk as it arrives (client/transfer.h, agent/chunk_cache.h).
  auto body = std::make_shared<std::string>(std::move(bytes));
  call.res.set_content_provider(body->size(), "application/octet-stream",
                                [body](size_t offset, size_t length, httplib::DataSink& sink) {
                                  return sink.write(body->data() + offset,
                                                    std::min(length, body->size() - offset));
                                });
  return Status::Ok();
}

}  // namespace

std::vector<Route> BlobRoutes(ApiContext& ctx) {
  std::string blob = kBlobPath;
  return {
      {"POST", "/v1/blobs/missing", Access::kUserOrAgent, Bind(ctx, Missing)},
      {"PUT", blob, Access::kUserOrAgent, Bind(ctx, Put)},
      {"GET", blob, Access::kUserOrAgent, Bind(ctx, Get)},
  };
}

}  // namespace yard
