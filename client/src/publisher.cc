// One PublishStream at a time and two threads, as in producer.cc: the sender
// batches queued messages and writes them; the receiver opens the stream when
// there is work, matches confirms to batches (the broker answers in order),
// and when the stream ends counts what was unconfirmed as lost. Nothing is
// resent: publishing is at most once. One mutex, mu_, guards the shared state;
// it is never held across a gRPC call that waits for the broker.
#include "basin/publisher.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "connection.h"

namespace basin::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kUnavailable = 14;
constexpr size_t kMaxFailuresKept = 1'000;  // per summary (publisher.h)

// A message's bytes in a request: topic, payload and headers, with their
// protobuf framing (tags and lengths), so that a batch of max_batch_bytes
// stays within the broker's receive limit (--max-message-bytes + 64 KiB).
size_t MessageBytes(const std::string& topic, const std::string& payload, const Headers& headers) {
  size_t n = topic.size() + payload.size() + 16;
  for (const auto& [key, value] : headers) n += key.size() + value.size() + 12;
  return n;
}

}  // namespace

class PublisherImpl {
 public:
  PublisherImpl(std::shared_ptr<Connection> conn, PublisherOptions options)
      : options_(options),
        conn_(std::move(conn)),
        batch_messages_(std::clamp<size_t>(options.max_batch_messages, 1, kMaxBatchMessages)),
        batch_bytes_(std::max<size_t>(1, options.max_batch_bytes)),
        max_in_flight_(std::max<size_t>(1, options.max_in_flight_batches)) {
    sender_ = std::thread([this] { SendLoop(); });
    receiver_ = std::thread([this] { ReceiveLoop(); });
  }

  ~PublisherImpl() {
    {
      std::unique_lock lock(mu_);
      closing_ = true;  // no more lingering
      send_cv_.notify_one();
      room_cv_.wait_until(lock, Clock::now() + options_.close_timeout,
                          [&] { return resolved_ >= accepted_; });
      aborting_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    send_cv_.notify_all();
    room_cv_.notify_all();
    recv_cv_.notify_all();
    sender_.join();
    receiver_.join();
  }

  void Publish(std::string topic, std::string payload, Headers headers) {
    const size_t bytes = MessageBytes(topic, payload, headers);
    std::unique_lock lock(mu_);
    // Bounded: at most one batch (by count, and by bytes plus one message)
    // waits behind the ones in flight. The message that fills a batch wakes the
    // sender below, so a full batch never waits for the linger.
    room_cv_.wait(lock, [&] {
      return aborting_ || (pending_.size() < batch_messages_ && pending_bytes_ < batch_bytes_);
    });
    if (aborting_) return;
    const bool first = pending_.empty();
    if (first) oldest_ = Clock::now();
    pending_bytes_ += bytes;
    pending_.push_back({std::move(topic), std::move(payload), std::move(headers), bytes});
    ++accepted_;
    const bool wake = first || pending_.size() >= batch_messages_ || pending_bytes_ >= batch_bytes_;
    const bool wake_receiver = first && receiver_idle_;
    lock.unlock();
    if (wake) send_cv_.notify_one();
    if (wake_receiver) recv_cv_.notify_one();
  }

  PublishSummary Flush() {
    std::unique_lock lock(mu_);
    const uint64_t target = accepted_;
    flush_upto_ = std::max(flush_upto_, target);
    send_cv_.notify_one();
    room_cv_.wait(lock, [&] { return resolved_ >= target; });
    PublishSummary out = std::move(summary_);
    summary_ = {};
    std::exception_ptr error = std::exchange(error_, nullptr);
    if (error) std::rethrow_exception(error);
    return out;
  }

 private:
  struct Pending {
    std::string topic;
    std::string payload;
    Headers headers;
    size_t bytes;
  };
  using Request = v1::PublishStreamRequest;
  using Stream = grpc::ClientReaderWriter<v1::PublishStreamRequest, v1::PublishStreamResponse>;

  bool BatchReadyLocked() const {
    if (pending_.empty()) return false;
    const uint64_t taken = accepted_ - pending_.size();
    return closing_ || taken < flush_upto_ || pending_.size() >= batch_messages_ ||
           pending_bytes_ >= batch_bytes_ || Clock::now() - oldest_ >= options_.linger;
  }

  // The next batch off pending_: within the bounds, but never empty.
  std::shared_ptr<const Request> TakeBatchLocked() {
    auto req = std::make_shared<Request>();
    req->set_batch_id(++batch_id_);
    size_t bytes = 0;
    while (!pending_.empty() && static_cast<size_t>(req->messages_size()) < batch_messages_) {
      Pending& p = pending_.front();
      if (req->messages_size() > 0 && bytes + p.bytes > batch_bytes_) break;
      bytes += p.bytes;
      v1::PublishRequest* m = req->add_messages();
      m->set_topic(std::move(p.topic));
      m->set_payload(std::move(p.payload));
      if (!p.headers.empty()) m->mutable_headers()->insert(p.headers.begin(), p.headers.end());
      pending_.pop_front();
    }
    pending_bytes_ -= bytes;
    if (!pending_.empty()) oldest_ = Clock::now();
    return req;
  }

  void SendLoop() {
    for (;;) {
      std::shared_ptr<const Request> req;
      Stream* stream = nullptr;
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (aborting_) return;
          const bool can_send = !broken_ && in_flight_.size() < max_in_flight_;
          if (can_send && BatchReadyLocked()) break;
          if (!can_send || pending_.empty()) {
            send_cv_.wait(lock);
          } else {
            send_cv_.wait_until(lock, oldest_ + options_.linger);
          }
        }
        req = TakeBatchLocked();
        in_flight_.push_back(req);
        writing_ = true;
        stream = stream_.get();
      }
      room_cv_.notify_all();
      stream->Write(*req);  // a failure shows as the end of the stream to the receiver
      {
        std::lock_guard lock(mu_);
        writing_ = false;
      }
      write_cv_.notify_all();
    }
  }

  void ReceiveLoop() {
    while (AwaitWork()) {
      if (!Open()) break;
      ReadConfirms();
      const grpc::Status status = EndStream();
      {
        std::lock_guard lock(mu_);
        if (aborting_) break;
      }
      std::exception_ptr error;
      try {
        if (status.ok()) {
          throw Unavailable(kUnavailable, "", "the broker ended the PublishStream");
        }
        Throw(status, *ctx_);
      } catch (...) {
        error = std::current_exception();
      }
      LoseAll(error);
    }
    LoseAll(nullptr);
  }

  // Waits for a message to send; false once the publisher is being destroyed.
  bool AwaitWork() {
    std::unique_lock lock(mu_);
    receiver_idle_ = true;
    recv_cv_.wait(lock, [&] { return aborting_ || !pending_.empty(); });
    receiver_idle_ = false;
    return !aborting_;
  }

  // Opens a stream; false once the publisher is being destroyed (a context
  // made after the destructor cancelled the last one would never end).
  bool Open() {
    {
      std::lock_guard lock(mu_);
      if (aborting_) return false;
      stream_.reset();  // before the context it uses
      ctx_ = std::make_unique<grpc::ClientContext>();
      conn_->Authorize(ctx_.get());
    }
    // From here the destructor may cancel ctx_, even before the call starts.
    std::unique_ptr<Stream> stream = conn_->topic_stub().PublishStream(ctx_.get());
    {
      std::lock_guard lock(mu_);
      stream_ = std::move(stream);
      broken_ = false;
    }
    send_cv_.notify_one();
    return true;
  }

  void ReadConfirms() {
    v1::PublishStreamResponse resp;
    while (stream_->Read(&resp)) {
      {
        std::lock_guard lock(mu_);
        if (in_flight_.empty()) {  // a confirm of nothing: end this stream
          ctx_->TryCancel();
          continue;
        }
        const std::shared_ptr<const Request> batch = std::move(in_flight_.front());
        in_flight_.pop_front();
        summary_.confirmed += static_cast<uint64_t>(batch->messages_size());
        summary_.receivers += resp.receivers();
        summary_.queues += resp.queues();
        summary_.failed += resp.failed();
        summary_.failures_unlisted += resp.failures_omitted();
        for (const v1::PublishFailure& f : resp.failures()) {
          if (summary_.failures.size() >= kMaxFailuresKept) {
            ++summary_.failures_unlisted;
            continue;
          }
          const int i = static_cast<int>(f.index());
          summary_.failures.push_back(
              {i < batch->messages_size() ? batch->messages(i).topic() : std::string(),
               f.error_reason(),
               f.error_message(),
               {f.undelivered_queues().begin(), f.undelivered_queues().end()}});
        }
        resolved_ += static_cast<uint64_t>(batch->messages_size());
      }
      send_cv_.notify_one();  // a slot for the next batch
      room_cv_.notify_all();
    }
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

  // Counts every unconfirmed message, sent or not, as lost with `error` (the
  // next flush throws it; null: the publisher is being destroyed).
  void LoseAll(const std::exception_ptr& error) {
    {
      std::lock_guard lock(mu_);
      uint64_t n = pending_.size();
      for (const auto& b : in_flight_) n += static_cast<uint64_t>(b->messages_size());
      in_flight_.clear();
      pending_.clear();
      pending_bytes_ = 0;
      summary_.failed += n;
      resolved_ += n;
      if (error && !error_ && n > 0) error_ = error;
    }
    send_cv_.notify_all();
    room_cv_.notify_all();
  }

  const PublisherOptions options_;
  const std::shared_ptr<Connection> conn_;
  const size_t batch_messages_;
  const size_t batch_bytes_;
  const size_t max_in_flight_;

  std::mutex mu_;
  std::condition_variable send_cv_;   // the sender: a batch may be ready
  std::condition_variable room_cv_;   // publish(), flush(), the destructor: room, confirms
  std::condition_variable write_cv_;  // the receiver: the sender's write ended
  std::condition_variable recv_cv_;   // the receiver: work to do, or destruction
  // Replaced only by the receiver, while broken_ keeps the sender off them.
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<Stream> stream_;
  std::deque<Pending> pending_;
  size_t pending_bytes_ = 0;
  Clock::time_point oldest_;
  std::deque<std::shared_ptr<const Request>> in_flight_;
  uint64_t accepted_ = 0;    // messages publish() took, ever
  uint64_t resolved_ = 0;    // of those, confirmed or lost (in order)
  uint64_t flush_upto_ = 0;  // send messages up to this number without lingering
  uint64_t batch_id_ = 0;
  PublishSummary summary_;    // since the last flush
  std::exception_ptr error_;  // the first stream error since the last flush
  bool closing_ = false;
  bool aborting_ = false;
  bool broken_ = true;  // no stream to write to
  bool writing_ = false;
  bool receiver_idle_ = false;

  std::thread sender_;
  std::thread receiver_;
};

}  // namespace basin::detail

namespace basin {

Publisher::Publisher(const Client& client, PublisherOptions options)
    : impl_(std::make_unique<detail::PublisherImpl>(client.conn_, options)) {}
Publisher::~Publisher() = default;
void Publisher::publish(std::string topic, std::string payload, Headers headers) {
  impl_->Publish(std::move(topic), std::move(payload), std::move(headers));
}
PublishSummary Publisher::flush() { return impl_->Flush(); }

}  // namespace basin
