// One Produce stream, a sender thread that batches, a receiver thread that
// matches confirms to promises (the broker answers batches in order).
#include "basin/producer.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
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

}  // namespace

class ProducerImpl {
 public:
  ProducerImpl(std::shared_ptr<Connection> conn, std::string queue, ProducerOptions options)
      : options_(options), queue_(std::move(queue)), conn_(std::move(conn)) {
    stream_ = conn_->stub().Produce(&ctx_);
    sender_ = std::thread([this] { SendLoop(); });
    receiver_ = std::thread([this] { ReceiveLoop(); });
  }

  ~ProducerImpl() {
    Flush();
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    sender_.join();
    receiver_.join();
  }

  std::future<uint64_t> Send(OutgoingMessage message) {
    std::promise<uint64_t> promise;
    std::future<uint64_t> future = promise.get_future();
    std::unique_lock lock(mu_);
    // Bounded: at most one batch waits behind the ones in flight.
    cv_.wait(lock, [&] { return failure_ || pending_.size() < options_.max_batch_messages; });
    if (failure_) {
      promise.set_exception(failure_);
      return future;
    }
    if (pending_.empty()) oldest_ = std::chrono::steady_clock::now();
    pending_bytes_ += message.payload.size();
    pending_.push_back({std::move(message), std::move(promise)});
    ++unconfirmed_;
    lock.unlock();
    cv_.notify_all();
    return future;
  }

  void Flush() {
    std::unique_lock lock(mu_);
    flush_requested_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return unconfirmed_ == 0; });
    flush_requested_ = false;
  }

 private:
  struct Pending {
    OutgoingMessage message;
    std::promise<uint64_t> promise;
  };
  using Batch = std::vector<std::promise<uint64_t>>;

  bool BatchReadyLocked() const {
    if (pending_.empty()) return false;
    return closing_ || flush_requested_ || pending_.size() >= options_.max_batch_messages ||
           pending_bytes_ >= options_.max_batch_bytes ||
           std::chrono::steady_clock::now() - oldest_ >= options_.linger;
  }

  void SendLoop() {
    uint64_t batch_id = 0;
    for (;;) {
      v1::ProduceRequest req;
      Batch promises;
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (failure_ || (closing_ && pending_.empty())) {
            lock.unlock();
            stream_->WritesDone();
            return;
          }
          if (BatchReadyLocked() && in_flight_.size() < options_.max_in_flight_batches) break;
          if (pending_.empty() || in_flight_.size() >= options_.max_in_flight_batches) {
            cv_.wait(lock);
          } else {
            cv_.wait_until(lock, oldest_ + options_.linger);
          }
        }
        if (batch_id == 0) req.set_queue(queue_);
        req.set_batch_id(++batch_id);
        size_t bytes = 0;
        while (!pending_.empty() && promises.size() < options_.max_batch_messages &&
               bytes < options_.max_batch_bytes) {
          Pending& p = pending_.front();
          bytes += p.message.payload.size();
          v1::PutMessage* m = req.add_messages();
          m->set_payload(std::move(p.message.payload));
          m->mutable_headers()->insert(p.message.headers.begin(), p.message.headers.end());
          m->set_dedup_id(std::move(p.message.dedup_id));
          promises.push_back(std::move(p.promise));
          pending_.pop_front();
        }
        pending_bytes_ -= std::min(pending_bytes_, bytes);
        if (!pending_.empty()) oldest_ = std::chrono::steady_clock::now();
        in_flight_.push_back(std::move(promises));
      }
      cv_.notify_all();                  // room for senders
      if (!stream_->Write(req)) return;  // the receiver sees the stream end
    }
  }

  void ReceiveLoop() {
    v1::ProduceResponse resp;
    while (stream_->Read(&resp)) {
      Batch batch;
      {
        std::lock_guard lock(mu_);
        if (in_flight_.empty()) break;
        batch = std::move(in_flight_.front());
        in_flight_.pop_front();
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        const v1::PutResult& r = resp.results(static_cast<int>(i));
        if (r.error_reason().empty()) {
          batch[i].set_value(r.message_id());
        } else {
          batch[i].set_exception(ErrorFor(r.error_reason(), r.error_message()));
        }
      }
      Confirmed(batch.size());
    }
    // The stream ended: fail whatever was not confirmed.
    const grpc::Status status = stream_->Finish();
    std::exception_ptr failure;
    try {
      if (status.ok()) throw Unavailable(14, "", "Produce stream closed");
      Throw(status, ctx_);
    } catch (...) {
      failure = std::current_exception();
    }
    std::deque<Batch> lost;
    std::deque<Pending> unsent;
    {
      std::lock_guard lock(mu_);
      failure_ = failure;
      lost.swap(in_flight_);
      unsent.swap(pending_);
    }
    size_t n = 0;
    for (Batch& b : lost) {
      for (auto& p : b) p.set_exception(failure);
      n += b.size();
    }
    for (Pending& p : unsent) p.promise.set_exception(failure);
    Confirmed(n + unsent.size());
    cv_.notify_all();
  }

  void Confirmed(size_t n) {
    {
      std::lock_guard lock(mu_);
      unconfirmed_ -= std::min(unconfirmed_, n);
    }
    cv_.notify_all();
  }

  const ProducerOptions options_;
  const std::string queue_;
  const std::shared_ptr<Connection> conn_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ProduceRequest, v1::ProduceResponse>> stream_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  size_t pending_bytes_ = 0;
  std::chrono::steady_clock::time_point oldest_;
  std::deque<Batch> in_flight_;
  size_t unconfirmed_ = 0;
  bool flush_requested_ = false;
  bool closing_ = false;
  std::exception_ptr failure_;

  std::thread sender_;
  std::thread receiver_;
};

}  // namespace detail

Producer::Producer(const Client& client, std::string queue, ProducerOptions options)
    : impl_(std::make_unique<detail::ProducerImpl>(client.conn_, std::move(queue), options)) {}
Producer::~Producer() = default;
std::future<uint64_t> Producer::send(OutgoingMessage message) {
  return impl_->Send(std::move(message));
}
void Producer::flush() { impl_->Flush(); }

}  // namespace basin
