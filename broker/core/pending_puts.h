// A durable queue's puts that have their room but are not yet on disk. Each
// admitted batch gets a number; the journal confirms batches in any order,
// and they become ready (or fail) strictly in admission order, so ids and
// FIFO order hold whatever order the disk answers in. Owned by a Queue and
// used under its mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/message.h"
#include "broker/core/queue_journal.h"
#include "broker/core/queue_types.h"

namespace basin::core {

struct PendingBatch {
  uint64_t seq = 0;
  std::vector<MessagePtr> msgs;
  uint64_t bytes = 0;
  // What of it takes the queue's room (max_size, max_bytes): not messages
  // that become ready later.
  uint64_t room_count = 0;
  uint64_t room_bytes = 0;
  PutBatchCallback cb;  // may be empty (dead letters, routed copies)
  std::vector<PutResult> results;
  // Forgotten if the write fails, so a resend is not taken for a repeat.
  PutKeys keys;
  bool resolved = false;
  std::optional<Error> error;
};

class PendingPuts {
 public:
  // Takes the batch in and returns its number (for the journal's callback).
  uint64_t Admit(PendingBatch batch);
  // The journal answered batch `seq`; returns the batches that are now
  // settled, in admission order (a batch whose write failed has `error`).
  // Unknown numbers (the queue was emptied meanwhile) are ignored.
  std::vector<PendingBatch> Resolve(uint64_t seq, std::optional<Error> error);
  // Every batch, in admission order; none is pending after.
  std::vector<PendingBatch> TakeAll();

  // The number the next Admit will return.
  uint64_t next_seq() const { return next_seq_; }
  bool empty() const { return batches_.empty(); }
  // The id of the oldest pending message, 0 if none: later ids were admitted
  // after it, so every pending message's id is at or above it.
  uint64_t oldest_id() const {
    return batches_.empty() || batches_.front().msgs.empty() ? 0
                                                             : batches_.front().msgs.front()->id();
  }
  // Messages and bytes that take the queue's room.
  uint64_t room_count() const { return room_count_; }
  uint64_t room_bytes() const { return room_bytes_; }
  uint64_t bytes() const { return bytes_; }  // all of them: what memory holds

 private:
  std::deque<PendingBatch> batches_;  // seq rises by one from front to back
  uint64_t room_count_ = 0;
  uint64_t room_bytes_ = 0;
  uint64_t bytes_ = 0;
  uint64_t next_seq_ = 1;
};

}  // namespace basin::core
