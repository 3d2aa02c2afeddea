// Wiring: builds the gRPC server around a Broker with Basin's channel settings
// (keepalive, message size, stream limit, no port sharing), reflection and
// health.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "broker/config.h"
#include "broker/core/broker.h"
#include "broker/dispatcher.h"
#include "broker/metrics/rpc_metrics.h"
#include "broker/security/tls_server_credentials.h"
#include "broker/service/call_tracker.h"
#include "broker/service/queue_service.h"
#include "broker/service/server_service.h"
#include "broker/service/topic_service.h"

namespace basin {

class Server {
 public:
  // Returns null (and logs why) if the address cannot be bound.
  // `dispatcher` runs subscription wake-ups, and Consume wake-ups that come
  // from the committer or the timer; it must outlive the server.
  // `rpc_metrics` (null: none) times every call; it must outlive the server.
  // `access` checks every call; it must outlive the server.
  static std::unique_ptr<Server> Start(const Config& config, core::Broker* broker,
                                       Dispatcher* dispatcher, service::Access* access,
                                       service::ServerFacts facts,
                                       metrics::RpcMetrics* rpc_metrics = nullptr);
  ~Server();

  // host:port with the port actually bound.
  const std::string& address() const { return address_; }
  // SIGTERM (docs/operations.md, "Stopping"): the broker takes no new work;
  // blocked calls and every stream end with UNAVAILABLE; calls in progress
  // get up to `grace` to finish; then the server closes. Returns how many
  // calls were still running when the grace ran out.
  int64_t Drain(std::chrono::milliseconds grace);
  // Stops accepting calls and waits up to `grace` for running ones.
  void Shutdown(std::chrono::milliseconds grace);
  // SIGHUP: re-reads the TLS files for new connections. Returns "" (also when
  // TLS is off) or why the old files stay in use.
  std::string ReloadTls();
  // Describes the listener for the start-up log: "plaintext" or the served
  // certificate's subject, expiry and client-certificate policy.
  std::string TlsSummary() const;

 private:
  Server(core::Broker* broker, Dispatcher* dispatcher, service::Access* access,
         service::ServerFacts facts, metrics::RpcMetrics* rpc_metrics)
      : broker_(broker),
        tracker_(
            rpc_metrics == nullptr
                ? service::CallTracker::Observer()
                : [rpc_metrics](
                      const char* method, grpc::StatusCode code,
                      std::chrono::nanoseconds took) { rpc_metrics->Record(method, code, took); }),
        queue_service_(
            broker, access,
            [dispatcher](std::function<void()> work) { dispatcher->Post(std::move(work)); }),
        topic_service_(
            broker, access,
            [dispatcher](std::function<void()> work) { dispatcher->Post(std::move(work)); }),
        server_service_(broker, access, std::move(facts)) {}

  core::Broker* const broker_;
  // Before server_: gRPC's listener calls into it until the server is gone.
  std::shared_ptr<security::TlsServerCredentials> tls_;
  std::string client_auth_;
  service::CallTracker tracker_;  // outlives server_, whose calls it counts
  service::QueueService queue_service_;
  service::TopicService topic_service_;
  service::ServerService server_service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace basin
