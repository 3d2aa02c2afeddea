// One Produce stream at a time and two threads. The sender batches pending
// messages and writes them (with linger 0, a send() of a small message that
// finds nothing unconfirmed writes it itself). The receiver owns the stream's
// life: it reads the queue's bounds, opens the stream and resends what is
// unconfirmed, matches confirms to batches (the broker answers in order) and
// runs the confirms, and when the stream ends decides what that means —
// reconnect and resend, split batches too big for the queue, fail the one
// batch the error answered, or fail everything for good (the queue is gone or
// closed).
//
// One mutex, mu_, guards the shared state. It is never held while a confirm
// runs nor across a gRPC call that waits for the broker; the destructor
// cancels those calls (TryCancel, under mu_) to stop the threads. Messages are
// resolved in the order they were accepted, by the receiver only, so
// `resolved_` counts a prefix of `accepted_` and flush() waits for a number.
#include "basin/producer.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <variant>
#include <vector>

#include "connection.h"
#include "outgoing.h"

namespace basin {
namespace detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kCancelled = 1;
constexpr int kInvalidArgument = 3;
constexpr int kInternal = 13;
constexpr int kUnavailable = 14;
constexpr std::chrono::milliseconds kFirstBackoff{20};
// Largest message a linger-0 send() writes itself: well inside HTTP/2's
// initial 64 KiB stream window, so the write does not wait on the broker.
constexpr size_t kInlineWriteBytes = 16 * 1024;
constexpr std::chrono::milliseconds kMaxBackoff{1000};

// The receiving thread of the producer it serves: confirms run there.
thread_local const void* t_receiving_for = nullptr;

// Per-message errors are validation failures (INVALID_ARGUMENT).
std::exception_ptr ErrorFor(const std::string& reason, const std::string& message) {
  if (reason == "MESSAGE_TOO_LARGE") {
    return std::make_exception_ptr(MessageTooLarge(kInvalidArgument, reason, message));
  }
  return std::make_exception_ptr(InvalidArgument(kInvalidArgument, reason, message));
}

std::exception_ptr Destroyed() {
  return std::make_exception_ptr(Error(kCancelled, "",
                                       "the Producer was destroyed before the broker confirmed "
                                       "this message (it may or may not have been enqueued)"));
}

// Why the stream ended, as the exception the SDK throws for it.
std::exception_ptr StreamError(const grpc::Status& status, const grpc::ClientContext& ctx) {
  try {
    if (status.ok()) throw Unavailable(kUnavailable, "", "the broker ended the Produce stream");
    Throw(status, ctx);
  } catch (...) {
    return std::current_exception();
  }
}

// Errors about the queue itself, which no new stream mends.
bool Permanent(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const NotFound&) {
    return true;
  } catch (const Closed&) {
    return true;
  } catch (...) {
    return false;
  }
}

// The stream broke rather than refused something: a new one may work. (Our
// own cancellation is told apart before this is asked.)
bool Retryable(const grpc::Status& status, const grpc::ClientContext& ctx) {
  return status.ok() || status.error_code() == grpc::StatusCode::CANCELLED || Broken(status, ctx);
}

// A message's size as the broker counts it against max_bytes: the payload
// plus each header's key and value and 8 bytes of lengths.
template <typename HeaderMap>
size_t MessageBytes(const std::string& payload, const HeaderMap& headers) {
  size_t n = payload.size();
  for (const auto& [key, value] : headers) n += key.size() + value.size() + 8;
  return n;
}

std::string RandomProducerId() {
  std::random_device rd;
  std::string id(16, '0');
  for (char& c : id) c = "0123456789abcdef"[rd() % 16];
  return id;
}

using Confirm = std::variant<std::promise<uint64_t>, ConfirmCallback>;

// Sets the future or runs the callback. What a callback throws is dropped:
// it must not end the receiving thread, and with it the process.
void Resolve(Confirm& c, uint64_t id, const std::exception_ptr& error) {
  if (auto* promise = std::get_if<std::promise<uint64_t>>(&c)) {
    if (error) {
      promise->set_exception(error);
    } else {
      promise->set_value(id);
    }
    return;
  }
  auto& cb = std::get<ConfirmCallback>(c);
  if (!cb) return;
  try {
    cb(id, error);
  } catch (...) {  // documented: ignored
  }
}

}  // namespace

class ProducerImpl {
 public:
  ProducerImpl(std::shared_ptr<Connection> conn, std::string queue, ProducerOptions options)
      : options_(options),
        queue_(std::move(queue)),
        producer_id_(RandomProducerId()),
        conn_(std::move(conn)),
        max_pending_(std::clamp<size_t>(options.max_batch_messages, 1, kMaxBatchMessages)),
        max_in_flight_(std::max<size_t>(1, options.max_in_flight_batches)),
        batch_messages_(max_pending_),
        batch_bytes_(std::max<size_t>(1, options.max_batch_bytes)) {
    sender_ = std::thread([this] { SendLoop(); });
    receiver_ = std::thread([this] { ReceiveLoop(); });
  }

  ~ProducerImpl() {
    {
      std::unique_lock lock(mu_);
      closing_ = true;  // no more lingering: send everything now
      send_cv_.notify_one();
      room_cv_.wait_until(lock, Clock::now() + options_.close_timeout,
                          [&] { return resolved_ >= accepted_; });
      aborting_ = true;
      if (ctx_) ctx_->TryCancel();
      if (unary_ctx_ != nullptr) unary_ctx_->TryCancel();
    }
    send_cv_.notify_all();
    room_cv_.notify_all();
    recv_cv_.notify_all();
    sender_.join();
    receiver_.join();
  }

  void Send(OutgoingMessage message, Confirm confirm) {
    const size_t bytes = MessageBytes(message.payload, message.headers);
    std::unique_lock lock(mu_);
    // Bounded: at most one batch waits behind the ones in flight. A confirm
    // callback does not wait: the room may need its own thread to free.
    if (pending_.size() >= max_pending_ && t_receiving_for != this) {
      room_cv_.wait(lock, [&] { return failure_ || aborting_ || pending_.size() < max_pending_; });
    }
    if (failure_ || aborting_) {
      const std::exception_ptr error = failure_ ? failure_ : Destroyed();
      lock.unlock();
      Resolve(confirm, 0, error);
      return;
    }
    const bool first = pending_.empty();
    if (first) oldest_ = Clock::now();
    pending_bytes_ += bytes;
    pending_.push_back({std::move(message), std::move(confirm), bytes});
    ++accepted_;
    if (first && options_.linger.count() == 0 && in_flight_.empty() && !writing_ && !broken_ &&
        bytes <= kInlineWriteBytes && t_receiving_for == nullptr) {
      // Nothing lingers and nothing is unconfirmed: the broker is reading
      // the stream, so a small write fits its flow-control window and does
      // not wait, and this thread writes rather than waking the sender (a
      // wake-up costs two context switches per message at low rates:
      // docs/design.md, "Latency"). Not on any producer's receiving thread:
      // a confirm callback must not wait on a write.
      return WriteOnCallerLocked(std::move(lock));
    }
    // The sender needs a nudge only to start the linger clock or to send a
    // full batch; waking it for every message would cost a syscall each.
    const bool wake = first || pending_.size() >= batch_messages_ || pending_bytes_ >= batch_bytes_;
    const bool wake_receiver = first && receiver_idle_;
    lock.unlock();
    if (wake) send_cv_.notify_one();
    if (wake_receiver) recv_cv_.notify_one();
  }

  void Flush() {
    if (t_receiving_for == this) {
      throw std::logic_error(
          "basin::Producer::flush() called in a confirm callback: it would wait for the "
          "thread that runs the callback");
    }
    std::unique_lock lock(mu_);
    const uint64_t target = accepted_;
    if (resolved_ >= target) return;
    flush_upto_ = std::max(flush_upto_, target);
    send_cv_.notify_one();
    room_cv_.wait(lock, [&] { return resolved_ >= target; });
  }

 private:
  struct Pending {
    OutgoingMessage message;
    Confirm confirm;
    size_t bytes;  // as the broker counts them
  };
  // A batch sent and not yet confirmed, kept as sent for a resend.
  struct InFlight {
    std::shared_ptr<const v1::ProduceRequest> req;
    std::vector<Confirm> confirms;
  };
  using Stream = grpc::ClientReaderWriter<v1::ProduceRequest, v1::ProduceResponse>;

  bool BatchReadyLocked() const {
    if (pending_.empty()) return false;
    const uint64_t taken = accepted_ - pending_.size();  // the oldest pending is number taken + 1
    return closing_ || taken < flush_upto_ || pending_.size() >= batch_messages_ ||
           pending_bytes_ >= batch_bytes_ || Clock::now() - oldest_ >= options_.linger;
  }

  std::shared_ptr<v1::ProduceRequest> NewRequestLocked(uint64_t first_sequence) {
    auto req = std::make_shared<v1::ProduceRequest>();
    // The broker needs the queue and the producer in a stream's first request;
    // they are cheap, so every request carries them and any may open a stream.
    req->set_queue(queue_);
    req->set_batch_id(++batch_id_);
    req->set_producer_id(producer_id_);
    req->set_first_sequence(first_sequence);
    return req;
  }

  // Takes the next batch off pending_: at most batch_messages_ messages and
  // batch_bytes_ bytes, the queue's bounds included, but never none (a message
  // too large for the queue goes alone and fails by itself).
  std::shared_ptr<const v1::ProduceRequest> TakeBatchLocked(std::vector<Confirm>* confirms) {
    auto req = NewRequestLocked(next_sequence_);
    size_t bytes = 0;
    while (!pending_.empty() && confirms->size() < batch_messages_) {
      Pending& p = pending_.front();
      if (!confirms->empty() && bytes + p.bytes > batch_bytes_) break;
      bytes += p.bytes;
      v1::PutMessage* m = req->add_messages();
      m->set_payload(std::move(p.message.payload));
      // Empty fields left unset: setting one allocates a string, per message.
      if (!p.message.headers.empty()) {
        m->mutable_headers()->insert(p.message.headers.begin(), p.message.headers.end());
      }
      if (!p.message.dedup_id.empty()) m->set_dedup_id(std::move(p.message.dedup_id));
      detail::ScheduleToProto(p.message, m);
      confirms->push_back(std::move(p.confirm));
      pending_.pop_front();
    }
    next_sequence_ += confirms->size();
    pending_bytes_ -= bytes;
    if (!pending_.empty()) oldest_ = Clock::now();
    return req;
  }

  // Takes the next batch and writes it, with `lock` (on mu_) released during
  // the write and held again on return; `writing_` keeps every other writer
  // off the stream meanwhile. writing_ is cleared and the receiver notified
  // under the lock: once writing_ is false the destructor may proceed, and a
  // caller of send() must not touch the producer after that.
  void WriteBatch(std::unique_lock<std::mutex>& lock) {
    std::vector<Confirm> confirms;
    std::shared_ptr<const v1::ProduceRequest> req = TakeBatchLocked(&confirms);
    in_flight_.push_back({req, std::move(confirms)});
    writing_ = true;
    Stream* stream = stream_.get();
    lock.unlock();
    room_cv_.notify_all();  // room for senders
    stream->Write(*req);    // a failure shows as the end of the stream to the receiver
    lock.lock();
    writing_ = false;
    write_cv_.notify_all();
  }

  // Send()'s write of a lone message; the sender then sends what arrived
  // during it, if anything did.
  void WriteOnCallerLocked(std::unique_lock<std::mutex> lock) {
    WriteBatch(lock);
    if (!pending_.empty()) send_cv_.notify_one();
  }

  void SendLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (aborting_ || failure_) return;
      const bool can_send = !broken_ && !writing_ && in_flight_.size() < max_in_flight_;
      if (can_send && BatchReadyLocked()) {
        WriteBatch(lock);
      } else if (!can_send || pending_.empty()) {
        send_cv_.wait(lock);
      } else {
        send_cv_.wait_until(lock, oldest_ + options_.linger);
      }
    }
  }

  void ReceiveLoop() {
    t_receiving_for = this;
    Clock::time_point broken_since{};
    auto backoff = kFirstBackoff;
    bool learn = true;
    while (Open(learn)) {
      learn = false;
      if (ReadConfirms()) {
        broken_since = {};
        backoff = kFirstBackoff;
      }
      const grpc::Status status = EndStream();
      {
        std::lock_guard lock(mu_);
        if (aborting_) break;
      }
      const std::exception_ptr error = StreamError(status, *ctx_);
      if (Permanent(error)) return FailAll(error, true);
      if (Retryable(status, *ctx_)) {
        const auto now = Clock::now();
        if (broken_since == Clock::time_point{}) broken_since = now;
        if (now - broken_since < options_.reconnect_for) {
          if (!Pause(&backoff)) break;
          continue;
        }
        // Out of time: what is unconfirmed fails, and the next send() starts
        // a new round (rather than reconnecting with nothing to send).
        FailAll(error, false);
        broken_since = {};
        backoff = kFirstBackoff;
        if (!AwaitWork()) break;
        continue;
      }
      // A refusal answers the first unconfirmed batch. A batch the queue can
      // never hold (its bounds changed, or were unknown) is cut to the bounds
      // and resent; any other refusal fails that batch alone.
      if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && LearnLimits() &&
          SplitInFlight()) {
        continue;
      }
      FailHead(error);
      if (!Pause(&backoff)) break;
    }
    FailAll(Destroyed(), false);
  }

  // Opens a stream and resends every unconfirmed batch on it, in order, with
  // the same sequence numbers (the broker answers what it already holds with
  // the original ids). False once the producer is being destroyed.
  bool Open(bool learn) {
    if (learn) LearnLimits();
    {
      std::lock_guard lock(mu_);
      if (aborting_) return false;
      stream_.reset();  // before the context it uses
      ctx_ = std::make_unique<grpc::ClientContext>();
      conn_->Authorize(ctx_.get());
    }
    // From here the destructor may cancel ctx_, even before the call starts.
    std::unique_ptr<Stream> stream = conn_->stub().Produce(ctx_.get());
    std::vector<std::shared_ptr<const v1::ProduceRequest>> resend;
    {
      std::lock_guard lock(mu_);
      stream_ = std::move(stream);
      resend.reserve(in_flight_.size());
      for (const InFlight& b : in_flight_) resend.push_back(b.req);
    }
    // broken_ keeps the sender off the stream meanwhile.
    for (const auto& req : resend) {
      if (!stream_->Write(*req)) break;  // shows as the end of the new stream
    }
    {
      std::lock_guard lock(mu_);
      broken_ = false;
    }
    send_cv_.notify_one();
    return true;
  }

  // Reads confirms until the stream ends; true if any came.
  bool ReadConfirms() {
    bool any = false;
    v1::ProduceResponse resp;
    while (stream_->Read(&resp)) {
      InFlight batch;
      bool slot_freed = false;
      {
        std::lock_guard lock(mu_);
        if (in_flight_.empty()) {  // a confirm of nothing: end this stream
          ctx_->TryCancel();
          continue;
        }
        // The sender waits for a slot only when every one was taken; waking
        // it for each confirm would cost two context switches a batch.
        slot_freed = in_flight_.size() >= max_in_flight_;
        batch = std::move(in_flight_.front());
        in_flight_.pop_front();
      }
      any = true;
      if (slot_freed) send_cv_.notify_one();
      const size_t answered = static_cast<size_t>(resp.results_size());
      for (size_t i = 0; i < batch.confirms.size(); ++i) {
        if (i >= answered) {
          Resolve(batch.confirms[i], 0,
                  std::make_exception_ptr(
                      Error(kInternal, "", "the broker's confirm has no result for this message")));
          continue;
        }
        const v1::PutResult& r = resp.results(static_cast<int>(i));
        if (r.error_reason().empty()) {
          Resolve(batch.confirms[i], r.message_id(), nullptr);
        } else {
          Resolve(batch.confirms[i], 0, ErrorFor(r.error_reason(), r.error_message()));
        }
      }
      Resolved(batch.confirms.size());
    }
    return any;
  }

  // The stream ended: keeps the sender off it, then learns why.
  grpc::Status EndStream() {
    {
      std::unique_lock lock(mu_);
      broken_ = true;
      write_cv_.wait(lock, [&] { return !writing_; });
    }
    return stream_->Finish();
  }

  // Reads the queue's max_size and max_bytes and bounds batches by them; true
  // if they were read. An error leaves the bounds as they were (a missing
  // queue is the stream's to report).
  bool LearnLimits() {
    grpc::ClientContext ctx;
    conn_->Authorize(&ctx);
    SetCallDeadline(&ctx, std::chrono::milliseconds(0));
    {
      std::lock_guard lock(mu_);
      if (aborting_) return false;
      unary_ctx_ = &ctx;
    }
    v1::GetQueueRequest req;
    req.set_name(queue_);
    v1::GetQueueResponse resp;
    const grpc::Status status = conn_->stub().GetQueue(&ctx, req, &resp);
    std::lock_guard lock(mu_);
    unary_ctx_ = nullptr;
    if (!status.ok()) return false;
    const uint64_t max_size = resp.queue().max_size();
    const uint64_t max_bytes = resp.queue().options().max_bytes();
    batch_messages_ = max_pending_;
    if (max_size != 0) batch_messages_ = std::min<uint64_t>(batch_messages_, max_size);
    batch_bytes_ = std::max<size_t>(1, options_.max_batch_bytes);
    if (max_bytes != 0) batch_bytes_ = std::min<uint64_t>(batch_bytes_, max_bytes);
    return true;
  }

  // Cuts every unconfirmed batch larger than the bounds into batches within
  // them, numbered as before; true if the first one was cut.
  bool SplitInFlight() {
    std::lock_guard lock(mu_);
    std::deque<InFlight> out;
    bool head_split = false;
    for (InFlight& b : in_flight_) {
      const int n = b.req->messages_size();
      size_t total = 0;
      for (const v1::PutMessage& m : b.req->messages()) {
        total += MessageBytes(m.payload(), m.headers());
      }
      if (static_cast<size_t>(n) <= batch_messages_ && (n <= 1 || total <= batch_bytes_)) {
        out.push_back(std::move(b));
        continue;
      }
      if (out.empty()) head_split = true;
      for (int i = 0; i < n;) {
        auto req = NewRequestLocked(b.req->first_sequence() + static_cast<uint64_t>(i));
        std::vector<Confirm> confirms;
        size_t bytes = 0;
        while (i < n && confirms.size() < batch_messages_) {
          const v1::PutMessage& m = b.req->messages(i);
          const size_t one = MessageBytes(m.payload(), m.headers());
          if (!confirms.empty() && bytes + one > batch_bytes_) break;
          bytes += one;
          *req->add_messages() = m;
          confirms.push_back(std::move(b.confirms[static_cast<size_t>(i)]));
          ++i;
        }
        out.push_back({std::move(req), std::move(confirms)});
      }
    }
    in_flight_.swap(out);
    return head_split;
  }

  // Fails the first unconfirmed batch, the one a refusal answered.
  void FailHead(const std::exception_ptr& error) {
    InFlight batch;
    {
      std::lock_guard lock(mu_);
      if (in_flight_.empty()) return;
      batch = std::move(in_flight_.front());
      in_flight_.pop_front();
    }
    send_cv_.notify_one();
    for (Confirm& c : batch.confirms) Resolve(c, 0, error);
    Resolved(batch.confirms.size());
  }

  // Fails every unconfirmed message; a permanent error fails later sends too.
  void FailAll(const std::exception_ptr& error, bool permanent) {
    std::deque<InFlight> lost;
    std::deque<Pending> unsent;
    {
      std::lock_guard lock(mu_);
      if (permanent) failure_ = error;
      lost.swap(in_flight_);
      unsent.swap(pending_);
      pending_bytes_ = 0;
    }
    send_cv_.notify_all();
    room_cv_.notify_all();
    size_t n = unsent.size();
    for (InFlight& b : lost) {
      for (Confirm& c : b.confirms) Resolve(c, 0, error);
      n += b.confirms.size();
    }
    for (Pending& p : unsent) Resolve(p.confirm, 0, error);
    Resolved(n);
  }

  // `n` more messages, the oldest unresolved ones, are resolved.
  void Resolved(size_t n) {
    {
      std::lock_guard lock(mu_);
      resolved_ += n;
    }
    room_cv_.notify_all();
  }

  // Waits `backoff` (doubling it for next time) unless the producer is being
  // destroyed; false if it is.
  bool Pause(std::chrono::milliseconds* backoff) {
    std::unique_lock lock(mu_);
    recv_cv_.wait_for(lock, *backoff, [&] { return aborting_; });
    *backoff = std::min(*backoff * 2, kMaxBackoff);
    return !aborting_;
  }

  // Waits for a message to send; false if the producer is being destroyed.
  bool AwaitWork() {
    std::unique_lock lock(mu_);
    receiver_idle_ = true;
    recv_cv_.wait(lock, [&] { return aborting_ || !pending_.empty(); });
    receiver_idle_ = false;
    return !aborting_;
  }

  const ProducerOptions options_;
  const std::string queue_;
  const std::string producer_id_;
  const std::shared_ptr<Connection> conn_;
  const size_t max_pending_;
  const size_t max_in_flight_;

  std::mutex mu_;
  std::condition_variable send_cv_;   // the sender: a batch may be ready
  std::condition_variable room_cv_;   // send(), flush(), ~Producer: room, confirms
  std::condition_variable write_cv_;  // the receiver: a write ended
  std::condition_variable recv_cv_;   // the receiver: work to do, or destruction
  // Replaced only by the receiver, while broken_ keeps the sender off them.
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<Stream> stream_;
  grpc::ClientContext* unary_ctx_ = nullptr;  // the receiver's GetQueue in progress
  size_t batch_messages_;                     // bounds of a batch, the queue's included
  size_t batch_bytes_;
  std::deque<Pending> pending_;
  size_t pending_bytes_ = 0;
  Clock::time_point oldest_;
  std::deque<InFlight> in_flight_;
  uint64_t accepted_ = 0;    // messages send() took, ever
  uint64_t resolved_ = 0;    // of those, resolved (in order), callbacks returned
  uint64_t flush_upto_ = 0;  // send messages up to this number without lingering
  uint64_t batch_id_ = 0;
  uint64_t next_sequence_ = 1;
  bool closing_ = false;   // the destructor waits for the last confirms
  bool aborting_ = false;  // the destructor stops everything
  bool broken_ = true;     // no stream to write to: the receiver is (re)opening one; keeps
                           // the sender and Send()'s own write off the stream
  bool writing_ = false;   // a Write (the sender's or Send()'s) is in progress
  bool receiver_idle_ = false;
  std::exception_ptr failure_;  // permanent: the queue is gone or closed

  std::thread sender_;
  std::thread receiver_;
};

}  // namespace detail

Producer::Producer(const Client& client, std::string queue, ProducerOptions options)
    : impl_(std::make_unique<detail::ProducerImpl>(client.conn_, std::move(queue), options)) {}
Producer::~Producer() = default;
std::future<uint64_t> Producer::send(OutgoingMessage message) {
  std::promise<uint64_t> promise;
  std::future<uint64_t> future = promise.get_future();
  impl_->Send(std::move(message), std::move(promise));
  return future;
}
void Producer::send(OutgoingMessage message, ConfirmCallback on_confirm) {
  impl_->Send(std::move(message), std::move(on_confirm));
}
void Producer::flush() { impl_->Flush(); }

}  // namespace basin
