// basin::Producer: fast, asynchronous puts over one Produce stream.
//
//   basin::Producer producer(client, "orders", {.linger = 1ms});
//   std::future<uint64_t> id = producer.send("order 1");
//   producer.flush();   // every message sent so far is confirmed
//
// Messages are batched by count, bytes and linger time; at most
// max_in_flight_batches are unconfirmed at once, so a full queue (which makes
// the broker stop reading) blocks send() once that many are out. A future
// resolves when the broker holds the message, with its id, or with the
// exception that explains why not. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
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
};

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
  // Blocks until every message sent before the call is confirmed or failed.
  void flush();

 private:
  std::unique_ptr<detail::ProducerImpl> impl_;
};

}  // namespace basin
