#include "server/agent_credentials.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

InstanceRecord Instance(const std::string& id, const std::string& user,
                        const std::string& bootstrap, const std::string& credential) {
  InstanceRecord inst;
  inst.id = id;
  inst.user = user;
  inst.bootstrap_hash = bootstrap.empty() ? "" : AgentCredentials::Hash(bootstrap);
  inst.credential_hash = credential.empty() ? "" : AgentCredentials::Hash(credential);
  return inst;
}

TEST(AgentCredentialsTest, TokensHaveTheirShape) {
  std::string boot = AgentCredentials::NewBootstrap(), cred = AgentCredentials::NewCredential();
  EXPECT_TRUE(AgentCredentials::IsBootstrap(boot));
  EXPECT_FALSE(AgentCredentials::IsCredential(boot));
  EXPECT_TRUE(AgentCredentials::IsCredential(cred));
  EXPECT_NE(AgentCredentials::NewCredential(), cred);
  EXPECT_FALSE(AgentCredentials::IsCredential(cred.substr(0, cred.size() - 1)));
  EXPECT_FALSE(AgentCredentials::IsCredential("yit_" + std::string(48, 'G')));
}

TEST(AgentCredentialsTest, IdentifiesEachInstanceByItsOwnTokensOnly) {
  AgentCredentials creds;
  std::string boot = AgentCredentials::NewBootstrap(), cred = AgentCredentials::NewCredential();
  creds.Put(Instance("inst-a", "ann", boot, ""), "");
  EXPECT_FALSE(creds.Identify(cred)) << "not bound yet";
  creds.Put(Instance("inst-a", "ann", boot, cred), "");
  std::optional<TokenInfo> who = creds.Identify(cred);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->instance, "inst-a");
  EXPECT_EQ(who->kind, "agent");
  EXPECT_EQ(who->user, "ann");
  EXPECT_EQ(creds.Identify(boot)->kind, "bootstrap");
  creds.Remove("inst-a");
  EXPECT_FALSE(creds.Identify(cred));
  EXPECT_FALSE(creds.Identify(boot));
}

TEST(AgentCredentialsTest, JobChunksLastAsLongAsTheirJobAttempt) {
  AgentCredentials creds;
  InstanceRecord inst = Instance("inst-a", "ann", AgentCredentials::NewBootstrap(), "");
  creds.Put(inst, "job-1#1");
  creds.SetJobChunks("inst-a", "job-1#1", {"h1"});
  EXPECT_TRUE(creds.MayRead("inst-a", "h1"));
  EXPECT_FALSE(creds.MayRead("inst-a", "h2"));
  EXPECT_FALSE(creds.MayRead("inst-b", "h1"));
  creds.Put(inst, "job-1#1");  // same attempt: kept
  EXPECT_TRUE(creds.MayRead("inst-a", "h1"));
  creds.Put(inst, "job-1#2");  // another attempt: its chunks are set anew
  EXPECT_FALSE(creds.MayRead("inst-a", "h1"));
  EXPECT_FALSE(creds.HasJob("inst-a"));
}

TEST(AgentCredentialsTest, JobChunksAreTheBundleAndTheCheckpointToResumeFrom) {
  JobRecord job;
  std::string a(64, 'a'), b(64, 'b'), c(64, 'c'), d(64, 'd');
  auto chunk = [](const std::string& h) { return Json::array({Json::array({h, 1})}); };
  Json file = {{"path", "x"}, {"chunks", Json::array({Json::array({a, 1}), Json::array({b, 1})})}};
  job.spec["bundle"] = {{"version", 1}, {"files", Json::array({file})}};
  job.spec["other"] = {{"chunks", chunk(d)}};  // not a field the server checked
  job.sched.resume_from =
      Json{{"entry", {{"path", "e.pt"}, {"chunks", chunk(c)}}}, {"siblings", Json::array()}};
  EXPECT_EQ(JobChunks(job), (AgentCredentials::ChunkSet{a, b, c}));
}

}  // namespace
}  // namespace yard
