#include "aws/credentials.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <sstream>

#include "aws/imds.h"
#include "common/thread_annotations.h"

extern char** environ;

namespace yard::aws {
namespace {

// Refresh role credentials this long before they expire.
constexpr double kRefreshBeforeSeconds = 300;
// The chain gives IMDS one short try: off EC2 nothing answers there.
constexpr double kImdsTimeoutSeconds = 1;

std::string Get(const Environment& env, const std::string& key) {
  auto it = env.find(key);
  return it == env.end() ? "" : it->second;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

using IniSection = std::map<std::string, std::string>;
using IniFile = std::map<std::string, IniSection>;

// AWS's INI files: [section], key = value, # and ; comments. Indented lines
// (nested settings such as "s3 =" blocks) are ignored.
std::optional<IniFile> ReadIni(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  IniFile ini;
  std::string line, section;
  while (std::getline(in, line)) {
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) continue;
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = Trim(line.substr(1, line.size() - 2));
      ini[section];
      continue;
    }
    size_t eq = line.find('=');
    if (eq != std::string::npos && !section.empty()) {
      ini[section][Trim(line.substr(0, eq))] = Trim(line.substr(eq + 1));
    }
  }
  return ini;
}

// Unix seconds of "2020-04-02T00:49:51Z"; 0 if unparsable.
double ParseIso8601(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return 0;
  return static_cast<double>(timegm(&tm));
}

struct ProfileLookup {
  std::optional<Credentials> credentials;
  Status error;        // a configured but broken profile
  std::string looked;  // for the final message
};

std::string HomePath(const Environment& env, const std::string& var, const std::string& rel) {
  std::string v = Get(env, var);
  if (!v.empty()) return v;
  std::string home = Get(env, "HOME");
  return (home.empty() ? std::string("~") : home) + "/.aws/" + rel;
}

std::optional<Credentials> KeysIn(const IniSection& s, const std::string& source) {
  auto id = s.find("aws_access_key_id");
  auto secret = s.find("aws_secret_access_key");
  if (id == s.end() || secret == s.end() || id->second.empty() || secret->second.empty()) {
    return std::nullopt;
  }
  Credentials c;
  c.access_key_id = id->second;
  c.secret_access_key = secret->second;
  if (auto t = s.find("aws_session_token"); t != s.end()) c.session_token = t->second;
  c.source = source;
  return c;
}

// What a profile that has no keys uses instead, for the error message.
std::string UnsupportedSetting(const IniSection& s) {
  for (const char* key : {"role_arn", "sso_session", "sso_start_url", "credential_process",
                          "web_identity_token_file", "source_profile"}) {
    if (s.count(key)) return key;
  }
  return "";
}

ProfileLookup LookUpProfile(const Environment& env) {
  bool named = !Get(env, "AWS_PROFILE").empty();
  std::string profile = named ? Get(env, "AWS_PROFILE") : "default";
  std::string cred_path = HomePath(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
  std::string config_path = HomePath(env, "AWS_CONFIG_FILE", "config");
  std::string config_section = profile == "default" ? "default" : "profile " + profile;
  ProfileLookup out;
  auto cred = ReadIni(cred_path);
  auto config = ReadIni(config_path);
  out.looked =
      "profile \"" + profile + "\" in " + cred_path +
      (cred ? (cred->count(profile) ? " (no keys)" : " (no such section)") : " (no such file)") +
      " and in " + config_path + " as [" + config_section + "]" +
      (config ? (config->count(config_section) ? " (no keys)" : " (no such section)")
              : " (no such file)");
  std::string source = "profile " + profile;
  for (const auto& [ini, section] :
       {std::pair{&cred, profile}, std::pair{&config, config_section}}) {
    if (!*ini || !(*ini)->count(section)) continue;
    const IniSection& s = (*ini)->at(section);
    if (auto c = KeysIn(s, source)) {
      out.credentials = c;
      return out;
    }
    if (std::string setting = UnsupportedSetting(s); !setting.empty()) {
      out.error = Unauthenticated("AWS profile \"" + profile + "\" uses " + setting +
                                  ", which Trainyard does not support yet: give the profile "
                                  "aws_access_key_id and aws_secret_access_key, or set "
                                  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (e.g. from `aws "
                                  "configure export-credentials`)");
      return out;
    }
  }
  if (named) {
    out.error = Unauthenticated("AWS_PROFILE is \"" + profile +
                                "\" but no credentials for it: " + out.looked);
  }
  return out;
}

class StaticProvider : public CredentialsProvider {
 public:
  explicit StaticProvider(Credentials c) : c_(std::move(c)) {}
  StatusOr<Credentials> Get() override { return c_; }

 private:
  Credentials c_;
};

class ChainProvider : public CredentialsProvider {
 public:
  ChainProvider(Environment env, const Clock* clock)
      : env_(std::move(env)),
        clock_(clock ? clock : &real_clock_),
        imds_(ImdsEndpoint(env_), kImdsTimeoutSeconds) {}

  StatusOr<Credentials> Get() override {
    std::vector<std::string> looked;
    auto from_env = FromEnvironment(looked);
    if (!from_env.ok() || from_env->has_value()) {
      if (!from_env.ok()) return from_env.status();
      return **from_env;
    }
    ProfileLookup profile = LookUpProfile(env_);
    if (!profile.error.ok()) return profile.error;
    if (profile.credentials) return *profile.credentials;
    looked.push_back(profile.looked);
    return FromInstanceRole(looked);
  }

 private:
  StatusOr<std::optional<Credentials>> FromEnvironment(std::vector<std::string>& looked) {
    std::string id = aws::Get(env_, "AWS_ACCESS_KEY_ID");
    std::string secret = aws::Get(env_, "AWS_SECRET_ACCESS_KEY");
    if (id.empty() && secret.empty()) {
      looked.push_back("environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set)");
      return std::optional<Credentials>();
    }
    if (id.empty() || secret.empty()) {
      return Unauthenticated(
          std::string(id.empty() ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID") + " is set but " +
          (id.empty() ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
          " is not: set both (and AWS_SESSION_TOKEN for temporary keys)");
    }
    Credentials c;
    c.access_key_id = id;
    c.secret_access_key = secret;
    c.session_token = aws::Get(env_, "AWS_SESSION_TOKEN");
    c.source = "environment";
    return std::optional<Credentials>(c);
  }

  StatusOr<Credentials> FromInstanceRole(std::vector<std::string>& looked) {
    std::string disabled = aws::Get(env_, "AWS_EC2_METADATA_DISABLED");
    if (disabled == "true" || disabled == "TRUE" || disabled == "True") {
      looked.push_back("instance role (skipped: AWS_EC2_METADATA_DISABLED=true)");
      return NoCredentials(looked);
    }
    MutexLock lock(mu_);
    double now = clock_->Now();
    if (cached_ &&
        (cached_->expires_at == 0 || now < cached_->expires_at - kRefreshBeforeSeconds)) {
      return *cached_;
    }
    auto fresh = FetchRole();
    if (fresh.ok()) {
      cached_ = *fresh;
      return *fresh;
    }
    if (cached_ && now < cached_->expires_at) return *cached_;  // refresh failed; still valid
    looked.push_back("instance role through IMDSv2 at " + imds_.endpoint() + " (" +
                     fresh.status().message() + ")");
    return NoCredentials(looked);
  }

  StatusOr<Credentials> FetchRole() {
    YARD_ASSIGN_OR_RETURN(std::string roles, imds_.Get("meta-data/iam/security-credentials/"));
    std::string role = Trim(roles.substr(0, roles.find('\n')));
    if (role.empty()) return NotFound("the instance has no IAM role");
    YARD_ASSIGN_OR_RETURN(std::string body,
                          imds_.Get("meta-data/iam/security-credentials/" + role));
    nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object())
      return Internal("role " + role + ": the metadata service's answer is not JSON");
    if (j.value("Code", "") != "Success") {
      return Unavailable("role " + role + ": the metadata service says " + j.value("Code", "?") +
                         ": " + j.value("Message", ""));
    }
    Credentials c;
    c.access_key_id = j.value("AccessKeyId", "");
    c.secret_access_key = j.value("SecretAccessKey", "");
    c.session_token = j.value("Token", "");
    c.expires_at = ParseIso8601(j.value("Expiration", ""));
    c.source = "instance role " + role;
    if (c.access_key_id.empty() || c.secret_access_key.empty()) {
      return Internal("role " + role +
                      ": the metadata service's answer lacks AccessKeyId/SecretAccessKey");
    }
    return c;
  }

  static Status NoCredentials(const std::vector<std::string>& looked) {
    std::string text = "no AWS credentials found; looked at: ";
    for (size_t i = 0; i < looked.size(); ++i) text += (i ? "; " : "") + looked[i];
    text +=
        ". Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile "
        "in ~/.aws/credentials, or run on EC2 with an instance role";
    return Unauthenticated(text);
  }

  Environment env_;
  RealClock real_clock_;
  const Clock* clock_;
  ImdsClient imds_;
  Mutex mu_;
  std::optional<Credentials> cached_ GUARDED_BY(mu_);
};

}  // namespace

Environment ProcessEnvironment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos && eq + 1 < kv.size()) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::unique_ptr<CredentialsProvider> DefaultCredentialsChain(Environment env, const Clock* clock) {
  return std::make_unique<ChainProvider>(std::move(env), clock);
}

std::unique_ptr<CredentialsProvider> StaticCredentialsProvider(Credentials credentials) {
  return std::make_unique<StaticProvider>(std::move(credentials));
}

std::string Ec2Endpoint(const std::string& region, const std::string& configured,
                        const Environment& env) {
  for (const std::string& v :
       {configured, Get(env, "AWS_ENDPOINT_URL_EC2"), Get(env, "AWS_ENDPOINT_URL")}) {
    if (!v.empty()) return v;
  }
  if (region.rfind("cn-", 0) == 0) return "https://ec2." + region + ".amazonaws.com.cn";
  return "https://ec2." + region + ".amazonaws.com";
}

}  // namespace yard::aws
