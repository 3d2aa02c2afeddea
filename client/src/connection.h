// The SDK's shared channel and stub, plus turning a failed call into the typed
// exception its broker reason names.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <memory>

#include "basin/client.h"
#include "basin/v1/queue.grpc.pb.h"
#include "basin/v1/server.grpc.pb.h"
#include "basin/v1/topic.grpc.pb.h"

namespace basin::detail {

class Connection {
 public:
  Connection(const std::string& address, const ClientOptions& options);

  v1::QueueService::Stub& stub() { return *stub_; }
  v1::TopicService::Stub& topic_stub() { return *topic_stub_; }
  v1::ServerService::Stub& server_stub() { return *server_stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }
  // Puts the token (if any) on a call: every ClientContext the SDK makes goes
  // through here. Plain metadata rather than gRPC's call credentials, which a
  // plaintext channel (loopback) never sends, and cheaper than an interceptor.
  void Authorize(grpc::ClientContext* ctx) const {
    if (!authorization_.empty()) ctx->AddMetadata("authorization", authorization_);
  }

 private:
  ClientOptions options_;
  std::string authorization_;  // "Bearer TOKEN", or empty
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  std::unique_ptr<v1::TopicService::Stub> topic_stub_;
  std::unique_ptr<v1::ServerService::Stub> server_stub_;
};

// The broker's cap on the messages of one Produce or PublishStream request
// (docs/api.md, GetServerInfo's max_batch_messages): a larger batch could
// never be sent, so the Producer and Publisher cut theirs to it.
inline constexpr size_t kMaxBatchMessages = 10'000;

// Gives a call time for the broker to answer after a wait of `wait`.
void SetCallDeadline(grpc::ClientContext* ctx, std::chrono::milliseconds wait);

// True when a call ended because its connection broke rather than because
// the broker refused it: UNAVAILABLE, or INTERNAL/UNKNOWN without a
// `basin-error-reason` (gRPC's codes for a reset stream; the broker never
// answers with them). A broken stream may work again on a new one.
bool Broken(const grpc::Status& status, const grpc::ClientContext& ctx);

// Throws the exception matching the status's `basin-error-reason`.
[[noreturn]] void Throw(const grpc::Status& status, const grpc::ClientContext& ctx);

// Runs one unary call and throws on failure.
template <typename Req, typename Resp, typename Stub>
Resp CallOn(const Connection& conn, Stub& stub,
            grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
            std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
  grpc::ClientContext ctx;
  conn.Authorize(&ctx);
  SetCallDeadline(&ctx, wait);
  Resp resp;
  const grpc::Status status = (stub.*method)(&ctx, req, &resp);
  if (!status.ok()) Throw(status, ctx);
  return resp;
}

template <typename Req, typename Resp>
Resp Call(Connection& conn,
          grpc::Status (v1::QueueService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
          const Req& req, std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
  return CallOn(conn, conn.stub(), method, req, wait);
}

}  // namespace basin::detail
