#include "agent/sandbox_template.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "agent/sandbox.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

TEST(SandboxTemplateTest, EveryTmpfsAndDevShmIsMadeAnewPerJob) {
  std::vector<std::string> prefix = {"/usr/bin/bwrap", "--ro-bind", "/usr", "/usr",    "--dev",
                                     "/dev",           "--tmpfs",   "/tmp", "--tmpfs", "/home/u",
                                     "--bind",         "/w",        "/w",   "--"};
  EXPECT_EQ(SandboxTemplate::FreshMounts(prefix),
            (std::vector<std::string>{"/dev/shm", "/tmp", "/home/u"}));
}

TEST(SandboxTemplateTest, APrefixThatMakesFoldersGetsABwrapPerJob) {
  // A fresh tmpfs would lose the folders --dir made in the template.
  std::vector<std::string> prefix = {"/usr/bin/bwrap", "--tmpfs", "/tmp", "--dir", "/tmp/a", "--"};
  EXPECT_FALSE(SandboxTemplate::Usable(prefix));
  prefix.erase(prefix.begin() + 3, prefix.begin() + 5);
  EXPECT_EQ(SandboxTemplate::Usable(prefix), geteuid() == 0);
}

TEST(SandboxTemplateTest, TheHostViewGetsABwrapPerJob) {
  // The host's mounts below the /run cover (/run/netns) cannot be carried
  // over a fresh tmpfs: entering such a template failed.
  std::vector<std::string> prefix = {"/usr/bin/bwrap", "--ro-bind", "/", "/",
                                     "--tmpfs",        "/run",      "--"};
  EXPECT_FALSE(SandboxTemplate::Usable(prefix));
  prefix.erase(prefix.begin() + 1, prefix.begin() + 4);
  EXPECT_EQ(SandboxTemplate::Usable(prefix), geteuid() == 0);
}

TEST(SandboxTemplateTest, OneTemplatePerPrefixKeptUntilAnotherIsAskedFor) {
  if (geteuid() != 0) GTEST_SKIP() << "sandbox templates need root";
  test_support::TempDir tmp;
  fs::path dir = tmp.path();
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  auto prefix = [&](const char* name) {
    SandboxSpec spec;
    spec.writable = (dir / name).string();
    spec.readable = {fs::path(YARD_BINARY).parent_path().string()};
    StatusOr<std::vector<std::string>> p = SandboxPrefix(spec, {{"PATH", "/usr/bin:/bin"}});
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : std::vector<std::string>{};
  };
  SandboxTemplates templates(YARD_BINARY);
  auto a1 = templates.Get(prefix("a"));
  ASSERT_TRUE(a1.ok()) << a1.status().ToString();
  auto a2 = templates.Get(prefix("a"));
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a1->get(), a2->get());
  // The descriptor is a mount namespace, not the agent's own.
  struct stat own, given;
  ASSERT_EQ(stat("/proc/self/ns/mnt", &own), 0);
  ASSERT_EQ(fstat((*a1)->mount_ns_fd(), &given), 0);
  EXPECT_NE(own.st_ino, given.st_ino);
  auto b = templates.Get(prefix("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->get(), a1->get());
}

TEST(SandboxTemplateTest, AFolderMadeAnewSinceGetsANewTemplate) {
  // A venv made again while the instance lives: the template's bind would
  // still show the old, deleted folder.
  if (geteuid() != 0) GTEST_SKIP() << "sandbox templates need root";
  test_support::TempDir tmp;
  fs::path dir = tmp.path();
  fs::create_directories(dir / "jobs");
  fs::create_directories(dir / "venv");
  SandboxSpec spec;
  spec.writable = (dir / "jobs").string();
  spec.readable = {fs::path(YARD_BINARY).parent_path().string(), (dir / "venv").string()};
  StatusOr<std::vector<std::string>> prefix = SandboxPrefix(spec, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
  SandboxTemplates templates(YARD_BINARY);
  auto first = templates.Get(*prefix);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE((*first)->Stale());
  fs::remove_all(dir / "venv");
  fs::create_directories(dir / "venv");
  EXPECT_TRUE((*first)->Stale());
  auto second = templates.Get(*prefix);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE(first->get(), second->get());
  EXPECT_FALSE((*second)->Stale());
}

}  // namespace
}  // namespace yard
