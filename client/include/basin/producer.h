// basin::Producer: fast, asynchronous puts over one Produce stream.
//
//   basin::Producer producer(client, "orders", {.linger = 1ms});
//   std::future<uint64_t> id = producer.send("order 1");
//   producer.send("order 2", [](uint64_t id, std::exception_ptr error) { ... });
//   producer.flush();   // every message sent so far is confirmed
//
// Messages are batched by count, bytes and linger time; at most
// max_in_flight_batches are unconfirmed at once, so a full queue (which makes
// the broker stop reading) blocks send() once that many are out. A batch never
// holds more than the queue can ever take: the producer reads the queue's
// max_size and max_bytes when it opens (and again when the broker says a
// batch can never fit) and cuts batches to them. A single message larger than
// max_bytes goes alone and fails with MessageTooLarge.
//
// A confirm — the future, or the callback — says the broker holds the message
// (its id), or why not (an exception). Confirms come in send order (a send()
// refused at once, after a permanent error or during destruction, is failed
// on the caller's thread before it returns).
//
// Errors. A failed message or batch fails its own confirms only; the producer
// goes on, and later sends work again. Two errors are permanent, because they
// are about the queue itself: NotFound (no such queue, or it was deleted) and
// Closed (the queue was closed). After one of them every unconfirmed message
// fails with it, and so does every later send(), at once, even if a queue of
// that name is made again: make a new Producer for that.
//
// Reconnects: when the stream breaks (the broker restarted, the network
// dropped), the producer opens a new one and resends every unconfirmed batch
// unchanged, for up to `reconnect_for`. The producer numbers its messages
// under a random producer id, and the broker answers a number it already
// holds with the original id (`duplicate`), so a confirm lost with the
// connection never enqueues a message twice. When `reconnect_for` runs out,
// what is unconfirmed fails with Unavailable; the next send() starts a new
// round of reconnecting.
//
// Callbacks run on the producer's receiving thread, one at a time, with none
// of the producer's locks held. A callback may call send() (it never waits for
// room there, so it cannot deadlock); flush() in a callback throws
// std::logic_error (it would wait for the callback's own thread); an exception
// a callback throws is caught and ignored. A callback must not block on a
// later message's confirm (such as its future) nor destroy the producer.
//
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
  // At most 10,000 (the broker's cap on one request); larger values are taken
  // as 10,000.
  size_t max_batch_messages = 500;
  size_t max_batch_bytes = 1 << 20;
  // How long a message may wait for its batch to fill before it is sent.
  // 0: at once; a send() of a message up to 16 KiB that finds nothing
  // unconfirmed then writes it on the calling thread (the lowest latency:
  // no hand-off), which takes as long as a socket write, or on a connection
  // that went silent until keepalive gives up; others batch.
  std::chrono::microseconds linger{1000};
  size_t max_in_flight_batches = 16;
  // How long to keep reconnecting after the stream breaks; 0: fail at once.
  std::chrono::milliseconds reconnect_for{30'000};
  // How long the destructor waits for unconfirmed messages (see ~Producer).
  std::chrono::milliseconds close_timeout{5'000};
};

// Called once per message with its id, or with the error that explains why
// the broker does not hold it.
using ConfirmCallback = std::function<void(uint64_t message_id, std::exception_ptr error)>;

class Producer {
 public:
  Producer(const Client& client, std::string queue, ProducerOptions options = {});
  // Waits up to close_timeout for every unconfirmed message (reconnecting
  // meanwhile if need be), then stops: the stream is cancelled and whatever is
  // still unconfirmed fails with basin::Error (code 1, CANCELLED) — the broker
  // may or may not hold those. Returns soon after close_timeout whatever the
  // broker does (unless a confirm callback blocks); call flush() first to wait
  // for every confirm however long.
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
  // Blocks until every message sent before the call is confirmed or failed
  // (their callbacks have returned); messages sent meanwhile are not waited
  // for, so it returns under steady load. Sends what it waits for at once,
  // without the linger. Throws std::logic_error in a confirm callback.
  void flush();

 private:
  std::unique_ptr<detail::ProducerImpl> impl_;
};

}  // namespace basin
