// Prices of instances, per the design's cooling rule:
//
//   running: the market's price (spot or on-demand) per hour;
//   cooling, on-demand market: on-demand;
//   cooling, spot market: spot for `baseline_s` from the start of this
//     cooling period, then rising linearly by `unit_percentage` of
//     (on-demand - spot) per minute until it reaches on-demand (after
//     1/unit_percentage minutes), staying there.
#pragma once

#include <string>

namespace yard {

struct PricingSettings {
  double baseline_s = 600;        // BASELINE: 10 minutes
  double unit_percentage = 0.01;  // UNIT_PERCENTAGE: 1 % per minute
};

struct MarketPrices {
  double spot = 0;       // per hour
  double on_demand = 0;  // per hour
  bool is_spot = false;  // the instance's market
};

// Price per hour of a running instance.
double RunningPricePerHour(const MarketPrices& p);
// Price per hour `t` seconds into a cooling period.
double CoolingPricePerHour(const MarketPrices& p, double t, const PricingSettings& s);
// Cost of running from `start` to `end` (seconds).
double RunningCost(const MarketPrices& p, double start, double end);
// Cost of cooling between `t0` and `t1` seconds into the cooling period:
// the exact integral of CoolingPricePerHour.
double CoolingCost(const MarketPrices& p, double t0, double t1, const PricingSettings& s);

}  // namespace yard
