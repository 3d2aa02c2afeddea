// core::QueueJournal over a committed log: each call becomes one record
// (see queue_records.h) appended for the Committer to make durable.
//
// It also keeps the log's size proportional to what is live. Puts are
// grouped into chunks (a stretch of about a megabyte of log) that count
// their messages not yet done; once every chunk before a position has
// drained and a segment's worth of log lies below it, the journal rewrites
// the definition (and the closed mark, bindings, next id) at the tail and
// asks for the segments below to be deleted once that rewrite is synced
// (CommittedLog::Compact). A trickle queue never waits on a busy one:
// each durable queue has its own log (docs/design.md, "Durability").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "broker/core/lock_rank.h"
#include "broker/core/queue_journal.h"
#include "broker/storage/committer.h"
#include "broker/storage/queue_records.h"

namespace basin::storage {

// What a caller hears when the disk fails it: UNAVAILABLE / STORAGE_UNAVAILABLE.
core::Error StorageUnavailable(const std::string& what);

class LogJournal final : public core::QueueJournal,
                         public std::enable_shared_from_this<LogJournal> {
 public:
  // `definition`: the queue's encoded definition, rewritten at each
  // compaction. Compaction runs once `compact_every` bytes of log are dead.
  LogJournal(std::shared_ptr<CommittedLog> log, std::string definition, uint64_t compact_every);

  // What a replay found live, so compaction knows where it lies.
  void Restored(const QueueReplay& replay, uint64_t log_end);

  void Put(const std::vector<const core::Message*>& messages, const core::PutKeys& keys,
           Committed committed) override;
  void Binding(const std::string& pattern, bool bound) override;
  void Delivered(const std::vector<uint64_t>& ids) override;
  void Done(const std::vector<uint64_t>& ids) override;
  void Closed(Committed committed) override;
  void Deleted() override;

 private:
  struct Chunk {
    uint64_t position;  // of its first put
    uint64_t live;      // its messages not yet done
  };
  static DurableCallback Adapt(Committed committed);
  // Records that `count` messages from `first_id` were written at `position`.
  void Written(uint64_t first_id, uint64_t count, uint64_t position);
  void MaybeCompact();  // with mu_ held
  // Adds the current definition to `records` unless the log has it.
  void UpgradeDefinition(std::vector<CommittedLog::Pending>& records);

  const std::shared_ptr<CommittedLog> log_;
  // Written at each compaction; brought to the current version before the
  // first record an older broker could not read (see queue_definition.h).
  std::string definition_;
  bool definition_current_;
  const uint64_t compact_every_;

  RankedMutex<LockRank::kLogJournal> mu_;
  std::map<uint64_t, Chunk> chunks_;  // by first id; ids rise with position
  uint64_t last_put_position_ = 0;
  uint64_t next_id_ = 1;  // one past the highest id written
  uint64_t dropped_before_ = 0;
  bool closed_ = false;
  std::set<std::string> bindings_;  // rewritten at each compaction
};

}  // namespace basin::storage
