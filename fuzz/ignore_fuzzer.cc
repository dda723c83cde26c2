// The .gitignore/.yardignore matcher that packing a bundle uses
// (common/bundle.h, IgnoreRules). Input: a path on the first line (a folder
// when it ends in '/'), then the contents of an ignore file in folder "sub".
// Matching must neither crash nor take exponential time (libFuzzer's
// -timeout catches a slow pattern).
#include "common/bundle.h"
#include "fuzz/fuzz_util.h"

using namespace yard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::AsView(data, size);
  size_t nl = in.find('\n');
  if (nl == std::string_view::npos) return 0;
  std::string path(in.substr(0, nl));
  bool is_dir = !path.empty() && path.back() == '/';
  if (is_dir) path.pop_back();
  IgnoreRules rules;
  rules.AddFile("", in.substr(nl + 1));
  rules.AddFile("sub", in.substr(nl + 1));
  (void)rules.IsIgnored(path, is_dir);
  (void)rules.IsIgnored("sub/" + path, is_dir);
  return 0;
}
