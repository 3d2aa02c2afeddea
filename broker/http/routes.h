// What the HTTP listener serves (docs/operations.md, "HTTP endpoints"):
//
//   GET  /                 the dashboard (one page; its script and style inline)
//   GET  /metrics          Prometheus text format
//   GET  /api/overview     the dashboard's data, JSON
//   GET  /healthz          "ok" while the broker serves, 503 once it drains
//   POST /api/queues/NAME/close, /api/queues/NAME/delete
//                          only with --http-admin, only with the header
//                          X-Basin-Action: 1 (a cross-site form cannot set
//                          it), and only with a Host that is an IP address or
//                          localhost (a DNS-rebound name is refused)
#pragma once

#include <atomic>
#include <chrono>
#include <functional>

#include "broker/core/broker.h"
#include "broker/http/http_server.h"
#include "broker/metrics/metrics.h"

namespace basin::http {

struct RouteOptions {
  bool admin = false;
  // With users configured: whether the request's Authorization header (a
  // bearer token) names a user with configure on the queue. Returns "" (and
  // sets *user) or the refusal, whose first word is 401 or 403. Null: no users.
  std::function<std::string(const Request& req, const std::string& queue, std::string* user)>
      authorize;
  // Called after a queue action succeeded ("close" or "delete") with the user
  // `authorize` named ("" without users), for the audit log and the users'
  // queue quotas. Null: nothing to tell.
  std::function<void(const Request& req, const std::string& queue, std::string_view action,
                     const std::string& user)>
      acted;
  size_t max_queues = 1000;
  size_t max_topics = 1000;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Set when the broker starts draining (null: never).
  const std::atomic<bool>* draining = nullptr;
};

// `broker` and `metrics` must outlive the handler, which is called from one
// thread (the listener's).
Handler MakeRoutes(core::Broker* broker, metrics::Metrics* metrics, RouteOptions options);

// True for a Host header naming an IP address or localhost (any port).
bool IsLiteralHost(std::string_view host);

}  // namespace basin::http
