// What the HTTP listener serves (docs/operations.md, "HTTP endpoints"):
//
//   GET  /                 the dashboard (one page; its script and style inline)
//   GET  /metrics          Prometheus text format
//   GET  /api/overview     the dashboard's data, JSON
//   GET  /healthz          "ok" while the broker serves
//   POST /api/queues/NAME/close, /api/queues/NAME/delete
//                          only with --http-admin, and only with the header
//                          X-Basin-Action: 1 (a cross-site form cannot set it)
#pragma once

#include <chrono>

#include "broker/core/broker.h"
#include "broker/http/http_server.h"
#include "broker/metrics/metrics.h"

namespace basin::http {

struct RouteOptions {
  bool admin = false;
  size_t max_queues = 1000;
  size_t max_topics = 1000;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// `broker` and `metrics` must outlive the handler.
Handler MakeRoutes(core::Broker* broker, const metrics::Metrics* metrics, RouteOptions options);

}  // namespace basin::http
