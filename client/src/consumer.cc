// One Consume stream read synchronously by the caller of next().
#include "basin/consumer.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "connection.h"

namespace basin {
namespace detail {

class ConsumerImpl {
 public:
  ConsumerImpl(std::shared_ptr<Connection> conn, std::string queue, ConsumerOptions options)
      : conn_(std::move(conn)), queue_(std::move(queue)), options_(options) {
    std::lock_guard lock(mu_);
    OpenLocked();
  }

  ~ConsumerImpl() {
    if (!finished_) {
      Flush();
      std::lock_guard lock(mu_);
      stream_->WritesDone();
      ctx_->TryCancel();
      v1::ConsumeResponse drain;
      while (stream_->Read(&drain)) {
      }
      stream_->Finish();
    }
  }

  std::optional<Message> Next() {
    std::chrono::steady_clock::time_point broken_since{};
    auto backoff = std::chrono::milliseconds(20);
    while (ready_.empty()) {
      if (finished_) return std::nullopt;
      Flush();  // acks free credit: send them before waiting for more
      v1::ConsumeResponse resp;
      if (!stream_->Read(&resp)) {
        const grpc::Status status = stream_->Finish();
        if (status.ok() || cancelled_.load()) {
          finished_ = true;
          return std::nullopt;
        }
        const auto now = std::chrono::steady_clock::now();
        if (broken_since == std::chrono::steady_clock::time_point{}) broken_since = now;
        if (status.error_code() != grpc::StatusCode::UNAVAILABLE ||
            options_.reconnect_for.count() == 0 || now - broken_since >= options_.reconnect_for) {
          finished_ = true;
          Throw(status, *ctx_);
        }
        std::this_thread::sleep_for(backoff);  // the broker is away: do not spin
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        std::lock_guard lock(mu_);
        OpenLocked();
        ++reconnects_;
        continue;
      }
      broken_since = {};
      expired_ += static_cast<uint64_t>(resp.expired_size());
      const std::string generation = "@" + std::to_string(generation_);
      for (v1::StreamDelivery& d : *resp.mutable_deliveries()) {
        v1::Message* pm = d.mutable_message();
        ready_.push_back(MakeMessage(
            conn_, queue_, pm->message_id(), std::move(*pm->mutable_payload()),
            Headers(pm->headers().begin(), pm->headers().end()), pm->delivery_count(),
            std::to_string(d.delivery_tag()) + generation, std::chrono::milliseconds(0)));
      }
    }
    Message m = std::move(ready_.front());
    ready_.pop_front();
    return m;
  }

  void Ack(const Message& m) {
    std::lock_guard lock(mu_);
    if (auto tag = TagLocked(m)) {
      pending_acks_.push_back(*tag);
      if (pending_acks_.size() >= options_.ack_batch) FlushLocked();
    }
  }

  void Release(const Message& m) { WriteTag(m, &v1::ConsumeRequest::add_releases); }
  void Extend(const Message& m) { WriteTag(m, &v1::ConsumeRequest::add_extends); }

  void Flush() {
    std::lock_guard lock(mu_);
    FlushLocked();
  }

  void Cancel() {
    cancelled_ = true;
    std::lock_guard lock(mu_);
    ctx_->TryCancel();
  }

  uint64_t expired() const { return expired_; }
  uint64_t reconnects() const { return reconnects_; }

 private:
  // A stream and its first request. The previous stream, if any, has ended.
  void OpenLocked() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    stream_ = conn_->stub().Consume(ctx_.get());
    ++generation_;
    pending_acks_.clear();  // they named the old stream's tags
    v1::ConsumeRequest start;
    start.set_queue(queue_);
    start.set_prefetch(options_.prefetch);
    if (options_.ack_timeout.count() > 0) {
      start.mutable_ack_timeout()->set_seconds(options_.ack_timeout.count() / 1000);
      start.mutable_ack_timeout()->set_nanos(
          static_cast<int32_t>(options_.ack_timeout.count() % 1000) * 1'000'000);
    }
    stream_->Write(start);
    if (cancelled_.load()) ctx_->TryCancel();
  }

  // The message's tag on the current stream; none if it came on an earlier
  // one (the broker requeued it when that stream ended).
  // Parsed in place: this runs for every ack.
  std::optional<uint64_t> TagLocked(const Message& m) const {
    const std::string& tag = m.delivery_tag();
    const char* begin = tag.data();
    const char* end = begin + tag.size();
    const char* at = std::find(begin, end, '@');
    uint64_t number = 0, generation = 0;
    if (at == end || std::from_chars(begin, at, number).ptr != at ||
        std::from_chars(at + 1, end, generation).ptr != end || generation != generation_) {
      return std::nullopt;
    }
    return number;
  }

  // Sends one request naming the message's tag (a release or an extension)
  // if the message came on the current stream.
  void WriteTag(const Message& m, void (v1::ConsumeRequest::*add)(uint64_t)) {
    std::lock_guard lock(mu_);
    if (auto tag = TagLocked(m)) {
      v1::ConsumeRequest req;
      (req.*add)(*tag);
      stream_->Write(req);
    }
  }

  void FlushLocked() {
    if (pending_acks_.empty()) return;
    v1::ConsumeRequest req;
    req.mutable_acks()->Assign(pending_acks_.begin(), pending_acks_.end());
    pending_acks_.clear();
    stream_->Write(req);  // a failure shows as the end of the stream in next()
  }

  const std::shared_ptr<Connection> conn_;
  const std::string queue_;
  const ConsumerOptions options_;
  std::deque<Message> ready_;
  std::mutex mu_;  // guards the stream's writes, its replacement and the acks
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ConsumeRequest, v1::ConsumeResponse>> stream_;
  uint64_t generation_ = 0;
  std::vector<uint64_t> pending_acks_;
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
  uint64_t expired_ = 0;
  std::atomic<uint64_t> reconnects_{0};
};

}  // namespace detail

Consumer::Consumer(const Client& client, std::string queue, ConsumerOptions options)
    : impl_(std::make_unique<detail::ConsumerImpl>(client.conn_, std::move(queue), options)) {}
Consumer::~Consumer() = default;
std::optional<Message> Consumer::next() { return impl_->Next(); }
void Consumer::ack(const Message& m) { impl_->Ack(m); }
void Consumer::release(const Message& m) { impl_->Release(m); }

void Consumer::run(const std::function<void(const Message&)>& handler) {
  for (;;) {
    std::optional<Message> m;
    try {
      m = impl_->Next();
    } catch (const Closed&) {
      return;  // the queue closed and every message was handed out
    }
    if (!m) return;  // cancelled
    try {
      handler(*m);
    } catch (...) {
      impl_->Release(*m);
      throw;
    }
    impl_->Ack(*m);
  }
}
void Consumer::extend(const Message& m) { impl_->Extend(m); }
void Consumer::flush() { impl_->Flush(); }
void Consumer::cancel() { impl_->Cancel(); }
uint64_t Consumer::expired() const { return impl_->expired(); }
uint64_t Consumer::reconnects() const { return impl_->reconnects(); }

}  // namespace basin
