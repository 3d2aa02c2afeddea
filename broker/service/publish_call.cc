#include "broker/service/publish_call.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "broker/core/lock_rank.h"
#include "broker/core/queue_config.h"
#include "broker/core/topic_name.h"
#include "broker/service/convert.h"
#include "broker/service/error_mapping.h"

namespace basin::service {
namespace {

// Batches read but not yet confirmed on the wire: past this many the broker
// stops reading, and HTTP/2 flow control carries that back to the publisher.
// Publishing itself never waits (a subscriber's buffer overflows by its own
// policy), so this is what bounds a publisher that does not read its confirms,
// or whose batches wait for durable bound queues.
constexpr uint64_t kMaxUnconfirmed = 64;
// What one confirm lists of its failures (names and messages): a batch of
// 10,000 messages each refused by many bound queues must not make a confirm
// of megabytes. The rest are counted (failures_omitted). With the window,
// this bounds what a stream holds for its confirms to about 4 MiB.
constexpr size_t kMaxListedFailureBytes = 64 << 10;
// A message's place in the call: its batch's read index and its index there,
// in one word, so that the router's callback fits std::function's inline
// storage (no allocation per message).
constexpr int kIndexBits = 14;
static_assert((size_t{1} << kIndexBits) > core::kMaxBatchMessages);

// Reads a batch, publishes every message of it (the router never blocks), and
// reads the next at once unless kMaxUnconfirmed batches are unconfirmed.
// Answers come inline, or for a copy into a durable bound queue from the
// thread that wrote it; a batch is confirmed once all of its are in, and
// confirms are written in read order. A failure that ends the stream
// (refused permission or rate, a batch too large, shutdown) still lets the
// batches before it be confirmed.
class PublishCall final
    : public grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>,
      public LiveCalls::Call {
 public:
  PublishCall(grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access,
              LiveCalls* live)
      : ctx_(ctx), broker_(broker), access_(access), live_(live) {
    if (live_->Add(this)) {
      StartRead(&req_);
    } else {
      EndForShutdown();  // the broker is draining
    }
  }

  void EndForShutdown() override {
    std::unique_lock lock(mu_);
    FailLocked(core::Error{core::Errc::kShutdown, "broker is shutting down"}, kAfterEveryRead);
    Actions next = WriteNextLocked();
    if (!next.write) next = MaybeFinishLocked();
    Act(lock, next);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the publisher closed its side: finish once every confirm is out
      std::unique_lock lock(mu_);
      reads_done_ = true;
      return Act(lock, MaybeFinishLocked());
    }
    const int n = req_.messages_size();
    if (static_cast<size_t>(n) > core::kMaxBatchMessages) {
      return FailAfterWrites(
          core::Error{core::Errc::kInvalidArgument, "a PublishStream batch holds at most " +
                                                        std::to_string(core::kMaxBatchMessages) +
                                                        " messages, not " + std::to_string(n)});
    }
    if (auto denied = Authorize()) return FailAfterWrites(*denied);
    uint64_t index = 0;
    {
      std::lock_guard lock(mu_);
      // A read that completed as the call failed or broke: dropped unanswered.
      if (failed_ || finished_ || broken_) return;
      index = next_index_++;
      Confirm& c = outbox_[index];
      c.batch_id = req_.batch_id();
      c.count = static_cast<uint32_t>(n);
      // One more than the messages: the batch is not complete before the
      // loop below is through.
      c.waiting = static_cast<uint32_t>(n) + 1;
      unanswered_ += static_cast<uint64_t>(n);
      routing_ = true;
    }
    const core::TimePoint now = core::Clock::now();
    for (int i = 0; i < n; ++i) {
      const v1::PublishRequest& m = req_.messages(i);
      const uint64_t key = (index << kIndexBits) | static_cast<uint64_t>(i);
      broker_->topics().Publish(
          m.topic(), m.payload(), FromProto(m.headers()), now,
          [this, key](core::Result<core::PublishOutcome> r) { OnAnswer(key, std::move(r)); });
    }
    std::unique_lock lock(mu_);
    routing_ = false;
    Actions next;
    if (auto it = outbox_.find(index); it != outbox_.end() && --it->second.waiting == 0) {
      next = WriteNextLocked();
    }
    if (failed_ || finished_ || cancelled_ || broken_) {
      reads_done_ = true;
      if (!next.write) next = MaybeFinishLocked();
    } else if (next_index_ - next_write_ >= kMaxUnconfirmed) {
      paused_ = true;  // OnWriteDone reads on once confirms are out
    } else {
      next.read = true;
    }
    Act(lock, next);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok) {
      broken_ = true;
      reads_done_ = true;
    }
    Actions next = WriteNextLocked();
    if (paused_ && !reads_done_ && !failed_ && next_index_ - next_write_ < kMaxUnconfirmed) {
      paused_ = false;
      next.read = true;
    }
    if (!next.write && !next.read) next = MaybeFinishLocked();
    Act(lock, next);
  }

  void OnCancel() override {
    std::unique_lock lock(mu_);
    cancelled_ = true;
    if (paused_) reads_done_ = true;  // nobody reads on: a write may never complete
    Act(lock, MaybeFinishLocked());
  }

  void OnDone() override {
    if (live_->Done(this)) delete this;
  }

 private:
  // A fail index past every batch: those read so far are all confirmed.
  static constexpr uint64_t kAfterEveryRead = UINT64_MAX - 1;

  // A batch's answer as it fills in.
  struct Confirm {
    uint64_t batch_id = 0;
    uint32_t count = 0;
    uint32_t waiting = 0;  // answers still to come (plus one for the reader)
    uint64_t receivers = 0;
    uint64_t queues = 0;
    uint32_t failed = 0;   // not published
    uint32_t omitted = 0;  // failures not listed
    size_t listed_bytes = 0;
    std::vector<v1::PublishFailure> failures;
  };

  struct Actions {
    bool write = false;
    bool read = false;
    bool finish = false;
    grpc::Status status;
  };
  // gRPC is never called under mu_. A finish is the last thing done.
  void Act(std::unique_lock<RankedMutex<LockRank::kServiceCall>>& lock, Actions a) {
    if (a.read) ++starting_read_;
    lock.unlock();
    if (a.write) StartWrite(&current_);
    if (a.read) {
      StartRead(&req_);
      lock.lock();
      --starting_read_;
      a = MaybeFinishLocked();
      lock.unlock();
    }
    if (a.finish) Finish(a.status);
  }

  // Write on every topic of the batch (a run of one name is checked once),
  // the caller identified again when a SIGHUP changed the users; then the
  // batch's messages are taken from the caller's rate.
  std::optional<core::Error> Authorize() {
    if (!access_->enabled()) return std::nullopt;
    if (!identified_) {
      auto who = access_->Identify(ctx_, "PublishStream");
      if (!who.ok()) return who.error();
      caller_ = std::move(who.value());
      identified_ = true;
    }
    // Invalid names are those messages' own failures (INVALID_TOPIC), not a
    // refusal of the stream: only valid ones are checked.
    const std::string* last = nullptr;
    bool rechecked = false;
    for (const v1::PublishRequest& m : req_.messages()) {
      if (last != nullptr && *last == m.topic()) continue;
      last = &m.topic();
      if (!core::ValidateTopicName(m.topic()).ok()) continue;
      if (!rechecked) {
        // A SIGHUP may have removed the user since the stream opened.
        rechecked = true;
        if (auto revoked =
                access_->Recheck(&caller_, ctx_, "PublishStream", Permission::kWrite, m.topic())) {
          return revoked;
        }
      }
      if (auto denied =
              access_->Authorize(caller_, ctx_, "PublishStream", Permission::kWrite, m.topic())) {
        return denied;
      }
    }
    if (req_.messages_size() == 0) return std::nullopt;
    return access_->Spend(caller_, ctx_, "PublishStream", req_.messages(0).topic(),
                          static_cast<uint64_t>(req_.messages_size()));
  }

  // One message's answer: inline from Publish, or from the thread that
  // wrote its last durable copy.
  void OnAnswer(uint64_t key, core::Result<core::PublishOutcome> r) {
    const uint64_t index = key >> kIndexBits;
    const auto i = static_cast<uint32_t>(key & ((uint64_t{1} << kIndexBits) - 1));
    std::unique_lock lock(mu_);
    --unanswered_;
    auto it = outbox_.find(index);
    // Dropped after a failure before it: only the call's end waits for this.
    if (it == outbox_.end()) return Act(lock, MaybeFinishLocked());
    Confirm& c = it->second;
    if (!r.ok() && r.error().code == core::Errc::kShutdown) {
      FailLocked(r.error(), index);
      Actions next = WriteNextLocked();
      if (!next.write) next = MaybeFinishLocked();
      return Act(lock, next);
    }
    if (!r.ok()) {
      ++c.failed;
      const std::string_view reason = ToWire(r.error().code).reason;
      if (v1::PublishFailure* f = ListLocked(&c, i, reason.size() + r.error().message.size())) {
        f->set_error_reason(std::string(reason));
        f->set_error_message(r.error().message);
      }
    } else {
      core::PublishOutcome& out = r.value();
      c.receivers += out.receivers;
      c.queues += out.queues;
      if (!out.undelivered_queues.empty()) {
        size_t bytes = 0;
        for (const std::string& q : out.undelivered_queues) bytes += q.size() + 8;
        if (v1::PublishFailure* f = ListLocked(&c, i, bytes)) {
          for (std::string& q : out.undelivered_queues) f->add_undelivered_queues(std::move(q));
        }
      }
    }
    if (--c.waiting > 0) return;
    Actions next = WriteNextLocked();
    if (!next.write) next = MaybeFinishLocked();
    Act(lock, next);
  }

  // A new entry of the confirm's failures, or null (counted as omitted) when
  // the list is full.
  static v1::PublishFailure* ListLocked(Confirm* c, uint32_t index, size_t bytes) {
    bytes += 16;  // the entry's own framing and index
    if (c->listed_bytes + bytes > kMaxListedFailureBytes) {
      ++c->omitted;
      return nullptr;
    }
    c->listed_bytes += bytes;
    v1::PublishFailure& f = c->failures.emplace_back();
    f.set_index(index);
    return &f;
  }

  void FailAfterWrites(const core::Error& error) {
    std::unique_lock lock(mu_);
    FailLocked(error, next_index_);
    Actions next = WriteNextLocked();
    if (!next.write) next = MaybeFinishLocked();
    Act(lock, next);
  }
  // Batch `index` failed: the batches before it are still confirmed, none
  // from it on.
  void FailLocked(const core::Error& error, uint64_t index) {
    if (!failed_ || index < fail_index_) {
      failed_ = true;
      fail_index_ = index;
      error_ = error;
      outbox_.erase(outbox_.lower_bound(index), outbox_.end());
    }
    reads_done_ = true;
  }

  Actions WriteNextLocked() {
    if (writing_ || broken_ || outbox_.empty()) return {};
    auto it = outbox_.begin();
    if (it->first != next_write_ || it->second.waiting > 0) return {};
    Confirm& c = it->second;
    current_.Clear();
    current_.set_batch_id(c.batch_id);
    current_.set_message_count(c.count);
    current_.set_receivers(c.receivers);
    current_.set_queues(c.queues);
    current_.set_failed(c.failed);
    current_.set_failures_omitted(c.omitted);
    // Answers come in any order; failures are listed by index.
    std::sort(c.failures.begin(), c.failures.end(),
              [](const auto& a, const auto& b) { return a.index() < b.index(); });
    for (v1::PublishFailure& f : c.failures) *current_.add_failures() = std::move(f);
    outbox_.erase(it);
    ++next_write_;
    writing_ = true;
    Actions a;
    a.write = true;
    return a;
  }

  // Finishes when no more reads will come, nothing is being written and no
  // batch waits for an answer.
  Actions MaybeFinishLocked() {
    // Callbacks still to come hold `this`.
    if (finished_ || !reads_done_ || writing_ || starting_read_ > 0 || routing_ ||
        unanswered_ > 0) {
      return {};
    }
    if (!outbox_.empty() && !broken_ && !cancelled_) return {};
    finished_ = true;
    Actions a;
    a.finish = true;
    a.status = failed_ ? ToStatus(ctx_, error_)
                       : (broken_ || cancelled_ ? grpc::Status::CANCELLED : grpc::Status::OK);
    return a;
  }

  grpc::CallbackServerContext* const ctx_;
  core::Broker* const broker_;
  Access* const access_;
  LiveCalls* const live_;
  Caller caller_;  // the reader's: set by the first read
  bool identified_ = false;
  v1::PublishStreamRequest req_;

  RankedMutex<LockRank::kServiceCall> mu_;  // guards everything below
  std::map<uint64_t, Confirm> outbox_;      // by read index: filling, or ready to write
  uint64_t next_index_ = 0;                 // of the next batch read
  uint64_t next_write_ = 0;                 // of the next confirm to write
  uint64_t fail_index_ = UINT64_MAX;
  v1::PublishStreamResponse current_;  // the confirm being written
  uint64_t unanswered_ = 0;            // messages published, answer not yet in
  int starting_read_ = 0;              // StartReads decided on and not yet returned
  bool routing_ = false;               // the reader is publishing a batch
  bool writing_ = false;
  bool paused_ = false;  // over kMaxUnconfirmed: OnWriteDone reads on
  bool reads_done_ = false;
  bool failed_ = false;
  bool broken_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  core::Error error_{core::Errc::kInvalidArgument, {}};
};

}  // namespace

grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>* StartPublishStream(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access, LiveCalls* live) {
  return new PublishCall(ctx, broker, access, live);
}

}  // namespace basin::service
