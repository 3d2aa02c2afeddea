#include "broker/service/produce_call.h"

#include <atomic>
#include <map>
#include <mutex>
#include <optional>

#include "broker/core/lock_rank.h"
#include "broker/service/convert.h"
#include "broker/service/error_mapping.h"

namespace basin::service {
namespace {

constexpr size_t kMaxProducerId = 128;

// Reads one batch, puts it (waiting as long as it takes for room), and only
// once it has its room reads the next: a full queue stops the reading, and
// HTTP/2 flow control carries that back to the producer. A durable queue's
// batch has its room before it is on disk, so batches waiting for the same
// sync overlap (the producer's in-flight window bounds them). Confirms are
// written in the order the batches were read — producers match them to their
// batches in that order — whatever order the queue answers in (a batch of
// duplicates or invalid messages is answered at once, before a durable batch
// ahead of it). After a failed batch nothing later is confirmed: the stream
// ends with the error, and the producer resends from that batch on.
class ProduceCall final : public grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>,
                          public LiveCalls::Call {
 public:
  ProduceCall(grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access,
              LiveCalls* live)
      : ctx_(ctx), broker_(broker), access_(access), live_(live) {
    if (live_->Add(this)) {
      StartRead(&req_);
    } else {
      EndForShutdown();  // the broker is draining
    }
  }

  // Every batch already read is still answered and confirmed; no more are
  // read. The stream then ends with UNAVAILABLE.
  void EndForShutdown() override {
    std::unique_lock lock(mu_);
    FailLocked(core::Error{core::Errc::kShutdown, "broker is shutting down"}, kAfterEveryRead);
    Actions next = WriteNextLocked();
    if (!next.write) next = MaybeFinishLocked();
    Act(lock, next);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the producer closed its side: finish once every confirm is out
      std::unique_lock lock(mu_);
      reads_done_ = true;
      return Act(lock, MaybeFinishLocked());
    }
    if (!queue_) {
      if (auto denied =
              access_->Check(ctx_, "Produce", Permission::kWrite, req_.queue(), &caller_)) {
        return FailAfterWrites(*denied);
      }
      auto found = broker_->FindQueue(req_.queue());
      if (!found.ok()) return FailAfterWrites(found.error());
      if (req_.producer_id().size() > kMaxProducerId) {
        return FailAfterWrites(
            core::Error{core::Errc::kInvalidArgument,
                        "producer_id is longer than " + std::to_string(kMaxProducerId) + " bytes"});
      }
      queue_ = std::move(found.value());
      producer_ = req_.producer_id();
    } else if (!req_.queue().empty() && req_.queue() != queue_->name()) {
      return FailAfterWrites(core::Error{
          core::Errc::kInvalidArgument, "a Produce stream writes to one queue ('" + queue_->name() +
                                            "'), not '" + req_.queue() + "'"});
    } else if (!req_.producer_id().empty() && req_.producer_id() != producer_) {
      return FailAfterWrites(core::Error{core::Errc::kInvalidArgument,
                                         "producer_id is set in the first request of a Produce "
                                         "stream and cannot change"});
    }
    if (!producer_.empty() && req_.first_sequence() == 0) {
      return FailAfterWrites(core::Error{core::Errc::kInvalidArgument,
                                         "first_sequence (from 1) is required with producer_id"});
    }
    // A SIGHUP may have removed the user or its permission since the stream
    // opened: a stream lives as long as its client wants, a revocation must not.
    if (auto revoked =
            access_->Recheck(&caller_, ctx_, "Produce", Permission::kWrite, queue_->name())) {
      return FailAfterWrites(*revoked);
    }
    if (auto limited =
            access_->Spend(caller_, ctx_, "Produce", queue_->name(), req_.messages_size())) {
      // The batches before this one are confirmed; the producer resends from
      // this one after its pause.
      return FailAfterWrites(*limited);
    }
    std::vector<core::Headers> headers;
    const std::vector<core::MessageSpec> specs =
        ToSpecs(req_.messages(), &headers, core::Clock::now());
    const uint64_t batch_id = req_.batch_id();
    const bool compact = req_.compact_results();
    const uint64_t index = next_index_++;
    // Whichever of this thread (after PutBatch returns) and the batch's
    // admission (its answer, or for a durable queue the `admitted` call before
    // it) comes second reads the next batch, so that wait_id_ is current then.
    // `stepped` lives apart from the call: an `admitted` that runs after the
    // answer (another thread's) finds it set and touches nothing else. The
    // one that wins it counts as outstanding (stepping_) until its step is
    // done, so the call cannot finish — and be deleted — under it.
    {
      // A read that completed as the call failed or finished: drop it. Under
      // mu_ with the count, so the call cannot finish between the check and
      // the put whose callbacks hold `this`.
      std::lock_guard lock(mu_);
      if (failed_ || finished_) return;
      unanswered_.fetch_add(1);
      ++stepping_;
    }
    put_state_.store(kPutRunning);
    auto stepped = std::make_shared<std::atomic<bool>>(false);
    auto admitted = [this, stepped] {
      if (stepped->exchange(true)) return;
      if (put_state_.exchange(kPutCalledBack) == kPutReturned) ReadNext();
      StepDone();
    };
    core::WaitId id = 0;
    queue_->PutBatch(
        specs, core::Clock::now(), core::kNever, &id,
        [this, index, batch_id, compact, admitted](core::Result<std::vector<core::PutResult>> r) {
          // The call cannot finish before Answered(), the last step.
          OnPut(index, Confirm{batch_id, compact, {}}, std::move(r));
          admitted();
          Answered();
        },
        core::BatchOrigin{producer_, req_.first_sequence()}, admitted);
    wait_id_.store(id);
    // OnCancel sets cancelled_ before it reads wait_id_: one of us sees the other.
    if (cancelled_.load()) queue_->Cancel(id);
    if (put_state_.exchange(kPutReturned) == kPutCalledBack) ReadNext();
  }

  void OnWriteDone(bool ok) override {
    bool cancel = false;
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok) {
      broken_ = true;
      outbox_.clear();
      cancel = queue_ != nullptr;
    }
    Actions next = WriteNextLocked();
    if (!next.write) next = MaybeFinishLocked();
    if (cancel) {
      // Nobody hears the answer of a batch still waiting for room: end it,
      // so the call can finish. Outside mu_: the cancelled batch's answer
      // (OnPut, Answered) takes it. Answered() cannot finish the call before
      // this returns: a reaction is running.
      lock.unlock();
      queue_->Cancel(wait_id_.load());
      lock.lock();
      if (!next.write && !next.finish) next = MaybeFinishLocked();
    }
    Act(lock, next);
  }

  void OnCancel() override {
    cancelled_.store(true);
    if (queue_) queue_->Cancel(wait_id_.load());
  }

  void OnDone() override {
    if (live_->Done(this)) delete this;
  }

 private:
  enum : int { kPutRunning, kPutCalledBack, kPutReturned };
  // A fail index past every batch: those read so far are all confirmed.
  static constexpr uint64_t kAfterEveryRead = UINT64_MAX - 1;

  // A batch's answer, waiting for its turn to be written.
  struct Confirm {
    uint64_t batch_id = 0;
    bool compact = false;  // the request asked for the short confirm
    std::vector<core::PutResult> results;
  };

  // The short confirm says it all: every message enqueued now, ids in a row.
  static bool Consecutive(const std::vector<core::PutResult>& results) {
    if (results.empty()) return false;
    const uint64_t first = results.front().message_id;
    for (size_t i = 0; i < results.size(); ++i) {
      const core::PutResult& r = results[i];
      if (r.error || r.duplicate || r.message_id != first + i) return false;
    }
    return true;
  }

  // What to do once mu_ is released: gRPC and the core are never called
  // under it. A finish is the last thing done: the call may be gone after.
  struct Actions {
    bool write = false;
    bool read = false;
    bool finish = false;
    grpc::Status status;
  };
  void Act(std::unique_lock<RankedMutex<LockRank::kServiceCall>>& lock, Actions a) {
    lock.unlock();
    if (a.write) StartWrite(&current_);
    if (a.read) StartRead(&req_);
    if (a.finish) Finish(a.status);
  }

  void OnPut(uint64_t index, Confirm confirm, core::Result<std::vector<core::PutResult>> r) {
    std::unique_lock lock(mu_);
    if (!r.ok()) {
      FailLocked(r.error(), index);
      return Act(lock, WriteNextLocked());
    }
    if (index > fail_index_) return;  // a batch after a failed one: resent, not confirmed
    confirm.results = std::move(r.value());
    outbox_.emplace(index, std::move(confirm));
    Act(lock, WriteNextLocked());
  }

  // The batch's step (reading the next one) is over; the last thing the
  // winner of `stepped` does, since the call may finish here.
  void StepDone() {
    std::unique_lock lock(mu_);
    --stepping_;
    Act(lock, MaybeFinishLocked());
  }

  // A batch's answer is queued: the last thing its callback does, since the
  // call may finish here.
  void Answered() {
    std::unique_lock lock(mu_);
    unanswered_.fetch_sub(1);
    Act(lock, MaybeFinishLocked());
  }

  // From the batch's admission, on any thread: not a gRPC reaction, so the
  // call must not finish (and be deleted) before StartRead has returned.
  void ReadNext() {
    std::unique_lock lock(mu_);
    if (failed_ || finished_ || cancelled_.load()) {
      // No more reads: finish once the writes are out.
      reads_done_ = true;
      return Act(lock, MaybeFinishLocked());
    }
    ++starting_read_;
    lock.unlock();
    StartRead(&req_);
    lock.lock();
    --starting_read_;
    Act(lock, MaybeFinishLocked());
  }

  // Ends the stream with `error` once every confirm already queued is written.
  // (A request refused before it became a batch: every batch read so far is
  // still confirmed.) From OnReadDone: no batch of this read is outstanding.
  void FailAfterWrites(const core::Error& error) {
    std::unique_lock lock(mu_);
    FailLocked(error, next_index_);
    Actions next = WriteNextLocked();
    if (!next.write) next = MaybeFinishLocked();
    Act(lock, next);
  }
  // Batch `index` failed: confirms of the batches before it are still written,
  // none after it. The status is made once, when the call finishes.
  void FailLocked(const core::Error& error, uint64_t index) {
    if (!failed_ || index < fail_index_) {
      failed_ = true;
      fail_index_ = index;
      error_ = error;
      outbox_.erase(outbox_.upper_bound(index), outbox_.end());
    }
    reads_done_ = true;
  }

  Actions WriteNextLocked() {
    if (writing_ || broken_ || outbox_.empty() || outbox_.begin()->first != next_write_) return {};
    writing_ = true;
    // Built in place: a cleared response keeps its results for reuse, so a
    // confirm allocates nothing per message. Only the writer touches it.
    const Confirm& confirm = outbox_.begin()->second;
    current_.Clear();
    current_.set_batch_id(confirm.batch_id);
    if (confirm.compact && Consecutive(confirm.results)) {
      current_.set_first_message_id(confirm.results.front().message_id);
      current_.set_message_count(static_cast<uint32_t>(confirm.results.size()));
    } else {
      for (const core::PutResult& one : confirm.results) ToProto(one, current_.add_results());
    }
    outbox_.erase(outbox_.begin());
    ++next_write_;
    Actions a;
    a.write = true;
    return a;
  }

  // Finishes when no more reads will come, nothing is being written and no
  // batch waits for room or for the disk.
  Actions MaybeFinishLocked() {
    if (finished_ || !reads_done_ || writing_ || starting_read_ > 0 || stepping_ > 0 ||
        (!outbox_.empty() && !broken_)) {
      return {};
    }
    if (unanswered_.load() > 0) return {};
    finished_ = true;
    Actions a;
    a.finish = true;
    a.status =
        failed_ ? ToStatus(ctx_, error_) : (broken_ ? grpc::Status::CANCELLED : grpc::Status::OK);
    return a;
  }

  grpc::CallbackServerContext* const ctx_;
  core::Broker* const broker_;
  Access* const access_;
  Caller caller_;  // set by the first read, then fixed
  LiveCalls* const live_;
  std::shared_ptr<core::Queue> queue_;  // set by the first read, then fixed
  std::string producer_;                // likewise
  v1::ProduceRequest req_;
  std::atomic<int> put_state_{kPutReturned};
  std::atomic<int> unanswered_{0};  // batches put and not yet answered
  std::atomic<core::WaitId> wait_id_{0};
  std::atomic<bool> cancelled_{false};

  RankedMutex<LockRank::kServiceCall> mu_;  // guards everything below
  // Confirms by read index.
  std::map<uint64_t, Confirm> outbox_;
  uint64_t next_index_ = 0;  // of the next batch read (the reading thread only)
  uint64_t next_write_ = 0;  // index of the next confirm to write
  uint64_t fail_index_ = UINT64_MAX;
  v1::ProduceResponse current_;  // the confirm being written (the writer's)
  bool writing_ = false;
  int starting_read_ = 0;  // ReadNexts between their decision and StartRead's return
  int stepping_ = 0;       // batches whose `stepped` winner has not finished its step
  bool reads_done_ = false;
  bool failed_ = false;
  bool broken_ = false;
  bool finished_ = false;
  core::Error error_{core::Errc::kInvalidArgument, {}};
};

}  // namespace

grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* StartProduce(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access, LiveCalls* live) {
  return new ProduceCall(ctx, broker, access, live);
}

}  // namespace basin::service
