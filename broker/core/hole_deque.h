// A FIFO of messages that can also give up one from the middle (an expired
// message, a group's next one) in O(1): a deque whose entries have logical
// positions, where taking an entry out leaves a hole. A message with
// attributes learns its position (Message::slot), which is how the queue
// finds it again. Holes at either end are dropped at once; once holes
// outnumber live entries (plus a margin) the deque is rebuilt without them,
// which rewrites the positions: amortised O(1) a removal.
//
// Owned by a Queue and used under its mutex.
#pragma once

#include <cstdint>
#include <deque>

#include "broker/core/message.h"

namespace basin::core {

class HoleDeque {
 public:
  void PushBack(MessagePtr msg);
  void PushFront(MessagePtr msg);
  // The first live message, or null when empty.
  const Message* Front() const { return live_ == 0 ? nullptr : items_.front().get(); }
  MessagePtr PopFront();
  // Takes out `msg`, found at its slot (Message::slot()); null if that
  // position holds another message or none (a stale slot).
  MessagePtr Take(const Message& msg);

  size_t size() const { return live_; }
  bool empty() const { return live_ == 0; }
  // Entries kept, holes included: what compaction bounds.
  size_t capacity_used() const { return items_.size(); }
  template <typename F>
  void ForEach(F&& f) const {
    for (const MessagePtr& m : items_) {
      if (m != nullptr) f(*m);
    }
  }
  void Clear();

 private:
  static constexpr uint64_t kFirstPosition = uint64_t{1} << 62;  // room to push_front
  static constexpr size_t kHoleMargin = 64;
  void TrimEnds();
  void Compact();

  std::deque<MessagePtr> items_;  // holes are null; front and back are never holes
  uint64_t front_position_ = kFirstPosition;
  size_t live_ = 0;
};

}  // namespace basin::core
