// The SDK's pub/sub calls: Publish, the Subscribe stream, bindings.
#include <atomic>

#include "basin/client.h"
#include "connection.h"

namespace basin {
namespace detail {

// Owns one Subscribe stream, read with the synchronous API from whichever
// thread calls next().
class SubscriptionStream {
 public:
  SubscriptionStream(Connection& conn, const v1::SubscribeRequest& req) {
    conn.Authorize(&ctx_);
    reader_ = conn.topic_stub().Subscribe(&ctx_, req);
    if (!reader_->Read(&batch_) || !batch_.has_subscribed()) {
      const grpc::Status status = reader_->Finish();
      if (status.ok()) {
        throw Error(static_cast<int>(grpc::StatusCode::INTERNAL), "",
                    "broker ended the subscription before confirming it");
      }
      Throw(status, ctx_);
    }
  }

  ~SubscriptionStream() {
    if (!finished_) {
      ctx_.TryCancel();
      while (reader_->Read(&batch_)) {
      }
      reader_->Finish();
    }
  }

  std::optional<TopicMessage> Next() {
    while (next_ >= batch_.messages_size()) {
      if (finished_) return std::nullopt;
      if (!reader_->Read(&batch_)) {
        finished_ = true;
        const grpc::Status status = reader_->Finish();
        if (status.ok() || cancelled_.load()) return std::nullopt;
        Throw(status, ctx_);
      }
      next_ = 0;
    }
    v1::TopicMessage* m = batch_.mutable_messages(next_++);
    TopicMessage out;
    out.topic = std::move(*m->mutable_topic());
    out.pattern = std::move(*m->mutable_pattern());
    out.payload = std::move(*m->mutable_payload());
    out.headers.insert(m->headers().begin(), m->headers().end());
    out.dropped_before = m->dropped_before();
    dropped_ += out.dropped_before;
    return out;
  }

  void Cancel() {
    cancelled_ = true;
    ctx_.TryCancel();
  }
  uint64_t dropped() const { return dropped_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::SubscribeResponse>> reader_;
  v1::SubscribeResponse batch_;  // the response being handed out
  int next_ = 0;                 // its next message
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
  uint64_t dropped_ = 0;
};

}  // namespace detail

Subscription::Subscription(std::unique_ptr<detail::SubscriptionStream> stream)
    : stream_(std::move(stream)) {}
Subscription::Subscription(Subscription&&) noexcept = default;
Subscription& Subscription::operator=(Subscription&&) noexcept = default;
Subscription::~Subscription() = default;

std::optional<TopicMessage> Subscription::next() { return stream_->Next(); }
void Subscription::cancel() { stream_->Cancel(); }
uint64_t Subscription::dropped() const { return stream_->dropped(); }

PublishResult Client::publish(const std::string& topic, std::string_view payload,
                              const Headers& headers) const {
  v1::PublishRequest req;
  req.set_topic(topic);
  req.set_payload(payload.data(), payload.size());
  req.mutable_headers()->insert(headers.begin(), headers.end());
  auto resp = detail::CallOn(*conn_, conn_->topic_stub(), &v1::TopicService::Stub::Publish, req);
  return PublishResult{resp.receivers(),
                       resp.queues(),
                       {resp.undelivered_queues().begin(), resp.undelivered_queues().end()}};
}

Subscription Client::subscribe(std::vector<std::string> topics,
                               const SubscribeOptions& options) const {
  v1::SubscribeRequest req;
  req.mutable_topics()->Assign(topics.begin(), topics.end());
  req.mutable_patterns()->Assign(options.patterns.begin(), options.patterns.end());
  req.set_buffer_messages(options.buffer_messages);
  req.set_buffer_bytes(options.buffer_bytes);
  req.set_overflow_policy(options.overflow == SubscribeOptions::Overflow::kDisconnect
                              ? v1::OVERFLOW_POLICY_DISCONNECT
                              : v1::OVERFLOW_POLICY_DROP_OLDEST);
  return Subscription(std::make_unique<detail::SubscriptionStream>(*conn_, req));
}

bool Client::bind_queue(const std::string& topic_pattern, const std::string& queue) const {
  v1::BindQueueRequest req;
  req.set_topic_pattern(topic_pattern);
  req.set_queue(queue);
  return detail::CallOn(*conn_, conn_->topic_stub(), &v1::TopicService::Stub::BindQueue, req)
      .created();
}

void Client::unbind_queue(const std::string& topic_pattern, const std::string& queue) const {
  v1::UnbindQueueRequest req;
  req.set_topic_pattern(topic_pattern);
  req.set_queue(queue);
  detail::CallOn(*conn_, conn_->topic_stub(), &v1::TopicService::Stub::UnbindQueue, req);
}

TopicsInfo Client::list_topics() const {
  auto resp = detail::CallOn(*conn_, conn_->topic_stub(), &v1::TopicService::Stub::ListTopics,
                             v1::ListTopicsRequest());
  TopicsInfo out;
  for (const auto& t : resp.topics()) {
    out.topics.push_back(
        {t.name(), t.subscribers(), t.published(), t.delivered(), t.dropped(), t.routed()});
  }
  for (const auto& b : resp.bindings()) out.bindings.push_back({b.topic_pattern(), b.queue()});
  return out;
}

}  // namespace basin
