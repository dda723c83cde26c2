#include "cli/notebook.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "cli/notebook_runner_source.h"  // generated from notebook_runner.py by CMake
#include "common/chunker.h"
#include "common/hashing.h"

namespace yard::cli {

namespace {

Status CheckCells(const std::string& name, const Json& nb) {
  if (!nb.contains("cells") || !nb["cells"].is_array())
    return InvalidArgument(name + " has no `cells` list: not a Jupyter notebook");
  const Json& cells = nb["cells"];
  for (size_t i = 0; i < cells.size(); ++i) {
    const Json& c = cells[i];
    bool ok = c.is_object() && c.contains("cell_type") && c["cell_type"].is_string() &&
              c.contains("source") && (c["source"].is_string() || c["source"].is_array());
    if (!ok)
      return InvalidArgument(name + ": cell " + std::to_string(i + 1) +
                             " lacks a cell_type or source: the notebook is damaged; "
                             "open and save it in Jupyter");
  }
  return Status::Ok();
}

}  // namespace

Status ValidateNotebook(const std::string& name, std::string_view text) {
  Json nb;
  try {
    nb = Json::parse(text);
  } catch (const Json::parse_error& e) {
    return InvalidArgument(name + " is not valid JSON, so not a notebook Jupyter can open (" +
                           e.what() + "): save it again from Jupyter");
  }
  if (!nb.is_object()) return InvalidArgument(name + " is JSON but not a notebook (no object at the top)");
  if (!nb.contains("nbformat") || !nb["nbformat"].is_number_integer())
    return InvalidArgument(name + " has no nbformat version: not a Jupyter notebook");
  int version = nb["nbformat"].get<int>();
  if (version != 4)
    return InvalidArgument(name + " is nbformat " + std::to_string(version) +
                           "; yard runs nbformat 4: convert it with `jupyter nbconvert --to "
                           "notebook " + name + "` or save it from a current Jupyter");
  return CheckCells(name, nb);
}

Status ValidateNotebookFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot read " + path);
  std::stringstream text;
  text << f.rdbuf();
  return ValidateNotebook(path, text.str());
}

std::string_view NotebookRunnerSource() { return kNotebookRunnerSource; }

Status AddNotebookRunner(const HttpClient& client, Manifest* bundle) {
  std::string_view source = NotebookRunnerSource();
  FileEntry entry;
  entry.path = kNotebookRunnerPath;
  entry.mode = 0644;
  entry.size = source.size();
  std::vector<std::string> chunks;
  YARD_RETURN_IF_ERROR(ChunkBuffer(source, ChunkerParams{}, [&](const ChunkRef& ref, std::string_view bytes) {
    entry.chunks.push_back(ref);
    chunks.emplace_back(bytes);
    return Status::Ok();
  }));
  Json hashes = Json::array();
  for (const auto& c : entry.chunks) hashes.push_back(c.hash);
  YARD_ASSIGN_OR_RETURN(Json reply, client.Post("/v1/blobs/missing", {{"hashes", hashes}}));
  for (const auto& missing : reply.value("missing", Json::array()))
    for (size_t i = 0; i < entry.chunks.size(); ++i)
      if (entry.chunks[i].hash == missing)
        YARD_RETURN_IF_ERROR(client.PutBytes("/v1/blobs/" + entry.chunks[i].hash, chunks[i]).status());
  auto& files = bundle->files;
  files.erase(std::remove_if(files.begin(), files.end(),
                             [](const FileEntry& f) { return f.path == kNotebookRunnerPath; }),
              files.end());
  auto at = std::lower_bound(files.begin(), files.end(), entry,
                             [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  files.insert(at, entry);
  return Status::Ok();
}

}  // namespace yard::cli
