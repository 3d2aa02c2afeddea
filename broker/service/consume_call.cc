#include "broker/service/consume_call.h"

#include <atomic>
#include <memory>
#include <mutex>

#include "broker/core/lock_rank.h"
#include "broker/core/shared_thread.h"
#include "broker/service/call_link.h"
#include "broker/service/convert.h"
#include "broker/service/error_mapping.h"

namespace basin::service {
namespace {

constexpr uint32_t kDefaultPrefetch = 100;
constexpr uint32_t kMaxPrefetch = 10'000;
// One response carries at most this many deliveries, and stops adding them
// once it holds about this many bytes. Each response costs a client a fixed
// overhead (gRPC Python: ~120 us), so large responses matter for slow
// clients; the byte bound keeps one response's encoding (a copy made while
// building it) near the size of a Produce batch.
constexpr size_t kBatchDeliveries = 4096;
constexpr uint64_t kBatchBytes = 1 << 20;

using Post = std::function<void(std::function<void()>)>;

// Reads run independently of writes: the first request attaches a consumer
// to the queue, later ones carry acks and releases. Writes follow the
// subscription protocol: one writer at a time, either OnWriteDone or the
// wake-up of an idle outbox, and that writer is the one that finishes.
class ConsumeCall final : public grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse> {
 public:
  ConsumeCall(grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access, Post post)
      : ctx_(ctx),
        broker_(broker),
        access_(access),
        post_(std::move(post)),
        link_(std::make_shared<CallLink<ConsumeCall>>(this)) {
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client will send no more acks: end the stream; what it holds
      // goes back to the queue.
      if (!Started()) return FinishBeforeStart(grpc::Status::CANCELLED);
      client_done_.store(true);
      queue_->DetachConsumer(id_, core::Error{core::Errc::kCancelled, "client closed the stream"},
                             core::Clock::now());
      return;
    }
    if (!queue_) return Start();
    // The users file changed since the stream opened: is it still allowed?
    if (auto revoked =
            access_->Recheck(&caller_, ctx_, "Consume", Permission::kRead, queue_->name())) {
      queue_->DetachConsumer(id_, *revoked, core::Clock::now());
      return;  // no more reads: the stream ends with that error
    }
    // Each list is worked through under the queue's lock: its length must
    // not be the client's choice. No stream holds more than kMaxPrefetch.
    for (int size :
         {req_.acks_size(), req_.releases_size(), req_.extends_size(), req_.rejects_size()}) {
      if (static_cast<uint32_t>(size) > kMaxPrefetch) {
        queue_->DetachConsumer(
            id_,
            core::Error{core::Errc::kInvalidArgument,
                        "a Consume request lists " + std::to_string(size) + " tags; the limit is " +
                            std::to_string(kMaxPrefetch) + " per list"},
            core::Clock::now());
        return;  // no more reads: the stream ends with that error
      }
    }
    std::optional<core::Duration> release_delay;
    if (req_.has_release_delay()) {
      auto d = FromProto(req_.release_delay(), "release_delay");
      if (d.ok() && d.value() > core::kMaxDelay) {
        d = core::Error{core::Errc::kInvalidArgument, "release_delay is longer than the limit of " +
                                                          core::DaysText(core::kMaxDelay)};
      }
      if (!d.ok()) {
        queue_->DetachConsumer(id_, d.error(), core::Clock::now());
        return;  // no more reads: the stream ends with that error
      }
      release_delay = d.value();
    }
    const core::TimePoint now = core::Clock::now();
    if (req_.acks_size() > 0 || req_.ack_up_to() != 0) {
      queue_->ConsumerAck(id_, {req_.acks().begin(), req_.acks().end()}, req_.ack_up_to(), now);
    }
    if (req_.releases_size() > 0 || req_.release_up_to() != 0) {
      queue_->ConsumerRelease(id_, {req_.releases().begin(), req_.releases().end()},
                              req_.release_up_to(), now, release_delay);
    }
    if (req_.rejects_size() > 0) {
      queue_->ConsumerReject(id_, {req_.rejects().begin(), req_.rejects().end()}, now);
    }
    if (req_.extends_size() > 0 || req_.extend_up_to() != 0) {
      queue_->ConsumerExtend(id_, {req_.extends().begin(), req_.extends().end()},
                             req_.extend_up_to(), now);
    }
    StartRead(&req_);
  }

  // Writes the next batch, finishes if the consumer ended, or returns idle.
  void WriteNext() {
    {
      std::lock_guard lock(start_mu_);
      if (!started_) {  // attached but not yet recorded: Start() writes
        wake_pending_ = true;
        return;
      }
    }
    std::optional<core::ConsumerPull> pulled = outbox_->Next(kBatchDeliveries, kBatchBytes);
    if (!pulled) return;
    if (pulled->end) {
      queue_->DetachConsumer(id_, *pulled->end, core::Clock::now());
      const core::Error& end = *pulled->end;
      if (end.code != core::Errc::kCancelled) return Finish(ToStatus(ctx_, end));
      return Finish(client_done_.load() ? grpc::Status::OK : grpc::Status::CANCELLED);
    }
    resp_.Clear();
    if (columns_ && !pulled->deliveries.empty()) {
      ToColumns(pulled->deliveries, resp_.mutable_columns());
    } else {
      for (const core::StreamDelivery& d : pulled->deliveries) {
        v1::StreamDelivery* out = resp_.add_deliveries();
        out->set_delivery_tag(d.tag);
        ToProto(d, out->mutable_message());
      }
    }
    resp_.mutable_expired()->Assign(pulled->expired.begin(), pulled->expired.end());
    resp_.mutable_unknown_tags()->Assign(pulled->unknown_tags.begin(), pulled->unknown_tags.end());
    StartWrite(&resp_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The stream broke: take the consumer's messages back and finish.
      queue_->DetachConsumer(id_, core::Error{core::Errc::kCancelled, "stream broken"},
                             core::Clock::now());
      outbox_->Next(1, 1);  // the end: nobody else writes
      return Finish(grpc::Status::CANCELLED);
    }
    WriteNext();
  }

  void OnCancel() override {
    if (Started()) {
      queue_->DetachConsumer(id_, core::Error{core::Errc::kCancelled, "cancelled"},
                             core::Clock::now());
    }
  }

  void OnDone() override {
    if (queue_ && Started()) {
      queue_->DetachConsumer(id_, core::Error{core::Errc::kCancelled, "done"}, core::Clock::now());
    }
    if (link_->Detach()) delete this;
  }

 private:
  // Whether a consumer is attached (then id_, outbox_ and queue_ are fixed).
  bool Started() {
    std::lock_guard lock(start_mu_);
    return started_;
  }

  void Start() {
    if (auto denied = access_->Check(ctx_, "Consume", Permission::kRead, req_.queue(), &caller_)) {
      return FinishBeforeStart(ToStatus(ctx_, *denied));
    }
    auto queue = broker_->FindQueue(req_.queue());
    if (!queue.ok()) return FinishBeforeStart(ToStatus(ctx_, queue.error()));
    const uint32_t prefetch = req_.prefetch() == 0 ? kDefaultPrefetch : req_.prefetch();
    if (prefetch > kMaxPrefetch) {
      return FinishBeforeStart(ToStatus(
          ctx_, core::Error{core::Errc::kInvalidArgument, "prefetch " + std::to_string(prefetch) +
                                                              " exceeds the limit of " +
                                                              std::to_string(kMaxPrefetch)}));
    }
    core::Duration ack_timeout{};
    if (req_.has_ack_timeout()) {
      auto t = FromProto(req_.ack_timeout(), "ack_timeout");
      if (!t.ok()) return FinishBeforeStart(ToStatus(ctx_, t.error()));
      ack_timeout = t.value();
    }
    queue_ = std::move(queue.value());
    columns_ = req_.columns();  // before started_ is published: writers read it after
    auto attached = queue_->AttachConsumer(
        prefetch, ack_timeout,
        [link = link_, post = post_] {
          if (core::OnSharedWorker()) {
            post([link] { link->Wake(); });
          } else {
            link->Wake();
          }
        },
        core::Clock::now());
    if (!attached.ok()) return FinishBeforeStart(ToStatus(ctx_, attached.error()));
    bool wake = false;
    {
      std::lock_guard lock(start_mu_);
      id_ = attached.value().id;
      outbox_ = attached.value().outbox;
      started_ = true;
      wake = wake_pending_;
    }
    StartRead(&req_);
    if (wake) WriteNext();
  }

  // Before a consumer is attached no writer exists: finishing here is safe.
  void FinishBeforeStart(const grpc::Status& status) { Finish(status); }

  grpc::CallbackServerContext* const ctx_;
  core::Broker* const broker_;
  Access* const access_;
  Caller caller_;  // set by the first read (Start), then rechecked
  const Post post_;
  const std::shared_ptr<CallLink<ConsumeCall>> link_;
  v1::ConsumeRequest req_;
  bool columns_ = false;  // deliveries as DeliveryColumns (set by Start)
  v1::ConsumeResponse resp_;
  std::shared_ptr<core::Queue> queue_;

  RankedMutex<LockRank::kServiceCall> start_mu_;  // guards the four below until started_; never
                                                  // held while calling into the core
  uint64_t id_ = 0;
  std::shared_ptr<core::ConsumerOutbox> outbox_;
  bool started_ = false;
  bool wake_pending_ = false;
  std::atomic<bool> client_done_{false};
};

}  // namespace

grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* StartConsume(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access,
    std::function<void(std::function<void()>)> post) {
  return new ConsumeCall(ctx, broker, access, std::move(post));
}

}  // namespace basin::service
