// /v1/blobs: content-addressed chunks. Users see only chunks they uploaded
// or that their jobs produced; "missing" answers per caller, so it reveals
// nothing about other users' data. An agent reads only the chunks of the job
// attempt its instance runs now, writes chunks only while it runs one, and
// is answered "missing" as its instance's user would be.
#include <httplib.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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

// The chunk is received into a buffer sized once from Content-Length and
// hashed piece by piece as it arrives, while each piece is in cache: no
// body string growing by copies, no second walk over the chunk to hash it.
// Checked against its name before it is stored, as before.
Status ReceiveAndPut(ApiContext& ctx, Call& call, const std::string& hash) {
  constexpr uint64_t kMaxReserve = 64ull << 20;  // the server's body limit
  std::string bytes;
  uint64_t length = std::strtoull(call.req.get_header_value("Content-Length").c_str(), nullptr, 10);
  bytes.reserve(static_cast<size_t>(std::min(length, kMaxReserve)));
  Sha256 sha;
  YARD_RETURN_IF_ERROR(call.streamed_body->Read([&](const char* data, size_t size) {
    bytes.append(data, size);
    sha.Update(data, size);
  }));
  return ctx.blobs->PutHashed(hash, bytes, sha.FinishHex());
}

Status Put(ApiContext& ctx, Call& call) {
  std::string hash = call.Param(1);
  if (call.is_agent() && !ctx.controller->credentials().HasJob(call.who.instance))
    return PermissionDenied("instance " + call.who.instance + " runs no job: nothing to upload");
  YARD_RETURN_IF_ERROR(ReceiveAndPut(ctx, call, hash));  // the route streams its body
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
  uint64_t size = 0;
  YARD_ASSIGN_OR_RETURN(ScopedFd fd, ctx.blobs->OpenToRead(hash, &size));
  // Sent in pieces read from the file into one buffer of at most kPiece
  // bytes, reused: the chunk is not read whole into fresh memory first (nor
  // zero-filled, nor copied again by set_content). Not checked against its
  // hash here: every reader checks each chunk as it arrives
  // (client/transfer.h, agent/chunk_cache.h). A file shorter than its size
  // (cut by a power loss) ends the reply early, which the reader sees.
  constexpr size_t kPiece = 256 << 10;
  struct Sender {
    ScopedFd fd;
    size_t cap;
    std::unique_ptr<char[]> buf;
  };
  size_t cap = static_cast<size_t>(std::clamp<uint64_t>(size, 1, kPiece));
  auto sender = std::make_shared<Sender>(
      Sender{std::move(fd), cap, std::make_unique_for_overwrite<char[]>(cap)});
  call.res.set_content_provider(
      size, "application/octet-stream",
      [sender](size_t offset, size_t length, httplib::DataSink& sink) {
        ssize_t n;
        do {
          n = ::pread(sender->fd.get(), sender->buf.get(), std::min(length, sender->cap),
                      static_cast<off_t>(offset));
        } while (n < 0 && errno == EINTR);
        return n > 0 && sink.write(sender->buf.get(), static_cast<size_t>(n));
      });
  return Status::Ok();
}

}  // namespace

std::vector<Route> BlobRoutes(ApiContext& ctx) {
  std::string blob = kBlobPath;
  return {
      {"POST", "/v1/blobs/missing", Access::kUserOrAgent, Bind(ctx, Missing)},
      {"PUT", blob, Access::kUserOrAgent, Bind(ctx, Put), /*body_streamed=*/true},
      {"GET", blob, Access::kUserOrAgent, Bind(ctx, Get)},
  };
}

}  // namespace yard
