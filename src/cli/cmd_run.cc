// `yard fit` and `yard submit`: pack the folder, upload what the server
// lacks, create the job; fit then follows it to the end.
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/job_assets.h"
#include "cli/job_view.h"
#include "cli/notebook.h"
#include "cli/picker.h"
#include "cli/suggest.h"
#include "cli/sweep_spec.h"
#include "cli/sweep_view.h"
#include "client/follow.h"
#include "client/reply.h"
#include "client/transfer.h"
#include "common/thread_annotations.h"

namespace yard::cli {
namespace {

struct RunFlags {
  std::string script;
  std::vector<std::string> args;
  std::vector<std::string> machines;
  std::string description;
  double cool_down_s = 0;
  double wait_request_s = 30;
  double wait_new_job_s = -1;
  double wait_new_job_interval_s = 10;
  int max_restarts = 3;
  int nodes = 1;
  std::string image;  // --image: run in this podman image (docs/workflow.md, "Images")
  std::vector<std::string> env;
  std::vector<std::string> settings;  // --set KEY=VALUE: provider settings (docs/providers.md)
  std::vector<std::string> sweeps;
  std::string ckpt_dir, log_dir, out_dir;
  bool json = false;
  bool run_sh = false;            // yard.yaml's script: run it through yard init's run.sh
  const CLI::App* sub = nullptr;  // which flags were given (yard.yaml fills the rest)
};

void DeclareRunFlags(CLI::App* sub, RunFlags* f, bool with_mirror) {
  f->sub = sub;
  sub->add_option("script", f->script,
                  "script (.py, .sh, .ipynb) or program to run (default: yard.yaml's)");
  sub->add_option("args", f->args, "arguments for the script (after --)");
  // Repeatable options take one value per occurrence: CLI11's default for a
  // vector lets one occurrence take several and swallow a following `--`.
  sub->add_option("--machines,-m", f->machines, "machine ids in order of preference")
      ->delimiter(',')
      ->allow_extra_args(false);
  sub->add_option("--description,-d", f->description, "text stored with the job, searchable");
  sub->add_option("--cool-down", f->cool_down_s, "keep the instance warm this many seconds after");
  sub->add_option("--wait-request", f->wait_request_s,
                  "seconds to wait for capacity of a machine type before trying the next")
      ->capture_default_str();
  sub->add_option("--wait-new-job", f->wait_new_job_s,
                  "over your job quota: give up after this many seconds (<= 0: wait forever)")
      ->capture_default_str();
  sub->add_option("--wait-new-job-interval", f->wait_new_job_interval_s,
                  "over your job quota: look again this often (seconds)")
      ->capture_default_str();
  sub->add_option("--max-restarts", f->max_restarts,
                  "requeue after a lost or preempted instance at most this many times")
      ->capture_default_str();
  sub->add_option("--sweep", f->sweeps,
                  "NAME=V1,V2,...: one job per combination, passing --NAME V (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--env,-e", f->env, "KEY=VALUE for the job's environment (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--set", f->settings,
                  "KEY=VALUE provider setting for this job, e.g. partition=gpu (Slurm; "
                  "repeatable; see docs/providers.md)")
      ->allow_extra_args(false);
  sub->add_option("--image", f->image,
                  "run in this podman image on the instance (default-cpu, default-gpu or a "
                  "name); without it a Dockerfile in the folder is built and used");
  sub->add_option("--nodes", f->nodes,
                  "run the script once on each of this many nodes (Slurm types; sets RANK, "
                  "WORLD_SIZE, MASTER_ADDR...)")
      ->capture_default_str();
  if (with_mirror) {
    sub->add_option("--ckpt-dir", f->ckpt_dir, "mirror $YARD_CHECKPOINT_DIR into this folder");
    sub->add_option("--log-dir", f->log_dir, "mirror $YARD_LOG_DIR (TensorBoard) into this folder");
    sub->add_option("--out-dir", f->out_dir, "mirror $YARD_OUTPUT_DIR into this folder");
  } else {
    sub->add_flag("--json", f->json, "print the job as JSON");
  }
}

// Fills what the command line left out from ./yard.yaml (yard init), when
// there is one and it is about the same script.
Status ApplyYardYaml(RunFlags* f) {
  namespace fs = std::filesystem;
  if (!fs::exists(kYardYaml)) {
    if (f->script.empty())
      return InvalidArgument("no script given and no yard.yaml in " + fs::current_path().string() +
                             ": name a script, or write one with `yard init SCRIPT`");
    return Status::Ok();
  }
  YARD_ASSIGN_OR_RETURN(YardConfig c, LoadYardConfig(kYardYaml));
  if (!f->script.empty() &&
      fs::path(f->script).lexically_normal() != fs::path(c.script).lexically_normal())
    return Status::Ok();  // another script: yard.yaml is not about it
  if (f->script.empty()) {
    if (c.script.empty()) return InvalidArgument("yard.yaml names no script: name one");
    f->script = c.script;
  }
  f->run_sh = fs::exists("run.sh");
  auto given = [&](const char* name) { return f->sub && f->sub->count(name) > 0; };
  if (!given("args")) f->args = c.args;
  if (!given("--machines")) f->machines = c.machines;
  if (!given("--cool-down") && c.has_cool_down) f->cool_down_s = c.cool_down_s;
  if (f->sub && f->sub->get_option_no_throw("--ckpt-dir")) {
    if (!given("--ckpt-dir")) f->ckpt_dir = c.ckpt_dir;
    if (!given("--log-dir")) f->log_dir = c.log_dir;
    if (!given("--out-dir")) f->out_dir = c.out_dir;
  }
  std::vector<std::string> env;  // yard.yaml's first: --env wins
  for (const auto& [k, v] : c.env) env.push_back(k + "=" + v);
  env.insert(env.end(), f->env.begin(), f->env.end());
  f->env = std::move(env);
  std::vector<std::string> settings;  // likewise: --set wins per key
  for (const auto& [k, v] : c.settings) settings.push_back(k + "=" + v);
  settings.insert(settings.end(), f->settings.begin(), f->settings.end());
  f->settings = std::move(settings);
  return Status::Ok();
}

// The command that runs `script` on the instance.
StatusOr<Json> CommandFor(const RunFlags& f) {
  namespace fs = std::filesystem;
  std::string ext = fs::path(f.script).extension().string();
  Json cmd = Json::array();
  if (ext == ".py" || ext == ".sh" || ext == ".ipynb") {
    if (!fs::exists(f.script))
      return NotFound(f.script + " does not exist in " + fs::current_path().string());
    fs::path rel = fs::relative(fs::absolute(f.script), fs::current_path());
    if (rel.empty() || *rel.begin() == "..")
      return InvalidArgument(f.script +
                             " is outside the current folder, which is what gets "
                             "sent: cd to the project folder first");
    if (ext == ".ipynb") YARD_RETURN_IF_ERROR(ValidateNotebookFile(f.script));
    if (f.run_sh) {  // the entry point yard init wrote, maybe edited since
      cmd = {"bash", "run.sh"};
      for (const auto& a : f.args) cmd.push_back(a);
      return cmd;
    }
    if (ext == ".ipynb") {  // run by the runner shipped in the bundle (notebook.h)
      cmd = {"python3", kNotebookRunnerPath, rel.string()};
      for (const auto& a : f.args) cmd.push_back(a);
      return cmd;
    }
    cmd.push_back(ext == ".py" ? "python3" : "bash");
    cmd.push_back(rel.string());
  } else {
    cmd.push_back(f.script);
  }
  for (const auto& a : f.args) cmd.push_back(a);
  return cmd;
}

StatusOr<Json> EnvFor(const RunFlags& f) {
  Json env = Json::object();
  for (const auto& kv : f.env) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return InvalidArgument("--env wants KEY=VALUE, got '" + kv + "'");
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  // TensorFlow's C++ start-up lines stay quiet unless the user asks (with
  // --env, or set in their own environment).
  if (!env.contains("TF_CPP_MIN_LOG_LEVEL")) {
    const char* mine = std::getenv("TF_CPP_MIN_LOG_LEVEL");
    env["TF_CPP_MIN_LOG_LEVEL"] = mine && *mine ? mine : "2";
  }
  return env;
}

// Later KEY=VALUEs win over earlier ones (yard.yaml's come first).
StatusOr<Json> SettingsFor(const RunFlags& f) {
  Json settings = Json::object();
  for (const auto& kv : f.settings) {
    std::string k, v;
    YARD_RETURN_IF_ERROR(ParseKeyValue(kv, "--set", &k, &v));
    settings[k] = v;
  }
  return settings;
}

// Refuses a machine id whose type the server does not know, before anything
// is uploaded.
Status CheckMachineTypes(const HttpClient& client, const std::vector<std::string>& machines) {
  if (machines.empty()) return Status::Ok();
  YARD_ASSIGN_OR_RETURN(Reply reply, GetReply(client, "/v1/machines"));
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> types, reply.Array("types"));
  std::vector<std::string> names;
  for (const Reply& t : types) {
    YARD_ASSIGN_OR_RETURN(std::string name, t.Get<std::string>("name"));
    names.push_back(std::move(name));
  }
  for (const auto& m : machines) {
    std::string type = m.substr(0, m.find(':'));
    if (std::find(names.begin(), names.end(), type) == names.end())
      return InvalidArgument("unknown machine type '" + type + "'" + DidYouMean(type, names) +
                             " (types: " + JoinNames(names) + "; `yard machines` shows them)");
  }
  return Status::Ok();
}

// A job as POST /v1/jobs answered it.
struct CreatedJob {
  std::string id;
  Json json;  // the answer's "job"
};

// Packs and uploads the current folder, then creates the job.
StatusOr<CreatedJob> CreateJob(const HttpClient& client, const RunFlags& f) {
  YARD_ASSIGN_OR_RETURN(Json command, CommandFor(f));
  YARD_ASSIGN_OR_RETURN(Json env, EnvFor(f));
  YARD_ASSIGN_OR_RETURN(Json settings, SettingsFor(f));
  if (f.cool_down_s < 0) return InvalidArgument("--cool-down must be >= 0");
  if (f.nodes < 1) return InvalidArgument("--nodes must be >= 1");
  TransferStats stats;
  std::unique_ptr<ProgressReporter> progress =
      StderrProgress("yard: sending " + std::filesystem::current_path().filename().string());
  UploadOptions upload;
  upload.progress = progress.get();
  upload.hash_cache_dir = HashCache::DefaultDir();  // the project folder: large data files stay
  StatusOr<Manifest> uploaded = UploadDirectory(client, ".", &stats, upload);
  progress->Finish();
  YARD_ASSIGN_OR_RETURN(Manifest bundle, std::move(uploaded));
  if (std::filesystem::path(f.script).extension() == ".ipynb")
    YARD_RETURN_IF_ERROR(AddNotebookRunner(client, &bundle));
  std::fprintf(stderr, "yard: sent %s: %llu files, %s; %llu of %llu chunks were new (%s)\n",
               std::filesystem::current_path().filename().c_str(),
               static_cast<unsigned long long>(stats.files), HumanBytes(stats.bytes_total).c_str(),
               static_cast<unsigned long long>(stats.chunks_sent),
               static_cast<unsigned long long>(stats.chunks_total),
               HumanBytes(stats.bytes_sent).c_str());
  Json spec = {{"command", command},
               {"bundle", bundle.ToJson()},
               {"machines", f.machines},
               {"description", f.description},
               {"cool_down_s", f.cool_down_s},
               {"env", env},
               {"wait_request_s", f.wait_request_s},
               {"wait_new_job_s", f.wait_new_job_s},
               {"wait_new_job_interval_s", f.wait_new_job_interval_s},
               {"max_restarts", f.max_restarts}};
  if (f.nodes > 1) spec["nodes"] = f.nodes;
  if (!f.image.empty()) spec["image"] = f.image;
  if (!settings.empty()) spec["settings"] = settings;
  YARD_ASSIGN_OR_RETURN(Reply reply, PostReply(client, "/v1/jobs", spec));
  YARD_ASSIGN_OR_RETURN(Reply job, reply.Field("job"));
  YARD_ASSIGN_OR_RETURN(std::string id, job.Get<std::string>("id"));
  return CreatedJob{std::move(id), job.json()};
}

// What the user chose after a Ctrl-C (or that the job ended first).
enum class InterruptChoice { kDetach, kCancel, kWatch, kEnded };

// Shared by the follower, the thread counting Ctrl-C presses (which
// outlives FollowUntilDone when it detaches) and the prompt.
struct FollowState {
  Mutex mu;
  std::condition_variable cv;
  bool follow_done GUARDED_BY(mu) = false;
  int presses GUARDED_BY(mu) = 0;
  Status follow_status GUARDED_BY(mu);
};

// One key from the terminal (no Enter): c or a second Ctrl-C cancels, d or
// Enter detaches, w watches on; the job ending first dismisses the prompt.
InterruptChoice ReadChoice(FollowState& st) {
  for (;;) {
    {
      MutexLock lock(st.mu);
      if (st.presses > 0) {
        st.presses = 0;
        return InterruptChoice::kCancel;
      }
      if (st.follow_done) return InterruptChoice::kEnded;
    }
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char key = 0;
    if (::read(STDIN_FILENO, &key, 1) != 1) return InterruptChoice::kDetach;  // end of input
    switch (key) {
      case 'c':
      case 'C':
        return InterruptChoice::kCancel;
      case 'd':
      case 'D':
      case '\n':
      case '\r':
        return InterruptChoice::kDetach;
      case 'w':
      case 'W':
        return InterruptChoice::kWatch;
      default:
        break;
    }
  }
}

InterruptChoice AskDetachOrCancel(FollowState& st) {
  if (!isatty(STDIN_FILENO)) return InterruptChoice::kDetach;
  std::fprintf(stderr,
               "\nyard: interrupted. [d]etach (the job goes on), [c]ancel the job, "
               "or [w]atch on? [d/c/w] ");
  termios old;
  bool keys = ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (keys) {  // one key, no echo; Ctrl-C still signals
    termios t = old;
    t.c_lflag &= ~(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    ::tcsetattr(STDIN_FILENO, TCSANOW, &t);
  }
  InterruptChoice choice = ReadChoice(st);
  if (keys) ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
  const char* said[] = {"detach", "cancel", "watch on", "(the job ended meanwhile)"};
  std::fprintf(stderr, "%s\n", said[static_cast<int>(choice)]);
  return choice;
}

// Follows the job on a worker thread while this thread waits for the end or
// a Ctrl-C; returns the exit code for `yard fit`.
int FollowUntilDone(const HttpClient& client, const std::string& job_id, const RunFlags& f) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::map<std::string, std::string> dirs = {
      {"checkpoints", f.ckpt_dir}, {"logs", f.log_dir}, {"outputs", f.out_dir}};
  auto mirror = std::make_shared<ArtifactMirror>(client, dirs, [](const std::string& label) {
    return StderrProgress("yard: mirroring " + label);
  });
  auto view = std::make_shared<LiveJobView>(job_id);
  auto st = std::make_shared<FollowState>();
  std::thread follower([&client, job_id, mirror, view, st] {
    FollowOptions opts;
    opts.on_disconnect = [view](const Status& s) {
      view->Disconnected(s);
      return true;
    };
    Status s = FollowEvents(client, job_id, opts, [&](const Json& ev) {
      if (ArtifactMirror::Takes(ev)) mirror->Add(ev);
      view->Show(ev);
      return true;
    });
    Status m = mirror->Drain();
    MutexLock lock(st->mu);
    st->follow_status = s.ok() ? m : s;
    st->follow_done = true;
    st->cv.notify_all();
  });
  std::thread([st, set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      MutexLock lock(st->mu);
      st->presses++;
      st->cv.notify_all();
    }
  }).detach();
  bool cancelled = false;
  for (;;) {
    {
      MutexLock lock(st->mu);
      st->cv.wait(lock.unique(),
                  [&]() REQUIRES(st->mu) { return st->follow_done || st->presses > 0; });
      if (st->follow_done) break;
      st->presses = 0;
    }
    if (cancelled) continue;  // already asked to end: follow it to the end
    InterruptChoice choice = AskDetachOrCancel(*st);
    if (choice == InterruptChoice::kCancel) {
      StatusOr<Json> r = client.Post("/v1/jobs/" + job_id + "/cancel", Json::object());
      std::fprintf(stderr, "yard: %s\n",
                   r.ok() ? ("cancelling " + job_id).c_str() : r.status().message().c_str());
      cancelled = r.ok();
    } else if (choice == InterruptChoice::kDetach) {
      std::fprintf(stderr,
                   "yard: detached; the job goes on. Re-attach with `yard logs %s -f`; "
                   "outputs: `yard fetch %s`\n",
                   job_id.c_str(), job_id.c_str());
      std::fflush(stdout);
      _exit(0);  // the follower thread is blocked in a read; do not wait for it
    }
  }
  follower.join();
  Status follow_status;
  {
    MutexLock lock(st->mu);
    follow_status = st->follow_status;
  }
  if (!follow_status.ok()) return Fail(follow_status.message());
  view->OfferWorkFiles();
  return view->ExitCode();
}

// One RunFlags per combination of the --sweep values, each passing
// `--NAME VALUE` to the script and naming its values in the description.
StatusOr<std::vector<RunFlags>> ExpandSweeps(const RunFlags& f) {
  YARD_ASSIGN_OR_RETURN(std::vector<SweepAxis> axes, ParseSweeps(f.sweeps));
  std::vector<RunFlags> out = {f};
  for (const SweepAxis& axis : axes) {
    std::vector<RunFlags> next;
    for (const auto& base : out)
      for (const auto& v : axis.values) {
        RunFlags r = base;
        r.args.push_back("--" + axis.name);
        r.args.push_back(v);
        r.description += (r.description.empty() ? "" : " ") + axis.name + "=" + v;
        next.push_back(r);
      }
    out = std::move(next);
  }
  for (auto& r : out) r.sweeps.clear();
  return out;
}

// The command MakeRunner runs.
const char* CommandName(bool wait) { return wait ? "fit" : "submit"; }

int RunSweep(const HttpClient& client, const RunFlags& f, bool wait) {
  StatusOr<std::vector<RunFlags>> combos = ExpandSweeps(f);
  if (!combos.ok()) return Fail(combos.status().message());
  std::vector<std::pair<std::string, std::string>> jobs;  // id, description
  for (const auto& combo : *combos) {
    StatusOr<CreatedJob> job = CreateJob(client, combo);
    if (!job.ok()) return ExitFor(CommandName(wait), job.status());
    jobs.emplace_back(job->id, combo.description);
    std::cout << job->id << "  " << combo.description << "\n";
  }
  std::cout.flush();
  std::map<std::string, std::string> dirs = {
      {"checkpoints", f.ckpt_dir}, {"logs", f.log_dir}, {"outputs", f.out_dir}};
  return wait ? FollowSweep(client, jobs, dirs) : 0;
}

// Runs `yard fit` (wait) or `yard submit`.
Runner MakeRunner(std::shared_ptr<RunFlags> f, GlobalFlags* global, bool wait) {
  return [f, global, wait] {
    if (Status st = ApplyYardYaml(f.get()); !st.ok()) return Fail(st.message());
    // A missing script or a broken notebook is refused before any server,
    // picker or upload (CreateJob checks again per sweep combination).
    if (StatusOr<Json> cmd = CommandFor(*f); !cmd.ok()) return Fail(cmd.status().message());
    auto client = ConnectOrReport(*global);
    if (!client) return 1;
    if (f->machines.empty() && isatty(STDIN_FILENO) && isatty(STDERR_FILENO)) {
      StatusOr<std::vector<std::string>> picked = PickMachines(*client);
      if (!picked.ok()) return ExitFor(CommandName(wait), picked.status());
      f->machines = *picked;
    }
    if (Status st = CheckMachineTypes(*client, f->machines); !st.ok())
      return ExitFor(CommandName(wait), st);
    if (!f->sweeps.empty()) return RunSweep(*client, *f, wait);
    StatusOr<CreatedJob> job = CreateJob(*client, *f);
    if (!job.ok()) return ExitFor(CommandName(wait), job.status());
    const std::string& id = job->id;
    if (!wait) {
      if (f->json)
        std::cout << job->json.dump(2) << "\n";
      else
        std::cout << id << "\n";
      return 0;
    }
    std::fprintf(stderr, "yard: job %s submitted\n", id.c_str());
    return FollowUntilDone(*client, id, *f);
  };
}

}  // namespace

Runner SetupFit(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<RunFlags>();
  DeclareRunFlags(sub, f.get(), /*with_mirror=*/true);
  return MakeRunner(f, global, /*wait=*/true);
}

Runner SetupSubmit(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<RunFlags>();
  DeclareRunFlags(sub, f.get(), /*with_mirror=*/false);
  return MakeRunner(f, global, /*wait=*/false);
}

}  // namespace yard::cli
