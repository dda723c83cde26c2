#include "agent/container.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "agent/agent_testing.h"
#include "common/fake_command_runner.h"

namespace yard {
namespace {

using agent_testing::TempDir;

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

Manifest Context(const std::string& train_hash) {
  Manifest m;
  m.files.push_back({"Dockerfile", 0644, 10, {{std::string(64, 'a'), 10}}, ""});
  m.files.push_back({"train.py", 0644, 5, {{train_hash, 5}}, ""});
  return m;
}

// ------------------------------------------------------------ image key

TEST(ImageKey, SameDockerfileAndContextSameKey) {
  std::string h = std::string(64, 'b');
  EXPECT_EQ(ImageKey("FROM x\n", Context(h)), ImageKey("FROM x\n", Context(h)));
  EXPECT_EQ(ImageKey("FROM x\n", Context(h)).size(), 64u);
}

TEST(ImageKey, ChangesWithDockerfileOrAnyFileItCopies) {
  const std::string copy_all = "FROM x\nCOPY . /job\n";
  Manifest base = Context(std::string(64, 'b'));
  std::string key = ImageKey(copy_all, base);
  EXPECT_NE(key, ImageKey("FROM y\nCOPY . /job\n", base));
  EXPECT_NE(key, ImageKey(copy_all, Context(std::string(64, 'c'))));  // content
  Manifest mode = base;
  mode.files[1].mode = 0755;  // COPY keeps modes
  EXPECT_NE(key, ImageKey(copy_all, mode));
  Manifest renamed = base;
  renamed.files[1].path = "train2.py";
  EXPECT_NE(key, ImageKey(copy_all, renamed));
  Manifest more = base;
  more.files.push_back({"data.csv", 0644, 0, {}, ""});
  EXPECT_NE(key, ImageKey(copy_all, more));
  Manifest link = base;
  link.files.push_back({"data.csv", 0777, 0, {}, "train.py"});
  EXPECT_NE(ImageKey(copy_all, more), ImageKey(copy_all, link));
}

TEST(ImageKey, ChangesWhenTheBaseImageWasRebuilt) {
  Manifest ctx = Context(std::string(64, 'b'));
  EXPECT_NE(ImageKey("FROM b\n", ctx, "b sha256:1\n"), ImageKey("FROM b\n", ctx, "b sha256:2\n"));
}

TEST(DockerfileBases, ImagesNotStages) {
  EXPECT_EQ(
      DockerfileBases("FROM --platform=linux/amd64 localhost/trainyard/base-cpu AS build\n"
                      "RUN make\n"
                      "from scratch\n"
                      "FROM build\n"
                      "FROM docker.io/library/python:3.11\n"),
      (std::vector<std::string>{"localhost/trainyard/base-cpu", "docker.io/library/python:3.11"}));
}

TEST(ImageKey, FilesTheDockerfileDoesNotCopyDoNotMatter) {
  // A new checkpoint mirrored into the folder, an edited script: same image.
  const std::string dockerfile =
      "FROM x\nCOPY requirements.txt /job/\nRUN pip install -r /job/requirements.txt\n";
  Manifest base = Context(std::string(64, 'b'));
  base.files.push_back({"requirements.txt", 0644, 3, {{std::string(64, 'd'), 3}}, ""});
  std::string key = ImageKey(dockerfile, base);
  Manifest edited = base;
  edited.files[1].chunks[0].hash = std::string(64, 'e');  // train.py
  edited.files.push_back({"ckpt/epoch-1.pt", 0644, 0, {}, ""});
  EXPECT_EQ(key, ImageKey(dockerfile, edited));
  Manifest pinned = base;
  pinned.files[2].chunks[0].hash = std::string(64, 'f');  // requirements.txt
  EXPECT_NE(key, ImageKey(dockerfile, pinned));
}

TEST(DockerfileSources, CopyAndAddSourcesButNotStagesOrUrls) {
  std::string d =
      "# syntax comment\n"
      "FROM base AS build\n"
      "COPY --chown=1:1 requirements.txt setup.cfg /job/\n"
      "copy [\"my dir/\", \"/opt/\"]\n"
      "ADD https://example.com/x.tgz /tmp/\n"
      "COPY --from=build /out /out\n"
      "ADD src/*.py \\\n"
      "    /job/src/\n"
      "RUN cp a b\n";
  EXPECT_EQ(DockerfileSources(d),
            (std::vector<std::string>{"requirements.txt", "setup.cfg", "my dir/", "src/*.py"}));
}

TEST(UsedContext, PathsFoldersGlobsAndAll) {
  Manifest m;
  for (const char* p : {"a.txt", "data/x.csv", "data/y/z.csv", "src/m.py", "src/sub/n.py", "t.py"})
    m.files.push_back({p, 0644, 0, {}, ""});
  auto paths = [](const Manifest& used) {
    std::vector<std::string> out;
    for (const auto& f : used.files) out.push_back(f.path);
    return out;
  };
  EXPECT_EQ(paths(UsedContext(m, {"./a.txt", "data/"})),
            (std::vector<std::string>{"a.txt", "data/x.csv", "data/y/z.csv"}));
  EXPECT_EQ(paths(UsedContext(m, {"src/*.py"})), (std::vector<std::string>{"src/m.py"}));
  EXPECT_EQ(paths(UsedContext(m, {"s*"})), (std::vector<std::string>{"src/m.py", "src/sub/n.py"}));
  EXPECT_EQ(UsedContext(m, {"."}).files.size(), m.files.size());
  EXPECT_EQ(UsedContext(m, {"$APP/"}).files.size(), m.files.size());  // not followed: all
  EXPECT_TRUE(UsedContext(m, {}).files.empty());
}

TEST(ImageKey, TagIsLocalAndShort) {
  std::string key = ImageKey("FROM x\n", Context(std::string(64, 'b')));
  EXPECT_EQ(JobImageTag(key), "localhost/trainyard-job:" + key.substr(0, 24));
}

TEST(ResolveImageName, DefaultsMapToTheLocalBaseImages) {
  EXPECT_EQ(ResolveImageName("default-cpu"), "localhost/trainyard/base-cpu:latest");
  EXPECT_EQ(ResolveImageName("default-gpu"), kBaseGpuImage);
  EXPECT_EQ(ResolveImageName("docker.io/library/python:3.11"), "docker.io/library/python:3.11");
}

// ------------------------------------------------------------ podman argv

ContainerSpec Spec() {
  ContainerSpec s;
  s.image = "localhost/trainyard-job:abc";
  s.command = {"python3", "train.py", "--lr", "0.1"};
  s.work_dir = "/w/jobs/j-1-1/work";
  s.mounts = {"/w/jobs/j-1-1"};
  s.env_keys = {"YARD_CHECKPOINT_DIR", "SECRET_TOKEN"};
  s.cidfile = "/w/jobs/j-1-1/container.id";
  s.ulimits = {{"nofile", 1024, 4096}, {"nproc", 4096, RLIM_INFINITY}};
  return s;
}

TEST(ContainerArgv, RunsTheCommandInTheMountedWorkFolder) {
  std::vector<std::string> argv = ContainerArgv(Spec());
  ASSERT_GE(argv.size(), 3u);
  EXPECT_EQ(argv[0], "podman");
  EXPECT_EQ(argv[1], "run");
  for (const char* flag : {"--rm", "--init", "--sig-proxy=false", "--network=host", "--pull=never",
                           "--cidfile=/w/jobs/j-1-1/container.id",
                           "--volume=/w/jobs/j-1-1:/w/jobs/j-1-1", "--workdir=/w/jobs/j-1-1/work"})
    EXPECT_TRUE(Has(argv, flag)) << flag;
  // The command replaces the image's entry point; the image is the last word.
  EXPECT_TRUE(Has(argv, R"(--entrypoint=["python3","train.py","--lr","0.1"])"));
  EXPECT_EQ(argv.back(), "localhost/trainyard-job:abc");
}

TEST(ContainerArgv, PassesVariablesByNameNeverTheirValues) {
  std::vector<std::string> argv = ContainerArgv(Spec());
  EXPECT_TRUE(Has(argv, "--env=YARD_CHECKPOINT_DIR"));
  EXPECT_TRUE(Has(argv, "--env=SECRET_TOKEN"));
  for (const auto& a : argv) EXPECT_EQ(a.find("SECRET_TOKEN="), std::string::npos) << a;
}

TEST(ContainerArgv, UlimitsAndDevices) {
  ContainerSpec s = Spec();
  s.devices = {"/dev/nvidia1", "/dev/nvidiactl"};
  std::vector<std::string> argv = ContainerArgv(s);
  EXPECT_TRUE(Has(argv, "--ulimit=nofile=1024:4096"));
  EXPECT_TRUE(Has(argv, "--ulimit=nproc=4096:-1"));  // unlimited
  EXPECT_TRUE(Has(argv, "--device=/dev/nvidia1"));
  EXPECT_TRUE(Has(argv, "--device=/dev/nvidiactl"));
  // Every option comes before the image, or podman passes it to the job.
  auto image = std::find(argv.begin(), argv.end(), s.image);
  EXPECT_EQ(image + 1, argv.end());
}

TEST(OwnUlimits, AreThisProcesssLimits) {
  struct rlimit rl;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  std::vector<ContainerSpec::Ulimit> u = OwnUlimits();
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0].name, "nofile");
  EXPECT_EQ(u[0].soft, rl.rlim_cur);
  EXPECT_EQ(u[0].hard, rl.rlim_max);
  EXPECT_EQ(u[1].name, "nproc");
  EXPECT_LE(u[1].hard, 32768u);  // podman's own cap: asking for more fails the container
}

// ------------------------------------------------------------ GPUs

const std::vector<std::string> kHost = {
    "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0",
    "/dev/nvidia1",        "/dev/nvidia2",    "/dev/nvidia3",          "/dev/nvidiactl"};

TEST(GpuDevices, VisibleIndicesAndTheControlNodes) {
  StatusOr<std::vector<std::string>> d = GpuDevices(std::string("2, 0"), kHost);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, (std::vector<std::string>{"/dev/nvidia2", "/dev/nvidia0", "/dev/nvidiactl",
                                          "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                          "/dev/nvidia-modeset"}));
}

TEST(GpuDevices, UnsetMeansEveryGpuOfTheHost) {
  StatusOr<std::vector<std::string>> d = GpuDevices(std::nullopt, kHost);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(std::count_if(d->begin(), d->end(),
                          [](const std::string& n) { return n.size() == 12; }),  // /dev/nvidiaN
            4);
  EXPECT_TRUE(Has(*d, "/dev/nvidiactl"));
}

TEST(GpuDevices, NoneWithoutGpusOrWhenHidden) {
  EXPECT_TRUE(GpuDevices(std::nullopt, {})->empty());
  EXPECT_TRUE(GpuDevices(std::string(""), kHost)->empty());  // an instance given no GPU
  EXPECT_TRUE(GpuDevices(std::string("-1"), kHost)->empty());
  EXPECT_TRUE(GpuDevices(std::string("7"), kHost)->empty());  // not on this host
  EXPECT_TRUE(GpuDevices(std::string("0"), {"/dev/nvidiactl"})->empty());
}

TEST(GpuDevices, UuidsAreAClearError) {
  StatusOr<std::vector<std::string>> d = GpuDevices(std::string("GPU-1234abcd"), kHost);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("GPU-1234abcd"), std::string::npos);
}

// ------------------------------------------------------------ EnsureImage

struct Folder {
  TempDir dir;
  std::string work = dir.path() + "/work";
  Folder(const std::string& dockerfile) {
    std::filesystem::create_directories(work);
    std::ofstream(work + "/Dockerfile") << dockerfile;
  }
};

TEST(EnsureImage, BuildsOnceWhenMissing) {
  Folder f("FROM localhost/trainyard/base-cpu\n");
  bool built = false;
  FakeCommandRunner podman([&](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv[1] == "image" && c.argv[2] == "inspect") return Result(0, "sha256:base\n");
    if (c.argv[1] == "image") return Result(built ? 0 : 1, "");
    if (c.argv[1] == "build") built = true;
    return Result(0, "STEP 1/1\n");
  });
  Manifest ctx = Context(std::string(64, 'b'));
  StatusOr<EnsuredImage> first = EnsureImage(&podman, "", f.work, ctx, f.dir.path() + "/locks");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->built);
  std::string tag = JobImageTag(ImageKey("FROM localhost/trainyard/base-cpu\n", ctx,
                                         "localhost/trainyard/base-cpu sha256:base\n"));
  EXPECT_EQ(first->image, tag);
  std::vector<CommandSpec> builds = podman.CallsOf("podman");
  ASSERT_EQ(builds.size(), 3u);  // inspect the base, image exists, build
  EXPECT_EQ(builds[2].argv,
            (std::vector<std::string>{"podman", "build", "--layers", "--network=host", "-t", tag,
                                      "-f", f.work + "/Dockerfile", f.work}));
  StatusOr<EnsuredImage> second = EnsureImage(&podman, "", f.work, ctx, f.dir.path() + "/locks");
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->built);
  EXPECT_EQ(podman.calls().size(), 5u);  // inspect and `image exists` again, no build
}

TEST(EnsureImage, FailedBuildCarriesPodmansOutput) {
  Folder f("FROM localhost/trainyard/base-cpu\nRUN false\n");
  FakeCommandRunner podman([](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv[1] == "image") return Result(1, "");
    return Result(1, "STEP 2/2: RUN false\n",
                  "Error: building at STEP \"RUN false\": exit status 1\n");
  });
  StatusOr<EnsuredImage> r =
      EnsureImage(&podman, "", f.work, Context(std::string(64, 'b')), f.dir.path() + "/locks");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("podman build"), std::string::npos);
  EXPECT_NE(r.status().message().find("STEP 2/2: RUN false"), std::string::npos);
  EXPECT_NE(r.status().message().find("exit status 1"), std::string::npos);
}

// The build's lines reach `progress` as podman prints them (the fake
// passes them on as the real runner does), blank ones left out; a failure
// then names podman's last line instead of repeating all it printed.
TEST(EnsureImage, BuildLinesAreRelayedAsTheyCome) {
  Folder f("FROM localhost/trainyard/base-cpu\nRUN pip install x\n");
  std::string printed =
      "STEP 1/2: FROM localhost/trainyard/base-cpu\nSTEP 2/2: RUN pip install x\n"
      "\nCollecting x\n";
  int exit_code = 0;
  FakeCommandRunner podman([&](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv[1] == "image") return Result(1, "");
    if (c.on_line) {
      std::istringstream in(printed);
      for (std::string line; std::getline(in, line);) c.on_line(line);
    }
    return Result(exit_code, printed,
                  exit_code ? "Error: building at STEP 2/2: exit status 1\n" : "");
  });
  std::vector<std::string> seen;
  auto progress = [&](const std::string& line) { seen.push_back(line); };
  StatusOr<EnsuredImage> r = EnsureImage(&podman, "", f.work, Context(std::string(64, 'b')),
                                         f.dir.path() + "/locks", progress);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(seen, (std::vector<std::string>{"build: STEP 1/2: FROM localhost/trainyard/base-cpu",
                                            "build: STEP 2/2: RUN pip install x",
                                            "build: Collecting x"}));
  exit_code = 1;
  Folder g("FROM localhost/trainyard/base-cpu\nRUN pip install y\n");
  r = EnsureImage(&podman, "", g.work, Context(std::string(64, 'c')), g.dir.path() + "/locks",
                  progress);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(
                "Error: building at STEP 2/2: exit status 1 (podman's output is above)"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(r.status().message().find("Collecting x"), std::string::npos);
}

TEST(EnsureImage, NamedImagePulledOnlyWhenMissing) {
  TempDir dir;
  int pulls = 0;
  FakeCommandRunner podman([&](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv[1] == "image")
      return Result(c.argv[3] == "localhost/trainyard/base-cpu:latest" ? 0 : 1, "");
    ++pulls;
    return Result(125, "", "Error: initializing source docker://nope: no route to host\n");
  });
  StatusOr<EnsuredImage> here = EnsureImage(&podman, "default-cpu", dir.path(), {}, dir.path());
  ASSERT_TRUE(here.ok());
  EXPECT_EQ(here->image, "localhost/trainyard/base-cpu:latest");
  EXPECT_FALSE(here->built);
  EXPECT_EQ(pulls, 0);
  StatusOr<EnsuredImage> missing = EnsureImage(&podman, "nope", dir.path(), {}, dir.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(pulls, 1);
  EXPECT_NE(missing.status().message().find("no route to host"), std::string::npos);
}

// ------------------------------------------------------------ the runner's step

TEST(SetUpContainer, TurnsTheCommandIntoPodmanRunWithTheJobsVariables) {
  TempDir dir;
  JobPaths paths = JobPaths::For(dir.path(), "j-1", 2);
  ASSERT_TRUE(paths.Create().ok());
  Assignment a;
  a.job = "j-1";
  a.image = "default-cpu";
  FakeCommandRunner podman([](const CommandSpec&) { return Result(0, ""); });
  JobSpawnOptions options;
  options.argv = {"python3", "train.py"};
  options.env = {{"PATH", "/host/bin"}, {"HOME", "/root"}, {"CUDA_VISIBLE_DEVICES", ""}};
  EnvMap inside = {{"YARD_JOB_ID", "j-1"}, {"TOKEN", "s3cret"}};
  std::vector<std::string> said;
  StatusOr<std::string> cid = SetUpContainer(&podman, dir.path(), a, paths, inside, &options,
                                             [&](const std::string& s) { said.push_back(s); });
  ASSERT_TRUE(cid.ok()) << cid.status().ToString();
  EXPECT_EQ(*cid, paths.root + "/container.id");
  ASSERT_EQ(said.size(), 2u);
  EXPECT_EQ(said[1], "image localhost/trainyard/base-cpu:latest (cached)");
  EXPECT_EQ(options.argv[0], "podman");
  EXPECT_EQ(options.argv.back(), "localhost/trainyard/base-cpu:latest");
  EXPECT_TRUE(Has(options.argv, "--env=TOKEN"));
  EXPECT_FALSE(Has(options.argv, "--env=PATH"));  // the image's own PATH, not the host's
  // The instance's GPU slice (here: none) holds inside too, and no device is passed.
  EXPECT_TRUE(Has(options.argv, "--env=CUDA_VISIBLE_DEVICES"));
  for (const auto& arg : options.argv) EXPECT_NE(arg.rfind("--device", 0), 0u) << arg;
  EXPECT_EQ(options.env["TOKEN"], "s3cret");  // podman reads it from here
  EXPECT_TRUE(Has(options.argv, "--volume=" + paths.root + ":" + paths.root));
}

TEST(SetUpContainer, MultiNodeIsRefused) {
  TempDir dir;
  JobPaths paths = JobPaths::For(dir.path(), "j-1", 1);
  Assignment a;
  a.image = "default-cpu";
  a.nodes = 2;
  FakeCommandRunner podman([](const CommandSpec&) { return Result(0, ""); });
  JobSpawnOptions options;
  StatusOr<std::string> cid =
      SetUpContainer(&podman, dir.path(), a, paths, {}, &options, [](const std::string&) {});
  ASSERT_FALSE(cid.ok());
  EXPECT_NE(cid.status().message().find("multi-node"), std::string::npos);
  EXPECT_TRUE(podman.calls().empty());
}

TEST(RemoveContainer, ForcesRemovalByCidfileOnlyWhenOneWasStarted) {
  TempDir dir;
  FakeCommandRunner podman([](const CommandSpec&) { return Result(0, ""); });
  EXPECT_EQ(RemoveContainer(&podman, dir.path() + "/container.id"), "");
  EXPECT_TRUE(podman.calls().empty());  // podman never wrote it: nothing to remove
  std::ofstream(dir.path() + "/container.id") << "abc";
  EXPECT_EQ(RemoveContainer(&podman, dir.path() + "/container.id"), "");
  ASSERT_EQ(podman.calls().size(), 1u);
  EXPECT_EQ(podman.calls()[0].argv,
            (std::vector<std::string>{"podman", "rm", "--force", "--ignore", "--time=0",
                                      "--cidfile=" + dir.path() + "/container.id"}));
}

}  // namespace
}  // namespace yard
