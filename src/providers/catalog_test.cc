// The catalog and sim scenario readers on files users write by hand. Each
// case below aborted the process (an uncaught exception) or was undefined
// behaviour (a float cast out of range) before: a "version" that is not a
// number was found by fuzz/catalog_fuzzer.cc; the same in the scenario and
// counts like 1e300 were seen by reading while writing the fuzz targets.
#include "providers/catalog.h"

#include <gtest/gtest.h>

#include "providers/sim_scenario.h"

namespace yard {
namespace {

using Json = nlohmann::json;

std::string CatalogError(const char* text) {
  StatusOr<Catalog> c = Catalog::FromJson(Json::parse(text));
  return c.ok() ? "" : c.status().message();
}

std::string ScenarioError(const char* text) {
  StatusOr<SimScenario> s = SimScenario::FromJson(Json::parse(text));
  return s.ok() ? "" : s.status().message();
}

TEST(CatalogTest, ReadsTheDocumentedForm) {
  StatusOr<Catalog> c = Catalog::FromJson(Json::parse(R"({"version": 1, "types": [
      {"name": "p2.xlarge", "provider": "sim", "cpus": 4, "memory_gb": 61, "gpus": 1,
       "gpu_model": "K80", "spot_price": 0.27, "on_demand_price": 0.9, "default_market": "spot",
       "options": {}}]})"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_NE(c->Find("p2.xlarge"), nullptr);
  EXPECT_EQ(c->Find("p2.xlarge")->cpus, 4);
  EXPECT_EQ(c->Find("p2.xlarge")->default_market, "spot");
}

TEST(CatalogTest, AVersionThatIsNotANumberIsRefusedNotACrash) {
  for (const char* text : {R"({"version": [1], "types": []})", R"({"version": "1", "types": []})",
                           R"({"version": null, "types": []})"})
    EXPECT_NE(CatalogError(text).find("expected {\"version\": 1"), std::string::npos) << text;
}

TEST(CatalogTest, CountsMustBeWholeNumbersAnIntHolds) {
  std::string m =
      CatalogError(R"({"version": 1, "types": [{"name": "t", "provider": "sim", "cpus": 1e300}]})");
  EXPECT_NE(m.find("catalog: type \"t\": 'cpus' must be a whole number"), std::string::npos) << m;
  m = CatalogError(
      R"({"version": 1, "types": [{"name": "t", "provider": "sim", "gpus": 4294967296}]})");
  EXPECT_NE(m.find("'gpus' must be a whole number"), std::string::npos) << m;
  m = CatalogError(
      R"({"version": 1, "types": [{"name": "t", "provider": "sim", "default_market": "x"}]})");
  EXPECT_NE(m.find("default_market must be spot or on-demand"), std::string::npos) << m;
}

TEST(SimScenarioTest, ReadsTheDocumentedForm) {
  StatusOr<SimScenario> s = SimScenario::FromJson(Json::parse(R"({"version": 1, "types": {
      "p2.xlarge": {"capacity": [[0, 2], [600, 0]], "provisioning_delay_s": 5,
                    "interruptions": [300, 120], "settings": ["zone"]}}})"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const SimTypeScenario& t = s->types.at("p2.xlarge");
  EXPECT_EQ(t.CapacityAt(0), 2);
  EXPECT_EQ(t.CapacityAt(601), 0);
  EXPECT_EQ(t.interruptions, (std::vector<double>{120, 300}));
  EXPECT_EQ(t.settings.count("zone"), 1u);
}

TEST(SimScenarioTest, AVersionThatIsNotANumberIsRefusedNotACrash) {
  for (const char* text : {R"({"version": {}, "types": {}})", R"({"version": "1", "types": {}})"})
    EXPECT_NE(ScenarioError(text).find("expected {\"version\": 1"), std::string::npos) << text;
}

TEST(SimScenarioTest, ACapacityCountMustBeAWholeNumberAnIntHolds) {
  for (const char* count : {"1e300", "-1", "2.5", "4294967296", "\"2\""}) {
    std::string text =
        std::string(R"({"version": 1, "types": {"t": {"capacity": [[0, )") + count + "]]}}}";
    std::string m = ScenarioError(text.c_str());
    EXPECT_NE(m.find("sim scenario: type 't': a capacity step's count must be a whole number >= 0"),
              std::string::npos)
        << count << ": " << m;
  }
  EXPECT_NE(
      ScenarioError(R"({"version": 1, "types": {"t": {"capacity": 5}}})").find("sim scenario: "),
      std::string::npos);
}

}  // namespace
}  // namespace yard
