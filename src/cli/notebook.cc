#include "cli/notebook.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "cli/notebook_runner_source.h"  // generated from notebook_runner.py by CMake
#include "client/reply.h"
#include "common/chunker.h"
#include "common/hashing.h"

namespace yard::cli {

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
  YARD_RETURN_IF_ERROR(
      ChunkBuffer(source, ChunkerParams{}, [&](const ChunkRef& ref, std::string_view bytes) {
        entry.chunks.push_back(ref);
        chunks.emplace_back(bytes);
        return Status::Ok();
      }));
  Json hashes = Json::array();
  for (const auto& c : entry.chunks) hashes.push_back(c.hash);
  YARD_ASSIGN_OR_RETURN(Reply reply, PostReply(client, "/v1/blobs/missing", {{"hashes", hashes}}));
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> missing, reply.Array("missing"));
  for (const Reply& m : missing) {
    YARD_ASSIGN_OR_RETURN(std::string hash, m.As<std::string>());
    for (size_t i = 0; i < entry.chunks.size(); ++i)
      if (entry.chunks[i].hash == hash)
        YARD_RETURN_IF_ERROR(client.PutBytes("/v1/blobs/" + hash, chunks[i]).status());
  }
  auto& files = bundle->files;
  files.erase(std::remove_if(files.begin(), files.end(),
                             [](const FileEntry& f) { return f.path == kNotebookRunnerPath; }),
              files.end());
  auto at =
      std::lower_bound(files.begin(), files.end(), entry,
                       [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  files.insert(at, entry);
  return Status::Ok();
}

}  // namespace yard::cli
