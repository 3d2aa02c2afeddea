#include "broker/http/routes.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string_view>

#include "broker/http/overview_json.h"

namespace basin::http {

extern const char kDashboardHtml[];  // generated from dashboard.html

namespace {

constexpr const char* kText = "text/plain; charset=utf-8";
constexpr const char* kJson = "application/json";
// A poll loop costs at most one pass over the queues per this.
constexpr auto kSnapshotMaxAge = std::chrono::milliseconds(250);

Response Status(unsigned status, std::string body) { return {status, kText, body + "\n", {}}; }

Response NotAllowed(const char* allow) {
  Response r = Status(405, "method not allowed");
  r.allow = allow;
  return r;
}

bool IsRead(const Request& r) { return r.method == "GET" || r.method == "HEAD"; }

// POST /api/queues/NAME/ACTION.
Response QueueAction(core::Broker* broker, const Request& req, const RouteOptions& options) {
  const bool admin = options.admin;
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
  if (!IsLiteralHost(req.host)) {
    return Status(403, "queue actions need a Host that is an IP address or localhost");
  }
  std::string user;
  if (options.authorize) {
    // Users configured: the action is a configure call like any other.
    if (const std::string refused = options.authorize(req, name, &user); !refused.empty()) {
      return Status(refused.rfind("401", 0) == 0 ? 401 : 403, refused.substr(4));
    }
  }
  auto queue = broker->FindQueue(name);
  if (!queue.ok()) return Status(404, queue.error().message);
  if (action == "close") {
    const bool already = queue.value()->Close(core::Clock::now());
    if (!already) spdlog::info("closed queue '{}' (dashboard)", name);
    if (!already && options.acted) options.acted(req, name, action, user);
    return {
        200, kJson, std::string("{\"already_closed\":") + (already ? "true" : "false") + "}", {}};
  }
  auto dropped = broker->DeleteQueue(name);
  if (!dropped.ok()) return Status(409, dropped.error().message);
  spdlog::info("deleted queue '{}' with {} messages (dashboard)", name, dropped.value());
  if (options.acted) options.acted(req, name, action, user);
  return {200, kJson, "{\"messages_dropped\":" + std::to_string(dropped.value()) + "}", {}};
}

// The route a request counts under in basin_http_requests_total: never the
// client's own path.
std::string_view RouteOf(const std::string& path) {
  for (std::string_view known : {"/", "/metrics", "/api/overview", "/healthz"}) {
    if (path == known) return known;
  }
  return path.rfind("/api/queues/", 0) == 0 ? "/api/queues" : "other";
}

}  // namespace

bool IsLiteralHost(std::string_view host) {
  if (host.empty()) return false;
  // Strip the port: "[::1]:9464", "127.0.0.1:9464", "localhost:9464".
  if (host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    host = host.substr(1, close - 1);
    unsigned char buf[16];
    return inet_pton(AF_INET6, std::string(host).c_str(), buf) == 1;
  }
  if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost") return true;
  unsigned char buf[4];
  return inet_pton(AF_INET, std::string(host).c_str(), buf) == 1;
}

Handler MakeRoutes(core::Broker* broker, metrics::Metrics* metrics, RouteOptions options) {
  auto snapshots = std::make_shared<metrics::SnapshotCache>(
      broker,
      metrics::SnapshotCache::Caps{options.max_queues, options.max_topics, kMaxConsumersShown},
      kSnapshotMaxAge);
  auto route = [broker, metrics, options, snapshots](const Request& req) -> Response {
    if (req.path.rfind("/api/queues/", 0) == 0) return QueueAction(broker, req, options);
    if (req.path != "/" && req.path != "/metrics" && req.path != "/api/overview" &&
        req.path != "/healthz") {
      return Status(404, "not found");
    }
    if (!IsRead(req)) return NotAllowed("GET, HEAD");
    if (req.path == "/") return {200, "text/html; charset=utf-8", kDashboardHtml, {}};
    if (req.path == "/healthz") {
      if (options.draining != nullptr && options.draining->load()) return Status(503, "draining");
      return Status(200, "ok");
    }
    const auto snapshot = snapshots->Get();
    if (req.path == "/metrics") {
      return {200, "text/plain; version=0.0.4; charset=utf-8", metrics->Render(*snapshot), {}};
    }
    OverviewContext context;
    context.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - options.started).count();
    context.admin = options.admin;
    return {200, kJson, OverviewJson(*snapshot, context), {}};
  };
  return [route, metrics](const Request& req) {
    Response r = route(req);
    metrics->CountHttp(RouteOf(req.path), r.status);
    return r;
  };
}

}  // namespace basin::http
