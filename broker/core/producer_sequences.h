// Idempotent produce without a dedup_id per message, the way Kafka's
// idempotent producer works: a producer names itself with a random id and
// numbers its messages 1, 2, 3, ...; a resend after a reconnect carries the
// same numbers, so the queue can tell a repeat from new work by comparing with
// the highest number it has enqueued from that producer. It remembers the
// message ids of each producer's recent sequence numbers, so a repeat is
// answered with the original id — 8 bytes a message in a deque, where a
// dedup_id costs a string and a hash-map node.
//
// Memory is bounded: a producer's record is forgotten once it has been quiet
// for the window, and each keeps the ids of at most kIdsKept numbers (a
// producer resends at most what it had unconfirmed, far fewer).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "broker/core/time.h"

namespace basin::core {

class ProducerSequences {
 public:
  static constexpr size_t kIdsKept = 65'536;

  // What the queue remembers of one producer.
  class Producer {
   public:
    // Seen before: the original message id (0 if it is too old to remember).
    // nullopt: new work.
    std::optional<uint64_t> Find(uint64_t sequence) const;
    // Records that `sequence` was enqueued as `message_id`.
    void Record(uint64_t sequence, uint64_t message_id);
    // Forgets `sequence` and every later one: their messages were refused
    // after all (a durable queue's write failed), so a resend is new work.
    void Forget(uint64_t sequence);

   private:
    friend class ProducerSequences;
    uint64_t highest_ = 0;  // highest sequence enqueued
    uint64_t first_ = 1;    // sequence of ids_.front()
    std::deque<uint64_t> ids_;
    TimePoint last_seen_;
  };

  explicit ProducerSequences(Duration window) : window_(window) {}

  // The producer's record, new if it was unknown or quiet for longer than
  // the window. Valid until the next call.
  Producer& Get(std::string_view producer, TimePoint now);
  size_t producers() const { return records_.size(); }

 private:
  const Duration window_;
  std::unordered_map<std::string, Producer> records_;
  TimePoint next_sweep_{};
};

}  // namespace basin::core
