#include "server/agent_credentials.h"

#include "common/hashing.h"

namespace yard {

namespace {

constexpr size_t kSecretBytes = 24;  // 48 hex characters

bool HasShape(const std::string& token, const char* prefix) {
  std::string p = prefix;
  if (token.size() != p.size() + 2 * kSecretBytes || token.compare(0, p.size(), p) != 0)
    return false;
  for (size_t i = p.size(); i < token.size(); ++i) {
    char c = token[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Adds the chunk hashes of a manifest entry ({"chunks": [[hash, size], ...]}).
void AddEntryChunks(const Json& entry, AgentCredentials::ChunkSet* out) {
  if (!entry.is_object() || !entry.contains("chunks") || !entry["chunks"].is_array()) return;
  for (const Json& c : entry["chunks"])
    if (c.is_array() && !c.empty() && c[0].is_string()) out->insert(c[0].get<std::string>());
}

}  // namespace

std::string AgentCredentials::NewBootstrap() { return "yab_" + RandomHex(kSecretBytes); }
std::string AgentCredentials::NewCredential() { return "yit_" + RandomHex(kSecretBytes); }
bool AgentCredentials::IsBootstrap(const std::string& token) { return HasShape(token, "yab_"); }
bool AgentCredentials::IsCredential(const std::string& token) { return HasShape(token, "yit_"); }
std::string AgentCredentials::Hash(const std::string& token) { return Sha256Hex(token); }

void AgentCredentials::Unindex(const Entry& e) {
  if (!e.bootstrap_hash.empty()) bootstraps_.erase(e.bootstrap_hash);
  if (!e.credential_hash.empty()) credentials_.erase(e.credential_hash);
}

void AgentCredentials::Put(const InstanceRecord& inst, const std::string& job_key) {
  MutexLock lock(mu_);
  Entry& e = by_instance_[inst.id];
  Unindex(e);
  e.user = inst.user;
  e.bootstrap_hash = inst.bootstrap_hash;
  e.credential_hash = inst.credential_hash;
  if (e.job_key != job_key) {
    e.job_key.clear();
    e.chunks.reset();
  }
  if (!e.bootstrap_hash.empty()) bootstraps_[e.bootstrap_hash] = inst.id;
  if (!e.credential_hash.empty()) credentials_[e.credential_hash] = inst.id;
}

void AgentCredentials::Remove(const std::string& instance_id) {
  MutexLock lock(mu_);
  auto it = by_instance_.find(instance_id);
  if (it == by_instance_.end()) return;
  Unindex(it->second);
  by_instance_.erase(it);
}

std::optional<TokenInfo> AgentCredentials::Identify(const std::string& token) const {
  bool bootstrap = IsBootstrap(token);
  if (!bootstrap && !IsCredential(token)) return std::nullopt;
  std::string hash = Hash(token);
  MutexLock lock(mu_);
  const auto& index = bootstrap ? bootstraps_ : credentials_;
  auto it = index.find(hash);
  if (it == index.end()) return std::nullopt;
  return TokenInfo{by_instance_.at(it->second).user, bootstrap ? "bootstrap" : "agent", it->second,
                   "", ""};
}

void AgentCredentials::SetJobChunks(const std::string& instance_id, const std::string& job_key,
                                    ChunkSet chunks) {
  auto shared = std::make_shared<const ChunkSet>(std::move(chunks));
  MutexLock lock(mu_);
  auto it = by_instance_.find(instance_id);
  if (it == by_instance_.end()) return;
  it->second.job_key = job_key;
  it->second.chunks = job_key.empty() ? nullptr : std::move(shared);
}

std::string AgentCredentials::JobKey(const std::string& instance_id) const {
  MutexLock lock(mu_);
  auto it = by_instance_.find(instance_id);
  return it == by_instance_.end() ? "" : it->second.job_key;
}

bool AgentCredentials::MayRead(const std::string& instance_id, const std::string& hash) const {
  MutexLock lock(mu_);
  auto it = by_instance_.find(instance_id);
  return it != by_instance_.end() && it->second.chunks && it->second.chunks->count(hash);
}

bool AgentCredentials::HasJob(const std::string& instance_id) const {
  MutexLock lock(mu_);
  auto it = by_instance_.find(instance_id);
  return it != by_instance_.end() && !it->second.job_key.empty();
}

AgentCredentials::ChunkSet JobChunks(const JobRecord& job) {
  AgentCredentials::ChunkSet out;
  const Json& bundle = job.spec.value("bundle", Json::object());
  if (bundle.is_object() && bundle.contains("files") && bundle["files"].is_array())
    for (const Json& f : bundle["files"]) AddEntryChunks(f, &out);
  const Json resume = job.sched.resume_from.value_or(Json::object());
  if (resume.is_object()) {
    AddEntryChunks(resume.value("entry", Json::object()), &out);
    for (const Json& s : resume.value("siblings", Json::array())) AddEntryChunks(s, &out);
  }
  return out;
}

}  // namespace yard
