#include "common/bundle.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/blob_store.h"
#include "common/hashing.h"
#include "common/random_bytes_testing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using test_support::RandomBytes;

// ---- IgnoreRules ---------------------------------------------------------

IgnoreRules Rules(const std::string& contents) {
  IgnoreRules r;
  r.AddFile("", contents);
  return r;
}

TEST(IgnoreRulesTest, UnanchoredPatternsMatchAtAnyDepth) {
  IgnoreRules r = Rules("*.o\n# a comment\n\n  \nsecret.txt\n");
  EXPECT_TRUE(r.IsIgnored("a.o", false));
  EXPECT_TRUE(r.IsIgnored("d/e/a.o", false));
  EXPECT_FALSE(r.IsIgnored("a.oo", false));
  EXPECT_TRUE(r.IsIgnored("a.o/x", false));  // without a trailing '/', folders match too
  EXPECT_TRUE(r.IsIgnored("d/secret.txt", false));
  EXPECT_FALSE(r.IsIgnored("# a comment", false));
}

TEST(IgnoreRulesTest, Negation) {
  IgnoreRules r = Rules("*.log\n!keep.log\n");
  EXPECT_TRUE(r.IsIgnored("x.log", false));
  EXPECT_FALSE(r.IsIgnored("keep.log", false));
  EXPECT_FALSE(r.IsIgnored("d/keep.log", false));
  // The last matching rule wins.
  IgnoreRules again = Rules("!keep.log\n*.log\n");
  EXPECT_TRUE(again.IsIgnored("keep.log", false));
}

TEST(IgnoreRulesTest, DirOnlyPatterns) {
  IgnoreRules r = Rules("build/\n");
  EXPECT_TRUE(r.IsIgnored("build", true));
  EXPECT_TRUE(r.IsIgnored("src/build", true));
  EXPECT_FALSE(r.IsIgnored("build", false));
  EXPECT_TRUE(r.IsIgnored("build/out.o", false));
}

TEST(IgnoreRulesTest, CannotReincludeBelowAnIgnoredFolder) {
  IgnoreRules r = Rules("build/\n!build/keep\n");
  EXPECT_TRUE(r.IsIgnored("build/keep", false));
}

TEST(IgnoreRulesTest, AnchoredPatterns) {
  IgnoreRules r = Rules("/top.txt\ndoc/*.md\n/out/\n");
  EXPECT_TRUE(r.IsIgnored("top.txt", false));
  EXPECT_FALSE(r.IsIgnored("d/top.txt", false));
  EXPECT_TRUE(r.IsIgnored("doc/a.md", false));
  EXPECT_FALSE(r.IsIgnored("x/doc/a.md", false));
  EXPECT_FALSE(r.IsIgnored("doc/sub/a.md", false));  // '*' stops at '/'
  EXPECT_TRUE(r.IsIgnored("out", true));
  EXPECT_FALSE(r.IsIgnored("src/out", true));
}

TEST(IgnoreRulesTest, DoubleStar) {
  IgnoreRules r = Rules("**/logs\na/**/b\nabc/**\n**/foo/bar\n");
  EXPECT_TRUE(r.IsIgnored("logs", true));
  EXPECT_TRUE(r.IsIgnored("x/y/logs", false));
  EXPECT_TRUE(r.IsIgnored("a/b", false));
  EXPECT_TRUE(r.IsIgnored("a/x/y/b", false));
  EXPECT_FALSE(r.IsIgnored("a/x/y/c", false));
  EXPECT_TRUE(r.IsIgnored("abc/x/y", false));
  EXPECT_FALSE(r.IsIgnored("abc", false));
  EXPECT_TRUE(r.IsIgnored("foo/bar", false));
  EXPECT_TRUE(r.IsIgnored("q/foo/bar", false));
  EXPECT_FALSE(r.IsIgnored("foo/baz", false));
}

TEST(IgnoreRulesTest, WildcardsClassesAndEscapes) {
  IgnoreRules r = Rules("f?o\nx[a-c]y\nz[!0-9]\n\\#hash\n\\!bang\nsp\\ \ntrail   \r\n[unclosed\n");
  EXPECT_TRUE(r.IsIgnored("foo", false));
  EXPECT_FALSE(r.IsIgnored("fo", false));
  EXPECT_TRUE(r.IsIgnored("xby", false));
  EXPECT_FALSE(r.IsIgnored("xdy", false));
  EXPECT_TRUE(r.IsIgnored("zq", false));
  EXPECT_FALSE(r.IsIgnored("z5", false));
  EXPECT_TRUE(r.IsIgnored("#hash", false));
  EXPECT_TRUE(r.IsIgnored("!bang", false));
  EXPECT_TRUE(r.IsIgnored("sp ", false));
  EXPECT_TRUE(r.IsIgnored("trail", false));
  EXPECT_TRUE(r.IsIgnored("[unclosed", false));
  EXPECT_FALSE(Rules("a?b").IsIgnored("a/b", false));
  EXPECT_FALSE(Rules("a*b").IsIgnored("a/b", false));
  EXPECT_TRUE(Rules("a*b").IsIgnored("aXYb", false));
}

TEST(IgnoreRulesTest, NestedFilesApplyBelowTheirFolder) {
  IgnoreRules r;
  r.AddFile("", "*.txt\n");
  r.AddFile("sub", "!important.txt\n/local.dat\n");
  EXPECT_TRUE(r.IsIgnored("a.txt", false));
  EXPECT_TRUE(r.IsIgnored("sub/a.txt", false));
  EXPECT_FALSE(r.IsIgnored("sub/important.txt", false));
  EXPECT_FALSE(r.IsIgnored("sub/deeper/important.txt", false));
  EXPECT_TRUE(r.IsIgnored("important.txt", false));
  EXPECT_TRUE(r.IsIgnored("sub/local.dat", false));
  EXPECT_FALSE(r.IsIgnored("sub/x/local.dat", false));
  EXPECT_FALSE(r.IsIgnored("local.dat", false));
  EXPECT_FALSE(r.IsIgnored("subway/local.dat", false));
}

// Found by fuzz/ignore_fuzzer.cc: each '*' run tried every place it could
// end, again for every choice of the runs before it, so this pattern took
// time exponential in its stars (years for this path; seconds for the
// fuzzer's). Remembered failures make it a few thousand steps.
TEST(IgnoreRulesTest, ManyStarsTakeLinearNotExponentialTime) {
  IgnoreRules r = Rules("*a*a*a*a*a*a*a*a*a*a*a*a*b\n**/*a*a*a*a*a*a*a*a*a*a*a*a*/b\n");
  std::string path(200, 'a');
  EXPECT_FALSE(r.IsIgnored(path, false));
  EXPECT_FALSE(r.IsIgnored("x/" + path + "/" + path, false));
  EXPECT_TRUE(r.IsIgnored(path + "b", false));
  EXPECT_TRUE(r.IsIgnored("x/" + path + "/b", false));
}

// ---- Packing and materializing -------------------------------------------

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Write(const fs::path& path, const std::string& data, mode_t mode = 0644) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).write(data.data(), data.size());
  ::chmod(path.c_str(), mode);
}

// Every entry below `root` (relative path -> description), links not followed.
std::map<std::string, std::string> Tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  if (!fs::exists(fs::symlink_status(root))) return out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    std::string rel = fs::relative(e.path(), root).string();
    struct stat st;
    ::lstat(e.path().c_str(), &st);
    std::string desc = std::to_string(st.st_mode & 07777);
    if (e.is_symlink()) {
      desc += " -> " + fs::read_symlink(e.path()).string();
    } else if (e.is_regular_file()) {
      desc += " " + Sha256Hex(ReadAll(e.path()));
    } else {
      desc += " dir";
    }
    out[rel] = desc;
  }
  return out;
}

class BundleTest : public testing::Test {
 protected:
  void SetUp() override {
    src_ = tmp_ / "src";
    fs::create_directories(src_);
    StatusOr<BlobStore> store = BlobStore::Open(tmp_ / "blobs");
    ASSERT_TRUE(store.ok());
    store_.emplace(std::move(store).value());
    // Small chunks, so that a few MiB make many.
    options_.chunker = {.min_size = 4096, .avg_size = 16384, .max_size = 65536};
  }

  StatusOr<Manifest> Pack(const PackOptions& options) {
    return PackDirectory(src_, options, [this](const ChunkRef& ref, std::string_view bytes) {
      EXPECT_EQ(ref.hash, Sha256Hex(bytes));
      ++chunks_seen_;
      return store_->Put(ref.hash, bytes);
    });
  }
  StatusOr<Manifest> Pack() { return Pack(options_); }

  Status Unpack(const Manifest& m, const fs::path& dest) {
    return Materialize(m, dest, [this](const std::string& h) { return store_->Get(h); });
  }

  std::vector<std::string> Paths(const Manifest& m) {
    std::vector<std::string> out;
    for (const auto& e : m.files) out.push_back(e.path);
    return out;
  }

  test_support::TempDir dir_;
  fs::path tmp_ = dir_.path(), src_;
  std::optional<BlobStore> store_;
  PackOptions options_;
  int chunks_seen_ = 0;
};

TEST_F(BundleTest, PacksSortedHonouringIgnoreFiles) {
  Write(src_ / "a.txt", "alpha");
  Write(src_ / "a" / "inner.txt", "inner");  // "a.txt" < "a/inner.txt" in byte order
  Write(src_ / "run.sh", "#!/bin/sh\n", 0755);
  Write(src_ / "debug.log", "noise");
  Write(src_ / "keep.log", "kept");
  Write(src_ / "build" / "out.o", "obj");
  Write(src_ / "sub" / "build", "a file named build: kept, the rule is dir-only");
  Write(src_ / "sub" / "data.bin", "data");
  Write(src_ / "sub" / "scratch.tmp", "tmp");
  Write(src_ / "sub" / "deep" / "scratch.tmp", "tmp");
  Write(src_ / ".gitignore", "*.log\n!keep.log\nbuild/\n");
  Write(src_ / "sub" / ".yardignore", "/scratch.tmp\n");
  Write(src_ / ".git" / "config", "[core]");
  Write(src_ / ".yard" / "state", "x");
  Write(src_ / "sub" / ".git", "gitdir: elsewhere");
  fs::create_symlink("a.txt", src_ / "link");
  fs::create_symlink("sub", src_ / "sublink");
  ASSERT_EQ(::mkfifo((src_ / "fifo").c_str(), 0644), 0);

  StatusOr<Manifest> m = Pack();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(Paths(*m),
            (std::vector<std::string>{".gitignore", "a.txt", "a/inner.txt", "keep.log", "link",
                                      "run.sh", "sub/.yardignore", "sub/build", "sub/data.bin",
                                      "sub/deep/scratch.tmp", "sublink"}));
  std::map<std::string, FileEntry> by_path;
  for (const auto& e : m->files) by_path[e.path] = e;
  EXPECT_EQ(by_path["run.sh"].mode, 0755u);
  EXPECT_EQ(by_path["a.txt"].mode, 0644u);
  EXPECT_EQ(by_path["a.txt"].size, 5u);
  EXPECT_EQ(by_path["link"].link_target, "a.txt");
  EXPECT_EQ(by_path["sublink"].link_target, "sub");
  EXPECT_TRUE(ValidateManifest(*m).ok());

  PackOptions no_ignore = options_;
  no_ignore.use_ignore_files = false;
  StatusOr<Manifest> all = Pack(no_ignore);
  ASSERT_TRUE(all.ok());
  std::vector<std::string> paths = Paths(*all);
  EXPECT_NE(std::find(paths.begin(), paths.end(), "debug.log"), paths.end());
  EXPECT_NE(std::find(paths.begin(), paths.end(), "build/out.o"), paths.end());
  EXPECT_EQ(std::find(paths.begin(), paths.end(), ".git/config"), paths.end());
  EXPECT_EQ(std::find(paths.begin(), paths.end(), ".yard/state"), paths.end());
}

TEST_F(BundleTest, RoundTripGivesIdenticalBytesModesAndLinks) {
  Write(src_ / "big.bin", RandomBytes(3 << 20, 1));
  Write(src_ / "big_copy.bin", RandomBytes(3 << 20, 1));  // same chunks, stored once
  Write(src_ / "empty", "");
  Write(src_ / "ro.txt", "read only", 0444);
  Write(src_ / "private", "secret", 0600);
  Write(src_ / "bin" / "tool", "#!/bin/sh\n", 0755);
  Write(src_ / "deep" / "er" / "still" / "file", "deep");
  fs::create_symlink("../big.bin", src_ / "bin" / "big");
  fs::create_symlink("deep/er", src_ / "er");
  fs::create_symlink("missing", src_ / "dangling");

  StatusOr<Manifest> m = Pack();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_GT(m->files[1].chunks.size(), 20u);
  EXPECT_EQ(static_cast<size_t>(chunks_seen_), 2 * m->files[1].chunks.size() + 4);
  fs::path dest = tmp_ / "out" / "nested";
  Status s = Unpack(*m, dest);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Tree(dest), Tree(src_));
  EXPECT_EQ(ReadAll(dest / "bin" / "big"), ReadAll(src_ / "big.bin"));

  // Unpacking again over the result replaces files in place.
  Write(dest / "ro.txt", "changed", 0644);
  ASSERT_TRUE(Unpack(*m, dest).ok());
  EXPECT_EQ(Tree(dest), Tree(src_));
}

TEST_F(BundleTest, PackRefusesLinksOut) {
  Write(src_ / "a", "a");
  fs::create_symlink("/etc/passwd", src_ / "abs");
  Status s = Pack().status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("\"abs\""), std::string::npos) << s.message();
  fs::remove(src_ / "abs");
  fs::create_symlink("../../outside", src_ / "up");
  s = Pack().status();
  EXPECT_NE(s.message().find("points outside"), std::string::npos) << s.message();
  Write(src_ / ".yardignore", "up\n");
  EXPECT_TRUE(Pack().ok());
}

FileEntry Entry(const std::string& path, const std::string& data, BlobStore& store) {
  FileEntry e;
  e.path = path;
  e.size = data.size();
  if (!data.empty()) {
    e.chunks.push_back({Sha256Hex(data), data.size()});
    EXPECT_TRUE(store.Put(e.chunks[0].hash, data).ok());
  }
  return e;
}

FileEntry LinkEntry(const std::string& path, const std::string& target) {
  FileEntry e;
  e.path = path;
  e.mode = 0777;
  e.link_target = target;
  return e;
}

TEST_F(BundleTest, MaterializeRefusesUnsafeManifestsWritingNothing) {
  std::vector<std::vector<FileEntry>> bad = {
      {Entry("ok", "fine", *store_), Entry("../x", "escape", *store_)},
      {Entry("ok", "fine", *store_), Entry("/etc/x", "escape", *store_)},
      {Entry("ok", "fine", *store_), LinkEntry("l", "../../outside"),
       Entry("l/file", "through the link", *store_)},
      {LinkEntry("l", "../../outside")},
  };
  fs::path dest = tmp_ / "work" / "dest";
  auto before = Tree(tmp_);
  for (auto& files : bad) {
    Manifest m;
    m.files = files;
    Status s = Unpack(m, dest);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
    EXPECT_FALSE(fs::exists(tmp_ / "work"));
    EXPECT_EQ(Tree(tmp_), before);
  }
}

TEST_F(BundleTest, MaterializeNeverFollowsLinksAlreadyInDest) {
  fs::path dest = tmp_ / "dest";
  fs::path outside = tmp_ / "outside";
  fs::create_directories(dest);
  fs::create_directories(outside);
  fs::create_symlink(outside, dest / "evil");
  Manifest m;
  m.files = {Entry("evil/file", "payload", *store_)};
  Status s = Unpack(m, dest);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(fs::is_empty(outside));
}

TEST_F(BundleTest, MaterializeChecksChunkHashes) {
  FileEntry e = Entry("f", "good", *store_);
  Manifest m;
  m.files = {e};
  fs::path dest = tmp_ / "dest";
  Status s = Materialize(m, dest, [](const std::string&) { return std::string("evil"); });
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("does not match"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(dest));  // no file, no temporary left behind

  s = Materialize(m, dest, [](const std::string& h) -> StatusOr<std::string> {
    return NotFound("no chunk " + h);
  });
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_TRUE(fs::is_empty(dest));
}

// ---- Chunks already on this machine: copied from their files ---------------

class LocalChunksTest : public BundleTest {
 protected:
  // A file of `bytes` (3 MiB: ~200 chunks) packed into the store; its manifest.
  Manifest PackBig(size_t bytes = 3 << 20) {
    content_ = RandomBytes(bytes, 42);
    Write(src_ / "data" / "x.npy", content_);
    StatusOr<Manifest> m = Pack();
    EXPECT_TRUE(m.ok());
    return *m;
  }

  // The store's files as the local source; counts what the byte source gave.
  Status UnpackLocal(const Manifest& m, const fs::path& dest) {
    return Materialize(
        m, dest,
        [this](const std::string& h) {
          ++fetched_;
          return store_->Get(h);
        },
        [this](const std::string& h) { return store_->Has(h) ? store_->PathOf(h) : ""; });
  }

  // Flips one bit (at byte `at`) of `chunk`'s blob in the store: same size,
  // other content. Returns the good bytes.
  std::string DamageInStore(const ChunkRef& chunk, size_t at) {
    std::string good = ReadAll(store_->PathOf(chunk.hash));
    std::string bad = good;
    bad[at] ^= 0x01;
    ::chmod(store_->PathOf(chunk.hash).c_str(), 0644);
    Write(store_->PathOf(chunk.hash), bad, 0444);
    return good;
  }

  // The store's files as the local source, `elsewhere` as the byte source
  // (the server, for an agent's cache); counts what it gave.
  Status UnpackLocalElseFrom(const Manifest& m, const fs::path& dest,
                             const std::map<std::string, std::string>& elsewhere) {
    return Materialize(
        m, dest,
        [&](const std::string& h) -> StatusOr<std::string> {
          ++fetched_;
          return elsewhere.at(h);
        },
        [this](const std::string& h) { return store_->PathOf(h); });
  }

  std::string content_;
  int fetched_ = 0;
};

TEST_F(LocalChunksTest, CopiesFromTheStoreWithoutFetchingAndNeverAliasesIt) {
  Manifest m = PackBig();
  ASSERT_GT(m.files[0].chunks.size(), 50u);
  fs::path dest = tmp_ / "job";
  ASSERT_TRUE(UnpackLocal(m, dest).ok());
  EXPECT_EQ(fetched_, 0);
  EXPECT_EQ(ReadAll(dest / "data" / "x.npy"), content_);
  // The job's file is its own: not a link to a blob, and writing to it
  // leaves the store as it was.
  const ChunkRef& first = m.files[0].chunks[0];
  struct stat job, blob;
  ASSERT_EQ(::stat((dest / "data" / "x.npy").c_str(), &job), 0);
  ASSERT_EQ(::stat(store_->PathOf(first.hash).c_str(), &blob), 0);
  EXPECT_NE(job.st_ino, blob.st_ino);
  EXPECT_EQ(job.st_nlink, 1u);
  EXPECT_EQ(blob.st_mode & 0777, 0444u) << "blobs are read-only";
  std::fstream(dest / "data" / "x.npy", std::ios::in | std::ios::out | std::ios::binary)
      .write("overwritten", 11);
  EXPECT_EQ(Sha256Hex(ReadAll(store_->PathOf(first.hash))), first.hash);
}

// A single-chunk file is a whole blob: cloned where the filesystem can,
// copied where it cannot (ext4, tmpfs: the test's own folder, likely).
TEST_F(LocalChunksTest, AWholeBlobIsClonedOrCopiedNeverLinked) {
  Write(src_ / "small.bin", "one chunk only");
  StatusOr<Manifest> m = Pack();
  ASSERT_TRUE(m.ok());
  fs::path dest = tmp_ / "job";
  ASSERT_TRUE(UnpackLocal(*m, dest).ok());
  EXPECT_EQ(fetched_, 0);
  EXPECT_EQ(ReadAll(dest / "small.bin"), "one chunk only");
  EXPECT_EQ(fs::hard_link_count(dest / "small.bin"), 1u);
  EXPECT_EQ(fs::hard_link_count(store_->PathOf(m->files[0].chunks[0].hash)), 1u);
}

TEST_F(LocalChunksTest, ADamagedChunkOnDiskIsDetectedBeforeUseAndFetchedAgain) {
  Manifest m = PackBig();
  const ChunkRef& victim = m.files[0].chunks[7];
  // A source that still has the good bytes (the server, for an agent's cache).
  std::map<std::string, std::string> elsewhere = {
      {victim.hash, DamageInStore(victim, victim.size / 2)}};
  fs::path dest = tmp_ / "job";
  Status s = UnpackLocalElseFrom(m, dest, elsewhere);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fetched_, 1);
  EXPECT_EQ(ReadAll(dest / "data" / "x.npy"), content_);

  // Nowhere good (the server's own store is the damaged one): the job's
  // file never appears, and the error names the chunk and its file.
  fs::path dest2 = tmp_ / "job2";
  s = UnpackLocal(m, dest2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(victim.hash), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("damaged"), std::string::npos) << s.message();
  EXPECT_TRUE(fs::is_empty(dest2 / "data"));  // no file, no temporary left behind
}

// From 64 MiB on, two threads copy and check every other chunk each: a
// damaged chunk is caught whichever thread has it.
TEST_F(LocalChunksTest, DamagedChunksAreCaughtWhenTwoThreadsCopyAndCheck) {
  Manifest m = PackBig(65 << 20);
  std::map<std::string, std::string> elsewhere;
  for (size_t i : {7, 8}) {  // one for each thread
    const ChunkRef& victim = m.files[0].chunks[i];
    elsewhere[victim.hash] = DamageInStore(victim, 0);
  }
  fs::path dest = tmp_ / "job";
  Status s = UnpackLocalElseFrom(m, dest, elsewhere);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fetched_, 2);
  EXPECT_TRUE(ReadAll(dest / "data" / "x.npy") == content_);
}

TEST_F(LocalChunksTest, AChunkFileOfTheWrongSizeIsFetchedInstead) {
  Manifest m = PackBig();
  const ChunkRef& victim = m.files[0].chunks[3];
  std::string good = ReadAll(store_->PathOf(victim.hash));
  fs::path truncated = tmp_ / "truncated";
  Write(truncated, good.substr(0, good.size() / 2));
  fs::path dest = tmp_ / "job";
  Status s = Materialize(
      m, dest,
      [&](const std::string& h) {
        ++fetched_;
        return store_->Get(h);
      },
      [&](const std::string& h) {
        return h == victim.hash ? truncated.string() : store_->PathOf(h);
      });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fetched_, 1);
  EXPECT_EQ(ReadAll(dest / "data" / "x.npy"), content_);
}

}  // namespace
}  // namespace yard
