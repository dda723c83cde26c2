// The torch-free half of the C++ SDK's public API: history, progress,
// connection settings, transfer numbers and the error type. Users include
// sdk/trainyard.h, which includes this; the SDK's own torch-free code
// (fit_job.cc, progress.cc) includes only this, so it compiles without
// libtorch's headers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace trainyard {

// Keras' history.history: metric name ("loss", "accuracy", "val_loss", ...)
// -> one value per epoch, oldest first. A value the job reported as null
// (non-finite) or not at all for an epoch is NaN.
using History = std::map<std::string, std::vector<double>>;

// One thing worth telling the user while a fit job runs.
struct Progress {
  enum class Kind {
    kInfo,      // from the SDK: upload numbers, submission, why no model
    kState,     // the job changed state ("j-3 running on local-1")
    kDecision,  // a scheduling decision, in words
    kOutput,    // one line the job printed (its epoch lines come as kEpoch)
    kEpoch,     // an epoch ended: epoch, epochs, values
    kWarning,   // the trainer warned (e.g. batch size vs devices)
  };
  Kind kind = Kind::kInfo;
  std::string job_id;  // "" before the job exists
  // The line as PrintProgress shows it, without a trailing newline:
  // "Epoch 2/5 - loss: 0.4100 - accuracy: 0.8800" for kEpoch.
  std::string text;
  int64_t epoch = 0;                     // kEpoch: 1-based
  int64_t epochs = 0;                    // kEpoch: the total asked for
  std::map<std::string, double> values;  // kEpoch: loss, metrics, val_*
};

// Receives every Progress of a call, on the calling thread, in order.
using ProgressCallback = std::function<void(const Progress&)>;

// The default ProgressCallback, like the Python SDK: kOutput and kEpoch
// lines on stdout; the rest on stderr prefixed "trainyard: ".
void PrintProgress(const Progress& p);

// Which server to use. Empty fields fall back like the `yard` CLI.
struct Connection {
  std::string server;  // "": $YARD_SERVER, else the embedded server of `home`
  std::string token;   // "": $YARD_TOKEN, else the embedded home's token file
  std::string home;    // "": $YARD_HOME, else ~/.local/share/trainyard
  // The `yard` executable that starts the embedded server when none runs.
  // "": $YARD_BIN, else `yard` beside the running program, else on PATH.
  std::string yard_binary;
};

// What uploading the fit bundle cost. The arrays (the bundle's data/ folder)
// are counted apart: fitting again on the same tensors sends no data chunks.
struct TransferReport {
  uint64_t data_chunks_sent = 0;
  uint64_t data_chunks_total = 0;
  uint64_t chunks_sent = 0;  // all of the bundle, data included
  uint64_t chunks_total = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_total = 0;
};

// Thrown when a call cannot reach a job outcome: bad input (code
// "invalid_argument", thrown before anything is uploaded or any job is
// created, job_id() empty), or the server could not be reached or refused
// a request (the server's code; job_id() set when the job already exists).
// A job that ends without a model is not an exception: see FitResult.
class FitError : public std::runtime_error {
 public:
  FitError(std::string code, const std::string& message, std::string job_id = "")
      : std::runtime_error(message), code_(std::move(code)), job_id_(std::move(job_id)) {}
  // A stable lower-case name: "invalid_argument", "unavailable",
  // "unauthenticated", "not_found", "internal", ...
  const std::string& code() const { return code_; }
  const std::string& job_id() const { return job_id_; }

 private:
  std::string code_;
  std::string job_id_;
};

}  // namespace trainyard
