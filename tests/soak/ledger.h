// The soak test's books: which message ids were sent, confirmed, refused,
// received and finished, and the violations seen on the way.
//
// Every soak message carries a unique id in the header `soak-id`:
//   worker + 1 (8 bits) | incarnation (24 bits) | sequence (32 bits)
// (never 0, which stands for "no id")
// and a payload whose length and bytes are a function of the id, so any
// receiver can check it was not corrupted, truncated or swapped.
//
// The Ledger keeps 4 bytes per message (dense per worker incarnation), so a
// run of hours holds tens of MB, not a hash map per message. It checks online
// what must never happen:
//   - a put the broker refused (QUEUE_FULL, BROKER_MEMORY, ...) is delivered;
//   - a message is delivered from a queue it was not put in (or its DLQ);
//   - a message finished for sure (task_done answered OK, or acked through a
//     Consumer closed cleanly) is delivered again with a higher delivery count,
//     or dead-lettered;
//   - a payload does not match its id.
// and at the end (Check) that every confirmed id was received at least once.
// Thread-safe: one mutex per worker, so workers rarely contend.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "basin/client.h"

namespace basin::soak {

inline constexpr int kMaxWorkers = 32;
// The warm-up's worker slot; its messages have empty payloads.
inline constexpr uint32_t kWarmUpWorker = kMaxWorkers - 1;
inline constexpr const char* kIdHeader = "soak-id";

inline uint64_t MakeId(uint32_t worker, uint32_t incarnation, uint32_t seq) {
  return (uint64_t{worker + 1} << 56) | (uint64_t{incarnation & 0xFFFFFF} << 32) | seq;
}

// The payload of message `id`: 0 to 64 KiB, mostly small (the sizes a queue
// mostly sees), some large enough to cross gRPC frames and segment records;
// empty for the warm-up's ids.
size_t PayloadSize(uint64_t id);
std::string MakePayload(uint64_t id);
bool PayloadMatches(uint64_t id, std::string_view payload);
// The headers every soak message carries.
Headers IdHeaders(uint64_t id);
// The id in a delivered message's headers; 0 (never an id) if missing.
uint64_t IdOf(const Headers& headers);
// An id's decimal text; 0 if it is not one.
uint64_t ParseId(std::string_view text);

// Event counters, printed in the summary.
enum class Count {
  kSent,
  kConfirmed,
  kRefused,
  kUnknownOutcome,
  kDelivered,
  kDuplicates,
  kFinishedSure,
  kAcked,
  kReleased,
  kExtended,
  kLeftToExpire,
  kEmpty,
  kFull,
  kOtherErrors,
  kKills,
  kProducerSessions,
  kProducerDrops,
  kUnconfirmedAtDrop,
  kConsumerSessions,
  kConsumerCancels,
  kConsumerCloses,
  kClientDrops,
  kRawCancels,
  kStreamCancels,
  kN
};

class Counters {
 public:
  void Add(Count c, uint64_t n = 1) { v_[static_cast<size_t>(c)].fetch_add(n); }
  uint64_t Get(Count c) const { return v_[static_cast<size_t>(c)].load(); }
  void Reset() {
    for (auto& v : v_) v = 0;
  }
  static const char* Name(Count c);

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Count::kN)> v_{};
};

class Ledger {
 public:
  // `dlq_of[q]` is the index of queue q's dead-letter queue, or -1.
  explicit Ledger(std::vector<int> dlq_of, Counters* counters);

  void Sent(uint64_t id, int queue);
  void Confirmed(uint64_t id, int queue);
  // The broker said it does not hold the message.
  void Refused(uint64_t id, int queue);
  // A delivery of `id` from queue `from` with its delivery count. Returns
  // false (and records a violation) if the payload is wrong.
  bool Received(uint64_t id, int from, uint32_t delivery_count, std::string_view payload) {
    return ReceivedChecked(id, from, delivery_count, PayloadMatches(id, payload), payload.size());
  }
  // The same, for a receiver that checked the payload itself (a child).
  bool ReceivedChecked(uint64_t id, int from, uint32_t delivery_count, bool payload_ok,
                       size_t payload_size);
  // The delivery (from `from`, with this count) is finished for sure.
  void Finished(uint64_t id, int from, uint32_t delivery_count);

  // Records a violation: printed (the first 40), counted, and the run fails.
  void Fail(const std::string& what);
  uint64_t failures() const { return failures_.load(); }

  struct Totals {
    uint64_t sent = 0;
    uint64_t confirmed = 0;
    uint64_t confirmed_received = 0;
    uint64_t lost = 0;              // confirmed, never received
    uint64_t unknown_received = 0;  // outcome unknown to the sender, delivered anyway
    uint64_t dead_lettered_seen = 0;
    uint64_t warm_up_confirmed = 0;  // not in the figures above
  };
  // The end-of-run check; records a violation for each lost id (the first
  // few named).
  Totals Check();

 private:
  struct Shard {
    std::mutex mu;
    std::vector<std::vector<uint32_t>> by_incarnation;
  };
  // Caller holds the shard's mutex.
  uint32_t& EntryLocked(Shard& s, uint64_t id);
  Shard& ShardOf(uint64_t id) { return shards_[((id >> 56) - 1) % kMaxWorkers]; }
  bool IsDlq(int q) const;

  const std::vector<int> dlq_of_;
  Counters* const counters_;
  std::array<Shard, kMaxWorkers> shards_;
  std::atomic<uint64_t> failures_{0};
  std::mutex print_mu_;
};

}  // namespace basin::soak
