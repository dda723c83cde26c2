// ValidateNotebook (cli/notebook.h), apart from the rest of notebook.cc so
// that it builds alone: fuzz/notebook_fuzzer.cc links it without the client.
#include "cli/notebook.h"

#include <string>
#include <string_view>

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
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    return InvalidArgument(name + " is not valid JSON, so not a notebook Jupyter can open (" +
                           e.what() + "): save it again from Jupyter");
  }
  if (!nb.is_object())
    return InvalidArgument(name + " is JSON but not a notebook (no object at the top)");
  if (!nb.contains("nbformat") || !nb["nbformat"].is_number_integer())
    return InvalidArgument(name + " has no nbformat version: not a Jupyter notebook");
  int version = nb["nbformat"].get<int>();
  if (version != 4)
    return InvalidArgument(name + " is nbformat " + std::to_string(version) +
                           "; yard runs nbformat 4: convert it with `jupyter nbconvert --to "
                           "notebook " +
                           name + "` or save it from a current Jupyter");
  return CheckCells(name, nb);
}

}  // namespace yard::cli
