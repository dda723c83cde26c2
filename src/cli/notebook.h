// Notebooks as jobs: `yard fit model.ipynb` checks the notebook here, before
// anything is uploaded or requested, and ships the notebook runner
// (python/trainyard/notebook_runner.py, embedded in this binary at build
// time) inside the job's bundle as .yard/notebook_runner.py, because the
// instance may not have the trainyard package. The runner executes the code
// cells in order, streams their output and returns the executed notebook
// among the job's outputs (docs/workflow.md).
#pragma once

#include <string>
#include <string_view>

#include "client/http_client.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard::cli {

// Where the runner sits in a notebook job's bundle.
inline constexpr const char* kNotebookRunnerPath = ".yard/notebook_runner.py";

// Checks that `text` is a Jupyter notebook the runner can execute: JSON,
// nbformat 4, a `cells` list whose entries have a cell_type and a source.
// InvalidArgument naming `name` and what is wrong otherwise.
Status ValidateNotebook(const std::string& name, std::string_view text);
// Reads and validates the notebook at `path`.
Status ValidateNotebookFile(const std::string& path);

// The runner's source.
std::string_view NotebookRunnerSource();

// Uploads the runner's chunks the server lacks and adds it to `bundle` at
// kNotebookRunnerPath (replacing any entry there; bundles never carry the
// user's own .yard folder).
Status AddNotebookRunner(const HttpClient& client, Manifest* bundle);

}  // namespace yard::cli
