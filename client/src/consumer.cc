// One Consume stream read synchronously by the caller of next().
//
// The broker numbers deliveries per stream from 1, so two consumers (or two
// streams of one consumer, across a reconnect) hand out the same numbers. The
// tag a Message carries therefore names the consumer and the stream too:
// "<number>@<consumer>.<stream>". An ack through another consumer is refused;
// an ack of an earlier stream's delivery is dropped (the broker requeued it).
#include "basin/consumer.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "connection.h"
#include "outgoing.h"

namespace basin {
namespace detail {

namespace {

// Consumers of this process, numbered from 1, never reused.
std::atomic<uint64_t> g_next_consumer_id{1};

// The broker takes at most this many tags in one list of a request.
constexpr size_t kMaxAcksPerRequest = 10'000;

// At most 20 digits (any uint64_t) at `out`; returns the end.
char* PutNumber(char* out, uint64_t n) { return std::to_chars(out, out + 20, n).ptr; }

std::string MakeTag(uint64_t number, uint64_t consumer, uint64_t stream) {
  char buf[3 * 20 + 2];
  char* p = PutNumber(buf, number);
  *p++ = '@';
  p = PutNumber(p, consumer);
  *p++ = '.';
  p = PutNumber(p, stream);
  return std::string(buf, p);
}

struct ParsedTag {
  uint64_t number = 0;
  uint64_t consumer = 0;
  uint64_t stream = 0;
};

// Parses what MakeTag made; nullopt for anything else (such as a tag from
// Queue::get).
std::optional<ParsedTag> ParseTag(std::string_view tag) {
  const char* p = tag.data();
  const char* const end = p + tag.size();
  // One number, then `sep` (or the end when sep is 0).
  auto field = [&](uint64_t* out, char sep) {
    auto [next, ec] = std::from_chars(p, end, *out);
    if (ec != std::errc()) return false;
    p = next;
    if (sep == 0) return p == end;
    if (p == end || *p != sep) return false;
    ++p;
    return true;
  };
  ParsedTag t;
  if (!field(&t.number, '@') || !field(&t.consumer, '.') || !field(&t.stream, 0)) {
    return std::nullopt;
  }
  return t;
}

[[noreturn]] void ThrowNotMine(const Message& m) {
  std::string what = "basin::Consumer: message ";
  what += std::to_string(m.id());
  what += " of queue '";
  what += m.queue();
  what += "' (delivery tag '";
  what += m.delivery_tag();
  what += "') was not delivered by this Consumer; ack, release or extend it through its own";
  throw std::invalid_argument(what);
}

}  // namespace

class ConsumerImpl {
 public:
  ConsumerImpl(std::shared_ptr<Connection> conn, std::string queue, ConsumerOptions options)
      : conn_(std::move(conn)),
        queue_(std::make_shared<const std::string>(std::move(queue))),
        options_(options),
        ack_batch_(std::clamp<size_t>(options.ack_batch, 1, kMaxAcksPerRequest)),
        id_(g_next_consumer_id.fetch_add(1)) {
    std::lock_guard lock(mu_);
    OpenLocked();
  }

  ~ConsumerImpl() { Close(); }

  std::optional<Message> Next() {
    std::chrono::steady_clock::time_point broken_since{};
    auto backoff = std::chrono::milliseconds(20);
    while (ready_.empty()) {
      if (finished_) return std::nullopt;
      Flush();  // acks free credit: send them before waiting for more
      // Reused: parsing keeps the deliveries' shells and their array.
      v1::ConsumeResponse& resp = resp_;
      if (!stream_->Read(&resp)) {
        {
          std::lock_guard lock(mu_);
          writable_ = false;
        }
        const grpc::Status status = stream_->Finish();
        if (status.ok() || cancelled_.load()) {
          finished_ = true;
          return std::nullopt;
        }
        const auto now = std::chrono::steady_clock::now();
        if (broken_since == std::chrono::steady_clock::time_point{}) broken_since = now;
        if (!Broken(status, *ctx_) || options_.reconnect_for.count() == 0 ||
            now - broken_since >= options_.reconnect_for) {
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
      for (v1::StreamDelivery& d : *resp.mutable_deliveries()) {
        v1::Message* pm = d.mutable_message();
        ready_.push_back(
            MakeMessage(conn_, queue_, pm->message_id(), std::move(*pm->mutable_payload()),
                        Headers(pm->headers().begin(), pm->headers().end()), pm->delivery_count(),
                        MakeTag(d.delivery_tag(), id_, generation_), std::chrono::milliseconds(0)));
      }
    }
    Message m = std::move(ready_.front());
    ready_.pop_front();
    return m;
  }

  void Ack(const Message& m) {
    std::lock_guard lock(mu_);
    if (auto tag = TagLocked(m); tag && writable_) {
      pending_acks_.push_back(*tag);
      if (pending_acks_.size() >= ack_batch_) FlushLocked();
    }
  }

  void Release(const Message& m, std::optional<std::chrono::milliseconds> delay = std::nullopt) {
    WriteTag(m, &v1::ConsumeRequest::add_releases, delay);
  }
  void Reject(const Message& m) { WriteTag(m, &v1::ConsumeRequest::add_rejects); }
  void Extend(const Message& m) { WriteTag(m, &v1::ConsumeRequest::add_extends); }

  void Flush() {
    std::lock_guard lock(mu_);
    FlushLocked();
  }

  // Sends the pending acks and half-closes; the broker applies them, puts back
  // what the stream still holds and ends the stream. Waits for that end up to
  // close_timeout, then cancels.
  void Close() {
    if (finished_) return;
    finished_ = true;
    ready_.clear();  // held by the stream: they go back with it
    // Armed first: even a write that blocks (a broker that stopped reading)
    // ends at the deadline. ctx_ stays put: only next() replaces it.
    std::mutex m;
    std::condition_variable cv;
    bool ended = false;
    std::thread watchdog([&, ctx = ctx_.get()] {
      std::unique_lock wait(m);
      if (!cv.wait_for(wait, options_.close_timeout, [&] { return ended; })) ctx->TryCancel();
    });
    {
      std::lock_guard lock(mu_);
      FlushLocked();
      writable_ = false;
      stream_->WritesDone();
    }
    v1::ConsumeResponse ignored;  // sent before the broker saw the half-close: requeued
    while (stream_->Read(&ignored)) {
    }
    {
      std::lock_guard lock(m);
      ended = true;
    }
    cv.notify_one();
    watchdog.join();
    stream_->Finish();
  }

  // Not under mu_: a write blocked on a broker that stopped reading holds it,
  // and cancelling is how that write is ended.
  void Cancel() {
    cancelled_ = true;
    std::lock_guard lock(ctx_mu_);
    ctx_->TryCancel();
  }

  uint64_t expired() const { return expired_; }
  uint64_t reconnects() const { return reconnects_; }

 private:
  // A stream and its first request. The previous stream, if any, has ended.
  void OpenLocked() {
    stream_.reset();  // before the context it uses
    auto ctx = std::make_unique<grpc::ClientContext>();
    conn_->Authorize(ctx.get());
    grpc::ClientContext* started = ctx.get();
    {
      std::lock_guard lock(ctx_mu_);
      ctx_ = std::move(ctx);  // the old one dies here, never under a Cancel
      // A cancel() that came while there was no stream (the reconnect's
      // backoff) reached only the old context.
      if (cancelled_.load()) ctx_->TryCancel();
    }
    stream_ = conn_->stub().Consume(started);
    ++generation_;
    writable_ = true;
    pending_acks_.clear();  // they named the old stream's tags
    v1::ConsumeRequest start;
    start.set_queue(*queue_);
    start.set_prefetch(options_.prefetch);
    if (options_.ack_timeout.count() > 0) {
      detail::ToProto(options_.ack_timeout, start.mutable_ack_timeout());
    }
    stream_->Write(start);
  }

  // The message's number on the current stream; none if it came on an
  // earlier stream of this consumer (the broker requeued it when that stream
  // ended). Throws std::invalid_argument if this consumer did not deliver it.
  // Parsed in place: this runs for every ack.
  std::optional<uint64_t> TagLocked(const Message& m) const {
    const std::optional<ParsedTag> tag = ParseTag(m.delivery_tag());
    if (!tag || tag->consumer != id_) ThrowNotMine(m);
    if (tag->stream != generation_) return std::nullopt;
    return tag->number;
  }

  // Sends one request naming the message's tag (a release or an extension)
  // if the message came on the current stream.
  void WriteTag(const Message& m, void (v1::ConsumeRequest::*add)(uint64_t),
                std::optional<std::chrono::milliseconds> release_delay = std::nullopt) {
    std::lock_guard lock(mu_);
    if (auto tag = TagLocked(m); tag && writable_) {
      v1::ConsumeRequest req;
      (req.*add)(*tag);
      if (release_delay) detail::ToProto(*release_delay, req.mutable_release_delay());
      stream_->Write(req);
    }
  }

  void FlushLocked() {
    if (pending_acks_.empty() || !writable_) return;
    v1::ConsumeRequest req;
    req.mutable_acks()->Assign(pending_acks_.begin(), pending_acks_.end());
    pending_acks_.clear();
    stream_->Write(req);  // a failure shows as the end of the stream in next()
  }

  const std::shared_ptr<Connection> conn_;
  const std::shared_ptr<const std::string> queue_;  // in every Message it hands out
  const ConsumerOptions options_;
  const size_t ack_batch_;
  const uint64_t id_;  // in every tag this consumer hands out
  std::deque<Message> ready_;
  // next()'s, for each read: at most one response's deliveries (prefetch).
  v1::ConsumeResponse resp_;
  std::mutex mu_;  // guards the stream's writes, its replacement and the acks
  // Guards ctx_'s replacement against Cancel; taken under mu_, never around it.
  std::mutex ctx_mu_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ConsumeRequest, v1::ConsumeResponse>> stream_;
  uint64_t generation_ = 0;  // streams opened so far; the current one's number
  std::vector<uint64_t> pending_acks_;
  bool writable_ = false;  // the stream takes writes: not ended, not half-closed
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
void Consumer::release(const Message& m, std::chrono::milliseconds delay) {
  impl_->Release(m, delay);
}
void Consumer::reject(const Message& m) { impl_->Reject(m); }

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
void Consumer::close() { impl_->Close(); }
void Consumer::cancel() { impl_->Cancel(); }
uint64_t Consumer::expired() const { return impl_->expired(); }
uint64_t Consumer::reconnects() const { return impl_->reconnects(); }

}  // namespace basin
