#include "server/pricing.h"

#include <algorithm>

namespace yard {

double RunningPricePerHour(const MarketPrices& p) { return p.is_spot ? p.spot : p.on_demand; }

double CoolingPricePerHour(const MarketPrices& p, double t, const PricingSettings& s) {
  if (!p.is_spot) return p.on_demand;
  if (t <= s.baseline_s) return p.spot;
  double minutes = (t - s.baseline_s) / 60.0;
  double price = p.spot + s.unit_percentage * (p.on_demand - p.spot) * minutes;
  return std::min(price, p.on_demand);
}

double RunningCost(const MarketPrices& p, double start, double end) {
  return RunningPricePerHour(p) * std::max(0.0, end - start) / 3600.0;
}

namespace {

// Integral over [a, b] of the price per second; the price is piecewise
// linear (flat, ramp, flat), so integrate each piece exactly.
double PriceSecondsIntegral(const MarketPrices& p, double a, double b, const PricingSettings& s) {
  double ramp_end = s.baseline_s + 60.0 / s.unit_percentage;
  double breaks[] = {s.baseline_s, ramp_end};
  double total = 0, lo = a;
  for (double hi_break : breaks) {
    double hi = std::min(b, hi_break);
    if (hi > lo) {
      // Linear on [lo, hi]: trapezoid is exact.
      total += (CoolingPricePerHour(p, lo, s) + CoolingPricePerHour(p, hi, s)) / 2 * (hi - lo);
      lo = hi;
    }
  }
  if (b > lo) total += CoolingPricePerHour(p, b, s) * (b - lo);
  return total / 3600.0;
}

}  // namespace

double CoolingCost(const MarketPrices& p, double t0, double t1, const PricingSettings& s) {
  if (t1 <= t0) return 0;
  if (!p.is_spot) return p.on_demand * (t1 - t0) / 3600.0;
  return PriceSecondsIntegral(p, t0, t1, s);
}

}  // namespace yard
