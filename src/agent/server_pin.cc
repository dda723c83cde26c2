#include "agent/server_pin.h"

#include "common/files.h"
#include "common/tls.h"

namespace yard {

namespace {

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
    text.pop_back();
  return text;
}

StatusOr<TlsTrust> KeepGiven(const std::string& path, const std::string& given) {
  StatusOr<std::string> fp = NormalizeFingerprint(given);
  if (!fp.ok()) return InvalidArgument("YARD_SERVER_FINGERPRINT: " + fp.status().message());
  StatusOr<std::string> kept = ReadFile(path);
  if (!kept.ok() || Trimmed(*kept) != *fp)
    YARD_RETURN_IF_ERROR(WriteFileAtomic(path, *fp + "\n", 0600));
  return TlsTrust{*fp, "YARD_SERVER_FINGERPRINT, given at the agent's launch"};
}

}  // namespace

StatusOr<TlsTrust> AgentServerTrust(const std::string& dir, const std::string& given) {
  std::string path = dir + "/" + kServerPinFile;
  if (!given.empty()) return KeepGiven(path, given);
  StatusOr<std::string> kept = ReadFile(path);
  if (!kept.ok() && kept.status().code() == Code::kNotFound)
    return TlsTrust{};  // never pinned: the system's CAs
  if (!kept.ok())
    return FailedPrecondition(kept.status().message() +
                              " (the server's certificate fingerprint this agent kept): make it "
                              "readable, or start the agent with YARD_SERVER_FINGERPRINT set");
  StatusOr<std::string> fp = NormalizeFingerprint(Trimmed(*kept));
  if (!fp.ok())
    return InvalidArgument(path + " (the server's certificate fingerprint this agent kept) is " +
                           "damaged: " + fp.status().message() +
                           ". Delete it, or start the agent with YARD_SERVER_FINGERPRINT set");
  return TlsTrust{*fp, path};
}

std::string WithKeptPinAdvice(const Status& failure, const TlsTrust& trust,
                              const std::string& dir) {
  std::string path = dir + "/" + kServerPinFile;
  // The refusal of a pin that does not match names the pin
  // (ExplainTlsFailure); any other failure is not about the kept file.
  bool refused = failure.code() == Code::kFailedPrecondition && !trust.fingerprint.empty() &&
                 trust.source == path &&
                 failure.message().find("not the pinned " + trust.fingerprint) != std::string::npos;
  if (!refused) return failure.message();
  return failure.message() + ". " + path +
         " is the pin this agent kept from YARD_SERVER_FINGERPRINT at an earlier start: if the "
         "server's certificate was replaced on purpose, delete that file or start the agent with "
         "YARD_SERVER_FINGERPRINT set to the new fingerprint";
}

}  // namespace yard
