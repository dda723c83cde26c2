// Preparing a job before it runs: reading the assignment, laying out its
// folder, materializing its bundle and building its environment.
//
// A job attempt's folder, <work_dir>/jobs/<job>-<attempt>/:
//   work/          the bundle; the command's working directory (what the
//                  job writes or changes here is synced at its end, "work")
//   checkpoints/   $YARD_CHECKPOINT_DIR  } mirrored to the server
//   logs/          $YARD_LOG_DIR         } while the job runs
//   outputs/       $YARD_OUTPUT_DIR      }
//   metrics.jsonl  $YARD_METRICS: one JSON object per line
//   container.id   podman's id of the job's container, if any (container.h)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/chunk_cache.h"
#include "client/http_client.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard {

using EnvMap = std::map<std::string, std::string>;

// The "assign" object of a work poll reply (docs/api.md, "Agents").
struct Assignment {
  std::string job;
  int64_t attempt = 0;
  std::vector<std::string> command;
  Manifest bundle;
  EnvMap env;
  // `--image NAME`: run in this podman image (container.h); "" for none.
  std::string image;
  // Nodes to run the command on, once per node (see multi_node.h); 1: here.
  int nodes = 1;
  // A checkpoint to resume from: an artifact entry under "checkpoints",
  // given either as the entry itself or as {"dir":"checkpoints","entry":...}.
  std::optional<FileEntry> resume_from;
  // Files saved with it (same path but the extension), restored beside it.
  std::vector<FileEntry> resume_siblings;

  // Fills `out` from `j`, job and attempt first, so that a bad assignment
  // can still be answered with an exit record when those two are readable.
  // InvalidArgument naming the first bad field.
  static Status Parse(const Json& j, Assignment* out);
};

struct JobPaths {
  std::string root, work, checkpoints, logs, outputs, metrics;
  // Where a spot interruption notice is written (YARD_PREEMPTION_NOTICE).
  std::string notice;

  static JobPaths For(const std::string& work_dir, const std::string& job, int64_t attempt);
  // Creates root and the four folders.
  Status Create() const;
};

// Creates the folders, fills work/ with the bundle and, when resuming,
// checkpoints/ with the checkpoint. Returns the checkpoint's path for
// YARD_RESUME_FROM, or "" when not resuming.
StatusOr<std::string> PrepareJobFolder(const Assignment& a, const JobPaths& paths,
                                       const ChunkCache& cache);

// The job's environment; later sources win: the agent's own environment
// (`inherited`), `job_env` from the agent's configuration, the
// assignment's env, then YARD_JOB_ID, YARD_CHECKPOINT_DIR, YARD_LOG_DIR,
// YARD_OUTPUT_DIR, YARD_METRICS, YARD_PREEMPTION_NOTICE (a path that
// exists only once a spot interruption notice came), PYTHONUNBUFFERED=1 and, when
// `resume_path` is not empty, YARD_RESUME_FROM.
EnvMap JobEnvironment(const EnvMap& inherited, const EnvMap& job_env, const Assignment& a,
                      const JobPaths& paths, const std::string& resume_path);

// KEY=VALUE strings (e.g. CurrentEnvironment() of common/process.h) as a map.
EnvMap EnvMapFrom(const std::vector<std::string>& key_values);

}  // namespace yard
