#include "broker/service/queue_service.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <utility>

#include "broker/service/consume_call.h"
#include "broker/service/convert.h"
#include "broker/service/error_mapping.h"
#include "broker/service/produce_call.h"
#include "broker/service/reply.h"

namespace basin::service {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// One blocked call (Put, Get or Join). It lives until gRPC calls OnDone; the
// core's callback finishes it exactly once. If the client goes away first,
// OnCancel withdraws the waiter from the queue.
class WaitingCall final : public ServerUnaryReactor {
 public:
  WaitingCall(CallbackServerContext* ctx, std::shared_ptr<core::Queue> queue)
      : ctx_(ctx), queue_(std::move(queue)) {}

  core::WaitId* wait_id() { return &wait_id_; }
  core::Queue& queue() { return *queue_; }

  // Finishes with `error`; for callbacks only.
  void Fail(const core::Error& error) { Finish(ToStatus(ctx_, error)); }

  // Remembers a hand-out so that OnDone can take it back if the answer never
  // reached the client.
  void add_delivery_tag(std::string tag) { delivery_tags_.push_back(std::move(tag)); }

  void OnCancel() override { queue_->Cancel(wait_id_); }

  void OnDone() override {
    if (!delivery_tags_.empty() && ctx_->IsCancelled()) {
      // The client vanished before the messages reached it: back to the
      // head at once, as if never handed out (no retry delay, no delivery).
      queue_->TakeBack(delivery_tags_, core::Clock::now());
    }
    delete this;
  }

 private:
  CallbackServerContext* const ctx_;
  const std::shared_ptr<core::Queue> queue_;
  core::WaitId wait_id_ = 0;
  std::vector<std::string> delivery_tags_;
};

// A batch Get answers with at most this many message bytes unless asked
// otherwise: 4 MiB less room for framing, within gRPC's default 4 MiB receive
// limit of most clients.
constexpr uint64_t kDefaultGetMaxBytes = (4 << 20) - (64 << 10);

}  // namespace

template <typename Request>
core::Result<QueueService::Wait> QueueService::PrepareWait(const CallbackServerContext& ctx,
                                                           const Request& req) const {
  const core::TimePoint now = core::Clock::now();
  auto queue = broker_->FindQueue(req.queue());
  if (!queue.ok()) return queue.error();
  auto deadline =
      WaitDeadline(ctx, req.has_timeout(), req.timeout(), broker_->limits().max_wait, now);
  if (!deadline.ok()) return deadline.error();
  return Wait{std::move(queue.value()), now, deadline.value()};
}

void QueueService::Describe(const core::Queue& queue, v1::QueueInfo* out) const {
  ToProto(queue, broker_->topics().BindingsOf(queue.name()), out);
}

ServerUnaryReactor* QueueService::CreateQueue(CallbackServerContext* ctx,
                                              const v1::CreateQueueRequest* req,
                                              v1::CreateQueueResponse* resp) {
  core::QueueConfig config;
  config.name = req->name();
  config.max_size = req->max_size();
  const v1::QueueOptions& o = req->options();
  if (o.has_visibility_timeout()) {
    auto v = FromProto(o.visibility_timeout(), "visibility_timeout");
    if (!v.ok()) return ReplyError(ctx, v.error());
    config.visibility_timeout = v.value();
  }
  config.max_deliveries = o.max_deliveries();
  config.dead_letter_queue = o.dead_letter_queue();
  config.max_bytes = o.max_bytes();
  config.durable = o.durable();
  if (o.has_message_ttl()) {
    auto v = FromProto(o.message_ttl(), "message_ttl");
    if (!v.ok()) return ReplyError(ctx, v.error());
    config.message_ttl = v.value();
  }
  if (o.max_priority() > core::kMaxPriority) {
    return ReplyError(
        ctx, core::Error{core::Errc::kInvalidArgument,
                         "max_priority " + std::to_string(o.max_priority()) +
                             " is above the limit of " + std::to_string(core::kMaxPriority)});
  }
  config.max_priority = static_cast<uint8_t>(o.max_priority());
  if (o.retry_backoff_size() > static_cast<int>(core::kMaxRetryBackoff)) {
    return ReplyError(
        ctx, core::Error{core::Errc::kInvalidArgument,
                         "retry_backoff has " + std::to_string(o.retry_backoff_size()) +
                             " entries; the limit is " + std::to_string(core::kMaxRetryBackoff)});
  }
  for (const google::protobuf::Duration& d : o.retry_backoff()) {
    auto v = FromProto(d, "retry_backoff");
    if (!v.ok()) return ReplyError(ctx, v.error());
    config.retry_backoff.push_back(v.value());
  }
  // Configure creates; any other permission on the queue only attaches to it
  // (multiprocessing-style constructors call CreateQueue to attach).
  Caller caller;
  bool may_create = true;
  bool reserved = false;  // a slot of the user's queue quota is held for this create
  if (access_->enabled()) {
    auto who = access_->Identify(ctx, "CreateQueue");
    if (!who.ok()) return ReplyError(ctx, who.error());
    caller = std::move(who.value());
    may_create = caller.user == nullptr || caller.user->May(Permission::kConfigure, config.name);
    if (!may_create && !Access::Sees(caller, config.name)) {
      return ReplyError(ctx, *access_->Authorize(caller, ctx, "CreateQueue", Permission::kConfigure,
                                                 config.name));
    }
    if (may_create && !config.dead_letter_queue.empty()) {
      // Dead-lettered messages are written to it on this queue's behalf.
      if (auto denied = access_->Authorize(caller, ctx, "CreateQueue", Permission::kWrite,
                                           config.dead_letter_queue)) {
        return ReplyError(ctx, *denied);
      }
    }
  }
  const std::string name = config.name;
  // With a queue quota, attach first: attaching takes no slot, so that
  // multiprocessing-style constructors attaching in parallel neither hold
  // slots a real create needs nor count as refusals at the quota.
  std::optional<core::Result<core::Broker::Created>> attached;
  if (may_create && access_->HasQuota(caller)) {
    attached = broker_->CreateQueue(config, /*may_create=*/false);
    if (!attached->ok() && attached->error().code == core::Errc::kQueueNotFound) {
      if (auto refused = access_->ReserveQueue(
              caller, [this](const std::string& q) { return broker_->FindQueue(q).ok(); })) {
        return ReplyError(ctx, *refused);
      }
      reserved = true;
      attached.reset();
    }
  }
  auto created =
      attached ? std::move(*attached) : broker_->CreateQueue(std::move(config), may_create);
  if (reserved) access_->Settle(caller, name, created.ok() && created.value().created);
  if (!may_create && !created.ok() && created.error().code == core::Errc::kQueueNotFound) {
    // Attach-only, and the queue is not there: the answer a user without
    // configure gets whether or not the queue ever existed.
    return ReplyError(
        ctx, *access_->Authorize(caller, ctx, "CreateQueue", Permission::kConfigure, name));
  }
  if (!created.ok()) return ReplyError(ctx, created.error());
  if (created.value().created) {
    access_->AuditAction(caller, ctx, "CreateQueue", name);
    spdlog::info("created {}queue '{}' (max_size {}, dead_letter_queue '{}')",
                 o.durable() ? "durable " : "", req->name(), req->max_size(),
                 o.dead_letter_queue());
  }
  Describe(*created.value().queue, resp->mutable_queue());
  resp->set_created(created.value().created);
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::GetQueue(CallbackServerContext* ctx,
                                           const v1::GetQueueRequest* req,
                                           v1::GetQueueResponse* resp) {
  if (access_->enabled()) {
    auto who = access_->Identify(ctx, "GetQueue");
    if (!who.ok()) return ReplyError(ctx, who.error());
    if (!Access::Sees(who.value(), req->name())) {
      return ReplyError(
          ctx, *access_->Authorize(who.value(), ctx, "GetQueue", Permission::kRead, req->name()));
    }
  }
  auto queue = broker_->FindQueue(req->name());
  if (!queue.ok()) return ReplyError(ctx, queue.error());
  Describe(*queue.value(), resp->mutable_queue());
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::ListQueues(CallbackServerContext* ctx,
                                             const v1::ListQueuesRequest* /*req*/,
                                             v1::ListQueuesResponse* resp) {
  Caller caller;
  if (access_->enabled()) {
    auto who = access_->Identify(ctx, "ListQueues");
    if (!who.ok()) return ReplyError(ctx, who.error());
    caller = std::move(who.value());
  }
  for (const auto& q : broker_->ListQueues()) {
    if (Access::Sees(caller, q->name())) Describe(*q, resp->add_queues());
  }
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::DeleteQueue(CallbackServerContext* ctx,
                                              const v1::DeleteQueueRequest* req,
                                              v1::DeleteQueueResponse* resp) {
  Caller caller;
  if (auto denied =
          access_->Check(ctx, "DeleteQueue", Permission::kConfigure, req->name(), &caller)) {
    return ReplyError(ctx, *denied);
  }
  auto dropped = broker_->DeleteQueue(req->name());
  if (!dropped.ok()) return ReplyError(ctx, dropped.error());
  access_->Deleted(req->name());
  access_->AuditAction(caller, ctx, "DeleteQueue", req->name());
  spdlog::info("deleted queue '{}' ({} messages dropped)", req->name(), dropped.value());
  resp->set_dropped_messages(dropped.value());
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::CloseQueue(CallbackServerContext* ctx,
                                             const v1::CloseQueueRequest* req,
                                             v1::CloseQueueResponse* resp) {
  Caller caller;
  if (auto denied =
          access_->Check(ctx, "CloseQueue", Permission::kConfigure, req->queue(), &caller)) {
    return ReplyError(ctx, *denied);
  }
  auto queue = broker_->FindQueue(req->queue());
  if (!queue.ok()) return ReplyError(ctx, queue.error());
  const bool already = queue.value()->Close(core::Clock::now());
  if (!already) access_->AuditAction(caller, ctx, "CloseQueue", req->queue());
  if (!already) spdlog::info("closed queue '{}'", req->queue());
  resp->set_already_closed(already);
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::Put(CallbackServerContext* ctx, const v1::PutRequest* req,
                                      v1::PutResponse* resp) {
  if (access_->enabled()) {
    Caller caller;
    if (auto denied = access_->Check(ctx, "Put", Permission::kWrite, req->queue(), &caller)) {
      return ReplyError(ctx, *denied);
    }
    const uint64_t n = req->messages_size() > 0 ? uint64_t(req->messages_size()) : 1;
    if (auto limited = access_->Spend(caller, ctx, "Put", req->queue(), n))
      return ReplyError(ctx, *limited);
  }
  auto wait = PrepareWait(*ctx, *req);
  if (!wait.ok()) return ReplyError(ctx, wait.error());
  auto& [queue, now, deadline] = wait.value();

  auto* call = new WaitingCall(ctx, std::move(queue));
  // After PutBatch() returns, the callback may already have finished the
  // call: `call` must not be touched here again.
  const bool batch = req->messages_size() > 0;
  std::vector<core::Headers> headers;
  std::vector<core::MessageSpec> specs;
  if (batch) {
    specs = ToSpecs(req->messages(), &headers, now);
  } else {
    specs.push_back(ToSpec(*req, &headers, now));
  }
  call->queue().PutBatch(specs, now, deadline, call->wait_id(),
                         [call, resp, batch](core::Result<std::vector<core::PutResult>> r) {
                           if (!r.ok()) return call->Fail(r.error());
                           if (batch) {
                             for (const core::PutResult& one : r.value())
                               ToProto(one, resp->add_results());
                           } else {
                             const core::PutResult& only = r.value().front();
                             if (only.error) return call->Fail(*only.error);
                             resp->set_message_id(only.message_id);
                             resp->set_duplicate(only.duplicate);
                           }
                           call->Finish(grpc::Status::OK);
                         });
  return call;
}

ServerUnaryReactor* QueueService::Get(CallbackServerContext* ctx, const v1::GetRequest* req,
                                      v1::GetResponse* resp) {
  if (auto denied = access_->Check(ctx, "Get", Permission::kRead, req->queue())) {
    return ReplyError(ctx, *denied);
  }
  auto wait = PrepareWait(*ctx, *req);
  if (!wait.ok()) return ReplyError(ctx, wait.error());
  auto& [queue, now, deadline] = wait.value();
  core::Duration visibility{};
  if (req->has_visibility_timeout()) {
    auto v = FromProto(req->visibility_timeout(), "visibility_timeout");
    if (!v.ok()) return ReplyError(ctx, v.error());
    visibility = v.value();
  }

  // One answer is built under the queue's lock: its size is bounded here,
  // with a clear error, rather than clamped silently.
  if (req->max_messages() > core::kMaxGetMessages) {
    return ReplyError(
        ctx, core::Error{core::Errc::kInvalidArgument,
                         "max_messages " + std::to_string(req->max_messages()) +
                             " exceeds the limit of " + std::to_string(core::kMaxGetMessages)});
  }
  if (req->max_bytes() > core::kMaxGetBytes) {
    return ReplyError(
        ctx, core::Error{core::Errc::kInvalidArgument,
                         "max_bytes " + std::to_string(req->max_bytes()) +
                             " exceeds the limit of " + std::to_string(core::kMaxGetBytes)});
  }
  const bool batch = req->max_messages() > 1;
  const uint64_t max_bytes = req->max_bytes() != 0 ? req->max_bytes() : kDefaultGetMaxBytes;
  auto* call = new WaitingCall(ctx, std::move(queue));
  call->queue().GetBatch(batch ? req->max_messages() : 1, max_bytes, visibility, now, deadline,
                         call->wait_id(),
                         [call, resp, batch](core::Result<std::vector<core::Delivery>> r) {
                           if (!r.ok()) return call->Fail(r.error());
                           for (core::Delivery& d : r.value()) {
                             v1::Delivery single;
                             v1::Delivery* out = batch ? resp->add_deliveries() : &single;
                             out->set_delivery_tag(d.tag);
                             ToProto(d.lease, out->mutable_lease_duration());
                             call->add_delivery_tag(d.tag);
                             ToProto(std::move(d), out->mutable_message());
                             if (!batch) {
                               resp->mutable_message()->Swap(out->mutable_message());
                               resp->set_delivery_tag(out->delivery_tag());
                               resp->mutable_lease_duration()->Swap(out->mutable_lease_duration());
                             }
                           }
                           call->Finish(grpc::Status::OK);
                         });
  return call;
}

ServerUnaryReactor* QueueService::Join(CallbackServerContext* ctx, const v1::JoinRequest* req,
                                       v1::JoinResponse* /*resp*/) {
  if (auto denied = access_->Check(ctx, "Join", Permission::kRead, req->queue())) {
    return ReplyError(ctx, *denied);
  }
  auto wait = PrepareWait(*ctx, *req);
  if (!wait.ok()) return ReplyError(ctx, wait.error());
  auto& [queue, now, deadline] = wait.value();

  auto* call = new WaitingCall(ctx, std::move(queue));
  call->queue().Join(now, deadline, call->wait_id(), [call](core::Result<void> r) {
    if (!r.ok()) return call->Fail(r.error());
    call->Finish(grpc::Status::OK);
  });
  return call;
}

grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* QueueService::Produce(
    CallbackServerContext* ctx) {
  return StartProduce(ctx, broker_, access_, &produce_calls_);
}

grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* QueueService::Consume(
    CallbackServerContext* ctx) {
  return StartConsume(ctx, broker_, access_, post_);
}

ServerUnaryReactor* QueueService::TaskDone(CallbackServerContext* ctx,
                                           const v1::TaskDoneRequest* req,
                                           v1::TaskDoneResponse* /*resp*/) {
  if (auto denied = access_->Check(ctx, "TaskDone", Permission::kRead, req->queue())) {
    return ReplyError(ctx, *denied);
  }
  auto queue = broker_->FindQueue(req->queue());
  if (!queue.ok()) return ReplyError(ctx, queue.error());
  auto done = queue.value()->TaskDone(req->delivery_tag(), core::Clock::now());
  if (!done.ok()) return ReplyError(ctx, done.error());
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::ExtendLease(CallbackServerContext* ctx,
                                              const v1::ExtendLeaseRequest* req,
                                              v1::ExtendLeaseResponse* resp) {
  if (auto denied = access_->Check(ctx, "ExtendLease", Permission::kRead, req->queue())) {
    return ReplyError(ctx, *denied);
  }
  auto queue = broker_->FindQueue(req->queue());
  if (!queue.ok()) return ReplyError(ctx, queue.error());
  auto duration = FromProto(req->duration(), "duration");
  if (!duration.ok()) return ReplyError(ctx, duration.error());
  auto granted =
      queue.value()->ExtendLease(req->delivery_tag(), duration.value(), core::Clock::now());
  if (!granted.ok()) return ReplyError(ctx, granted.error());
  ToProto(granted.value(), resp->mutable_lease_duration());
  return Reply(ctx, grpc::Status::OK);
}

ServerUnaryReactor* QueueService::Release(CallbackServerContext* ctx, const v1::ReleaseRequest* req,
                                          v1::ReleaseResponse* resp) {
  if (auto denied = access_->Check(ctx, "Release", Permission::kRead, req->queue())) {
    return ReplyError(ctx, *denied);
  }
  auto queue = broker_->FindQueue(req->queue());
  if (!queue.ok()) return ReplyError(ctx, queue.error());
  std::optional<core::Duration> delay;
  if (req->has_delay()) {
    auto d = FromProto(req->delay(), "delay");
    if (!d.ok()) return ReplyError(ctx, d.error());
    delay = d.value();
  }
  auto released =
      queue.value()->Release(req->delivery_tag(), core::Clock::now(), delay, req->reject());
  if (!released.ok()) return ReplyError(ctx, released.error());
  resp->set_dead_lettered(released.value().dead_lettered);
  if (!released.value().dead_lettered) {
    ToProto(released.value().delay, resp->mutable_redeliver_after());
  }
  return Reply(ctx, grpc::Status::OK);
}

}  // namespace basin::service
