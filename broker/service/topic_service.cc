#include "broker/service/topic_service.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

#include "broker/service/call_link.h"
#include "broker/service/convert.h"
#include "broker/service/error_mapping.h"
#include "broker/service/publish_call.h"
#include "broker/service/reply.h"
#include "broker/service/subscribe_wire.h"

namespace basin::service {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// One response carries at most this much of a subscriber's buffer.
constexpr size_t kBatchMessages = 256;
constexpr uint64_t kBatchBytes = 1 << 20;

// One Subscribe stream. Exactly one party writes at a time: the call itself
// while a write is in flight, or whoever the subscription wakes once it had
// gone idle. That writer also finishes the call when the subscription ends.
class SubscribeCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  SubscribeCall(CallbackServerContext* ctx, core::TopicRouter* router, TopicService::Post post)
      : ctx_(ctx),
        router_(router),
        post_(std::move(post)),
        link_(std::make_shared<CallLink<SubscribeCall>>(this)) {}

  void Start(const v1::SubscribeRequest& req) {
    core::SubscriptionOptions o;
    o.topics.assign(req.topics().begin(), req.topics().end());
    o.patterns.assign(req.patterns().begin(), req.patterns().end());
    o.max_messages = req.buffer_messages();
    o.max_bytes = req.buffer_bytes();
    o.policy = req.overflow_policy() == v1::OVERFLOW_POLICY_DISCONNECT
                   ? core::OverflowPolicy::kDisconnect
                   : core::OverflowPolicy::kDropOldest;
    // The peer address names the client's connection (ip:port): the router
    // caps live subscriptions per owner.
    o.owner = ctx_->peer();
    auto sub = router_->Subscribe(std::move(o),
                                  [link = link_, post = post_] { post([link] { link->Wake(); }); });
    if (!sub.ok()) {
      Finish(ToStatus(ctx_, sub.error()));
      return;
    }
    sub_ = std::move(sub.value());
    // The first event confirms that the subscription is live.
    v1::SubscribeResponse first;
    auto* confirmed = first.mutable_subscribed();
    confirmed->mutable_topics()->Assign(sub_->options().topics.begin(),
                                        sub_->options().topics.end());
    confirmed->mutable_patterns()->Assign(sub_->options().patterns.begin(),
                                          sub_->options().patterns.end());
    bool own = false;
    grpc::SerializationTraits<v1::SubscribeResponse>::Serialize(first, &resp_, &own);
    StartWrite(&resp_);
  }

  // Writes the next batch, finishes the call if the subscription ended, or
  // returns with the subscription idle.
  void WriteNext() {
    std::optional<core::Pulled> pulled = sub_->Next(kBatchMessages, kBatchBytes);
    if (!pulled) return;
    if (pulled->end) {
      const core::Error& end = *pulled->end;
      router_->Unsubscribe(sub_, end);
      if (end.code == core::Errc::kSlowSubscriber) {
        spdlog::warn("subscription {} disconnected: {}", sub_->id(), end.message);
      }
      Finish(end.code == core::Errc::kCancelled ? grpc::Status::CANCELLED : ToStatus(ctx_, end));
      return;
    }
    resp_ = EncodeMessages(pulled->messages);
    StartWrite(&resp_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The stream broke (client gone): end the subscription and finish.
      router_->Unsubscribe(sub_, core::Error{core::Errc::kCancelled, "stream broken"});
      sub_->Next(1, 0);  // consume the end: nobody else will write
      Finish(grpc::Status::CANCELLED);
      return;
    }
    WriteNext();
  }

  void OnCancel() override {
    // Ending the subscription wakes the writer (now, if idle; else when its
    // write completes), which finishes the call.
    if (sub_) router_->Unsubscribe(sub_, core::Error{core::Errc::kCancelled, "cancelled"});
  }

  void OnDone() override {
    if (sub_) router_->Unsubscribe(sub_, core::Error{core::Errc::kCancelled, "done"});
    if (link_->Detach()) delete this;
  }

 private:
  CallbackServerContext* const ctx_;
  core::TopicRouter* const router_;
  const TopicService::Post post_;
  const std::shared_ptr<CallLink<SubscribeCall>> link_;
  std::shared_ptr<core::Subscription> sub_;
  grpc::ByteBuffer resp_;  // the response being written
};

}  // namespace

// A binding changes a queue and what it receives: configure and write on
// the queue; read on the topic pattern, since the queue then receives what
// is published there (as RabbitMQ asks read on a binding's source), and
// write on it, since the binding publishes into the queue on the topic's
// behalf.
template <typename Request>
std::optional<core::Error> TopicService::CheckBinding(CallbackServerContext* ctx,
                                                      std::string_view method, const Request& req,
                                                      Caller* caller) {
  if (!access_->enabled()) return std::nullopt;
  if (auto denied = access_->Check(ctx, method, Permission::kConfigure, req.queue(), caller)) {
    return denied;
  }
  for (const auto& [p, object] : {std::pair{Permission::kWrite, &req.queue()},
                                  std::pair{Permission::kRead, &req.topic_pattern()},
                                  std::pair{Permission::kWrite, &req.topic_pattern()}}) {
    if (auto denied = access_->Authorize(*caller, ctx, method, p, *object)) return denied;
  }
  return std::nullopt;
}

ServerUnaryReactor* TopicService::Publish(CallbackServerContext* ctx, const v1::PublishRequest* req,
                                          v1::PublishResponse* resp) {
  // Answered once every copy into a durable queue is written (often inline).
  if (access_->enabled()) {
    Caller caller;
    if (auto denied = access_->Check(ctx, "Publish", Permission::kWrite, req->topic(), &caller)) {
      return ReplyError(ctx, *denied);
    }
    if (auto limited = access_->Spend(caller, ctx, "Publish", req->topic(), 1))
      return ReplyError(ctx, *limited);
  }
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  broker_->topics().Publish(
      req->topic(), req->payload(), FromProto(req->headers()), core::Clock::now(),
      [ctx, reactor, resp](core::Result<core::PublishOutcome> out) {
        if (!out.ok()) return reactor->Finish(ToStatus(ctx, out.error()));
        resp->set_receivers(out.value().receivers);
        resp->set_queues(out.value().queues);
        resp->mutable_undelivered_queues()->Assign(out.value().undelivered_queues.begin(),
                                                   out.value().undelivered_queues.end());
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>*
TopicService::PublishStream(CallbackServerContext* ctx) {
  return StartPublishStream(ctx, broker_, access_, &publish_calls_);
}

// Every topic and pattern named must be readable. The number of them is
// bounded first (the router's own check): the work must not grow with the
// request.
std::optional<core::Error> TopicService::CheckSubscribe(CallbackServerContext* ctx,
                                                        const v1::SubscribeRequest& req) {
  if (!access_->enabled()) return std::nullopt;
  auto who = access_->Identify(ctx, "Subscribe");
  if (!who.ok()) return who.error();
  if (auto ok = broker_->topics().CheckTerms(req.topics_size(), req.patterns_size()); !ok.ok()) {
    return ok.error();
  }
  for (const auto* list : {&req.topics(), &req.patterns()}) {
    for (const std::string& term : *list) {
      if (auto denied =
              access_->Authorize(who.value(), ctx, "Subscribe", Permission::kRead, term)) {
        return denied;
      }
    }
  }
  return std::nullopt;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TopicService::Subscribe(CallbackServerContext* ctx,
                                                                    const grpc::ByteBuffer* raw) {
  auto* call = new SubscribeCall(ctx, &broker_->topics(), post_);
  // Parsed here rather than by gRPC (the method is raw for its responses,
  // see subscribe_wire.h); a request that does not parse gets gRPC's own answer.
  grpc::ByteBuffer copy(*raw);
  v1::SubscribeRequest req;
  if (grpc::Status parsed =
          grpc::SerializationTraits<v1::SubscribeRequest>::Deserialize(&copy, &req);
      !parsed.ok()) {
    call->Finish(parsed);
    return call;
  }
  if (auto denied = CheckSubscribe(ctx, req)) {
    call->Finish(ToStatus(ctx, *denied));
    return call;
  }
  call->Start(req);
  return call;
}

ServerUnaryReactor* TopicService::BindQueue(CallbackServerContext* ctx,
                                            const v1::BindQueueRequest* req,
                                            v1::BindQueueResponse* resp) {
  Caller caller;
  if (auto denied = CheckBinding(ctx, "BindQueue", *req, &caller)) return ReplyError(ctx, *denied);
  auto created = broker_->BindQueue(req->topic_pattern(), req->queue());
  if (!created.ok()) return ReplyError(ctx, created.error());
  if (created.value()) {
    access_->AuditAction(caller, ctx, "BindQueue", req->topic_pattern() + " -> " + req->queue());
  }
  if (created.value()) spdlog::info("bound queue '{}' to '{}'", req->queue(), req->topic_pattern());
  resp->set_created(created.value());
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* TopicService::UnbindQueue(CallbackServerContext* ctx,
                                              const v1::UnbindQueueRequest* req,
                                              v1::UnbindQueueResponse* /*resp*/) {
  Caller caller;
  if (auto denied = CheckBinding(ctx, "UnbindQueue", *req, &caller)) {
    return ReplyError(ctx, *denied);
  }
  auto done = broker_->UnbindQueue(req->topic_pattern(), req->queue());
  if (!done.ok()) return ReplyError(ctx, done.error());
  access_->AuditAction(caller, ctx, "UnbindQueue", req->topic_pattern() + " -> " + req->queue());
  spdlog::info("unbound queue '{}' from '{}'", req->queue(), req->topic_pattern());
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* TopicService::ListTopics(CallbackServerContext* ctx,
                                             const v1::ListTopicsRequest* /*req*/,
                                             v1::ListTopicsResponse* resp) {
  Caller caller;
  if (access_->enabled()) {
    auto who = access_->Identify(ctx, "ListTopics");
    if (!who.ok()) return ReplyError(ctx, who.error());
    caller = std::move(who.value());
  }
  for (const core::TopicStats& t : broker_->topics().ListTopics()) {
    if (!Access::Sees(caller, t.name)) continue;
    v1::TopicStats* p = resp->add_topics();
    p->set_name(t.name);
    p->set_subscribers(t.subscribers);
    p->set_published(t.published);
    p->set_delivered(t.delivered);
    p->set_dropped(t.dropped);
    p->set_routed(t.routed);
  }
  for (const core::BindingInfo& b : broker_->topics().ListBindings()) {
    if (!Access::Sees(caller, b.queue)) continue;
    v1::Binding* p = resp->add_bindings();
    p->set_topic_pattern(b.pattern);
    p->set_queue(b.queue);
  }
  return Reply(ctx, grpc::Status::OK);
}

}  // namespace basin::service
