// Idempotent produce without a dedup_id per message, the way Kafka's
// idempotent producer works: a producer names itself with a random id and
// numbers its messages 1, 2, 3, ...; a resend after a reconnect carries the
// same numbers, so the queue can tell a repeat from new work by comparing with
// the highest number it has enqueued from that producer. It remembers the
// message ids of each producer's recent sequence numbers, so a repeat is
// answered with the original id.
//
// Memory is bounded and accounted (bytes()): a producer's record is forgotten
// once it has been quiet for the window; each keeps the ids of its last
// kIdsKept messages (a producer resends at most what it had unconfirmed, far
// fewer); at most `max_producers` are remembered at once. Numbers are kept
// sparse — (sequence, id) pairs in sequence order — so a client that skips
// numbers, however far, costs nothing more than one that does not.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/core/time.h"

namespace basin::core {

class ProducerSequences {
 public:
  static constexpr size_t kIdsKept = 65'536;
  // How far behind the last recorded number a skipped number may still be
  // recorded (see Record).
  static constexpr size_t kMaxBackfill = 64;
  // A forgotten number's id: its message was refused after all.
  static constexpr uint64_t kForgotten = UINT64_MAX;

  // What the queue remembers of one producer.
  class Producer {
   public:
    // Seen before: the original message id (0 if it is older than what is
    // kept). nullopt: new work.
    std::optional<uint64_t> Find(uint64_t sequence) const;
    // The lowest sequence this record can still answer for: a batch that
    // starts below it cannot be told from new work.
    uint64_t floor() const { return floor_; }
    uint64_t highest() const { return highest_; }

   private:
    friend class ProducerSequences;
    uint64_t highest_ = 0;                           // highest sequence enqueued
    uint64_t floor_ = 0;                             // sequences below it are too old to answer for
    std::deque<std::pair<uint64_t, uint64_t>> ids_;  // (sequence, message id), rising
    TimePoint last_seen_;
  };

  ProducerSequences(Duration window, size_t max_producers)
      : window_(window), max_producers_(max_producers) {}

  // The producer's record (new if it was unknown or quiet for longer than
  // the window), or null when it is unknown and max_producers are already
  // remembered. Valid until the next non-const call.
  Producer* Get(std::string_view producer, TimePoint now);
  // Records that the producer's `sequence` was enqueued as `message_id`.
  void Record(Producer& p, uint64_t sequence, uint64_t message_id);
  // Forgets exactly these sequences of the producer: their messages were
  // refused after all (a durable queue's write failed), so a resend is new
  // work. Later sequences that were written stay remembered.
  void Forget(std::string_view producer, const std::vector<std::pair<uint64_t, uint64_t>>& seqs);

  // Memory held, as charged to the broker's budget.
  uint64_t bytes() const { return bytes_; }
  // Bytes one more remembered message costs (for reserving before admitting).
  static constexpr uint64_t kBytesPerId = sizeof(std::pair<uint64_t, uint64_t>);
  static uint64_t RecordBytes(std::string_view producer) {
    return kRecordOverhead + producer.size();
  }

 private:
  static constexpr uint64_t kRecordOverhead = 160;  // map node, deque map, Producer
  void Drop(const std::string& name, const Producer& p);

  const Duration window_;
  const size_t max_producers_;
  std::unordered_map<std::string, Producer> records_;
  TimePoint next_sweep_{};
  uint64_t bytes_ = 0;
};

}  // namespace basin::core
