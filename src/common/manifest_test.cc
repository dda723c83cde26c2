#include "common/manifest.h"

#include <gtest/gtest.h>

#include <string>

#include "common/hashing.h"

namespace yard {
namespace {

using nlohmann::json;

const std::string kHashA = Sha256Hex("a");
const std::string kHashB = Sha256Hex("b");

FileEntry File(std::string path, std::vector<ChunkRef> chunks, uint32_t mode = 0644) {
  FileEntry e;
  e.path = std::move(path);
  e.mode = mode;
  for (const auto& c : chunks) e.size += c.size;
  e.chunks = std::move(chunks);
  return e;
}

FileEntry Link(std::string path, std::string target) {
  FileEntry e;
  e.path = std::move(path);
  e.mode = 0777;
  e.link_target = std::move(target);
  return e;
}

Manifest Sample() {
  Manifest m;
  m.files = {File("a/b.txt", {{kHashA, 10}, {kHashB, 5}, {kHashA, 10}}), File("empty", {}, 0755),
             Link("l", "a/b.txt")};
  return m;
}

// Expects InvalidArgument whose message contains `needle`.
void ExpectRejected(const Status& s, const std::string& needle) {
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

void ExpectInvalid(std::vector<FileEntry> files, const std::string& needle) {
  Manifest m;
  m.files = std::move(files);
  ExpectRejected(ValidateManifest(m), needle);
}

TEST(ManifestTest, JsonFormIsTheDocumentedOne) {
  json expected = json::parse(R"({"version": 1, "files": [
      {"path": "a/b.txt", "mode": 420, "size": 25,
       "chunks": [[")" + kHashA +
                              R"(", 10], [")" + kHashB + R"(", 5], [")" + kHashA + R"(", 10]]},
      {"path": "empty", "mode": 493, "size": 0, "chunks": []},
      {"path": "l", "mode": 511, "size": 0, "link": "a/b.txt"}]})");
  EXPECT_EQ(Sample().ToJson(), expected);
  EXPECT_EQ(FileEntryToJson(Sample().files[2]), expected["files"][2]);
}

TEST(ManifestTest, RoundTrip) {
  Manifest m = Sample();
  StatusOr<Manifest> back = Manifest::FromJson(json::parse(m.ToJson().dump()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), m.ToJson());
  EXPECT_TRUE(back->files[2].is_link());
  EXPECT_EQ(back->files[0].chunks[1].hash, kHashB);
  StatusOr<FileEntry> e = FileEntryFromJson(FileEntryToJson(m.files[0]));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size, 25u);
  EXPECT_TRUE(ValidateManifest(*back).ok());
}

TEST(ManifestTest, TotalsAndUniqueHashes) {
  Manifest m = Sample();
  EXPECT_EQ(m.TotalBytes(), 25u);
  EXPECT_EQ(m.ChunkHashes(), (std::vector<std::string>{kHashA, kHashB}));
}

Status Parse(const std::string& text) { return Manifest::FromJson(json::parse(text)).status(); }

// Parses a manifest whose only entry has the given JSON fields.
Status ParseEntry(const std::string& fields) {
  return Parse(R"({"version": 1, "files": [{)" + fields + "}]}");
}

TEST(ManifestTest, FromJsonRejectsBadShapes) {
  ExpectRejected(Parse("[]"), "must be a JSON object");
  ExpectRejected(Parse(R"({"files": []})"), "missing \"version\"");
  ExpectRejected(Parse(R"({"version": 2, "files": []})"), "unsupported version 2");
  ExpectRejected(Parse(R"({"version": "1", "files": []})"), "unsupported version");
  ExpectRejected(Parse(R"({"version": 1})"), "\"files\" must be an array");
  ExpectRejected(Parse(R"({"version": 1, "files": [], "extra": 1})"),
                 "manifest: unknown key \"extra\"");
  ExpectRejected(Parse(R"({"version": 1, "files": [7]})"), "files[0]: must be an object");
}

TEST(ManifestTest, FromJsonRejectsBadEntries) {
  const std::string hash = "\"" + kHashA + "\"";
  ExpectRejected(ParseEntry(R"("mode": 1, "size": 0, "chunks": [])"), "missing \"path\"");
  ExpectRejected(ParseEntry(R"("path": 3, "mode": 1, "size": 0)"), "\"path\" must be a string");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": -1, "size": 0, "chunks": [])"),
                 "\"mode\" must be an integer");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 99999, "size": 0, "chunks": [])"),
                 "is not a mode");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 1.5, "chunks": [])"),
                 "\"size\" must be an integer");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 0)"), "missing \"chunks\"");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 0, "chunks": {})"),
                 "\"chunks\" must be an array");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 1, "chunks": [[1]])"),
                 "files[0]: chunks[0]: must be a [");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 1, "chunks": [["ab", 1]])"),
                 "chunks[0]: hash is not 64 lower-case hex digits");
  std::string upper = hash;
  for (auto& c : upper) c = static_cast<char>(toupper(c));
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 1, "chunks": [[)" + upper + ", 1]]"),
                 "hash is not 64 lower-case hex digits");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 1, "chunks": [[)" + hash + ", -1]]"),
                 "must be a [");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 0, "link": "")"),
                 "\"link\" must be a non-empty string");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 0, "link": "y", "chunks": [[)" +
                            hash + ", 1]]"),
                 "a symlink entry has no \"chunks\"");
  ExpectRejected(ParseEntry(R"("path": "x", "mode": 1, "size": 0, "chunks": [], "lnk": "y")"),
                 "files[0]: unknown key \"lnk\"");
  ExpectRejected(FileEntryFromJson(json::parse("null")).status(),
                 "manifest entry: must be an object");
}

TEST(ManifestTest, SafeRelativePaths) {
  for (const char* ok : {"a", "a/b.txt", ".hidden", "a/..b", "a/b..", "...", "sp ace/x"}) {
    EXPECT_TRUE(IsSafeRelativePath(ok)) << ok;
  }
  for (const char* bad :
       {"", "/etc/x", "../x", "a/../x", "a/..", "./a", "a/./b", "a//b", "a/", "a\\b", ".", ".."}) {
    EXPECT_FALSE(IsSafeRelativePath(bad)) << bad;
  }
  EXPECT_FALSE(IsSafeRelativePath(std::string("a\0b", 3)));
}

TEST(ManifestTest, RejectsUnsafePaths) {
  ExpectInvalid({File("/etc/x", {})}, "absolute path");
  ExpectInvalid({File("../x", {})}, "'..' path component");
  ExpectInvalid({File("a/../../x", {})}, "'..' path component");
  ExpectInvalid({File("a//b", {})}, "empty path component");
  ExpectInvalid({File("a/./b", {})}, "'.' path component");
  ExpectInvalid({File("a\\b", {})}, "backslash");
  ExpectInvalid({File(std::string("a\0b", 3), {})}, "NUL");
  ExpectInvalid({File("", {})}, "empty path");
  ExpectInvalid({File("bad\xff", {})}, "not valid UTF-8");
}

TEST(ManifestTest, RejectsDuplicatesSizesAndModes) {
  ExpectInvalid({File("x", {}), File("x", {})}, "\"x\": duplicate path");
  FileEntry wrong_size = File("x", {{kHashA, 10}});
  wrong_size.size = 11;
  ExpectInvalid({wrong_size}, "size 11 != sum of chunk sizes 10");
  ExpectInvalid({File("x", {{"nothex", 1}})}, "is not a sha256");
  ExpectInvalid({File("x", {{kHashA, 0}})}, "empty chunk");
  ExpectInvalid({File("x", {}, 04755)}, "beyond rwxrwxrwx");
  ExpectInvalid({File("a", {}), File("a/b", {})}, "\"a/b\": is below \"a\", which is a file");
}

TEST(ManifestTest, RejectsLinksOut) {
  ExpectInvalid({Link("l", "/etc")}, "is absolute");
  ExpectInvalid({Link("l", "..")}, "points outside the root");
  ExpectInvalid({Link("l", "../outside")}, "points outside the root");
  ExpectInvalid({Link("d/e/l", "../../../x")}, "points outside the root");
  ExpectInvalid({Link("d/l", "x/../../..")}, "points outside the root");
  // Lexically "a/.." is the root, but a -> . makes it the root's parent.
  ExpectInvalid({Link("a", "."), Link("b", "a/..")},
                "\"b\": symlink target \"a/..\" points outside");
  ExpectInvalid({Link("a", "d/.."), Link("d", "e/f"), Link("b", "a/../..")}, "points outside");
  ExpectInvalid({Link("a", "b"), Link("b", "a")}, "symlink loop");
  FileEntry with_content = Link("l", "x");
  with_content.size = 3;
  ExpectInvalid({with_content}, "a symlink has no content");
}

TEST(ManifestTest, RejectsPathsThroughLinks) {
  ExpectInvalid({Link("l", "sub"), File("l/file", {})}, "\"l/file\": passes through symlink \"l\"");
  ExpectInvalid({Link("l", "../../outside"), File("l/file", {})}, "\"l\"");
}

TEST(ManifestTest, AcceptsLinksInside) {
  Manifest m;
  m.files = {File("d/e/f", {}),      Link("d/e/up", "../.."),       Link("d/sib", "e/f"),
             Link("dot", "."),       Link("dangling", "nowhere/x"), Link("via", "d/sib/../e"),
             Link("d/e/self", "./f")};
  Status s = ValidateManifest(m);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(ManifestTest, Limits) {
  Manifest m;
  m.files = {File("a", {{kHashA, 600}}), File("b", {{kHashB, 600}})};
  EXPECT_TRUE(ValidateManifest(m).ok());
  EXPECT_EQ(ValidateManifest(m, {.max_files = 1}).code(), Code::kResourceExhausted);
  EXPECT_EQ(ValidateManifest(m, {.max_total_bytes = 1000}).code(), Code::kResourceExhausted);
  Manifest long_path;
  long_path.files = {File(std::string(300, 'p'), {})};
  ExpectRejected(ValidateManifest(long_path, {.max_path_length = 255}), "path longer than 255");
}

}  // namespace
}  // namespace yard
