#include "broker/core/producer_sequences.h"

namespace basin::core {

std::optional<uint64_t> ProducerSequences::Producer::Find(uint64_t sequence) const {
  if (sequence > highest_) return std::nullopt;
  if (sequence < first_ || sequence - first_ >= ids_.size()) return uint64_t{0};
  return ids_[sequence - first_];
}

void ProducerSequences::Producer::Record(uint64_t sequence, uint64_t message_id) {
  if (ids_.empty()) first_ = sequence;
  if (sequence < first_) return;  // older than what is kept
  // Numbers skipped (messages that failed validation) keep id 0.
  while (first_ + ids_.size() <= sequence) ids_.push_back(0);
  ids_[sequence - first_] = message_id;
  if (sequence > highest_) highest_ = sequence;
  while (ids_.size() > kIdsKept) {
    ids_.pop_front();
    ++first_;
  }
}

void ProducerSequences::Producer::Forget(uint64_t sequence) {
  if (sequence > highest_) return;
  highest_ = sequence - 1;
  if (sequence <= first_) {
    ids_.clear();
  } else if (sequence - first_ < ids_.size()) {
    ids_.resize(sequence - first_);
  }
}

ProducerSequences::Producer& ProducerSequences::Get(std::string_view producer, TimePoint now) {
  // Quiet producers are swept at most once a window, which keeps this cheap.
  if (now >= next_sweep_) {
    next_sweep_ = now + window_;
    std::erase_if(records_, [&](const auto& kv) { return now - kv.second.last_seen_ > window_; });
  }
  auto [it, fresh] = records_.try_emplace(std::string(producer));
  if (!fresh && now - it->second.last_seen_ > window_) it->second = Producer();
  it->second.last_seen_ = now;
  return it->second;
}

}  // namespace basin::core
