#include "broker/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include "grpc/health/v1/health.pb.h"

namespace basin {
namespace {

// gRPC's own receive limit sits above --max-message-bytes so that an oversize
// Put reaches the broker, which answers with MESSAGE_TOO_LARGE and the limit.
constexpr int kReceiveHeadroom = 64 * 1024;
// Extra HTTP/2 streams per connection beyond the per-queue waiter cap, for the
// non-blocking calls of a client that also has that many waiters.
constexpr int kStreamHeadroom = 10'000;

std::string WithPort(const std::string& listen, int port) {
  const auto colon = listen.rfind(':');
  return listen.substr(0, colon) + ":" + std::to_string(port);
}

}  // namespace

std::unique_ptr<Server> Server::Start(const Config& config, core::Broker* broker,
                                      Dispatcher* dispatcher, service::ServerFacts facts,
                                      metrics::RpcMetrics* rpc_metrics) {
  // Linked in so that reflection can describe grpc.health.v1.Health.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<Server> s(new Server(broker, dispatcher, std::move(facts), rpc_metrics));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(), &port);
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
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONCURRENT_STREAMS,
      static_cast<int>(config.limits.max_waiters_per_queue) + kStreamHeadroom);
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

int64_t Server::Drain(std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  // Readiness probes and load balancers stop sending work here first; the
  // health service's Watch streams end.
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  broker_->Shutdown();
  queue_service_.EndStreams();
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
}

}  // namespace basin
