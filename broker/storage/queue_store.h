// The data directory (--data-dir): one log per durable queue, all committed
// by one Committer.
//
//   DIR/LOCK                      flock()ed while a broker uses DIR
//   DIR/queues/NAME.queue/        a durable queue's segments (SegmentedLog)
//   DIR/queues/NAME.queue~deleted-P-N   a deleted queue on its way out
//   DIR/queues/NAME.queue~unrecovered-P-N   a log recovery could not read,
//                                 set aside when a queue of that name was
//                                 created
//
// Queue names are [A-Za-z0-9._-], so they are safe as file names as they are,
// and no queue's directory can contain '~': that is what makes a tombstone a
// tombstone. Recovery deletes only those; anything else it cannot use (the
// ".deleted-" names of older versions, which a queue's own name can contain)
// stays where it is, with a warning.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core/durable_store.h"
#include "broker/core/lock_rank.h"
#include "broker/storage/committer.h"
#include "broker/storage/segmented_log.h"

namespace basin::storage {

class QueueStore final : public core::DurableStore {
 public:
  // Creates DIR if needed and locks it; null with `error` set if it cannot,
  // or if another broker holds it. `committer` must outlive the store's
  // queues.
  static std::unique_ptr<QueueStore> Open(const std::string& dir, LogOptions options,
                                          Committer* committer, std::string* error);
  ~QueueStore() override;

  core::Result<std::shared_ptr<core::QueueJournal>> Create(
      const core::QueueConfig& config) override;
  void Remove(const std::string& name) override;
  // Queues whose logs are not usable (no definition, a later format, a
  // read or write of their files failing: EIO) are skipped with a warning;
  // a failure a restart can cure once its cause is removed (EMFILE, ENFILE,
  // ENOMEM, ENOSPC, EDQUOT; EACCES, EPERM, EROFS) fails the whole recovery,
  // naming the queue.
  core::Result<std::vector<Recovered>> Recover() override;

  // What the last Recover found wrong and repaired (torn tails, damaged
  // stretches, unreadable queues), one line each, for the log.
  const std::vector<std::string>& recovery_warnings() const { return warnings_; }
  // Segments, bytes written and fdatasync latencies of every log in DIR.
  std::shared_ptr<const StorageCounters> counters() const { return options_.counters; }

 private:
  QueueStore(std::string dir, LogOptions options, Committer* committer, int lock_fd);
  std::string QueueDir(const std::string& name) const;
  // DIR + mark + a suffix no other directory has: where a directory is
  // renamed to, out of recovery's way (with mu_ held).
  std::string AsideName(const std::string& dir, std::string_view mark);
  // What Recover does with one entry of DIR/queues; an error if the broker
  // must not start (a queue's files could not be opened, for a cause a
  // restart cures once it is removed).
  std::optional<core::Error> RecoverEntry(const std::string& name, bool is_directory,
                                          std::vector<Recovered>* out);
  // Opens one queue's log and replays it; kStorageUnavailable if a system
  // call failed in a way a restart can cure, another error if the log is not
  // one to recover.
  core::Result<Recovered> RecoverQueue(const std::string& dir_name);

  const std::string dir_;
  const std::string queues_dir_;
  const LogOptions options_;
  Committer* const committer_;
  const int lock_fd_;
  RankedMutex<LockRank::kQueueStore> mu_;  // serialises Create and Remove
  uint64_t next_aside_ = 0;
  std::vector<std::string> warnings_;
};

}  // namespace basin::storage
