// One Consume stream read synchronously by the caller of next().
#include "basin/consumer.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <vector>

#include "connection.h"

namespace basin {
namespace detail {

class ConsumerImpl {
 public:
  ConsumerImpl(std::shared_ptr<Connection> conn, std::string queue, ConsumerOptions options)
      : conn_(std::move(conn)), queue_(std::move(queue)), options_(options) {
    stream_ = conn_->stub().Consume(&ctx_);
    v1::ConsumeRequest start;
    start.set_queue(queue_);
    start.set_prefetch(options.prefetch);
    if (options.ack_timeout.count() > 0) {
      start.mutable_ack_timeout()->set_seconds(options.ack_timeout.count() / 1000);
      start.mutable_ack_timeout()->set_nanos(
          static_cast<int32_t>(options.ack_timeout.count() % 1000) * 1'000'000);
    }
    stream_->Write(start);
  }

  ~ConsumerImpl() {
    if (!finished_) {
      Flush();
      stream_->WritesDone();
      ctx_.TryCancel();
      v1::ConsumeResponse drain;
      while (stream_->Read(&drain)) {
      }
      stream_->Finish();
    }
  }

  std::optional<Message> Next() {
    while (ready_.empty()) {
      if (finished_) return std::nullopt;
      Flush();  // acks free credit: send them before waiting for more
      v1::ConsumeResponse resp;
      if (!stream_->Read(&resp)) {
        finished_ = true;
        const grpc::Status status = stream_->Finish();
        if (status.ok() || cancelled_.load()) return std::nullopt;
        Throw(status, ctx_);
      }
      expired_ += static_cast<uint64_t>(resp.expired_size());
      for (v1::StreamDelivery& d : *resp.mutable_deliveries()) {
        v1::Message* pm = d.mutable_message();
        ready_.push_back(
            MakeMessage(conn_, queue_, pm->message_id(), std::move(*pm->mutable_payload()),
                        Headers(pm->headers().begin(), pm->headers().end()), pm->delivery_count(),
                        std::to_string(d.delivery_tag()), std::chrono::milliseconds(0)));
      }
    }
    Message m = std::move(ready_.front());
    ready_.pop_front();
    return m;
  }

  void Ack(const Message& m) {
    std::lock_guard lock(mu_);
    pending_acks_.push_back(std::stoull(m.delivery_tag()));
    if (pending_acks_.size() >= options_.ack_batch) FlushLocked();
  }

  void Release(const Message& m) {
    std::lock_guard lock(mu_);
    v1::ConsumeRequest req;
    req.add_releases(std::stoull(m.delivery_tag()));
    stream_->Write(req);
  }

  void Flush() {
    std::lock_guard lock(mu_);
    FlushLocked();
  }

  void Cancel() {
    cancelled_ = true;
    ctx_.TryCancel();
  }

  uint64_t expired() const { return expired_; }

 private:
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
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ConsumeRequest, v1::ConsumeResponse>> stream_;
  std::deque<Message> ready_;
  std::mutex mu_;  // guards writes and pending_acks_
  std::vector<uint64_t> pending_acks_;
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
  uint64_t expired_ = 0;
};

}  // namespace detail

Consumer::Consumer(const Client& client, std::string queue, ConsumerOptions options)
    : impl_(std::make_unique<detail::ConsumerImpl>(client.conn_, std::move(queue), options)) {}
Consumer::~Consumer() = default;
std::optional<Message> Consumer::next() { return impl_->Next(); }
void Consumer::ack(const Message& m) { impl_->Ack(m); }
void Consumer::release(const Message& m) { impl_->Release(m); }
void Consumer::flush() { impl_->Flush(); }
void Consumer::cancel() { impl_->Cancel(); }
uint64_t Consumer::expired() const { return impl_->expired(); }

}  // namespace basin
