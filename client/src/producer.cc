// One Produce stream at a time, a sender thread that batches, and a receiver
// thread that matches confirms to batches (the broker answers in order) and,
// when the stream breaks, opens the next one and resends what was unconfirmed.
#include "basin/producer.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <variant>
#include <vector>

#include "connection.h"

namespace basin {
namespace detail {

namespace {

// Per-message errors are validation failures (INVALID_ARGUMENT).
std::exception_ptr ErrorFor(const std::string& reason, const std::string& message) {
  constexpr int kInvalidArgument = 3;
  if (reason == "MESSAGE_TOO_LARGE") {
    return std::make_exception_ptr(MessageTooLarge(kInvalidArgument, reason, message));
  }
  return std::make_exception_ptr(InvalidArgument(kInvalidArgument, reason, message));
}

std::string RandomProducerId() {
  std::random_device rd;
  std::string id(16, '0');
  for (char& c : id) c = "0123456789abcdef"[rd() % 16];
  return id;
}

using Confirm = std::variant<std::promise<uint64_t>, ConfirmCallback>;

void Resolve(Confirm& c, uint64_t id, const std::exception_ptr& error) {
  if (auto* promise = std::get_if<std::promise<uint64_t>>(&c)) {
    if (error) {
      promise->set_exception(error);
    } else {
      promise->set_value(id);
    }
  } else if (auto& cb = std::get<ConfirmCallback>(c)) {
    cb(id, error);
  }
}

}  // namespace

class ProducerImpl {
 public:
  ProducerImpl(std::shared_ptr<Connection> conn, std::string queue, ProducerOptions options)
      : options_(options),
        queue_(std::move(queue)),
        producer_id_(RandomProducerId()),
        conn_(std::move(conn)) {
    OpenStream();
    sender_ = std::thread([this] { SendLoop(); });
    receiver_ = std::thread([this] { ReceiveLoop(); });
  }

  ~ProducerImpl() {
    Flush();
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    send_cv_.notify_all();
    sender_.join();
    receiver_.join();
  }

  void Send(OutgoingMessage message, Confirm confirm) {
    std::unique_lock lock(mu_);
    // Bounded: at most one batch waits behind the ones in flight.
    room_cv_.wait(lock, [&] { return failure_ || pending_.size() < options_.max_batch_messages; });
    if (failure_) {
      lock.unlock();
      Resolve(confirm, 0, failure_);
      return;
    }
    const bool first = pending_.empty();
    if (first) oldest_ = std::chrono::steady_clock::now();
    pending_bytes_ += message.payload.size();
    pending_.push_back({std::move(message), std::move(confirm)});
    ++unconfirmed_;
    // The sender needs a nudge only to start the linger clock or to send a
    // full batch; waking it for every message would cost a syscall each.
    const bool wake = first || pending_.size() >= options_.max_batch_messages ||
                      pending_bytes_ >= options_.max_batch_bytes;
    lock.unlock();
    if (wake) send_cv_.notify_one();
  }

  void Flush() {
    std::unique_lock lock(mu_);
    flush_requested_ = true;
    send_cv_.notify_one();
    room_cv_.wait(lock, [&] { return unconfirmed_ == 0; });
    flush_requested_ = false;
  }

 private:
  struct Pending {
    OutgoingMessage message;
    Confirm confirm;
  };
  // A batch sent and not yet confirmed, kept as sent for a resend.
  struct InFlight {
    std::shared_ptr<const v1::ProduceRequest> req;
    std::vector<Confirm> confirms;
  };
  using Stream = grpc::ClientReaderWriter<v1::ProduceRequest, v1::ProduceResponse>;

  void OpenStream() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    stream_ = conn_->stub().Produce(ctx_.get());
  }

  bool BatchReadyLocked() const {
    if (pending_.empty()) return false;
    return closing_ || flush_requested_ || pending_.size() >= options_.max_batch_messages ||
           pending_bytes_ >= options_.max_batch_bytes ||
           std::chrono::steady_clock::now() - oldest_ >= options_.linger;
  }

  // Takes the next batch off pending_ into a request that names the queue
  // and the producer (the broker needs them in a stream's first request; they
  // are cheap, so every request carries them and any may open a stream).
  std::shared_ptr<const v1::ProduceRequest> TakeBatchLocked(std::vector<Confirm>* confirms) {
    auto req = std::make_shared<v1::ProduceRequest>();
    req->set_queue(queue_);
    req->set_batch_id(++batch_id_);
    req->set_producer_id(producer_id_);
    req->set_first_sequence(next_sequence_);
    size_t bytes = 0;
    while (!pending_.empty() && confirms->size() < options_.max_batch_messages &&
           bytes < options_.max_batch_bytes) {
      Pending& p = pending_.front();
      bytes += p.message.payload.size();
      v1::PutMessage* m = req->add_messages();
      m->set_payload(std::move(p.message.payload));
      m->mutable_headers()->insert(p.message.headers.begin(), p.message.headers.end());
      m->set_dedup_id(std::move(p.message.dedup_id));
      confirms->push_back(std::move(p.confirm));
      pending_.pop_front();
    }
    next_sequence_ += confirms->size();
    pending_bytes_ -= std::min(pending_bytes_, bytes);
    if (!pending_.empty()) oldest_ = std::chrono::steady_clock::now();
    return req;
  }

  void SendLoop() {
    for (;;) {
      std::shared_ptr<const v1::ProduceRequest> req;
      Stream* stream = nullptr;
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (failure_ || (closing_ && pending_.empty() && in_flight_.empty())) {
            if (!broken_) {
              writing_ = true;
              lock.unlock();
              stream_->WritesDone();
              lock.lock();
              writing_ = false;
              writes_done_ = true;
              write_cv_.notify_all();
            }
            return;
          }
          const bool can_send = !broken_ && in_flight_.size() < options_.max_in_flight_batches;
          if (can_send && BatchReadyLocked()) break;
          if (!can_send || pending_.empty()) {
            send_cv_.wait(lock);
          } else {
            send_cv_.wait_until(lock, oldest_ + options_.linger);
          }
        }
        std::vector<Confirm> confirms;
        req = TakeBatchLocked(&confirms);
        in_flight_.push_back({req, std::move(confirms)});
        writing_ = true;
        stream = stream_.get();
      }
      room_cv_.notify_all();  // room for senders
      stream->Write(*req);    // a failure shows as the end of the stream to the receiver
      {
        std::lock_guard lock(mu_);
        writing_ = false;
      }
      write_cv_.notify_all();
    }
  }

  void ReceiveLoop() {
    std::chrono::steady_clock::time_point broken_since{};
    auto backoff = std::chrono::milliseconds(20);
    for (;;) {
      v1::ProduceResponse resp;
      while (stream_->Read(&resp)) {
        broken_since = {};
        backoff = std::chrono::milliseconds(20);
        InFlight batch;
        {
          std::lock_guard lock(mu_);
          if (in_flight_.empty()) break;
          batch = std::move(in_flight_.front());
          in_flight_.pop_front();
        }
        send_cv_.notify_one();  // a slot for the next batch
        for (size_t i = 0; i < batch.confirms.size(); ++i) {
          const v1::PutResult& r = resp.results(static_cast<int>(i));
          if (r.error_reason().empty()) {
            Resolve(batch.confirms[i], r.message_id(), nullptr);
          } else {
            Resolve(batch.confirms[i], 0, ErrorFor(r.error_reason(), r.error_message()));
          }
        }
        Confirmed(batch.confirms.size());
      }
      // The stream ended. Stop the sender writing to it, then learn why.
      {
        std::unique_lock lock(mu_);
        broken_ = true;
        write_cv_.wait(lock, [&] { return !writing_; });
      }
      const grpc::Status status = stream_->Finish();
      bool done = false;
      {
        std::lock_guard lock(mu_);
        done = writes_done_ && in_flight_.empty();
      }
      if (done) return;
      const bool retryable = status.error_code() == grpc::StatusCode::UNAVAILABLE;
      const auto now = std::chrono::steady_clock::now();
      if (broken_since == std::chrono::steady_clock::time_point{}) broken_since = now;
      if (!retryable || options_.reconnect_for.count() == 0 ||
          now - broken_since >= options_.reconnect_for) {
        return FailAll(status);
      }
      std::this_thread::sleep_for(backoff);  // the broker is away: do not spin
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      Reopen();
    }
  }

  // A new stream, and every unconfirmed batch resent on it in order (same
  // sequence numbers, so the broker answers duplicates with their ids).
  void Reopen() {
    std::vector<std::shared_ptr<const v1::ProduceRequest>> resend;
    {
      std::lock_guard lock(mu_);
      OpenStream();
      for (const InFlight& b : in_flight_) resend.push_back(b.req);
      writing_ = true;
    }
    for (const auto& req : resend) {
      if (!stream_->Write(*req)) break;  // shows as the end of the new stream
    }
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      broken_ = false;
    }
    send_cv_.notify_one();
  }

  void FailAll(const grpc::Status& status) {
    std::exception_ptr failure;
    try {
      if (status.ok()) throw Unavailable(14, "", "Produce stream closed");
      Throw(status, *ctx_);
    } catch (...) {
      failure = std::current_exception();
    }
    std::deque<InFlight> lost;
    std::deque<Pending> unsent;
    {
      std::lock_guard lock(mu_);
      failure_ = failure;
      lost.swap(in_flight_);
      unsent.swap(pending_);
    }
    send_cv_.notify_all();
    size_t n = 0;
    for (InFlight& b : lost) {
      for (auto& c : b.confirms) Resolve(c, 0, failure);
      n += b.confirms.size();
    }
    for (Pending& p : unsent) Resolve(p.confirm, 0, failure);
    Confirmed(n + unsent.size());
  }

  void Confirmed(size_t n) {
    {
      std::lock_guard lock(mu_);
      unconfirmed_ -= std::min(unconfirmed_, n);
    }
    room_cv_.notify_all();
  }

  const ProducerOptions options_;
  const std::string queue_;
  const std::string producer_id_;
  const std::shared_ptr<Connection> conn_;

  std::mutex mu_;
  std::condition_variable send_cv_;   // the sender: a batch may be ready
  std::condition_variable room_cv_;   // send() and flush(): room, confirms
  std::condition_variable write_cv_;  // the receiver: the sender's write ended
  // Replaced only by the receiver, while broken_ keeps the sender off it.
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<Stream> stream_;
  std::deque<Pending> pending_;
  size_t pending_bytes_ = 0;
  std::chrono::steady_clock::time_point oldest_;
  std::deque<InFlight> in_flight_;
  size_t unconfirmed_ = 0;
  uint64_t batch_id_ = 0;
  uint64_t next_sequence_ = 1;
  bool flush_requested_ = false;
  bool closing_ = false;
  bool broken_ = false;   // the stream ended; the receiver is reconnecting
  bool writing_ = false;  // a Write or WritesDone is in progress
  bool writes_done_ = false;
  std::exception_ptr failure_;

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
