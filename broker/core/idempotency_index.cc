#include "broker/core/idempotency_index.h"

#include <unordered_map>

namespace basin::core {
namespace {

// Sequences run up to 2^63 so that first_sequence + index never wraps.
constexpr uint64_t kMaxSequence = uint64_t{1} << 63;

}  // namespace

IdempotencyIndex::IdempotencyIndex(const QueueLimits& limits)
    : window_(limits.dedup_window),
      max_dedup_ids_(limits.max_dedup_ids),
      max_producers_(limits.max_producers),
      sequences_(limits.dedup_window, limits.max_producers) {}

Result<void> IdempotencyIndex::CheckOrigin(std::string_view producer, uint64_t first_sequence,
                                           size_t count, TimePoint now, const std::string& what) {
  if (first_sequence == 0 || first_sequence > kMaxSequence - count) {
    return Error{Errc::kInvalidArgument, "first_sequence " + std::to_string(first_sequence) +
                                             " is out of range (1 to 2^63 - batch size)"};
  }
  ProducerSequences::Producer* p = sequences_.Get(producer, now);
  if (p == nullptr) {
    return Error{Errc::kTooManyProducers,
                 what + " already remembers the limit of " + std::to_string(max_producers_) +
                     " idempotent producers active within the dedup window"};
  }
  if (first_sequence < p->floor() && first_sequence <= p->highest()) {
    return Error{Errc::kInvalidArgument,
                 "first_sequence " + std::to_string(first_sequence) + " is older than " + what +
                     " remembers for this producer (from " + std::to_string(p->floor()) + ")"};
  }
  return {};
}

const PutWaiter::Resolution& IdempotencyIndex::Resolve(PutWaiter& p, TimePoint now) {
  if (p.resolved && p.resolved->epoch == epoch_ && now < p.resolved->later_until) {
    return *p.resolved;
  }
  PutWaiter::Resolution r;
  r.epoch = epoch_;
  const ProducerSequences::Producer* origin =
      p.producer.empty() ? nullptr : sequences_.Get(p.producer, now);
  std::unordered_map<std::string_view, size_t> first_in_batch;
  for (size_t i = 0; i < p.msgs.size(); ++i) {
    if (p.msgs[i] == nullptr) continue;
    if (origin != nullptr) {
      if (auto original = origin->Find(p.first_sequence + p.slots[i])) {
        r.duplicates.emplace_back(i, *original);
        continue;
      }
    }
    const std::string& dedup = p.dedup_ids[i];
    if (!dedup.empty()) {
      if (auto original = FindDedup(dedup, now)) {
        r.duplicates.emplace_back(i, *original);
        continue;
      }
      auto [it, fresh] = first_in_batch.emplace(dedup, i);
      if (!fresh) {
        r.copies.emplace_back(i, it->second);
        continue;
      }
      r.keys += DedupBytes(dedup.size());
    }
    // Only a message that is admitted records its sequence: a duplicate or an
    // in-batch copy keeps nothing, and charging it could refuse a resend of
    // pure duplicates for want of memory.
    if (origin != nullptr) r.keys += ProducerSequences::kBytesPerId;
    if (!p.msgs[i]->group().empty()) ++r.grouped;
    // A delayed message takes the queue's room when it becomes ready.
    if (p.msgs[i]->ready_at() > now) {
      ++r.later;
      r.later_bytes += p.msgs[i]->bytes();
      r.later_until = std::min(r.later_until, p.msgs[i]->ready_at());
      continue;
    }
    ++r.count;
    r.bytes += p.msgs[i]->bytes();
  }
  p.resolved = std::move(r);
  return *p.resolved;
}

void IdempotencyIndex::Remember(const PutWaiter& p, size_t i, uint64_t id,
                                ProducerSequences::Producer* origin, TimePoint now, PutKeys* keys) {
  const std::string& dedup = p.dedup_ids[i];
  if (!dedup.empty()) {
    RecordDedup(dedup, id, now);
    if (keys != nullptr) keys->dedup_ids.emplace_back(dedup, id);
  }
  if (origin != nullptr) {
    const uint64_t sequence = p.first_sequence + p.slots[i];
    sequences_.Record(*origin, sequence, id);
    if (keys != nullptr) keys->sequences.emplace_back(sequence, id);
  }
}

void IdempotencyIndex::Forget(const PutKeys& keys) {
  for (const auto& [dedup, id] : keys.dedup_ids) {
    auto found = dedup_.find(dedup);
    // The order entry stays until it ages out; it no longer matches.
    if (found != dedup_.end() && found->second.first == id) dedup_.erase(found);
  }
  if (!keys.producer.empty()) sequences_.Forget(keys.producer, keys.sequences);
  ++epoch_;
}

void IdempotencyIndex::Restore(const PutKeys& keys, TimePoint now) {
  for (const auto& [dedup, id] : keys.dedup_ids) {
    if (dedup.size() <= kMaxDedupIdBytes) RecordDedup(dedup, id, now);
  }
  if (keys.producer.empty() || keys.producer.size() > kMaxDedupIdBytes) return;
  ProducerSequences::Producer* p = sequences_.Get(keys.producer, now);
  if (p == nullptr) return;
  for (const auto& [sequence, id] : keys.sequences) sequences_.Record(*p, sequence, id);
}

std::optional<uint64_t> IdempotencyIndex::FindDedup(const std::string& dedup_id,
                                                    TimePoint now) const {
  auto it = dedup_.find(dedup_id);
  if (it == dedup_.end() || now - it->second.second > window_) return std::nullopt;
  return it->second.first;
}

void IdempotencyIndex::PopOldestDedup() {
  auto& [when, key] = dedup_order_.front();
  auto it = dedup_.find(key);
  if (it != dedup_.end() && it->second.second == when) dedup_.erase(it);
  dedup_bytes_ -= DedupBytes(key.size());
  dedup_order_.pop_front();
}

void IdempotencyIndex::RecordDedup(const std::string& dedup_id, uint64_t id, TimePoint now) {
  Expire(now);
  while (!dedup_order_.empty() && dedup_order_.size() >= max_dedup_ids_) PopOldestDedup();
  dedup_[dedup_id] = {id, now};
  dedup_order_.emplace_back(now, dedup_id);
  dedup_bytes_ += DedupBytes(dedup_id.size());
}

void IdempotencyIndex::Expire(TimePoint now) {
  while (!dedup_order_.empty() && now - dedup_order_.front().first > window_) PopOldestDedup();
}

TimePoint IdempotencyIndex::next_expiry() const {
  // Producer records age out lazily (ProducerSequences sweeps on use); only
  // dedup ids need the timer, so an idle queue hands their memory back.
  if (dedup_order_.empty()) return kNever;
  return AddSaturating(dedup_order_.front().first, window_) + Duration(1);
}

}  // namespace basin::core
