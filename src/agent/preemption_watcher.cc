#include "agent/preemption_watcher.h"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "aws/imds.h"
#include "client/http_client.h"  // Json

namespace yard {

namespace {

constexpr const char* kActionPath = "meta-data/spot/instance-action";
constexpr const char* kRebalancePath = "meta-data/events/recommendations/rebalance";
constexpr auto kWaitTick = std::chrono::milliseconds(100);

StatusOr<Json> ParseObject(const std::string& body, const char* what) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgument(std::string(what) + " is not a JSON object: " + body);
  return j;
}

std::string Field(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// Reads "[0-9]{n}" at `*p`; advances it.
std::optional<int> Digits(const char** p, int n) {
  int v = 0;
  for (int i = 0; i < n; ++i, ++*p) {
    if (**p < '0' || **p > '9') return std::nullopt;
    v = v * 10 + (**p - '0');
  }
  return v;
}

// A table rather than sigabbrev_np: the agent must run on glibc 2.31.
constexpr std::pair<const char*, int> kSignalNames[] = {
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"INT", SIGINT},   {"TERM", SIGTERM},
    {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH},
    {"URG", SIGURG},   {"PWR", SIGPWR},   {"XCPU", SIGXCPU}};

std::optional<int> SignalByName(std::string name) {
  if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
    int n = std::atoi(name.c_str());
    return n > 0 && n < NSIG ? std::optional<int>(n) : std::nullopt;
  }
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  for (const auto& [n, sig] : kSignalNames)
    if (name == n) return sig;
  return std::nullopt;
}

class ImdsSource : public MetadataSource {
 public:
  explicit ImdsSource(const std::string& endpoint) : client_(endpoint) {}
  StatusOr<std::string> Get(const std::string& path) override { return client_.Get(path); }

 private:
  aws::ImdsClient client_;
};

}  // namespace

std::string SignalName(int sig) {
  for (const auto& [n, s] : kSignalNames)
    if (s == sig) return std::string("SIG") + n;
  return "signal " + std::to_string(sig);
}

std::string PreemptionNotice::Describe() const {
  if (kind == Kind::kRebalance) {
    return "rebalance recommendation from EC2 (at " + time +
           "): this spot instance is at elevated risk of interruption; the job goes on";
  }
  return "spot interruption notice: EC2 will " + (action.empty() ? "terminate" : action) +
         " this instance at " + (time.empty() ? "an unknown time" : time);
}

std::optional<double> ParseRfc3339(const std::string& text) {
  const char* p = text.c_str();
  std::tm tm{};
  auto year = Digits(&p, 4);
  if (!year || *p++ != '-') return std::nullopt;
  auto month = Digits(&p, 2);
  if (!month || *p++ != '-') return std::nullopt;
  auto day = Digits(&p, 2);
  if (!day || (*p != 'T' && *p != 't' && *p != ' ')) return std::nullopt;
  ++p;
  auto hour = Digits(&p, 2);
  if (!hour || *p++ != ':') return std::nullopt;
  auto minute = Digits(&p, 2);
  if (!minute || *p++ != ':') return std::nullopt;
  auto second = Digits(&p, 2);
  if (!second) return std::nullopt;
  double fraction = 0;
  if (*p == '.') {
    char* end = nullptr;
    fraction = std::strtod(p, &end);
    p = end;
  }
  int offset = 0;  // seconds east of UTC
  if (*p == 'Z' || *p == 'z') {
    ++p;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1;
    auto oh = Digits(&p, 2);
    if (!oh || *p++ != ':') return std::nullopt;
    auto om = Digits(&p, 2);
    if (!om) return std::nullopt;
    offset = sign * (*oh * 3600 + *om * 60);
  } else {
    return std::nullopt;
  }
  if (*p != '\0' || *month < 1 || *month > 12 || *day < 1 || *day > 31 || *hour > 23 ||
      *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  tm.tm_hour = *hour;
  tm.tm_min = *minute;
  tm.tm_sec = *second;
  return static_cast<double>(timegm(&tm)) + fraction - offset;
}

StatusOr<PreemptionNotice> ParseInstanceAction(const std::string& body) {
  YARD_ASSIGN_OR_RETURN(Json j, ParseObject(body, "spot/instance-action"));
  PreemptionNotice n;
  n.kind = PreemptionNotice::Kind::kInterruption;
  n.action = Field(j, "action");
  n.time = Field(j, "time");
  if (n.action.empty()) return InvalidArgument("spot/instance-action has no 'action': " + body);
  n.at = ParseRfc3339(n.time).value_or(0);
  n.json = body;
  return n;
}

StatusOr<PreemptionNotice> ParseRebalance(const std::string& body) {
  YARD_ASSIGN_OR_RETURN(Json j, ParseObject(body, "the rebalance recommendation"));
  PreemptionNotice n;
  n.kind = PreemptionNotice::Kind::kRebalance;
  n.time = Field(j, "noticeTime");
  if (n.time.empty())
    return InvalidArgument("the rebalance recommendation has no 'noticeTime': " + body);
  n.at = ParseRfc3339(n.time).value_or(0);
  n.json = body;
  return n;
}

std::unique_ptr<MetadataSource> MakeImdsSource(const std::string& endpoint) {
  return std::make_unique<ImdsSource>(endpoint);
}

StatusOr<PreemptionOptions> PreemptionOptionsFromEnv(
    const std::function<std::string(const std::string&)>& env) {
  PreemptionOptions o;
  std::string watch = env("YARD_PREEMPTION_WATCH");
  if (watch.empty() || watch == "0" || watch == "off") return o;
  if (watch != "imds" && watch != "1")
    return InvalidArgument("YARD_PREEMPTION_WATCH='" + watch + "': use imds (or unset it)");
  o.enabled = true;
  o.imds_endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  auto seconds = [&](const char* name, double lo, double hi,
                     std::chrono::milliseconds* out) -> Status {
    std::string v = env(name);
    if (v.empty()) return Status::Ok();
    char* end = nullptr;
    double s = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !std::isfinite(s) || s < lo || s > hi) {
      char range[64];
      std::snprintf(range, sizeof range, "%g to %g", lo, hi);
      return InvalidArgument(std::string(name) + "='" + v + "': give seconds from " + range);
    }
    *out = std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000)));
    return Status::Ok();
  };
  YARD_RETURN_IF_ERROR(seconds("YARD_PREEMPTION_POLL_S", 0.05, 60, &o.poll_interval));
  YARD_RETURN_IF_ERROR(seconds("YARD_PREEMPTION_MARGIN_S", 0, 110, &o.margin));
  o.signal = SIGUSR1;
  if (std::string name = env("YARD_PREEMPTION_SIGNAL"); !name.empty()) {
    std::optional<int> sig = SignalByName(name);
    if (!sig || *sig == SIGKILL || *sig == SIGSTOP) {
      return InvalidArgument("YARD_PREEMPTION_SIGNAL='" + name +
                             "': give a signal a job can catch, e.g. USR1, USR2, INT or 10");
    }
    o.signal = *sig;
  }
  return o;
}

// ---------------------------------------------------------------- state

bool PreemptionState::SetInterruption(PreemptionNotice n) {
  {
    MutexLock lock(mu_);
    if (interruption_) return false;
    interruption_ = std::move(n);
  }
  cv_.notify_all();
  return true;
}

std::optional<PreemptionNotice> PreemptionState::interruption() const {
  MutexLock lock(mu_);
  return interruption_;
}

bool PreemptionState::AddRebalance(PreemptionNotice n) {
  MutexLock lock(mu_);
  for (const auto& r : rebalances_)
    if (r.time == n.time) return false;
  rebalances_.push_back(std::move(n));
  return true;
}

std::vector<PreemptionNotice> PreemptionState::rebalances() const {
  MutexLock lock(mu_);
  return rebalances_;
}

void PreemptionState::AttemptBegan() {
  MutexLock lock(mu_);
  ++attempts_;
}

void PreemptionState::AttemptEnded() {
  {
    MutexLock lock(mu_);
    --attempts_;
  }
  cv_.notify_all();
}

std::optional<PreemptionNotice> PreemptionState::WaitInterruption(
    const StopSignal& stop, std::chrono::milliseconds timeout) const {
  auto end = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(mu_);
  while (!interruption_ && !stop.stopped() && std::chrono::steady_clock::now() < end)
    cv_.wait_for(lock.unique(), std::min<std::chrono::steady_clock::duration>(
                                    kWaitTick, end - std::chrono::steady_clock::now()));
  return interruption_;
}

bool PreemptionState::WaitNoAttempt(const StopSignal& stop,
                                    std::chrono::steady_clock::time_point deadline) const {
  MutexLock lock(mu_);
  while (attempts_ > 0 && !stop.stopped() && std::chrono::steady_clock::now() < deadline)
    cv_.wait_for(lock.unique(), kWaitTick);
  return attempts_ <= 0;
}

// ---------------------------------------------------------------- watcher

PreemptionWatcher::PreemptionWatcher(std::unique_ptr<MetadataSource> source, PreemptionState* state,
                                     std::chrono::milliseconds interval,
                                     std::function<void(const std::string&)> log)
    : source_(std::move(source)), state_(state), interval_(interval), log_(std::move(log)) {}

PreemptionWatcher::~PreemptionWatcher() { Stop(); }

void PreemptionWatcher::Start() {
  thread_ = std::thread([this] {
    do {
      PollOnce();
    } while (!state_->interruption() && !stop_.WaitFor(interval_));
  });
}

void PreemptionWatcher::Stop() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void PreemptionWatcher::PollOnce() {
  if (state_->interruption()) return;
  StatusOr<std::string> action = source_->Get(kActionPath);
  NoteReachable(action.status());
  if (action.ok()) {
    StatusOr<PreemptionNotice> n = ParseInstanceAction(*action);
    if (!n.ok()) {
      log_("preemption watcher: ignoring " + n.status().message());
    } else if (state_->SetInterruption(*n)) {
      log_(n->Describe() + ": " + *action);
      return;
    }
  }
  StatusOr<std::string> rebalance = source_->Get(kRebalancePath);
  NoteReachable(rebalance.status());
  if (!rebalance.ok()) return;
  StatusOr<PreemptionNotice> r = ParseRebalance(*rebalance);
  if (!r.ok()) {
    log_("preemption watcher: ignoring " + r.status().message());
  } else if (state_->AddRebalance(*r)) {
    log_(r->Describe());
  }
}

// One line when the service stops answering and one when it is back.
void PreemptionWatcher::NoteReachable(const Status& s) {
  bool answered = s.ok() || s.code() == Code::kNotFound;
  if (answered && !reachable_) log_("preemption watcher: the metadata service answers again");
  if (!answered && reachable_) {
    log_("preemption watcher: cannot ask the metadata service (" + s.ToString() +
         "); trying again every poll");
  }
  reachable_ = answered;
}

}  // namespace yard
