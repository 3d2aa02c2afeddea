#include "broker/core/ready_list.h"

#include <algorithm>
#include <bit>
#include <utility>

namespace basin::core {

ReadyList::ReadyList(uint8_t max_priority) : levels_(size_t{max_priority} + 1) {}

uint8_t ReadyList::LevelOf(const Message& msg) const {
  return std::min<uint8_t>(msg.priority(), static_cast<uint8_t>(levels_.size() - 1));
}

void ReadyList::Added(const Message& msg, uint8_t level) {
  nonempty_ |= uint32_t{1} << level;
  ++size_;
  if (!msg.group().empty()) ++grouped_;
  bytes_ += msg.bytes();
}

void ReadyList::PushBack(MessagePtr msg) {
  const uint8_t level = LevelOf(*msg);
  Added(*msg, level);
  levels_[level].PushBack(std::move(msg));
}

void ReadyList::PushFront(MessagePtr msg) {
  const uint8_t level = LevelOf(*msg);
  Added(*msg, level);
  levels_[level].PushFront(std::move(msg));
}

const Message* ReadyList::Best() const {
  if (nonempty_ == 0) return nullptr;
  return levels_[std::bit_width(nonempty_) - 1].Front();
}

MessagePtr ReadyList::PopBest() {
  if (nonempty_ == 0) return nullptr;
  const int level = std::bit_width(nonempty_) - 1;
  HoleDeque& q = levels_[static_cast<size_t>(level)];
  MessagePtr msg = q.PopFront();
  if (q.empty()) nonempty_ &= ~(uint32_t{1} << level);
  --size_;
  if (!msg->group().empty()) --grouped_;
  bytes_ -= msg->bytes();
  return msg;
}

MessagePtr ReadyList::Remove(const Message& msg) {
  const uint8_t level = LevelOf(msg);
  HoleDeque& q = levels_[level];
  MessagePtr out = q.Take(msg);
  if (out == nullptr) return out;
  if (q.empty()) nonempty_ &= ~(uint32_t{1} << level);
  --size_;
  if (!out->group().empty()) --grouped_;
  bytes_ -= out->bytes();
  return out;
}

void ReadyList::Clear() {
  for (HoleDeque& level : levels_) level.Clear();
  nonempty_ = 0;
  size_ = 0;
  grouped_ = 0;
  bytes_ = 0;
}

}  // namespace basin::core
