#include "agent/multi_node.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <sstream>

namespace yard {

namespace {

// Run by `sh -c` on every node, with the job's command as "$@".
constexpr const char* kRankWrapper =
    R"sh(export RANK="$SLURM_PROCID" NODE_RANK="$SLURM_NODEID" LOCAL_RANK="$SLURM_LOCALID"
export TF_CONFIG="{\"cluster\": {\"worker\": $YARD_TF_WORKERS}, \"task\": {\"type\": \"worker\", \"index\": $RANK}}"
if [ "$RANK" != 0 ]; then
  d="$YARD_RANKS_DIR/$RANK"
  mkdir -p "$d/checkpoints" "$d/logs" "$d/outputs" || exit 125
  export YARD_CHECKPOINT_DIR="$d/checkpoints" YARD_LOG_DIR="$d/logs" YARD_OUTPUT_DIR="$d/outputs" YARD_METRICS="$d/metrics.jsonl"
fi
exec "$@"
)sh";

std::string EnvValue(const EnvMap& env, const std::string& key) {
  auto it = env.find(key);
  return it == env.end() ? "" : it->second;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

StatusOr<std::string> Scontrol(CommandRunner* runner, const EnvMap& env,
                               const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.argv = {"scontrol"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  for (const char* key : {"PATH", "SLURM_CONF"})
    if (env.count(key)) spec.env.push_back(std::string(key) + "=" + env.at(key));
  YARD_ASSIGN_OR_RETURN(CommandResult r, runner->Run(spec));
  if (!r.ok()) return Unavailable("scontrol " + args[0] + " " + args[1] + ": " + r.Reason());
  return r.out;
}

// The addresses of `names` (Slurm's NodeAddr, which defaults to the name).
StatusOr<std::vector<std::string>> NodeAddresses(CommandRunner* runner, const EnvMap& env,
                                                 const std::vector<std::string>& names) {
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ",") + n;
  YARD_ASSIGN_OR_RETURN(std::string out, Scontrol(runner, env, {"show", "node", "-o", list}));
  std::map<std::string, std::string> addr;
  for (const std::string& line : Lines(out)) {
    std::string name, address;
    std::stringstream ss(line);
    for (std::string field; ss >> field;) {
      if (field.rfind("NodeName=", 0) == 0) name = field.substr(9);
      if (field.rfind("NodeAddr=", 0) == 0) address = field.substr(9);
    }
    if (!name.empty() && !address.empty()) addr[name] = address;
  }
  std::vector<std::string> result;
  for (const auto& n : names) result.push_back(addr.count(n) ? addr[n] : n);
  return result;
}

// `n` TCP ports free on this node now (all held at once, so distinct).
StatusOr<std::vector<int>> FreePorts(int n) {
  std::vector<int> fds, ports;
  Status st;
  for (int i = 0; i < n && st.ok(); ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    socklen_t len = sizeof(sa);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      st = ErrnoStatus("finding a free port");
    } else {
      ports.push_back(ntohs(sa.sin_port));
    }
    if (fd >= 0) fds.push_back(fd);
  }
  for (int fd : fds) ::close(fd);
  if (!st.ok()) return st;
  return ports;
}

StatusOr<std::vector<std::string>> AllocationNodes(const Assignment& a, const EnvMap& env,
                                                   CommandRunner* runner) {
  std::string nodelist = EnvValue(env, "SLURM_JOB_NODELIST");
  int have = std::atoi(EnvValue(env, "SLURM_JOB_NUM_NODES").c_str());
  std::string want = std::to_string(a.nodes);
  if (nodelist.empty())
    return FailedPrecondition("a job on " + want +
                              " nodes needs a Slurm allocation of as many "
                              "nodes (a machine type of provider slurm with options.nodes >= " +
                              want + ")");
  if (have < a.nodes)
    return FailedPrecondition("a job on " + want + " nodes got an allocation of " +
                              std::to_string(have));
  YARD_ASSIGN_OR_RETURN(std::string out, Scontrol(runner, env, {"show", "hostnames", nodelist}));
  std::vector<std::string> names = Lines(out);
  if (static_cast<int>(names.size()) < a.nodes)
    return Internal("scontrol show hostnames " + nodelist + " listed " +
                    std::to_string(names.size()) + " nodes");
  names.resize(static_cast<size_t>(a.nodes));
  return names;
}

}  // namespace

StatusOr<MultiNodeLaunch> PrepareMultiNode(const Assignment& a, const EnvMap& env,
                                           const JobPaths& paths,
                                           const std::vector<std::string>& rank_sandbox,
                                           CommandRunner* runner) {
  YARD_ASSIGN_OR_RETURN(std::vector<std::string> names, AllocationNodes(a, env, runner));
  YARD_ASSIGN_OR_RETURN(std::vector<std::string> addrs, NodeAddresses(runner, env, names));
  YARD_ASSIGN_OR_RETURN(std::vector<int> ports, FreePorts(a.nodes + 1));
  std::string n = std::to_string(a.nodes);
  MultiNodeLaunch launch;
  launch.env = env;
  launch.env["MASTER_ADDR"] = addrs[0];
  launch.env["MASTER_PORT"] = std::to_string(ports[0]);
  launch.env["WORLD_SIZE"] = n;
  launch.env["YARD_NODES"] = n;
  launch.env["YARD_RANKS_DIR"] = paths.root + "/ranks";
  std::string workers;
  for (int i = 0; i < a.nodes; ++i)
    workers +=
        std::string(i ? ", " : "") + "\"" + addrs[i] + ":" + std::to_string(ports[i + 1]) + "\"";
  launch.env["YARD_TF_WORKERS"] = "[" + workers + "]";
  launch.argv = {"srun",    "--nodes=" + n,         "--ntasks=" + n, "--ntasks-per-node=1",
                 "--label", "--kill-on-bad-exit=1", "--export=ALL"};
  launch.argv.insert(launch.argv.end(), rank_sandbox.begin(), rank_sandbox.end());
  launch.argv.insert(launch.argv.end(), {"sh", "-c", kRankWrapper, "yard-rank"});
  launch.argv.insert(launch.argv.end(), a.command.begin(), a.command.end());
  return launch;
}

// ------------------------------------------------------------ labels

namespace {

enum class Label { kMaybe, kYes, kNo };

// Whether `s` is (the start of) an srun label: spaces, digits, ": ".
Label Classify(const std::string& s, std::string* rank) {
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  size_t digits = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == s.size()) return s.size() < 16 ? Label::kMaybe : Label::kNo;
  if (i == digits || s[i] != ':') return Label::kNo;
  if (i + 1 == s.size()) return Label::kMaybe;
  if (s[i + 1] != ' ') return Label::kNo;
  *rank = s.substr(digits, i - digits);
  return Label::kYes;
}

}  // namespace

std::string RankLabeler::Add(const std::string& data, bool last) {
  std::string out;
  out.reserve(data.size() + 16);
  for (char c : data) {
    if (!at_line_start_) {
      out += c;
      at_line_start_ = c == '\n';
      continue;
    }
    held_ += c;
    std::string rank;
    Label l = c == '\n' ? Label::kNo : Classify(held_, &rank);
    if (l == Label::kMaybe) continue;
    out += l == Label::kYes ? "[rank " + rank + "] " : held_;
    at_line_start_ = c == '\n';
    held_.clear();
  }
  if (last) {
    out += held_;
    held_.clear();
  }
  return out;
}

}  // namespace yard
