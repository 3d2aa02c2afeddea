// What lets a queue tell a resend from new work: the dedup ids of recent puts
// (kept for the dedup window) and each idempotent producer's recent sequence
// numbers (ProducerSequences). Resolve() finds the duplicates of a batch —
// against the index and within the batch itself — and Record() remembers what
// was admitted. Owned by a Queue and used under its mutex.
//
// Every key it keeps is bounded (kMaxDedupIdBytes, max_dedup_ids, the
// producer caps) and its memory is reported by bytes(), which the queue
// charges to the broker's budget.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "broker/core/errc.h"
#include "broker/core/producer_sequences.h"
#include "broker/core/queue_config.h"
#include "broker/core/queue_journal.h"
#include "broker/core/time.h"
#include "broker/core/waiter_set.h"

namespace basin::core {

class IdempotencyIndex {
 public:
  explicit IdempotencyIndex(const QueueLimits& limits);

  // A batch from `producer` (non-empty) numbered first_sequence onwards,
  // checked before it is admitted or waits: numbers start at 1, a batch of
  // `count` must not run past 2^63, and a batch that starts below what the
  // producer's record still answers for is refused (kInvalidArgument) rather
  // than taken for new work; an unknown producer beyond max_producers is
  // refused (kTooManyProducers).
  Result<void> CheckOrigin(std::string_view producer, uint64_t first_sequence, size_t count,
                           TimePoint now, const std::string& what);

  // Marks the batch's duplicates (result filled in, message dropped) and
  // counts what still needs room. The answer is kept on `p` and reused until
  // the index forgets keys (a failed durable write), so a batch that waits
  // for room pays for this once.
  const PutWaiter::Resolution& Resolve(PutWaiter& p, TimePoint now);
  // Admits a resolved batch: answers its duplicates, calls enqueue(i) for
  // every other message (which takes p.msgs[i] and returns its id) and
  // remembers their keys; with `keys` (durable queues) it also lists them
  // there for the journal.
  template <typename Enqueue>
  void Admit(PutWaiter& p, TimePoint now, PutKeys* keys, Enqueue&& enqueue);
  // The puts listed were refused after all: a resend is new work.
  void Forget(const PutKeys& keys);
  // Keys read back from a durable queue's log, remembered from `now` on.
  void Restore(const PutKeys& keys, TimePoint now);
  // Forgets dedup ids older than the window.
  void Expire(TimePoint now);
  // When Expire next has something to do (kNever: nothing kept).
  TimePoint next_expiry() const;

  uint64_t bytes() const { return dedup_bytes_ + sequences_.bytes(); }
  // Bytes that remembering a dedup id of this length costs.
  static uint64_t DedupBytes(size_t length) { return kDedupOverhead + 2 * length; }

 private:
  static constexpr uint64_t kDedupOverhead = 96;  // hash node, order entry, times
  void Remember(const PutWaiter& p, size_t i, uint64_t id, ProducerSequences::Producer* origin,
                TimePoint now, PutKeys* keys);
  std::optional<uint64_t> FindDedup(const std::string& dedup_id, TimePoint now) const;
  void RecordDedup(const std::string& dedup_id, uint64_t id, TimePoint now);
  void PopOldestDedup();

  const Duration window_;
  const size_t max_dedup_ids_;
  const size_t max_producers_;
  // Dedup ids: id -> (message id, when), and arrival order.
  std::unordered_map<std::string, std::pair<uint64_t, TimePoint>> dedup_;
  std::deque<std::pair<TimePoint, std::string>> dedup_order_;
  uint64_t dedup_bytes_ = 0;
  ProducerSequences sequences_;
  uint64_t epoch_ = 1;  // rises when keys are forgotten
};

template <typename Enqueue>
void IdempotencyIndex::Admit(PutWaiter& p, TimePoint now, PutKeys* keys, Enqueue&& enqueue) {
  const PutWaiter::Resolution& r = *p.resolved;
  for (const auto& [i, original] : r.duplicates) {
    p.results[p.slots[i]].message_id = original;
    p.results[p.slots[i]].duplicate = true;
    p.msgs[i].reset();
  }
  for (const auto& [copy, first] : r.copies) p.msgs[copy].reset();
  ProducerSequences::Producer* origin =
      p.producer.empty() ? nullptr : sequences_.Get(p.producer, now);
  for (size_t i = 0; i < p.msgs.size(); ++i) {
    if (p.msgs[i] == nullptr) continue;
    const uint64_t id = enqueue(i);
    p.results[p.slots[i]].message_id = id;
    Remember(p, i, id, origin, now, keys);
  }
  for (const auto& [copy, first] : r.copies) {
    p.results[p.slots[copy]].message_id = p.results[p.slots[first]].message_id;
    p.results[p.slots[copy]].duplicate = true;
  }
  if (keys != nullptr && !keys->sequences.empty()) keys->producer = p.producer;
}

}  // namespace basin::core
