#include "broker/core/hole_deque.h"

#include <utility>

namespace basin::core {

void HoleDeque::PushBack(MessagePtr msg) {
  msg->set_slot(front_position_ + items_.size());
  items_.push_back(std::move(msg));
  ++live_;
}

void HoleDeque::PushFront(MessagePtr msg) {
  msg->set_slot(--front_position_);
  items_.push_front(std::move(msg));
  ++live_;
}

MessagePtr HoleDeque::PopFront() {
  if (live_ == 0) return nullptr;
  MessagePtr out = std::move(items_.front());
  items_.pop_front();
  ++front_position_;
  --live_;
  TrimEnds();
  return out;
}

MessagePtr HoleDeque::Take(const Message& msg) {
  const uint64_t slot = msg.slot();
  if (slot < front_position_ || slot - front_position_ >= items_.size()) return nullptr;
  MessagePtr& entry = items_[slot - front_position_];
  if (entry.get() != &msg) return nullptr;
  MessagePtr out = std::move(entry);
  --live_;
  TrimEnds();
  if (items_.size() > 2 * live_ + kHoleMargin) Compact();
  return out;
}

void HoleDeque::TrimEnds() {
  while (!items_.empty() && items_.front() == nullptr) {
    items_.pop_front();
    ++front_position_;
  }
  while (!items_.empty() && items_.back() == nullptr) items_.pop_back();
}

void HoleDeque::Compact() {
  std::deque<MessagePtr> kept;
  for (MessagePtr& m : items_) {
    if (m == nullptr) continue;
    m->set_slot(front_position_ + kept.size());
    kept.push_back(std::move(m));
  }
  items_.swap(kept);
}

void HoleDeque::Clear() {
  items_.clear();
  live_ = 0;
  front_position_ = kFirstPosition;
}

}  // namespace basin::core
