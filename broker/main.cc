// basind: the Basin message broker daemon. Parses its settings, wires the core
// to the gRPC service, the deadline timer and the HTTP listener, serves until
// SIGINT/SIGTERM, then drains (docs/operations.md, "Stopping") and exits 0.
// SIGHUP reopens --log-file and re-reads the TLS files and the users.
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "broker/config.h"
#include "broker/core/broker.h"
#include "broker/deadline_timer.h"
#include "broker/declarations.h"
#include "broker/dispatcher.h"
#include "broker/http/http_server.h"
#include "broker/http/routes.h"
#include "broker/logging.h"
#include "broker/metrics/metrics.h"
#include "broker/security/users.h"
#include "broker/server.h"
#include "broker/service/access.h"
#include "broker/storage/committer.h"
#include "broker/storage/file_limit.h"
#include "broker/storage/queue_store.h"

int main(int argc, char** argv) {
  const auto process_start = std::chrono::steady_clock::now();
  int exit_code = 0;
  const auto config = basin::ParseConfig(argc, argv, &exit_code);
  if (!config) return exit_code;
  if (!basin::SetupLogging(config->log_level, config->log_format, config->log_file)) return 2;

  // Block the signals before any thread starts, so every thread inherits the
  // mask and only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A write past a file size limit must fail the write (a durable put then
  // gets UNAVAILABLE), not kill the broker.
  std::signal(SIGXFSZ, SIG_IGN);
  // Each durable queue holds a file open from recovery on: at the soft limit
  // recovery would stop with EMFILE.
  std::string limit_error;
  const uint64_t open_files = basin::storage::RaiseOpenFileLimit(&limit_error);
  if (!limit_error.empty()) {
    spdlog::warn("open-file limit stays at {}: {}", open_files, limit_error);
  } else {
    spdlog::info("open-file limit {}", open_files);
  }

  basin::DeadlineTimer timer;
  basin::Dispatcher dispatcher(1);
  // Declared before the broker: its queues write through the committer until
  // they are destroyed.
  std::unique_ptr<basin::storage::Committer> committer;
  std::unique_ptr<basin::storage::QueueStore> store;
  if (!config->data_dir.empty()) {
    // ParseConfig has checked the name.
    committer = std::make_unique<basin::storage::Committer>(
        *basin::storage::ParseFsyncPolicy(config->fsync), config->fsync_interval);
    std::string error;
    basin::storage::LogOptions log_options;
    log_options.max_segment_bytes = config->segment_bytes;
    store = basin::storage::QueueStore::Open(config->data_dir, std::move(log_options),
                                             committer.get(), &error);
    if (store == nullptr) {
      spdlog::error("cannot use --data-dir: {}", error);
      return 1;
    }
  }
  basin::core::Broker broker(config->limits, &timer, store.get());
  double recovery_seconds = 0;
  if (store != nullptr) {
    const auto started = std::chrono::steady_clock::now();
    auto recovered = broker.Recover(basin::core::Clock::now());
    if (!recovered.ok()) {
      spdlog::error("cannot recover {}: {}", config->data_dir, recovered.error().message);
      return 1;
    }
    for (const std::string& w : store->recovery_warnings()) spdlog::warn("recovery: {}", w);
    for (const std::string& w : recovered.value().warnings) spdlog::warn("recovery: {}", w);
    spdlog::info(
        "recovered {} durable queues with {} messages from {} in {} ms (fsync {}, interval {} us)",
        recovered.value().queues, recovered.value().messages, config->data_dir,
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                              started)
            .count(),
        config->fsync, config->fsync_interval.count());
    recovery_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  if (!basin::ApplyDeclarations(*config, &broker)) return 1;
  std::unique_ptr<basin::metrics::Metrics> metrics;
  std::atomic<bool> draining{false};  // /healthz answers 503 from then on
  if (!config->http_listen.empty()) {
    basin::metrics::CollectorOptions options;
    options.started = process_start;
    options.recovery_seconds = recovery_seconds;
    metrics = std::make_unique<basin::metrics::Metrics>(
        store != nullptr ? store->counters() : nullptr, options,
        basin::metrics::RpcMetrics::MethodsOf({"basin.v1.QueueService", "basin.v1.TopicService",
                                               "basin.v1.ServerService", "grpc.health.v1.Health",
                                               "grpc.reflection.v1alpha.ServerReflection"}));
  }
  // Users (docs/security.md): none means every call is let through.
  std::shared_ptr<const basin::security::UserTable> users;
  if (!config->users_file.empty()) {
    std::string error;
    users = basin::security::UserTable::Load(config->users_file, &error);
    if (users == nullptr) {
      spdlog::error("cannot use the users in {}: {}", config->users_file, error);
      return 1;
    }
    spdlog::info("{} users from {}; every call is authenticated", users->size(),
                 config->users_file);
  }
  basin::service::AccessOptions access_options;
  access_options.user_rate = config->user_rate;
  access_options.user_max_queues = config->user_max_queues;
  // Audit lines are JSON objects whatever --log-format says, so that a log
  // shipper can pick them out by their first characters.
  access_options.audit = [](const std::string& json) { spdlog::info("audit {}", json); };
  basin::service::Access access(users, std::move(access_options));

  basin::service::ServerFacts facts;
  for (const basin::EffectiveSetting& e : config->effective) {
    facts.settings.push_back({e.name, e.value, e.source});
  }
  facts.config_file = config->config_file;
  facts.started = process_start;
  facts.started_at = std::chrono::system_clock::now() -
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(
                         std::chrono::steady_clock::now() - process_start);
  facts.max_calls_per_connection = config->max_calls_per_connection;
  facts.user_rate = config->user_rate;
  facts.user_max_queues = config->user_max_queues;
  // Set once the server is built; calls may come before (GetServerInfo then
  // says "plaintext" for a moment), hence atomic.
  std::atomic<basin::Server*> serving{nullptr};
  facts.transport = [&serving] {
    basin::Server* s = serving.load();
    return s != nullptr ? s->TlsSummary() : std::string("plaintext");
  };
  auto server = basin::Server::Start(*config, &broker, &dispatcher, &access, std::move(facts),
                                     metrics != nullptr ? &metrics->rpc() : nullptr);
  if (server == nullptr) return 1;
  serving.store(server.get());
  std::unique_ptr<basin::http::HttpServer> http;
  if (metrics != nullptr) {
    basin::http::RouteOptions routes;
    routes.admin = config->http_admin;
    routes.max_queues = config->metrics_max_queues;
    routes.max_topics = config->metrics_max_topics;
    routes.started = process_start;
    routes.draining = &draining;
    if (!config->users_file.empty()) {
      routes.authorize = [&access](const basin::http::Request& req, const std::string& queue,
                                   std::string* user) {
        basin::service::Caller caller;
        auto refused = access.CheckHttp(req.authorization, req.peer, "http " + req.path,
                                        basin::security::Permission::kConfigure, queue, &caller);
        if (!refused) {
          if (caller.user != nullptr) *user = caller.user->name;
          return std::string();
        }
        return std::string(refused->code == basin::core::Errc::kUnauthenticated ? "401 " : "403 ") +
               refused->message;
      };
    }
    // Audited with or without users (user null then); quotas learn of deletes.
    routes.acted = [&access](const basin::http::Request& req, const std::string& queue,
                             std::string_view action, const std::string& user) {
      access.AuditAction(user, req.peer,
                         action == "delete" ? "DeleteQueue (http)" : "CloseQueue (http)", queue);
      if (action == "delete") access.Deleted(queue);
    };
    std::string error;
    http = basin::http::HttpServer::Start(
        config->http_listen, basin::http::MakeRoutes(&broker, metrics.get(), routes), &error);
    if (http == nullptr) {
      spdlog::error("cannot serve --http-listen: {}", error);
      return 1;
    }
    spdlog::info("metrics and dashboard on http://{}/{}", http->address(),
                 config->http_admin ? " (queue actions on)" : "");
  }

  spdlog::info(
      "basind listening on {} ({}; max-message-bytes {}, max-memory {}, max-wait {} ms, data-dir "
      "{}), "
      "started in {} ms",
      server->address(), server->TlsSummary(), config->limits.max_message_bytes,
      config->limits.max_memory,
      std::chrono::duration_cast<std::chrono::milliseconds>(config->limits.max_wait).count(),
      config->data_dir.empty() ? "none" : config->data_dir,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                            process_start)
          .count());
  // Tools and tests read this line to learn the port.
  std::printf("basind listening on %s\n", server->address().c_str());
  if (http != nullptr) std::printf("basind http on %s\n", http->address().c_str());
  std::fflush(stdout);

  // systemd (Type=notify): ready once both listeners accept.
  sd_notify(0, "READY=1");

  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    basin::ReopenLogFile();
    if (!config->users_file.empty()) {
      std::string error;
      auto fresh = basin::security::UserTable::Load(config->users_file, &error);
      if (fresh == nullptr) {
        spdlog::error("SIGHUP: users not reloaded, the old ones stay in force: {}", error);
      } else {
        access.Replace(std::move(fresh));
        spdlog::info("SIGHUP: reloaded {} users from {}", access.users(), config->users_file);
      }
    }
    if (!config->tls_cert.empty()) {
      if (const std::string error = server->ReloadTls(); !error.empty()) {
        spdlog::error("SIGHUP: TLS files not reloaded, the old ones stay in use: {}", error);
      } else {
        spdlog::info("SIGHUP: TLS files handed to gRPC for new connections: {}",
                     server->TlsSummary());
      }
    }
  }
  sd_notify(0, "STOPPING=1");
  draining.store(true);
  spdlog::info("received {}, draining (up to {} ms)", strsignal(sig),
               config->shutdown_grace.count());
  const auto drain_start = std::chrono::steady_clock::now();
  if (committer != nullptr) committer->Hurry();  // durable puts in progress: answer them now
  const int64_t cut_off = server->Drain(config->shutdown_grace);
  if (cut_off > 0) spdlog::warn("{} calls still running after the grace were cancelled", cut_off);
  spdlog::info("drained in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now() - drain_start)
                                       .count());
  if (http != nullptr) http->Stop();
  dispatcher.Stop();
  timer.Stop();
  spdlog::info("stopped");
  spdlog::default_logger()->flush();
  return 0;
}
