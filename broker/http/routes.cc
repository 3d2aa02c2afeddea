#include "broker/http/routes.h"

#include <spdlog/spdlog.h>

#include <string_view>

#include "broker/http/overview_json.h"

namespace basin::http {

extern const char kDashboardHtml[];  // generated from dashboard.html

namespace {

constexpr const char* kText = "text/plain; charset=utf-8";
constexpr const char* kJson = "application/json";

Response Status(unsigned status, std::string body) { return {status, kText, body + "\n", {}}; }

Response NotAllowed(const char* allow) {
  Response r = Status(405, "method not allowed");
  r.allow = allow;
  return r;
}

bool IsRead(const Request& r) { return r.method == "GET" || r.method == "HEAD"; }

// POST /api/queues/NAME/ACTION.
Response QueueAction(core::Broker* broker, const Request& req, bool admin) {
  constexpr std::string_view prefix = "/api/queues/";
  const std::string_view rest = std::string_view(req.path).substr(prefix.size());
  const auto slash = rest.rfind('/');
  if (slash == std::string_view::npos) return Status(404, "not found");
  const std::string name(rest.substr(0, slash));
  const std::string_view action = rest.substr(slash + 1);
  if (action != "close" && action != "delete") return Status(404, "not found");
  if (req.method != "POST") return NotAllowed("POST");
  if (!admin) return Status(403, "queue actions are off: start basind with --http-admin");
  if (!req.action_header) return Status(403, "queue actions need the header X-Basin-Action: 1");
  auto queue = broker->FindQueue(name);
  if (!queue.ok()) return Status(404, queue.error().message);
  if (action == "close") {
    const bool already = queue.value()->Close(core::Clock::now());
    if (!already) spdlog::info("closed queue '{}' (dashboard)", name);
    return {
        200, kJson, std::string("{\"already_closed\":") + (already ? "true" : "false") + "}", {}};
  }
  auto dropped = broker->DeleteQueue(name);
  if (!dropped.ok()) return Status(409, dropped.error().message);
  spdlog::info("deleted queue '{}' with {} messages (dashboard)", name, dropped.value());
  return {200, kJson, "{\"messages_dropped\":" + std::to_string(dropped.value()) + "}", {}};
}

}  // namespace

Handler MakeRoutes(core::Broker* broker, const metrics::Metrics* metrics, RouteOptions options) {
  return [broker, metrics, options](const Request& req) -> Response {
    if (req.path.rfind("/api/queues/", 0) == 0) return QueueAction(broker, req, options.admin);
    if (req.path == "/" || req.path == "/metrics" || req.path == "/api/overview" ||
        req.path == "/healthz") {
      if (!IsRead(req)) return NotAllowed("GET, HEAD");
    } else {
      return Status(404, "not found");
    }
    if (req.path == "/") return {200, "text/html; charset=utf-8", kDashboardHtml, {}};
    if (req.path == "/healthz") return Status(200, "ok");
    if (req.path == "/metrics") {
      return {200, "text/plain; version=0.0.4; charset=utf-8", metrics->Render(), {}};
    }
    const auto snapshot = metrics::TakeSnapshot(*broker, options.max_queues, options.max_topics,
                                                /*consumers=*/true);
    OverviewContext context;
    context.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - options.started).count();
    context.admin = options.admin;
    return {200, kJson, OverviewJson(snapshot, context), {}};
  };
}

}  // namespace basin::http
