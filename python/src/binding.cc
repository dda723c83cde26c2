// pybind11 binding of the C++ client (src/client) and the fit-job engine
// (src/sdk, torch-free): the Python SDK's only way to talk to a Trainyard
// server, and the one implementation both SDKs share of the API calls, the
// event stream, the artifact sync, the training history, the record archive,
// the machine picker's words and yard-train's fit_kwargs. JSON crosses the
// boundary as text (json.loads / json.dumps on the Python side). Every
// blocking call releases the GIL.
#include <pybind11/eval.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/connection.h"
#include "client/follow.h"
#include "client/http_client.h"
#include "client/machine_menu.h"
#include "client/transfer.h"
#include "common/files.h"
#include "common/manifest.h"
#include "sdk/progress.h"
#include "sdk/record.h"
#include "trainer/fit_options.h"

namespace py = pybind11;

namespace {

// A failed Status becomes trainyard._native.YardError(code, message).
PyObject* g_yard_error = nullptr;

// The wire's code names (status.cc): the same words in Python as in the API.
const char* PyCodeName(yard::Code c) { return yard::CodeName(c); }

[[noreturn]] void Throw(const yard::Status& s) {
  py::object err = py::reinterpret_borrow<py::object>(g_yard_error);
  py::object e = err(PyCodeName(s.code()), s.message());
  PyErr_SetObject(g_yard_error, e.ptr());
  throw py::error_already_set();
}

template <typename T>
T Check(yard::StatusOr<T> r) {
  if (!r.ok()) Throw(r.status());
  return std::move(r).value();
}

void Check(const yard::Status& s) {
  if (!s.ok()) Throw(s);
}

py::dict Stats(const yard::TransferStats& s) {
  py::dict d;
  d["files"] = s.files;
  d["bytes_total"] = s.bytes_total;
  d["chunks_total"] = s.chunks_total;
  d["chunks_sent"] = s.chunks_sent;
  d["bytes_sent"] = s.bytes_sent;
  return d;
}

class Client {
 public:
  explicit Client(std::unique_ptr<yard::HttpClient> c) : c_(std::move(c)) {}
  yard::HttpClient& http() { return *c_; }

 private:
  std::unique_ptr<yard::HttpClient> c_;
};

std::shared_ptr<Client> ConnectPy(const std::string& server, const std::string& token,
                                  const std::string& home, const std::string& yard_binary) {
  yard::ConnectionOptions o{server, token, home, yard_binary};
  o.restart_embedded = !yard_binary.empty();  // else "this executable" is Python, not yard
  yard::StatusOr<std::unique_ptr<yard::HttpClient>> c = [&] {
    py::gil_scoped_release nogil;
    return yard::Connect(o);
  }();
  return std::make_shared<Client>(Check(std::move(c)));
}

std::string GetJson(Client& c, const std::string& path) {
  yard::StatusOr<yard::Json> r = [&] {
    py::gil_scoped_release nogil;
    return c.http().Get(path);
  }();
  return Check(std::move(r)).dump();
}

std::string PostJson(Client& c, const std::string& path, const std::string& body) {
  yard::Json j = yard::Json::parse(body);
  yard::StatusOr<yard::Json> r = [&] {
    py::gil_scoped_release nogil;
    return c.http().Post(path, j);
  }();
  return Check(std::move(r)).dump();
}

py::bytes GetBytes(Client& c, const std::string& path) {
  yard::StatusOr<std::string> r = [&] {
    py::gil_scoped_release nogil;
    return c.http().GetBytes(path);
  }();
  return py::bytes(Check(std::move(r)));
}

// A progress reporter writing through the Python callable `write(text)`
// (e.g. sys.stderr.write), so notebooks show it too; null without one.
std::unique_ptr<yard::ProgressReporter> PyProgress(py::object write, const std::string& label,
                                                   bool terminal, int columns) {
  if (write.is_none()) return nullptr;
  static const yard::RealClock clock;
  yard::ProgressOptions o;
  o.label = label;
  o.clock = &clock;
  o.terminal = terminal;
  o.columns = [columns] { return columns; };
  // Called from upload workers: take the GIL; a failing write is dropped
  // rather than stopping the upload.
  auto fn = std::make_shared<py::object>(std::move(write));
  o.write = [fn](std::string_view text) {
    py::gil_scoped_acquire gil;
    try {
      (*fn)(std::string(text));
    } catch (py::error_already_set&) {
    }
  };
  return yard::MakeProgressFromEnv(std::move(o));
}

// Runs `upload(stats, options)` (an upload of the C++ client) without the
// GIL, its progress shown through `progress` (see PyProgress) ->
// (manifest json text, stats).
template <typename UploadFn>
py::tuple RunUpload(py::object progress, const std::string& label, bool terminal, int columns,
                    yard::UploadOptions options, UploadFn upload) {
  yard::TransferStats stats;
  std::unique_ptr<yard::ProgressReporter> reporter =
      PyProgress(std::move(progress), label, terminal, columns);
  options.progress = reporter.get();
  yard::StatusOr<yard::Manifest> m = [&] {
    py::gil_scoped_release nogil;
    auto r = upload(&stats, options);
    if (reporter) reporter->Finish();
    return r;
  }();
  yard::Manifest manifest = Check(std::move(m));
  return py::make_tuple(manifest.ToJson().dump(), Stats(stats));
}

// -> (manifest json text, stats). `progress`: see PyProgress.
py::tuple UploadDir(Client& c, const std::string& root, int parallel, py::object progress,
                    const std::string& label, bool terminal, int columns, bool remember) {
  yard::UploadOptions options;
  options.concurrency = parallel;
  if (remember) options.hash_cache_dir = yard::HashCache::DefaultDir();
  return RunUpload(std::move(progress), label, terminal, columns, options,
                   [&](yard::TransferStats* stats, const yard::UploadOptions& o) {
                     return yard::UploadDirectory(c.http(), root, stats, o);
                   });
}

// Whether the buffer's items lie in one block, row-major (numpy's C order),
// so that its memory is its bytes in order.
bool IsCContiguous(const py::buffer_info& b) {
  if (b.size == 0) return true;
  py::ssize_t step = b.itemsize;
  for (py::ssize_t i = b.ndim - 1; i >= 0; --i) {
    if (b.shape[i] != 1 && b.strides[i] != step) return false;
    step *= b.shape[i];
  }
  return true;
}

// files: [(path, head bytes, body)], body anything with the buffer protocol
// that is C-contiguous (a numpy array, a memoryview); its bytes are sent
// from where they are, without the GIL, so the caller must not change
// them until this returns. -> (manifest json text, stats), chunked as files
// of head + body would be. `progress`: see PyProgress.
py::tuple UploadMemory(Client& c, const py::list& files, int parallel, py::object progress,
                       const std::string& label, bool terminal, int columns) {
  std::vector<py::buffer_info> held;  // keeps each body's buffer (and its owner) alive
  std::vector<yard::MemoryFile> memory;
  held.reserve(files.size());
  for (const py::handle& item : files) {
    auto [path, head, body] = item.cast<std::tuple<std::string, py::bytes, py::buffer>>();
    held.push_back(body.request(/*writable=*/false));
    if (!IsCContiguous(held.back())) {
      throw py::value_error("the bytes of " + path + " are not one C-contiguous block: pass " +
                            "numpy.ascontiguousarray(array)");
    }
    const py::buffer_info& b = held.back();
    size_t n = static_cast<size_t>(b.size) * static_cast<size_t>(b.itemsize);
    memory.push_back({path, 0644, std::string(head), {static_cast<const char*>(b.ptr), n}});
  }
  yard::UploadOptions options;
  options.concurrency = parallel;
  return RunUpload(std::move(progress), label, terminal, columns, options,
                   [&](yard::TransferStats* stats, const yard::UploadOptions& o) {
                     return yard::UploadMemoryFiles(c.http(), memory, stats, o);
                   });
}

py::dict UploadChunks(Client& c, const std::string& manifest_json, const std::string& root,
                      int parallel) {
  yard::Manifest m = Check(yard::Manifest::FromJson(yard::Json::parse(manifest_json)));
  yard::TransferStats stats;
  yard::Status s;
  {
    py::gil_scoped_release nogil;
    yard::UploadOptions options;
    options.concurrency = parallel;
    s = yard::UploadManifestChunks(c.http(), m, root, &stats, options);
  }
  Check(s);
  return Stats(stats);
}

void DownloadEntryPy(Client& c, const std::string& entry_json, const std::string& dest_root) {
  yard::FileEntry e = Check(yard::FileEntryFromJson(yard::Json::parse(entry_json)));
  yard::TransferStats stats;
  yard::Status s;
  {
    py::gil_scoped_release nogil;
    s = yard::DownloadEntry(c.http(), e, dest_root, nullptr, &stats);
  }
  Check(s);
}

// Calls on_event(event_json_text) per event, in seq order, exactly once;
// on_event returning False stops. on_disconnect(message) -> bool (keep
// trying). Exceptions raised by the callbacks stop the stream and propagate.
void Follow(Client& c, const std::string& job_id, int64_t after, bool follow,
            py::function on_event, py::object on_disconnect) {
  yard::FollowOptions opts;
  opts.after = after;
  opts.follow = follow;
  std::unique_ptr<py::error_already_set> pending;
  opts.on_disconnect = [&](const yard::Status& s) -> bool {
    py::gil_scoped_acquire gil;
    if (pending) return false;
    if (on_disconnect.is_none()) return true;
    try {
      return on_disconnect(s.message()).cast<bool>();
    } catch (py::error_already_set& e) {
      pending = std::make_unique<py::error_already_set>(std::move(e));
      return false;
    }
  };
  yard::Status s;
  {
    py::gil_scoped_release nogil;
    s = yard::FollowEvents(c.http(), job_id, opts, [&](const yard::Json& ev) -> bool {
      py::gil_scoped_acquire gil;
      try {
        // Output bytes need not be UTF-8 (they are exactly the job's).
        py::object r = on_event(ev.dump(-1, ' ', false, yard::Json::error_handler_t::replace));
        return r.is_none() || r.cast<bool>();
      } catch (py::error_already_set& e) {
        pending = std::make_unique<py::error_already_set>(std::move(e));
        return false;
      }
    });
  }
  if (pending) throw *pending;
  Check(s);
}

class Mirror {
 public:
  Mirror(std::shared_ptr<Client> c, std::map<std::string, std::string> dirs)
      : client_(std::move(c)), m_(std::make_unique<yard::ArtifactMirror>(client_->http(), std::move(dirs))) {}
  ~Mirror() {
    py::gil_scoped_release nogil;
    m_.reset();
  }
  void Add(const std::string& event_json) { m_->Add(yard::Json::parse(event_json)); }
  void Drain() {
    yard::Status s;
    {
      py::gil_scoped_release nogil;
      s = m_->Drain();
    }
    Check(s);
  }
  uint64_t files_written() const { return m_->files_written(); }

 private:
  std::shared_ptr<Client> client_;  // outlives the mirror, which holds a reference
  std::unique_ptr<yard::ArtifactMirror> m_;
};

std::vector<yard::Json> ParseEvents(const std::vector<std::string>& texts) {
  std::vector<yard::Json> events;
  events.reserve(texts.size());
  for (const std::string& t : texts) events.push_back(yard::Json::parse(t));
  return events;
}

// -> ({metric: [float per epoch]}, [epochs]): HistoryWithEpochs, NaN for a
// missing value (the rule of src/sdk/progress.h).
py::tuple HistoryPy(const std::vector<std::string>& events) {
  auto [history, epochs] = trainyard::internal::HistoryWithEpochs(ParseEvents(events));
  return py::make_tuple(history, epochs);
}

std::string FinalMetricsPy(const std::vector<std::string>& events) {
  return trainyard::internal::FinalMetrics(ParseEvents(events)).dump();
}

// "" when yard-train takes these fit_kwargs, else why not (and what it takes).
std::string TorchFitKwargsError(const std::string& fit_kwargs_json) {
  yard::StatusOr<yard::trainer::FitOptions> o = yard::trainer::ParseFitKwargs(fit_kwargs_json);
  return o.ok() ? "" : o.status().message();
}

std::string WriteRecordPy(const std::string& job_id, const std::string& spec,
                          const std::string& manifest, const std::string& bundle_top,
                          const std::string& job, const std::vector<std::string>& events,
                          const std::string& environment, const std::string& out_dir) {
  trainyard::internal::RecordInput in;
  in.job_id = job_id;
  in.spec = yard::Json::parse(spec);
  in.manifest = yard::Json::parse(manifest);
  in.bundle_top = bundle_top;
  in.job = yard::Json::parse(job);
  in.events = ParseEvents(events);
  in.environment = yard::Json::parse(environment);
  yard::StatusOr<std::string> path = [&] {
    py::gil_scoped_release nogil;
    return trainyard::internal::WriteRecordArchive(std::move(in), out_dir);
  }();
  return Check(std::move(path));
}

std::vector<std::string> ParseMachineChoicePy(const std::string& types, const std::string& answer) {
  return Check(yard::ParseMachineChoice(yard::Json::parse(types), answer));
}

}  // namespace

PYBIND11_MODULE(_yard, m) {
  m.doc() = "Trainyard's C++ client, bound for the Python SDK";
  py::object builtins = py::module_::import("builtins");
  py::dict ns;
  py::exec(R"PY(
class YardError(Exception):
    """An error from the Trainyard client or server: .code and .message."""
    def __init__(self, code, message):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
)PY", py::globals(), ns);
  py::object err = ns["YardError"];
  err.attr("__module__") = "trainyard._yard";
  m.attr("YardError") = err;
  g_yard_error = err.ptr();
  Py_INCREF(g_yard_error);

  py::class_<Client, std::shared_ptr<Client>>(m, "Client")
      .def("get", &GetJson, py::arg("path"), "GET path -> JSON text")
      .def("post", &PostJson, py::arg("path"), py::arg("body"), "POST JSON text -> JSON text")
      .def("get_bytes", &GetBytes, py::arg("path"))
      .def("base_url", [](Client& c) { return Check(c.http().BaseUrl()); })
      .def("upload_directory", &UploadDir, py::arg("root"), py::arg("parallel") = 4,
           py::arg("progress") = py::none(), py::arg("label") = "", py::arg("terminal") = false,
           py::arg("columns") = 80, py::arg("remember") = false,
           "-> (manifest JSON text, stats); progress(text) receives a progress bar (terminal) "
           "or plain lines for uploads longer than a moment; remember=True keeps the chunks of "
           "large files by their identity (the user's cache folder), so an unchanged file is "
           "not read again next time (not for throw-away folders)")
      .def("upload_memory", &UploadMemory, py::arg("files"), py::arg("parallel") = 4,
           py::arg("progress") = py::none(), py::arg("label") = "", py::arg("terminal") = false,
           py::arg("columns") = 80,
           "files: [(path, head bytes, C-contiguous buffer)] -> (manifest JSON text, stats): "
           "each file is head + the buffer's bytes, chunked and sent from memory (nothing "
           "written to disk); the buffers must not change until it returns")
      .def("upload_manifest_chunks", &UploadChunks, py::arg("manifest"), py::arg("root"),
           py::arg("parallel") = 4)
      .def("download_entry", &DownloadEntryPy, py::arg("entry"), py::arg("dest_root"))
      .def("follow_events", &Follow, py::arg("job_id"), py::arg("after") = 0,
           py::arg("follow") = true, py::arg("on_event"), py::arg("on_disconnect") = py::none());
  m.def("connect", &ConnectPy, py::arg("server") = "", py::arg("token") = "",
        py::arg("home") = "", py::arg("yard_binary") = "",
        "Connect like the CLI: explicit server/token, YARD_SERVER/YARD_TOKEN, or the embedded "
        "server under YARD_HOME (started with yard_binary if needed)");
  m.def("history_from_events", &HistoryPy, py::arg("events"),
        "events (JSON texts) -> ({metric: [float per epoch]}, [epochs]); a missing value is NaN");
  m.def("format_epoch_values",
        [](const std::string& values) {
          return trainyard::internal::FormatEpochValues(yard::Json::parse(values));
        },
        py::arg("values"), "a metric event's values (JSON text) -> 'loss: 0.4100 - accuracy: ...'");
  m.def("is_epoch_line", &trainyard::internal::IsEpochLine, py::arg("line"),
        "whether a line is a trainer's own 'Epoch N/M - ...' line");
  m.def("final_metrics", &FinalMetricsPy, py::arg("events"),
        "events (JSON texts) -> JSON text of the last epoch's values");
  m.def("torch_fit_kwargs_error", &TorchFitKwargsError, py::arg("fit_kwargs"),
        "fit_kwargs JSON text -> '' when yard-train takes them, else why not");
  m.def("record_environment",
        [](const std::map<std::string, std::string>& packages, const std::string& python) {
          return trainyard::internal::RecordEnvironment(packages, python).dump();
        },
        py::arg("packages"), py::arg("python"),
        "-> JSON text {os, sdk, python, packages, env}; env without secret-looking names");
  m.def("write_record_archive", &WriteRecordPy, py::arg("job_id"), py::arg("spec"),
        py::arg("manifest"), py::arg("bundle_top"), py::arg("job"), py::arg("events"),
        py::arg("environment"), py::arg("out_dir") = "",
        "writes trainyard-record-<job>.tar.gz (moving bundle_top's main/ and data/); -> its path");
  m.def("machine_menu", [](const std::string& types) {
          yard::Json t = yard::Json::parse(types);
          return py::make_tuple(yard::MachineMenu(t), yard::MachinePrompt(t));
        },
        py::arg("types"), "GET /v1/machines' types (JSON text) -> (menu text, prompt)");
  m.def("parse_machine_choice", &ParseMachineChoicePy, py::arg("types"), py::arg("answer"),
        "-> machine ids; YardError invalid_argument for a number out of range");
  m.def("embedded_server_of_another_build",
        [](const std::string& home, const std::string& yard_binary) {
          return yard::EmbeddedServerOfAnotherBuild(
              home.empty() ? yard::DefaultYardHome() : home, yard::BuildIdOf(yard_binary));
        },
        py::arg("home"), py::arg("yard_binary"),
        "the CLI's warning when home's embedded server runs another build than yard_binary, else ''");
  py::class_<Mirror>(m, "ArtifactMirror")
      .def(py::init<std::shared_ptr<Client>, std::map<std::string, std::string>>(),
           py::arg("client"), py::arg("dirs"))
      .def("add", &Mirror::Add, py::arg("event"))
      .def("drain", &Mirror::Drain)
      .def_property_readonly("files_written", &Mirror::files_written);
}
