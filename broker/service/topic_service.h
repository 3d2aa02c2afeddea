// basin.v1.TopicService over the gRPC callback API. Publish is a unary call
// into the core's TopicRouter, PublishStream a bidi stream of batches of them
// (publish_call.cc); Subscribe is a write reactor that pulls from
// its core Subscription whenever it is not already writing (see
// subscription.h for the wake-up protocol).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>

#include "basin/v1/topic.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"
#include "broker/service/live_calls.h"

namespace basin::service {

// Subscribe is a raw method: its responses are written as bytes straight from
// the shared messages (subscribe_wire.h); the others are typed.
using TopicServiceBase =
    v1::TopicService::WithCallbackMethod_Publish<v1::TopicService::WithCallbackMethod_PublishStream<
        v1::TopicService::WithRawCallbackMethod_Subscribe<
            v1::TopicService::WithCallbackMethod_BindQueue<
                v1::TopicService::WithCallbackMethod_UnbindQueue<
                    v1::TopicService::WithCallbackMethod_ListTopics<v1::TopicService::Service>>>>>>;

class TopicService final : public TopicServiceBase {
 public:
  // Runs work on another thread (see broker/dispatcher.h).
  using Post = std::function<void(std::function<void()>)>;

  // `broker` must outlive the service. Subscription wake-ups are handed to
  // `post`, so that a publisher never writes to its subscribers' streams.
  // `broker` and `access` must outlive the service.
  TopicService(core::Broker* broker, Access* access, Post post)
      : broker_(broker), access_(access), post_(std::move(post)) {}

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* ctx, const v1::PublishRequest* req,
                                    v1::PublishResponse* resp) override;
  grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>* PublishStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Subscribe(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* raw) override;
  grpc::ServerUnaryReactor* BindQueue(grpc::CallbackServerContext* ctx,
                                      const v1::BindQueueRequest* req,
                                      v1::BindQueueResponse* resp) override;
  grpc::ServerUnaryReactor* UnbindQueue(grpc::CallbackServerContext* ctx,
                                        const v1::UnbindQueueRequest* req,
                                        v1::UnbindQueueResponse* resp) override;
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* ctx,
                                       const v1::ListTopicsRequest* req,
                                       v1::ListTopicsResponse* resp) override;

  // Ends every PublishStream (the broker drains): what each owes is
  // confirmed, then it ends with UNAVAILABLE.
  void EndStreams() { publish_calls_.EndAll(); }

 private:
  std::optional<core::Error> CheckSubscribe(grpc::CallbackServerContext* ctx,
                                            const v1::SubscribeRequest& req);
  template <typename Request>
  std::optional<core::Error> CheckBinding(grpc::CallbackServerContext* ctx, std::string_view method,
                                          const Request& req, Caller* caller);

  core::Broker* const broker_;
  Access* const access_;
  const Post post_;
  LiveCalls publish_calls_;
};

}  // namespace basin::service
