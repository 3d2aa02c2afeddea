// basin::Publisher: fast pub/sub publishing over one PublishStream.
//
//   basin::Publisher publisher(client);
//   publisher.publish("news.eu", "hello");      // returns at once
//   basin::PublishSummary s = publisher.flush(); // every message so far confirmed
//
// Messages, each to its own topic, are batched by count, bytes and linger
// time; at most max_in_flight_batches are unconfirmed at once, so publish()
// blocks once that many are out and one more batch is waiting (the broker
// stops reading a publisher 64 batches ahead of its confirms, and flow control
// does the rest).
//
// Publishing is at most once, as Redis PUBLISH is: a batch is never resent. A
// confirm says the broker routed the message — to the live subscribers it
// counted and to every bound queue — and flush() sums the confirms since the
// previous flush. A message that fails validation (an invalid topic, too
// large) or that a bound queue refused is listed in PublishSummary::failures;
// the others still go. When the stream ends with an error (permission denied,
// rate limited, the broker gone or stopping), every message not yet confirmed
// is lost — counted in `failed` — and the next flush() throws that error once;
// the next publish() opens a new stream.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "basin/client.h"

namespace basin {

namespace detail {
class PublisherImpl;
}

struct PublisherOptions {
  // At most 10,000 (the broker's cap on one request); larger values are taken
  // as 10,000.
  size_t max_batch_messages = 500;
  // Framing included. Keep it at most the broker's --max-message-bytes (1 MiB
  // by default): a larger request ends the stream (RESOURCE_EXHAUSTED).
  size_t max_batch_bytes = 1 << 20;
  // How long a message may wait for its batch to fill before it is sent.
  std::chrono::microseconds linger{1000};
  size_t max_in_flight_batches = 16;
  // How long the destructor waits for unconfirmed messages.
  std::chrono::milliseconds close_timeout{5'000};
};

// One message that did not go everywhere it matched.
struct PublishFailure {
  std::string topic;
  std::string error_reason;   // set when it was not published at all (docs/api.md)
  std::string error_message;  // likewise, human-readable
  std::vector<std::string> undelivered_queues{};  // bound queues that refused it
};

// What the broker confirmed since the previous flush().
struct PublishSummary {
  uint64_t confirmed = 0;  // messages the broker answered (published or failed validation)
  uint64_t receivers = 0;  // subscriber deliveries, summed
  uint64_t queues = 0;     // copies into bound queues, summed
  uint64_t failed = 0;     // not published: invalid, or lost with a broken stream
  // The first 1,000 messages with a failure (failed validation or a queue
  // refused them) that the broker listed (it lists about 64 KiB of them per
  // batch); the rest of the failed ones are counted in `failed` only.
  std::vector<PublishFailure> failures{};
  // Failures neither listed here nor by the broker (past those limits),
  // including messages that were published but refused by a bound queue.
  uint64_t failures_unlisted = 0;
};

class Publisher {
 public:
  explicit Publisher(const Client& client, PublisherOptions options = {});
  // Waits up to close_timeout for every unconfirmed message, then cancels the
  // stream.
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Queues the message for the next batch; blocks only while the publisher is
  // a full window ahead of its confirms.
  void publish(std::string topic, std::string payload, Headers headers = {});
  // Sends what is queued at once and blocks until every message published
  // before the call is confirmed or lost. Throws the error that ended a stream
  // since the previous flush (the summary is then discarded).
  PublishSummary flush();

 private:
  std::unique_ptr<detail::PublisherImpl> impl_;
};

}  // namespace basin
