// basin::Producer: fast, asynchronous puts over one Produce stream.
//
//   basin::Producer producer(client, "orders", {.linger = 1ms});
//   std::future<uint64_t> id = producer.send("order 1");
//   producer.send("order 2", [](uint64_t id, std::exception_ptr error) { ... });
//   producer.flush();   // every message sent so far is confirmed
//
// Messages are batched by count, bytes and linger time; at most
// max_in_flight_batches are unconfirmed at once, so a full queue (which makes
// the broker stop reading) blocks send() once that many are out. A confirm —
// the future, or the callback, run on the producer's receiving thread — says
// the broker holds the message (its id), or why not (an exception).
//
// Reconnects: when the stream breaks (the broker restarted, the network
// dropped), the producer opens a new one and resends every unconfirmed batch
// unchanged, for up to `reconnect_for`. The producer numbers its messages
// under a random producer id, and the broker answers a number it already
// holds with the original id (`duplicate`), so a confirm lost with the
// connection never enqueues a message twice. Errors that a retry cannot mend
// (the queue was deleted or closed) fail the unconfirmed messages at once.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "basin/client.h"

namespace basin {

namespace detail {
class ProducerImpl;
}

struct ProducerOptions {
  size_t max_batch_messages = 500;
  size_t max_batch_bytes = 1 << 20;
  // How long a message may wait for its batch to fill before it is sent.
  std::chrono::microseconds linger{1000};
  size_t max_in_flight_batches = 16;
  // How long to keep reconnecting after the stream breaks; 0: fail at once.
  std::chrono::milliseconds reconnect_for{30'000};
};

// Called once per message with its id, or with the error that explains why
// the broker does not hold it.
using ConfirmCallback = std::function<void(uint64_t message_id, std::exception_ptr error)>;

class Producer {
 public:
  Producer(const Client& client, std::string queue, ProducerOptions options = {});
  // Flushes, then closes the stream.
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  std::future<uint64_t> send(OutgoingMessage message);
  std::future<uint64_t> send(std::string payload) {
    return send(OutgoingMessage{std::move(payload), {}, {}});
  }
  // The same, confirmed through a callback: no future to allocate or wait on.
  void send(OutgoingMessage message, ConfirmCallback on_confirm);
  void send(std::string payload, ConfirmCallback on_confirm) {
    send(OutgoingMessage{std::move(payload), {}, {}}, std::move(on_confirm));
  }
  // Blocks until every message sent before the call is confirmed or failed.
  void flush();

 private:
  std::unique_ptr<detail::ProducerImpl> impl_;
};

}  // namespace basin
