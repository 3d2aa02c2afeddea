// What one streaming consumer holds: its deliveries not yet acked or released,
// by per-stream tag. Tags are handed out in rising order, so the set is a
// deque sorted by tag with no allocation per message — the stream's hot path
// (deliver, ack) costs no node allocations, unlike a map. An entry taken out
// of the middle leaves a hole; holes at the front are dropped at once, the
// rest when they outnumber the live entries, so memory stays proportional to
// what is held even when one old delivery is never acked.
//
// Every delivery of a stream gets the same ack_timeout, so expiries rise with
// tags (to within the skew of callers' clocks, which only delays an expiry by
// that much): the front is the next to expire. An extension breaks that order;
// until the set is empty again, expiry lookups scan the entries (at most the
// stream's prefetch), a cost only consumers that extend pay.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "broker/core/message.h"
#include "broker/core/time.h"

namespace basin::core {

class HeldDeliveries {
 public:
  struct Taken {
    uint64_t tag;
    MessagePtr msg;
  };

  // Holds `msg` under the next tag (1, 2, ...) and returns the tag.
  uint64_t Add(MessagePtr msg, TimePoint expiry);
  // The message held under `tag`, taken out; null if none is.
  MessagePtr Take(uint64_t tag);
  // Every held message with a tag <= up_to, in tag order.
  std::vector<Taken> TakeUpTo(uint64_t up_to);
  // Held messages whose expiry is <= now, in tag order.
  std::vector<Taken> TakeExpired(TimePoint now);
  // Moves the expiry of the message held under `tag`; false if none is held.
  bool Extend(uint64_t tag, TimePoint expiry);
  // The same for every held message with a tag <= up_to.
  void ExtendUpTo(uint64_t up_to, TimePoint expiry);

  size_t size() const { return live_; }
  bool empty() const { return live_ == 0; }
  // The earliest expiry of a held message; kNever when none is held.
  TimePoint next_expiry() const;
  uint64_t bytes() const;
  // Entries kept, holes included: bounded by about twice size().
  size_t footprint() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t tag;
    TimePoint expiry;
    MessagePtr msg;  // null: a hole
  };
  void Tidy();
  std::deque<Entry>::iterator Find(uint64_t tag);

  std::deque<Entry> entries_;  // sorted by tag; the front is never a hole
  size_t live_ = 0;
  uint64_t next_tag_ = 1;
  bool in_order_ = true;  // expiries rise with tags (no extension since empty)
};

}  // namespace basin::core
