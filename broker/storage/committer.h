// Group commit for many logs on one thread. Callers append records and are
// called back once those records are durable under the fsync policy; records
// that arrive while a sync runs, or within the interval, share the next one.
//
//   always: sync as soon as records wait (concurrent appends still share it)
//   batch:  at most one round of syncs per `interval`: a record that arrives
//           after a quiet spell is synced at once, records under load wait
//           for the interval since the last round to pass
//   never:  write, do not sync (the page cache holds it: survives kill -9,
//           not a power cut)
//
// One thread serves every log, so a thousand durable queues cost one thread,
// and a queue's records reach its file in the order they were appended.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "broker/core/lock_rank.h"
#include "broker/storage/segmented_log.h"

namespace basin::storage {

enum class FsyncPolicy { kAlways, kBatch, kNever };
// "always", "batch" or "never" (the --fsync flag); nullopt for anything else.
std::optional<FsyncPolicy> ParseFsyncPolicy(std::string_view name);

// Called once the records are durable (error null), or could not be written;
// `position` is the log position of the first of them.
using DurableCallback = std::function<void(const IoError* error, uint64_t position)>;

class Committer;

// One log served by a Committer. Thread-safe.
class CommittedLog : public std::enable_shared_from_this<CommittedLog> {
 public:
  struct Pending {
    uint8_t type;
    std::string body;
  };
  // Queues the records (in order) for the committer, as one group: they go
  // into one segment, so they come back after a restart all or none (see
  // SegmentedLog::Append). `done` (may be empty: the caller does not wait)
  // runs on the committer's thread, with an error only if one of these
  // records (or one queued before them in the same commit) is not durable:
  // records a failed commit had already made durable are reported durable,
  // since a restart brings them back.
  void Append(std::vector<Pending> records, DurableCallback done);
  // Compaction: appends `rewrite` (what the dropped segments held that is
  // still true, such as the queue's definition) and, once it is synced —
  // whatever the fsync policy — deletes the segments wholly below
  // `position`. If the rewrite cannot be made durable nothing is deleted.
  void Compact(std::vector<Pending> rewrite, uint64_t position);
  // Writes nothing more (the log's queue was deleted): later appends are
  // dropped and their callbacks never run, and the log's files are closed
  // now, not when the last holder of the queue lets go (a reactor can hold
  // a deleted queue for as long as its call lasts, and an open fd keeps the
  // deleted files' space). Returns once no commit of this log is in
  // progress, so the owner may then remove its files.
  void Close();
  // The log's segment files now (waits out a commit in progress); 0 once
  // closed.
  size_t segments();

 private:
  friend class Committer;
  CommittedLog(Committer* committer, std::unique_ptr<SegmentedLog> log)
      : committer_(committer), log_(std::move(log)) {}
  void Enqueue(std::vector<Pending> records, DurableCallback done, uint64_t drop_before);

  Committer* const committer_;
  std::unique_ptr<SegmentedLog> log_;               // used by the committer's thread only
  RankedMutex<LockRank::kCommitterLog> commit_mu_;  // held while the committer writes this log
  RankedMutex<LockRank::kCommittedLog> mu_;         // guards what follows
  bool closed_ = false;
  std::vector<Pending> pending_;
  // What one Append or Compact queued.
  struct Group {
    size_t first;          // index in pending_ of its first record
    size_t end;            // one past its last
    DurableCallback done;  // may be empty
  };
  std::vector<Group> groups_;
  // A compaction's drop point, and the groups (groups_[0, drop_after_))
  // that must be durable before it is acted on: its rewrite.
  uint64_t drop_before_ = 0;
  size_t drop_after_ = 0;
  bool queued_ = false;  // in the committer's dirty list
};

class Committer {
 public:
  Committer(FsyncPolicy policy, std::chrono::microseconds interval);
  // Commits what waits, then stops.
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // The committer must outlive every append to the logs it adopted: the
  // broker owns it and stops its queues first. Records appended after the
  // committer is destroyed are never written and their callbacks never run.
  std::shared_ptr<CommittedLog> Adopt(std::unique_ptr<SegmentedLog> log);

  uint64_t syncs() const;  // fdatasync calls so far
  // The broker drains: from now on `batch` syncs what waits at once rather
  // than gather it for the interval, so that puts in progress are answered
  // within the drain's grace.
  void Hurry();

 private:
  friend class CommittedLog;
  void MarkDirty(std::shared_ptr<CommittedLog> log);
  void Run();
  // Writes what the log has waiting, syncs it, runs its callbacks.
  void Commit(CommittedLog& log);
  // Appends each group and writes (and under a syncing policy syncs) them;
  // false at the first failure. Fills the position and end of each group
  // appended.
  bool AppendGroups(SegmentedLog& log, const std::vector<CommittedLog::Pending>& records,
                    const std::vector<CommittedLog::Group>& groups,
                    std::vector<uint64_t>* positions, std::vector<uint64_t>* ends, IoError* error);

  const FsyncPolicy policy_;
  const bool sync_;  // not `never`
  const std::chrono::microseconds interval_;
  RankedMutex<LockRank::kCommitter> mu_;
  std::condition_variable_any cv_;
  std::vector<std::shared_ptr<CommittedLog>> dirty_;
  std::chrono::steady_clock::time_point last_round_{};  // of syncs, under batch
  std::atomic<uint64_t> syncs_{0};
  bool stopping_ = false;
  bool hurry_ = false;  // Hurry() was called
  std::thread thread_;
};

}  // namespace basin::storage
