// basin::Consumer: fast consumption over one Consume stream.
//
//   basin::Consumer consumer(client, "orders", {.prefetch = 500});
//   while (auto m = consumer.next()) {   // throws Closed once closed and drained
//     process(m->payload());
//     consumer.ack(*m);                  // task_done, sent in batches
//   }
//
// or, in callback form, acking each message whose handler returns:
//
//   consumer.run([](const basin::Message& m) { process(m.payload()); });
//
// The broker never has more than `prefetch` unacknowledged messages out to
// this consumer. The stream holds their leases: nothing is redelivered while
// the consumer is connected, unless ack_timeout is set. When the consumer is
// closed, destroyed, cancelled or disconnected, every message it holds and did
// not ack goes back to the head of the queue at once. Acks are sent when
// ack_batch of them wait, before next() blocks for more messages, and by
// close() and the destructor, which wait for the broker to apply them.
//
// A message is acked, released and extended through the Consumer that
// delivered it: its delivery tag names that consumer and stream, and another
// Consumer throws std::invalid_argument for it (as for a message from
// Queue::get); Queue::task_done refuses it too.
// One thread at a time may use a Consumer; cancel() may come from any thread.
//
// Reconnects: when the stream breaks (UNAVAILABLE: the network dropped, the
// broker restarted; or a reset stream, INTERNAL/UNKNOWN without a broker
// reason) the consumer opens a new one, for up to `reconnect_for`.
// The broker requeued what the old stream held, so those messages come again
// (delivery count + 1): messages received before the break and not yet acked
// are delivered again, and acking them afterwards does nothing. Processing
// must therefore be idempotent — the at-least-once contract of any broker.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "basin/client.h"

namespace basin {

namespace detail {
class ConsumerImpl;
}

struct ConsumerOptions {
  uint32_t prefetch = 100;                   // 1 to 10,000
  std::chrono::milliseconds ack_timeout{0};  // 0: the stream holds the leases
  size_t ack_batch = 64;
  // How long to keep reconnecting after the stream breaks; 0: throw at once.
  std::chrono::milliseconds reconnect_for{30'000};
  // How long close() and the destructor wait for the broker to end the stream.
  std::chrono::milliseconds close_timeout{5'000};
};

class Consumer {
 public:
  Consumer(const Client& client, std::string queue, ConsumerOptions options = {});
  // close().
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Blocks for the next message; nullopt after cancel(). Throws Closed once
  // the queue is closed and drained, NotFound if it is deleted.
  std::optional<Message> next();
  void ack(const Message& m);
  // Callback form: calls `handler` for each message, acks it when the handler
  // returns, releases it (back to the head of the queue) when the handler
  // throws, and rethrows. Returns once the queue is closed and drained, or
  // after cancel(); throws what next() throws otherwise.
  void run(const std::function<void(const Message&)>& handler);
  // Gives the message back to the head of the queue: after the queue's
  // retry_backoff (at once without one), or after `delay` (0: at once).
  void release(const Message& m);
  void release(const Message& m, std::chrono::milliseconds delay);
  // Sends the message to the dead-letter queue now (a poison message).
  void reject(const Message& m);
  // Still working on it: its ack_timeout starts again from now.
  void extend(const Message& m);
  // Sends pending acks now.
  void flush();
  // Sends pending acks, half-closes the stream and waits (up to close_timeout,
  // then cancels) for the broker to end it: the acks are applied before what
  // the stream still holds goes back to the queue. Afterwards next() returns
  // nullopt and ack/release/extend do nothing. A second call does nothing.
  void close();
  // Ends the stream at once, from any thread: next() returns nullopt. Acks not
  // yet sent are lost (their messages come again).
  void cancel();
  // Deliveries whose ack_timeout passed (they went back to the queue).
  uint64_t expired() const;
  // Streams opened after a break.
  uint64_t reconnects() const;

 private:
  std::unique_ptr<detail::ConsumerImpl> impl_;
};

}  // namespace basin
