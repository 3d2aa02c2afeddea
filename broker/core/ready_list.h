// A queue's ready messages: one FIFO (HoleDeque) per priority level, served
// highest level first, FIFO within a level. A plain queue has one level. A
// message's level is its priority, capped at the queue's max_priority.
//
// Owned by a Queue and used under its mutex.
#pragma once

#include <cstdint>
#include <vector>

#include "broker/core/hole_deque.h"
#include "broker/core/message.h"

namespace basin::core {

class ReadyList {
 public:
  explicit ReadyList(uint8_t max_priority = 0);

  void PushBack(MessagePtr msg);   // its level's tail
  void PushFront(MessagePtr msg);  // its level's head (a requeue)
  // The next message to hand out, or null.
  const Message* Best() const;
  MessagePtr PopBest();
  // Takes the message out from wherever it is (it must be in this list).
  MessagePtr Remove(const Message& msg);

  size_t size() const { return size_; }
  // Messages of an ordering group (each its group's next one).
  size_t grouped() const { return grouped_; }
  bool empty() const { return size_ == 0; }
  uint64_t bytes() const { return bytes_; }
  template <typename F>
  void ForEach(F&& f) const {
    for (const HoleDeque& level : levels_) level.ForEach(f);
  }
  void Clear();

 private:
  uint8_t LevelOf(const Message& msg) const;
  void Added(const Message& msg, uint8_t level);

  std::vector<HoleDeque> levels_;
  uint32_t nonempty_ = 0;  // bit i: levels_[i] holds a message
  size_t size_ = 0;
  size_t grouped_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace basin::core
