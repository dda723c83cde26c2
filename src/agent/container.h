// Container jobs (docs/workflow.md, "Images"): a job that names an image
// (`--image NAME`) or whose folder holds a Dockerfile runs its command in a
// podman container on the instance instead of on the instance's own Python.
//
//   image:  `--image NAME` as it is (default-cpu / default-gpu: the local
//           base images of scripts/base_image.sh), pulled once if missing;
//           else the folder's Dockerfile, built once per ImageKey as
//           localhost/trainyard-job:<key> and reused by every later job
//           with the same Dockerfile and folder (`podman image exists`).
//   run:    `podman run --rm --init` with the job's attempt folder (work/,
//           checkpoints/, logs/, outputs/, metrics.jsonl) mounted at the
//           same path, so YARD_* paths mean the same inside and out, the
//           job's command run in work/ (the image's own ENTRYPOINT is
//           replaced by the command), the job's variables (never the
//           agent's own) passed by name, GPUs as device nodes, and the
//           agent's own rlimits (podman's defaults may exceed what this
//           process may set).
//   stop:   the shim supervisor ends `podman run` and every descendant,
//           conmon and the container's processes included (conmon is
//           re-parented to the shim, a subreaper); RemoveContainer then
//           clears podman's record, which --rm does not when podman was killed.
//
// Every podman call goes through a CommandRunner so that tests can fake it.
#pragma once

#include <sys/resource.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/job_process.h"
#include "agent/job_setup.h"
#include "common/command_runner.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard {

// What scripts/base_image.sh imports, and `yard init`'s default FROM.
inline constexpr const char* kBaseCpuImage = "localhost/trainyard/base-cpu:latest";
// What `yard init --image default-gpu` starts FROM (needs a registry).
inline constexpr const char* kBaseGpuImage =
    "docker.io/nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04";
// Repository of the images built from job Dockerfiles.
inline constexpr const char* kJobImageRepo = "localhost/trainyard-job";

// `--image` as podman knows it: default-cpu and default-gpu are the base
// images above, any other name is used as given.
std::string ResolveImageName(const std::string& name);

// The context paths a Dockerfile's COPY and ADD instructions read, as
// written ("." for the whole folder); not those copied --from a stage or
// an image, nor URLs.
std::vector<std::string> DockerfileSources(const std::string& dockerfile);
// The files of `context` that `sources` name: a path, a folder (all below
// it) or a glob; all of them when a source is "." or holds a variable.
Manifest UsedContext(const Manifest& context, const std::vector<std::string>& sources);

// The images a Dockerfile's FROM lines name, without stages and scratch.
std::vector<std::string> DockerfileBases(const std::string& dockerfile);

// sha256 hex of `base_ids` (the FROM images' ids, as podman has them), the
// Dockerfile's text and the context files it copies (path, mode, link
// target and content hashes of UsedContext), so that a change to anything
// the image is made of, a rebuilt base image included, makes a new image,
// while a new checkpoint or an edited script that the Dockerfile does not
// COPY reuses the old one. Over-inclusive by design (.dockerignore is not
// applied): never a stale image, at worst a rebuild that podman's layer
// cache makes quick.
std::string ImageKey(const std::string& dockerfile, const Manifest& context,
                     const std::string& base_ids = "");
// localhost/trainyard-job:<first 24 hex digits of `key`>.
std::string JobImageTag(const std::string& key);

// Receives one line of progress (no newline).
using LineSink = std::function<void(const std::string& line)>;

struct EnsuredImage {
  std::string image;   // what `podman run` gets
  bool built = false;  // built or pulled now (else found on the instance)
  double seconds = 0;  // time spent here
};

// Makes sure the job's image exists on this instance. With `image_name`
// set, that image (ResolveImageName), pulled when podman lacks it; else
// `job_work`/Dockerfile built with `job_work` as its context under
// JobImageTag(ImageKey(...)). Builds of one key are serialized through a
// file lock in `lock_dir`. While podman builds or pulls, each non-blank line
// it prints goes to `progress` as it comes, as "build: LINE" or "pull: LINE"
// (podman's STEP lines and what each RUN prints). FailedPrecondition
// carrying podman's own output when the build or the pull fails: its last
// 6000 bytes, or with `progress` (which has shown it all) its last line.
StatusOr<EnsuredImage> EnsureImage(CommandRunner* podman, const std::string& image_name,
                                   const std::string& job_work, const Manifest& context,
                                   const std::string& lock_dir, const LineSink& progress = nullptr);

struct ContainerSpec {
  std::string image;
  std::vector<std::string> command;   // run in `work_dir`
  std::string work_dir;               // -w
  std::vector<std::string> mounts;    // host folders, mounted read-write at the same path
  std::vector<std::string> env_keys;  // -e KEY: the value comes from podman's own environment
  std::vector<std::string> devices;   // --device PATH
  std::string cidfile;                // --cidfile: where podman writes the container id
  struct Ulimit {
    std::string name;           // "nofile", "nproc"
    rlim_t soft = 0, hard = 0;  // RLIM_INFINITY: -1 for podman
  };
  std::vector<Ulimit> ulimits;
};

// The `podman run` argv for `spec`. --network=host: a job reaches what the
// instance reaches (datasets, package indexes, MASTER_ADDR of its peers)
// with no bridge to set up and no ports to map; isolation from the
// instance is not a goal, the instance is the job's.
std::vector<std::string> ContainerArgv(const ContainerSpec& spec);

// The device nodes a job may use: /dev/nvidiaN for each index of
// `visible_devices` (CUDA_VISIBLE_DEVICES; nullopt: every /dev/nvidiaN of
// `host_nodes`; "" or "-1": none), each only when present in `host_nodes`,
// plus the control nodes of `host_nodes` (/dev/nvidiactl, /dev/nvidia-uvm,
// /dev/nvidia-uvm-tools, /dev/nvidia-modeset) when any GPU is passed. GPU
// UUIDs in CUDA_VISIBLE_DEVICES cannot be mapped to nodes: InvalidArgument.
StatusOr<std::vector<std::string>> GpuDevices(const std::optional<std::string>& visible_devices,
                                              const std::vector<std::string>& host_nodes);
// /dev/nvidia* on this host, sorted.
std::vector<std::string> HostNvidiaNodes();

// The agent's own nofile and nproc limits, as ulimits for the container
// (nproc at most 32768, what podman keeps for itself), so that a job gets
// the limits it would get outside, whatever containers.conf says.
std::vector<ContainerSpec::Ulimit> OwnUlimits();

// True when the job runs in a container: an image was named or its folder
// holds a Dockerfile (docs/workflow.md, "Images": that precedes
// requirements.txt / environment.yml).
bool UsesContainer(const Assignment& a, const std::string& job_work);

// The job runner's image step. Ensures the image (telling the job's output
// podman's build or pull lines as they come, then "image NAME built in X s"
// or "image NAME (cached)", through `say`), then
// turns `options` (the job's command, cwd and full environment) into the
// `podman run` of that command: options->argv becomes the podman argv and
// options->env keeps what podman itself needs. `job_env` is what the job
// sees inside: the assignment's env, the agent's job_env and YARD_*
// (JobEnvironment without the agent's own environment), plus
// CUDA_VISIBLE_DEVICES from options->env, which also picks the GPU
// devices (GpuDevices). Returns the
// cidfile for RemoveContainer. An error (a failed build or pull, a
// multi-node job, unreadable GPU list) fails the job before it runs.
StatusOr<std::string> SetUpContainer(CommandRunner* podman, const std::string& agent_work_dir,
                                     const Assignment& a, const JobPaths& paths,
                                     const EnvMap& job_env, JobSpawnOptions* options,
                                     const std::function<void(const std::string&)>& say);

// After the job: removes its container, if podman still has one
// (`podman rm -f --ignore --time 0 --cidfile`). Best effort; the reason
// when it could not, "" otherwise.
std::string RemoveContainer(CommandRunner* podman, const std::string& cidfile);

}  // namespace yard
