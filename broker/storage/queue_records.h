// The records of a durable queue's log, and the state a replay rebuilds.
//
// Every change to a durable queue is one record: its definition, a put, a
// delivery, a task_done (or any other way a message leaves: dead-lettered,
// dropped), its close. Message bytes are opaque here — the core's encoding of
// headers and payload.
//
// Replay rules (docs/design.md, "Durability"): a put makes a message live; a
// task_done ends it; a delivery without a task_done means the message was out
// when the broker stopped, so it is ready again with one more delivery (at
// least once; deliveries are written without waiting for a sync, so after a
// crash a count is a lower bound). Messages come back in id order — put order.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core/queue_journal.h"

namespace basin::storage {

enum class QueueRecord : uint8_t {
  kDefined = 1,    // body: the queue's definition, as the caller encoded it
  kPut = 2,        // body: id, then the message bytes
  kDelivered = 3,  // body: ids
  kDone = 4,       // body: ids
  kClosed = 5,     // body: empty
  kNextId = 6,     // body: the next message id (written when puts are compacted away)
  kBound = 7,      // body: a topic pattern bound to the queue
  kUnbound = 8,    // body: a pattern unbound
  kPutKeys = 9,    // body: dedup ids and producer sequences of the puts before it
  // body: id, the attributes (count, then (tag, value) pairs: PutAttr),
  // then the message bytes. Only messages with attributes; the queue's
  // definition is version 3 before the first one is written.
  kPutAttrs = 10,
  // body: id, its deliveries so far, the wall-clock time it is ready again:
  // a release with a delay (retry_backoff). Applies while no later
  // delivery of it is recorded.
  kRetry = 11,
};

// The attributes of a kPutAttrs record. Times are wall-clock nanoseconds
// since the epoch: the log outlives the process and its steady clock.
// kDeliveries: hand-outs before this record (a put written again by a
// carry keeps its count).
enum class PutAttr : uint8_t {
  kReadyAt = 1,
  kExpiresAt = 2,
  kPriority = 3,
  kGroup = 4,
  kDeliveries = 5
};

struct StoredAttrs {
  int64_t ready_at = 0;     // 0: ready at once
  uint32_t deliveries = 0;  // hand-outs when ready_at was set
  int64_t expires_at = 0;   // 0: never
  uint8_t priority = 0;
  std::string group;
  bool operator==(const StoredAttrs&) const = default;
};

std::string EncodePut(uint64_t id, std::string_view message);
// The same for a queue's message, encoded straight into the record body.
std::string EncodePut(const core::Message& message);
// A kPutAttrs body for a message with attributes; `wall_offset` turns its
// steady-clock times into wall-clock ones (wall = steady + offset).
std::string EncodePutAttrs(const core::Message& message, core::Duration wall_offset);
// The same for a message written again (a carry): ready at `ready_at` (a
// retry's time may not be its put's), with its deliveries so far.
std::string EncodePutAttrs(const core::Message& message, core::Duration wall_offset,
                           core::TimePoint ready_at, uint32_t deliveries);
std::string EncodeRetry(const core::QueueJournal::Retry& retry, core::Duration wall_offset);
// Ids of kDelivered and kDone records.
std::string EncodeIds(const std::vector<uint64_t>& ids);
std::string EncodeNextId(uint64_t next_id);
std::string EncodePutKeys(const core::PutKeys& keys);

class QueueReplay {
 public:
  struct Live {
    std::string message;
    uint32_t deliveries = 0;
    uint64_t position = 0;  // of its put record
    StoredAttrs attrs;
    // Ready at attrs.ready_at only while no hand-out after the record that
    // set it is recorded.
    bool delayed() const { return attrs.ready_at != 0 && deliveries <= attrs.deliveries; }
  };

  // Applies one record from the log; false if its body does not parse (the
  // record is then ignored: its CRC held, so this is a bug, not damage).
  bool Apply(uint64_t position, uint8_t type, std::string_view body);

  const std::optional<std::string>& definition() const { return definition_; }
  // Live messages by id: put and not done.
  const std::map<uint64_t, Live>& live() const { return live_; }
  bool closed() const { return closed_; }
  // One past the highest id ever put: ids are never reused, even after a
  // restart that finds the queue empty.
  uint64_t next_id() const { return next_id_; }
  const std::set<std::string>& bindings() const { return bindings_; }
  // Dedup ids and producer sequences of the puts still in the log, in order;
  // only those whose put was replayed.
  const std::vector<core::PutKeys>& keys() const { return keys_; }

 private:
  std::optional<std::string> definition_;
  std::map<uint64_t, Live> live_;
  bool closed_ = false;
  uint64_t next_id_ = 1;
  std::set<std::string> bindings_;
  std::vector<core::PutKeys> keys_;
};

}  // namespace basin::storage
