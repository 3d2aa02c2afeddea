// The Basin client SDK: remote, bounded, joinable queues with the semantics of
// Python's multiprocessing.JoinableQueue.
//
//   basin::Client client("127.0.0.1:7878");
//   auto q = client.queue("orders", {.max_size = 3});
//   q.put("work");                      // blocks while the queue is full
//   basin::Message m = q.get();         // blocks while it is empty
//   q.task_done(m);
//   q.join();                           // until every put is task_done
//   q.close();                          // end of stream: drained gets throw Closed
//
// Untimed calls block as long as needed: the SDK re-issues a call the broker
// ended at its per-call cap. Timed calls throw Full / Empty / JoinTimeout when
// the time is up; the `_nowait` forms never wait. Every object here is
// thread-safe and cheap to copy; a blocked call does not hold up the client's
// other calls (they are separate HTTP/2 streams on one connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "basin/errors.h"
#include "basin/topics.h"

namespace basin {

using Headers = std::map<std::string, std::string>;
using Timeout = std::chrono::milliseconds;

class Message;

namespace detail {
class Connection;
// Builds a Message; the SDK's own code is the only caller.
Message MakeMessage(std::shared_ptr<Connection> conn, std::shared_ptr<const std::string> queue,
                    uint64_t id, std::string payload, std::map<std::string, std::string> headers,
                    uint32_t delivery_count, std::string tag, std::chrono::milliseconds lease);
}  // namespace detail

struct QueueOptions {
  uint64_t max_size = 0;                            // 0 = unbounded
  std::chrono::milliseconds visibility_timeout{0};  // 0 = the broker's default (30 s)
  uint32_t max_deliveries = 0;                      // 0 = unlimited
  std::string dead_letter_queue{};                  // must exist already
  uint64_t max_bytes = 0;                           // 0 = unbounded
  bool durable = false;  // survives a broker restart; needs basind --data-dir
  // How long a message whose lease ended without task_done waits before it
  // is ready again, by delivery count (the last entry repeats); empty: at once.
  std::vector<std::chrono::milliseconds> retry_backoff{};
  // A message not finished this long after its put expires (to the
  // dead-letter queue, or dropped); 0 = never. At most 365 days.
  std::chrono::milliseconds message_ttl{0};
  // Priority levels 1 to 10 (0: none): higher priorities are handed out first.
  uint32_t max_priority = 0;
};

// One live Consume stream on a queue: "my consumer gets nothing" shows as
// in_flight == prefetch.
struct ConsumerInfo {
  uint64_t id = 0;
  uint32_t prefetch = 0;
  uint64_t in_flight = 0;
  uint64_t delivered = 0;
  uint64_t acked = 0;
};

struct QueueStats {
  uint64_t size = 0;
  uint64_t bytes = 0;
  bool full = false;
  bool empty = true;
  uint64_t unfinished = 0;
  uint64_t in_flight = 0;
  uint64_t waiting_getters = 0;
  uint64_t waiting_putters = 0;
  uint64_t waiting_joiners = 0;
  uint64_t total_put = 0;
  uint64_t total_delivered = 0;
  uint64_t total_done = 0;
  uint64_t total_redelivered = 0;
  uint64_t total_dead_lettered = 0;
  uint64_t total_rejected = 0;  // copies from topic bindings refused (full, closed)
  uint64_t delayed = 0;         // put with a delay that has not passed yet
  uint64_t total_expired = 0;   // expired (TTL): in total_dead_lettered too
  uint64_t groups = 0;          // ordering groups with a message in the queue
  uint64_t active_groups = 0;   // of those, with their next message out
  bool closed = false;
  std::vector<ConsumerInfo> consumers{};
};

struct QueueInfo {
  std::string name{};
  QueueOptions options{};  // max_size included
  QueueStats stats{};
  std::vector<std::string> bindings{};  // topics and patterns bound to the queue
};

// One delivered message and the lease that holds it.
class Message {
 public:
  Message() = default;
  uint64_t id() const { return id_; }
  const std::string& payload() const { return payload_; }
  const Headers& headers() const { return headers_; }
  // Hand-outs of this message, this one included.
  uint32_t delivery_count() const { return delivery_count_; }
  const std::string& delivery_tag() const { return delivery_tag_; }
  const std::string& queue() const;
  // Lease time the broker granted with this delivery.
  std::chrono::milliseconds lease() const { return lease_; }

  // Moves the lease's expiry to now + d (capped by the broker); returns the
  // time granted. Throws LeaseExpired once the lease has ended.
  std::chrono::milliseconds extend(std::chrono::milliseconds d) const;
  // Gives the message back to the head of the queue (a nack): after the
  // queue's retry_backoff, at once without one.
  void release() const;
  // The same after `delay` (0: at once, whatever the backoff; at most 30 days).
  void release(std::chrono::milliseconds delay) const;
  // Sends the message to the dead-letter queue now (dropped without one): a
  // poison message. Its basin-death-reason header says "rejected".
  void reject() const;

 private:
  friend Message detail::MakeMessage(std::shared_ptr<detail::Connection>,
                                     std::shared_ptr<const std::string>, uint64_t, std::string,
                                     std::map<std::string, std::string>, uint32_t, std::string,
                                     std::chrono::milliseconds);
  std::shared_ptr<detail::Connection> conn_;
  // Shared by every message its consumer or get() delivered: a copy per
  // message would be an allocation per message for names past 15 bytes.
  std::shared_ptr<const std::string> queue_;
  uint64_t id_ = 0;
  std::string payload_;
  Headers headers_;
  uint32_t delivery_count_ = 0;
  std::string delivery_tag_;
  std::chrono::milliseconds lease_{0};
};

// A message to put in a batch (or send through a Producer).
struct OutgoingMessage {
  std::string payload{};
  Headers headers{};
  // Idempotency key: a repeat within the broker's window (2 min) is answered
  // with the original id and not enqueued again.
  std::string dedup_id{};
  // Ready this long after the broker receives it (0: at once), or at
  // `deliver_at` if that is set (it then wins over `delay`); at most 30 days
  // ahead. Until then it counts
  // as unfinished (join waits for it) but no get sees it.
  std::chrono::milliseconds delay{0};
  std::chrono::system_clock::time_point deliver_at{};
  // 0 to 10: higher first on a queue with max_priority (capped at it).
  uint32_t priority = 0;
  // Expires this long after the put instead of the queue's message_ttl (0: the
  // queue's); longer than the delay.
  std::chrono::milliseconds ttl{0};
  // Ordering group: one message of a group is handed out at a time, in put
  // order (1 to 128 bytes; not with a delay).
  std::string group{};
};

// What became of one message of a batch.
struct PutOutcome {
  uint64_t message_id = 0;
  bool duplicate = false;      // its dedup_id was seen: message_id is the original's
  std::string error_reason{};  // set when it failed validation and was not enqueued
  std::string error_message{};
  bool ok() const { return error_reason.empty(); }
};

class Queue {
 public:
  const std::string& name() const;

  // Puts all or nothing, blocking until every message fits (a batch larger
  // than max_size throws InvalidArgument). Messages that fail validation are
  // left out and say why in their outcome.
  std::vector<PutOutcome> put_batch(const std::vector<OutgoingMessage>& messages) const;
  std::vector<PutOutcome> put_batch(const std::vector<OutgoingMessage>& messages,
                                    Timeout timeout) const;
  // Up to `max_messages` ready messages, waiting until at least one is.
  std::vector<Message> get_batch(size_t max_messages) const;
  std::vector<Message> get_batch(size_t max_messages, Timeout timeout) const;

  // Each put returns the message's id in the queue.
  uint64_t put(std::string_view payload, const Headers& headers = {}) const;
  uint64_t put(std::string_view payload, Timeout timeout, const Headers& headers = {}) const;
  uint64_t put_nowait(std::string_view payload, const Headers& headers = {}) const;
  // One message with what a batch message may ask (a delay, a dedup_id):
  //   q.put({.payload = "report", .delay = std::chrono::minutes(10)});
  uint64_t put(const OutgoingMessage& message) const;
  uint64_t put(const OutgoingMessage& message, Timeout timeout) const;

  Message get() const;
  Message get(Timeout timeout) const;
  Message get_nowait() const;
  // Same, with this delivery's lease length instead of the queue's.
  Message get(Timeout timeout, std::chrono::milliseconds visibility) const;

  void task_done(const Message& m) const;
  // Acknowledges by tag alone (as basinctl does for a tag it printed).
  void task_done(const std::string& delivery_tag) const;
  // Message::release and reject, by tag alone (as basinctl does).
  void release(const std::string& delivery_tag) const;
  void release(const std::string& delivery_tag, std::chrono::milliseconds delay) const;
  void reject(const std::string& delivery_tag) const;
  void join() const;
  void join(Timeout timeout) const;

  uint64_t qsize() const;
  bool empty() const;
  bool full() const;
  QueueInfo info() const;
  // Returns true if the queue was already closed.
  bool close() const;

 private:
  friend class Client;
  Queue(std::shared_ptr<detail::Connection> conn, std::string name)
      : conn_(std::move(conn)), name_(std::make_shared<const std::string>(std::move(name))) {}
  std::vector<Message> get_until(size_t max_messages,
                                 std::chrono::steady_clock::time_point deadline, bool forever,
                                 std::chrono::milliseconds visibility) const;
  std::vector<PutOutcome> put_batch_until(const std::vector<OutgoingMessage>& messages,
                                          std::chrono::steady_clock::time_point deadline,
                                          bool forever) const;
  uint64_t put_until(std::string_view payload, const Headers& headers,
                     std::chrono::steady_clock::time_point deadline, bool forever) const;
  uint64_t put_until(const OutgoingMessage& message, std::chrono::steady_clock::time_point deadline,
                     bool forever) const;
  void join_until(std::chrono::steady_clock::time_point deadline, bool forever) const;

  std::shared_ptr<detail::Connection> conn_;
  std::shared_ptr<const std::string> name_;  // shared with the Messages it gets
};

// What GetServerInfo says of the broker (docs/operations.md).
struct ServerInfo {
  std::string version, revision, build_type;
  std::chrono::system_clock::time_point started_at{};
  std::chrono::milliseconds uptime{};
  struct Setting {
    std::string name, value, source;  // source: flag, env BASIN_X, FILE:LINE, default
  };
  std::vector<Setting> settings{};
  std::string config_file{};
  struct Limits {
    uint64_t max_message_bytes = 0, max_memory_bytes = 0, memory_used_bytes = 0;
    uint64_t max_queues = 0, max_waiters_per_queue = 0;
    std::chrono::milliseconds max_wait{};
    uint64_t max_batch_messages = 0, max_get_messages = 0;
    uint64_t max_calls_per_connection = 0, user_rate = 0, user_max_queues = 0;
  } limits{};
  // TLS, users and refusals since start (docs/security.md).
  struct Security {
    std::string transport;  // "plaintext" or the served certificate
    uint64_t users = 0;
    uint64_t unauthenticated_total = 0, permission_denied_total = 0, rate_limited_total = 0;
    uint64_t queue_quota_refused_total = 0;
  } security{};
};

// TLS to the broker (docs/security.md). Files are PEM and read when the
// Client is made; an unreadable one throws basin::Error there.
struct TlsOptions {
  bool enabled = false;     // also implied by any field below
  std::string ca_file{};    // CAs to trust for the broker; empty: the system's
  std::string cert_file{};  // client certificate, for mutual TLS
  std::string key_file{};   // its private key
  // The name the broker's certificate must carry, when it differs from the
  // host in the address (e.g. connecting by IP to a certificate for a name).
  std::string server_name{};
};

// Opt-in, once, at the top of main() before any thread is started or gRPC is
// used: makes this process's gRPC run its "poll" poller rather than Linux's
// default, epoll1, by setting GRPC_POLL_STRATEGY=poll in the environment
// (which gRPC reads when it starts, and which processes started later
// inherit). An SDK process whose threads each wait on a stream of their own
// then wakes fewer threads per message: lower latency and more stream
// throughput (docs/api.md, "The C++ SDK's gRPC poller", with figures).
// Returns false and changes nothing if GRPC_POLL_STRATEGY is already set or
// gRPC is running. Not thread-safe: it writes the environment.
bool use_poll_poller();

struct ClientOptions {
  TlsOptions tls{};
  // Sent as `authorization: Bearer <token>` on every call; empty: none.
  std::string token{};
  // Keepalive pings on an idle connection, so a dead broker is noticed.
  std::chrono::milliseconds keepalive_time{30'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
  // Longest wait the SDK asks for in one call before re-issuing it.
  std::chrono::milliseconds max_call_wait{30'000};
};

class Client {
 public:
  explicit Client(const std::string& address, ClientOptions options = {});

  // A handle on an existing queue; no call is made (NotFound on first use if
  // there is no such queue).
  Queue queue(std::string name) const;
  // Creates the queue, or checks that the existing one has these settings
  // (AlreadyExists if not).
  Queue queue(std::string name, const QueueOptions& options) const;

  std::vector<QueueInfo> list_queues() const;
  QueueInfo queue_info(const std::string& name) const;
  // Returns the number of messages dropped.
  uint64_t delete_queue(const std::string& name) const;
  // Pub/sub (see basin/topics.h).
  PublishResult publish(const std::string& topic, std::string_view payload,
                        const Headers& headers = {}) const;
  // Returns once the broker has confirmed the subscription: anything published
  // after this returns reaches it.
  Subscription subscribe(std::vector<std::string> topics,
                         const SubscribeOptions& options = {}) const;
  // Returns false when the binding existed already.
  bool bind_queue(const std::string& topic_pattern, const std::string& queue) const;
  void unbind_queue(const std::string& topic_pattern, const std::string& queue) const;
  TopicsInfo list_topics() const;

  // True when the broker answers its health check as SERVING.
  bool healthy(Timeout timeout = std::chrono::seconds(5)) const;
  // The broker's version, uptime, settings and limits.
  ServerInfo server_info() const;

 private:
  friend class Producer;
  friend class Publisher;
  friend class Consumer;
  std::shared_ptr<detail::Connection> conn_;
};

}  // namespace basin
