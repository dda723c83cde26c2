// Progress of a transfer, for a person waiting on it: on a terminal one
// line redrawn in place (bytes, rate, time left); elsewhere (a log, a CI
// job) a plain line every tenth of the way or every few seconds. Transfers
// over within a moment show nothing at all.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace yard {

// What the transfer functions call. Implementations are thread-safe: the
// workers of one transfer may report at once.
class ProgressReporter {
 public:
  virtual ~ProgressReporter() = default;
  // `done` of `total` bytes so far; `total` 0 means not known. A `done`
  // below an earlier one is ignored (workers' reports may cross). Cheap
  // enough to call per chunk: drawing is throttled inside.
  virtual void Update(uint64_t done, uint64_t total) = 0;
  // The transfer is over (done or failed): a line drawn so far is finished
  // with a summary; if nothing was drawn, nothing is.
  virtual void Finish() = 0;
};

struct ProgressOptions {
  std::string label;                            // "uploading my-project", "fetching j-12"
  const Clock* clock = nullptr;                 // REQUIRED; must outlive the reporter
  std::function<void(std::string_view)> write;  // receives the text, newlines and '\r' included
  bool terminal = false;                        // one line redrawn in place, else plain lines
  std::function<int()> columns;                 // the terminal's width (terminal only)
  double show_after_s = 0.5;                    // nothing before: short transfers stay quiet
  double redraw_every_s = 0.1;                  // terminal: at most ~10 redraws a second
  double plain_every_s = 5;                     // plain: a line at least this often...
  double plain_every_fraction = 0.1;            // ...and each time this much more is done
};

std::unique_ptr<ProgressReporter> MakeProgress(ProgressOptions options);

// The user's choice in YARD_PROGRESS: "never" (or "0", "off") shows no
// progress (returns a reporter that draws nothing); "always" shows it from
// the first byte, however short the transfer; unset or "auto" as above.
// Returns the reporter for `options` as amended.
std::unique_ptr<ProgressReporter> MakeProgressFromEnv(ProgressOptions options);

// For the CLI: stderr, redrawn in place when it is a terminal (width from
// TIOCGWINSZ), plain lines otherwise; the real clock; YARD_PROGRESS honoured.
std::unique_ptr<ProgressReporter> StderrProgress(const std::string& label);

// "412.3 MB", "1.07 GB", "880 B": decimal units, like the rates.
std::string FormatBytes(uint64_t bytes);
// "0:07", "1:02:03"; "?" for negative or absurd values.
std::string FormatDuration(double seconds);
// The body of a progress line (no '\r', no newline), cut to `width` when
// width > 0: "label  412.3 MB / 1.07 GB  38%  251.4 MB/s  0:03 left".
std::string FormatProgressLine(const std::string& label, uint64_t done, uint64_t total,
                               double bytes_per_s, size_t width);

}  // namespace yard
