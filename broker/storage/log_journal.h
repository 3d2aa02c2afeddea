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
//
// A delayed message would hold its chunk, and every segment after it, until
// its time comes (up to 30 days). When the oldest chunk holds nothing but
// delayed messages (at most kMaxCarry) and a segment's worth of log lies
// after it, the journal asks the queue to write them again at the tail
// (TakeCarry, Carry); once those records are written the chunk is empty.
// Carried ids are the one case of ids out of position order: they are
// looked up in `moved_`, and a replay finds them by position.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

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

  // What a replay found live, so compaction knows where it lies; `messages`
  // are those the queue gets back (their ready times, as the queue keeps them).
  void Restored(const QueueReplay& replay, uint64_t log_end,
                const std::vector<core::MessagePtr>& messages);

  void Put(const std::vector<const core::Message*>& messages, const core::PutKeys& keys,
           Committed committed) override;
  void Binding(const std::string& pattern, bool bound) override;
  void Delivered(const std::vector<uint64_t>& ids) override;
  void Done(const std::vector<uint64_t>& ids) override;
  void Closed(Committed committed) override;
  void Deleted() override;
  std::vector<std::pair<core::TimePoint, uint64_t>> TakeCarry() override;
  void Carry(
      const std::vector<std::pair<const core::Message*, core::TimePoint>>& messages) override;
  void Retried(const std::vector<Retry>& retries) override;

  // The most delayed messages one carry round moves.
  static constexpr size_t kMaxCarry = 256;

 private:
  using Delayed = std::vector<std::pair<uint64_t, core::TimePoint>>;  // (id, ready time)
  struct Chunk {
    uint64_t live = 0;  // its messages not yet done
    // Of those, the ones put with a ready time ahead and not handed out since.
    std::map<uint64_t, core::TimePoint> delayed;
  };
  static DurableCallback Adapt(Committed committed);
  // Records that `count` messages from `first_id` were written at `position`,
  // `delayed` of them with a ready time ahead.
  void Written(uint64_t first_id, uint64_t count, uint64_t position, const Delayed& delayed);
  // Records that the carried messages were written again at `position`.
  void Carried(const Delayed& carried, uint64_t position);
  // The chunk a record written at `position` joins (a new one past
  // kChunkBytes); with mu_ held.
  std::map<uint64_t, Chunk>::iterator TailChunk(uint64_t position);
  // The chunk holding id's put, or end(); with mu_ held.
  std::map<uint64_t, Chunk>::iterator ChunkOf(uint64_t id);
  void MaybeCompact();  // with mu_ held
  void MaybeCarry();    // with mu_ held
  // Adds the current definition to `records` unless the log has it.
  void UpgradeDefinition(std::vector<CommittedLog::Pending>& records);

  const std::shared_ptr<CommittedLog> log_;
  // Written at each compaction; brought to the current version before the
  // first record an older broker could not read (see queue_definition.h).
  std::string definition_;
  bool definition_current_;
  const uint64_t compact_every_;

  RankedMutex<LockRank::kLogJournal> mu_;
  std::map<uint64_t, Chunk> chunks_;  // by the position of its first record
  // The first id put into each chunk, by id: puts come in id order, so an
  // id's chunk is the one of the greatest first id at or below it...
  std::map<uint64_t, uint64_t> first_ids_;
  // ...unless it was carried: then here (id -> chunk).
  std::unordered_map<uint64_t, uint64_t> moved_;
  std::atomic<uint64_t> delayed_count_{0};  // in every chunk's `delayed`: Delivered's fast path
  std::vector<std::pair<core::TimePoint, uint64_t>> carry_;  // asked for, not yet taken
  std::atomic<bool> carry_asked_{false};
  std::set<uint64_t> carrying_;  // handed to Carry, not yet written
  uint64_t last_put_position_ = 0;
  uint64_t next_id_ = 1;  // one past the highest id written
  uint64_t dropped_before_ = 0;
  bool closed_ = false;
  std::set<std::string> bindings_;  // rewritten at each compaction
};

}  // namespace basin::storage
