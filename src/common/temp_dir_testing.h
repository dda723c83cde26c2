// For tests only (uses GoogleTest): a fresh folder under the test temp dir,
// removed with its contents at destruction.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace yard::test_support {

class TempDir {
 public:
  TempDir() {
    // GoogleTest's folder ends in '/' ("/tmp/"): no "//" in the paths made.
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "yard_test.XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace yard::test_support
