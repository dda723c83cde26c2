#include "agent/agent_http.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>

#include "common/files.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

using test_support::TempDir;

TEST(ServerFileUrlTest, TheFileIsReadAgainOnlyWhenItIsAnotherOrChanged) {
  TempDir t;
  std::string file = t.path() + "/server.json";
  // No "changed just now" window: what is remembered is seen at once.
  ServerFileUrl url(file, std::chrono::nanoseconds(0));
  StatusOr<std::string> missing = url.Get();
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(file), std::string::npos)
      << missing.status().ToString();

  ASSERT_TRUE(WriteFileAtomic(file, R"({"url": "http://127.0.0.1:1000", "pid": 1})").ok());
  EXPECT_EQ(*url.Get(), "http://127.0.0.1:1000");
  int reads = url.reads();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*url.Get(), "http://127.0.0.1:1000");
  EXPECT_EQ(url.reads(), reads) << "unchanged: remembered, not read again";

  // The server restarted on another port: a new file put in place.
  ASSERT_TRUE(WriteFileAtomic(file, R"({"url": "http://127.0.0.1:2000", "pid": 2})").ok());
  EXPECT_EQ(*url.Get(), "http://127.0.0.1:2000");
  EXPECT_EQ(url.reads(), reads + 1);

  // Another shape (a damaged file): not a URL, nor the remembered one.
  ASSERT_TRUE(WriteFileAtomic(file, "not json").ok());
  EXPECT_EQ(url.Get().status().code(), Code::kUnavailable);
}

TEST(ServerFileUrlTest, AFileChangedJustNowIsReadEveryTime) {
  TempDir t;
  std::string file = t.path() + "/server.json";
  ServerFileUrl url(file);  // the agent's 2 s window
  ASSERT_TRUE(WriteFileAtomic(file, R"({"url": "http://127.0.0.1:2000", "pid": 2})").ok());
  EXPECT_EQ(*url.Get(), "http://127.0.0.1:2000");
  int reads = url.reads();
  // Rewritten in place within the same timestamp tick, same size, its mtime
  // put back: nothing in the stamp tells, only the window does.
  struct stat before;
  ASSERT_EQ(::stat(file.c_str(), &before), 0);
  std::ofstream(file, std::ios::in | std::ios::out) << R"({"url": "http://127.0.0.1:3000")";
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
  EXPECT_EQ(*url.Get(), "http://127.0.0.1:3000");
  EXPECT_EQ(url.reads(), reads + 1);
}

}  // namespace
}  // namespace yard
