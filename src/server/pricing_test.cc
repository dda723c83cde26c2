#include "server/pricing.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

const MarketPrices kSpot{0.3, 0.9, true};
const MarketPrices kOnDemand{0.3, 0.9, false};

TEST(PricingTest, CoolingSpotStaysAtSpotForTheBaseline) {
  PricingSettings s;
  EXPECT_DOUBLE_EQ(CoolingPricePerHour(kSpot, 0, s), 0.3);
  EXPECT_DOUBLE_EQ(CoolingPricePerHour(kSpot, 600, s), 0.3);
}

TEST(PricingTest, CoolingSpotRisesOnePercentOfTheGapPerMinute) {
  PricingSettings s;
  EXPECT_NEAR(CoolingPricePerHour(kSpot, 660, s), 0.3 + 0.006, 1e-12);
  EXPECT_NEAR(CoolingPricePerHour(kSpot, 600 + 50 * 60, s), 0.6, 1e-12);
  // Reaches on-demand at 110 minutes and stays there.
  EXPECT_NEAR(CoolingPricePerHour(kSpot, 110 * 60, s), 0.9, 1e-12);
  EXPECT_DOUBLE_EQ(CoolingPricePerHour(kSpot, 500 * 60, s), 0.9);
}

TEST(PricingTest, OnDemandCoolsAtOnDemand) {
  EXPECT_DOUBLE_EQ(CoolingPricePerHour(kOnDemand, 0, {}), 0.9);
  EXPECT_DOUBLE_EQ(CoolingCost(kOnDemand, 0, 3600, {}), 0.9);
}

TEST(PricingTest, CoolingCostIsTheIntegral) {
  PricingSettings s;
  // First 10 minutes at spot.
  EXPECT_NEAR(CoolingCost(kSpot, 0, 600, s), 0.3 / 6, 1e-12);
  // The 100-minute ramp averages (spot + on-demand) / 2.
  EXPECT_NEAR(CoolingCost(kSpot, 600, 6600, s), 0.6 * 100.0 / 60.0, 1e-9);
  // After that, on-demand.
  EXPECT_NEAR(CoolingCost(kSpot, 6600, 10200, s), 0.9, 1e-12);
  // Additivity across the break points.
  EXPECT_NEAR(CoolingCost(kSpot, 0, 10200, s),
              CoolingCost(kSpot, 0, 1000, s) + CoolingCost(kSpot, 1000, 10200, s), 1e-12);
}

TEST(PricingTest, SettingsChangeTheCurve) {
  PricingSettings s{60, 0.5};  // 1 minute baseline, 50 % per minute
  EXPECT_NEAR(CoolingPricePerHour(kSpot, 90, s), 0.3 + 0.25 * 0.6, 1e-12);
  EXPECT_DOUBLE_EQ(CoolingPricePerHour(kSpot, 180, s), 0.9);
}

}  // namespace
}  // namespace yard
