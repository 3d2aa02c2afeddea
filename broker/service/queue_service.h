// basin.v1.QueueService over the gRPC callback API. A thin adapter: it checks
// what only the wire can get wrong, calls the core, and maps results and errors.
// Blocking calls are reactors registered as waiters in the core, never parked
// threads: the core finishes them from whichever thread changes the queue.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>

#include "basin/v1/queue.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"
#include "broker/service/live_calls.h"

namespace basin::service {

class QueueService final : public v1::QueueService::CallbackService {
 public:
  // Runs work on another thread (see broker/dispatcher.h).
  using Post = std::function<void(std::function<void()>)>;

  // `broker` and `access` must outlive the service. Consume-stream wake-ups
  // on the committer or timer thread go to `post` (consume_call.h).
  QueueService(core::Broker* broker, Access* access, Post post)
      : broker_(broker), access_(access), post_(std::move(post)) {}

  grpc::ServerUnaryReactor* CreateQueue(grpc::CallbackServerContext* ctx,
                                        const v1::CreateQueueRequest* req,
                                        v1::CreateQueueResponse* resp) override;
  grpc::ServerUnaryReactor* GetQueue(grpc::CallbackServerContext* ctx,
                                     const v1::GetQueueRequest* req,
                                     v1::GetQueueResponse* resp) override;
  grpc::ServerUnaryReactor* ListQueues(grpc::CallbackServerContext* ctx,
                                       const v1::ListQueuesRequest* req,
                                       v1::ListQueuesResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteQueue(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteQueueRequest* req,
                                        v1::DeleteQueueResponse* resp) override;
  grpc::ServerUnaryReactor* CloseQueue(grpc::CallbackServerContext* ctx,
                                       const v1::CloseQueueRequest* req,
                                       v1::CloseQueueResponse* resp) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const v1::PutRequest* req,
                                v1::PutResponse* resp) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* req,
                                v1::GetResponse* resp) override;
  grpc::ServerUnaryReactor* TaskDone(grpc::CallbackServerContext* ctx,
                                     const v1::TaskDoneRequest* req,
                                     v1::TaskDoneResponse* resp) override;
  grpc::ServerUnaryReactor* ExtendLease(grpc::CallbackServerContext* ctx,
                                        const v1::ExtendLeaseRequest* req,
                                        v1::ExtendLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx, const v1::ReleaseRequest* req,
                                    v1::ReleaseResponse* resp) override;
  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* req,
                                 v1::JoinResponse* resp) override;
  grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* Produce(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* Consume(
      grpc::CallbackServerContext* ctx) override;

  // Draining: ends every Produce stream (after the broker's Shutdown, which
  // ends blocked calls and Consume streams) and any opened later.
  void EndStreams() { produce_calls_.EndAll(); }

 private:
  void Describe(const core::Queue& queue, v1::QueueInfo* out) const;

  // What every blocking call starts from: its queue and absolute deadline.
  struct Wait {
    std::shared_ptr<core::Queue> queue;
    core::TimePoint now;
    core::TimePoint deadline;
  };
  template <typename Request>
  core::Result<Wait> PrepareWait(const grpc::CallbackServerContext& ctx, const Request& req) const;

  core::Broker* const broker_;
  Access* const access_;
  const Post post_;
  LiveCalls produce_calls_;
};

}  // namespace basin::service
