#include "broker/core/producer_sequences.h"

#include <algorithm>
#include <vector>

namespace basin::core {
namespace {

auto BySequence(uint64_t sequence) {
  return [sequence](const std::pair<uint64_t, uint64_t>& e) { return e.first < sequence; };
}

}  // namespace

std::optional<uint64_t> ProducerSequences::Producer::Find(uint64_t sequence) const {
  if (sequence > highest_) return std::nullopt;
  if (sequence < floor_) return uint64_t{0};
  auto it = std::partition_point(ids_.begin(), ids_.end(), BySequence(sequence));
  // A number within the window that was never recorded was skipped (its
  // message failed validation) or forgotten (its write failed): new work.
  if (it == ids_.end() || it->first != sequence || it->second == kForgotten) return std::nullopt;
  return it->second;
}

void ProducerSequences::Record(Producer& p, uint64_t sequence, uint64_t message_id) {
  if (sequence < p.floor_) return;
  if (p.ids_.empty() || sequence > p.ids_.back().first) {
    p.ids_.emplace_back(sequence, message_id);
  } else {
    // Behind the last number: a resend of forgotten numbers (kept in place,
    // so this is O(log n)), or of numbers that were skipped. Those are
    // inserted only near the end: an insert costs its distance from the end,
    // and how far back a client reaches must not set the work under the lock.
    auto it = std::partition_point(p.ids_.begin(), p.ids_.end(), BySequence(sequence));
    if (it != p.ids_.end() && it->first == sequence) {
      it->second = message_id;
      return;
    }
    if (p.ids_.end() - it > static_cast<std::ptrdiff_t>(kMaxBackfill)) return;
    p.ids_.emplace(it, sequence, message_id);
  }
  bytes_ += kBytesPerId;
  p.highest_ = std::max(p.highest_, sequence);
  if (p.ids_.size() > kIdsKept) {
    p.ids_.pop_front();
    bytes_ -= kBytesPerId;
    p.floor_ = p.ids_.front().first;
  }
}

void ProducerSequences::Forget(std::string_view producer,
                               const std::vector<std::pair<uint64_t, uint64_t>>& seqs) {
  auto found = records_.find(std::string(producer));
  if (found == records_.end()) return;
  Producer& p = found->second;
  // Marked rather than erased: an erase in the middle costs its distance to
  // an end, and the resend re-records them in place.
  for (const auto& [sequence, id] : seqs) {
    auto it = std::partition_point(p.ids_.begin(), p.ids_.end(), BySequence(sequence));
    if (it != p.ids_.end() && it->first == sequence && it->second == id) it->second = kForgotten;
  }
}

void ProducerSequences::Drop(const std::string& name, const Producer& p) {
  bytes_ -= RecordBytes(name) + kBytesPerId * p.ids_.size();
}

ProducerSequences::Producer* ProducerSequences::Get(std::string_view producer, TimePoint now) {
  // Quiet producers are swept a few times a window: often enough that a full
  // table frees up soon after its producers go quiet, rarely enough to cost
  // nothing per call.
  if (now >= next_sweep_) {
    next_sweep_ = now + window_ / 8;
    std::erase_if(records_, [&](const auto& kv) {
      if (now - kv.second.last_seen_ <= window_) return false;
      Drop(kv.first, kv.second);
      return true;
    });
  }
  auto it = records_.find(std::string(producer));
  if (it == records_.end()) {
    if (records_.size() >= max_producers_) return nullptr;
    it = records_.try_emplace(std::string(producer)).first;
    bytes_ += RecordBytes(producer);
  } else if (now - it->second.last_seen_ > window_) {
    bytes_ -= kBytesPerId * it->second.ids_.size();
    it->second = Producer();
  }
  it->second.last_seen_ = now;
  return &it->second;
}

}  // namespace basin::core
