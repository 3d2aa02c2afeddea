// Where a durable queue writes down what happens to it. broker/storage
// implements it over a log (storage::LogJournal); the core knows only this.
//
// Put and Closed are called under the queue's lock, so puts reach the journal
// in id order; Delivered and Done just after it (their order across threads
// does not matter: see storage::QueueReplay). An implementation only queues
// the record and does its I/O elsewhere. `committed` runs once the records
// are durable, or with the error that kept them from being written — on
// another thread, never inline (the caller holds its lock).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/message.h"
#include "broker/core/time.h"

namespace basin::core {

// What lets the queue tell a resend of these puts from new work after a
// restart: their dedup ids and their producer's sequence numbers.
struct PutKeys {
  std::vector<std::pair<std::string, uint64_t>> dedup_ids;  // dedup id, message id
  std::string producer;                                     // empty: none
  std::vector<std::pair<uint64_t, uint64_t>> sequences;     // sequence, message id
};

class QueueJournal {
 public:
  // A released message that waits before it is ready again.
  struct Retry {
    uint64_t id = 0;
    uint32_t deliveries = 0;  // its hand-outs so far
    TimePoint at;
  };
  // With the time the write was answered: the core never reads the clock.
  using Committed = std::function<void(std::optional<Error>, TimePoint now)>;
  virtual ~QueueJournal() = default;

  // Messages admitted, in id order (ids are set).
  virtual void Put(const std::vector<const Message*>& messages, const PutKeys& keys,
                   Committed committed) = 0;
  // A topic binding made or removed (not waited for, like a close).
  virtual void Binding(const std::string& pattern, bool bound) = 0;
  // Hand-outs and task_dones (or dead-letterings, drops) are not waited for:
  // a lost one costs a redelivery, never a message.
  virtual void Delivered(const std::vector<uint64_t>& ids) = 0;
  virtual void Done(const std::vector<uint64_t>& ids) = 0;
  // Messages given back with a delay (not waited for, like a delivery: a
  // lost one costs an earlier redelivery).
  virtual void Retried(const std::vector<Retry>& retries) { (void)retries; }
  virtual void Closed(Committed committed) = 0;
  // Delayed messages whose put records are all that keeps the oldest part of
  // the log, by (ready time, id), for the queue to write again with Carry so
  // that part can go. Polled after every operation, without the queue's
  // lock: cheap when there are none. A message no longer delayed is skipped.
  virtual std::vector<std::pair<TimePoint, uint64_t>> TakeCarry() { return {}; }
  // Writes the messages' puts again, same ids (called under the queue's lock,
  // as Put: no record about them can come before it). Not waited for.
  // `at`: the message's ready time now (a retry's may differ from its put's).
  virtual void Carry(const std::vector<std::pair<const Message*, TimePoint>>& messages) {
    (void)messages;
  }
  // The queue was deleted: write nothing more, and let go of the files now
  // (the Queue may live on in a call that still holds it). Returns once no
  // write of this journal is in progress. Called without the queue's lock (a write in
  // progress may be calling back into the queue).
  virtual void Deleted() = 0;
};

}  // namespace basin::core
