// /api/overview: what the dashboard shows, as JSON (docs/operations.md,
// "Dashboard"). Totals, not rates: the page takes the differences between
// two polls, so the broker keeps no history per viewer.
#pragma once

#include <string>

#include "broker/metrics/broker_snapshot.h"

namespace basin::http {

struct OverviewContext {
  double uptime_seconds = 0;
  bool admin = false;  // --http-admin: the page offers close and delete
};

// At most kMaxConsumersShown consumers per queue are listed (all are counted):
// with 1,000 queues shown, an overview stays within a few MB.
inline constexpr size_t kMaxConsumersShown = 20;

std::string OverviewJson(const metrics::BrokerSnapshot& snapshot, const OverviewContext& context);

}  // namespace basin::http
