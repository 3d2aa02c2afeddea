#include "broker/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <ctime>

#include "broker/service/subscribe_wire.h"
#include "grpc/health/v1/health.pb.h"

namespace basin {
namespace {

// gRPC's own receive limit sits above --max-message-bytes so that an oversize
// Put reaches the broker, which answers with MESSAGE_TOO_LARGE and the limit.
constexpr int kReceiveHeadroom = 64 * 1024;

std::string WithPort(const std::string& listen, int port) {
  const auto colon = listen.rfind(':');
  return listen.substr(0, colon) + ":" + std::to_string(port);
}

}  // namespace

std::unique_ptr<Server> Server::Start(const Config& config, core::Broker* broker,
                                      Dispatcher* dispatcher, service::Access* access,
                                      service::ServerFacts facts,
                                      metrics::RpcMetrics* rpc_metrics) {
  // Linked in so that reflection can describe grpc.health.v1.Health.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<Server> s(new Server(broker, dispatcher, access, std::move(facts), rpc_metrics));
  grpc::ServerBuilder builder;
  int port = 0;
  if (config.tls_cert.empty()) {
    builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(), &port);
  } else {
    std::string error;
    const auto auth = config.tls_client_auth == "require"   ? security::ClientAuth::kRequire
                      : config.tls_client_auth == "request" ? security::ClientAuth::kRequest
                                                            : security::ClientAuth::kNone;
    s->tls_ = security::TlsServerCredentials::Create(
        {config.tls_cert, config.tls_key, config.tls_client_ca}, auth, &error);
    if (s->tls_ == nullptr) {
      spdlog::error("cannot serve TLS: {}", error);
      return nullptr;
    }
    s->client_auth_ = config.tls_client_auth;
    builder.AddListeningPort(config.listen, s->tls_, &port);
  }
  builder.RegisterService(&s->queue_service_);
  builder.RegisterService(&s->topic_service_);
  builder.RegisterService(&s->server_service_);
  {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(s->tracker_.Factory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  // gRPC shares ports (SO_REUSEPORT) by default: a second broker would start
  // silently and steal connections. Fail loudly instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const auto max_bytes = static_cast<int>(config.limits.max_message_bytes) + kReceiveHeadroom;
  builder.SetMaxReceiveMessageSize(max_bytes);
  // HTTP/2's own cap on one connection's open streams: a client past it
  // waits in its own gRPC for a free slot, so one connection cannot pile up
  // calls (and their memory) without bound.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(config.max_calls_per_connection));
  if (config.max_connection_idle.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               static_cast<int>(config.max_connection_idle.count()));
  }
  if (config.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(config.max_connection_age.count()));
    if (config.max_connection_age_grace.count() > 0) {
      builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                 static_cast<int>(config.max_connection_age_grace.count()));
    }
  }
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(config.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(config.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Accept client pings as often as every 10 s (the SDK pings every 30 s);
  // never answer them with GOAWAY "too_many_pings".
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || port == 0) {
    spdlog::error("cannot listen on {}: the address is invalid or already in use", config.listen);
    return nullptr;
  }
  s->address_ = WithPort(config.listen, port);
  return s;
}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

std::string Server::ReloadTls() { return tls_ == nullptr ? "" : tls_->Reload(); }

std::string Server::TlsSummary() const {
  if (tls_ == nullptr) return "plaintext";
  const security::TlsMaterial m = tls_->current();
  char until[32] = "?";
  const time_t t = static_cast<time_t>(m.not_after);
  struct tm utc = {};
  if (gmtime_r(&t, &utc) != nullptr) std::strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return "TLS, certificate " + m.subject + " valid until " + until + ", client certificates " +
         client_auth_;
}

int64_t Server::Drain(std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  // Readiness probes and load balancers stop sending work here first; the
  // health service's Watch streams end.
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  broker_->Shutdown();
  queue_service_.EndStreams();
  topic_service_.EndStreams();
  tracker_.WaitIdle(deadline);
  const int64_t left = tracker_.active();
  // Waiting on gRPC's own Shutdown would also wait for clients to hang up
  // after GOAWAY; with nothing left running, close now.
  Shutdown(std::chrono::milliseconds(0));
  return left;
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
  if (!service::AwaitSharedSlices(std::chrono::seconds(1))) {
    spdlog::warn("gRPC still holds subscriber messages a second after shutdown");
  }
}

}  // namespace basin
