#include "broker/storage/committer.h"

#include <algorithm>
#include <utility>

#include "broker/core/shared_thread.h"

namespace basin::storage {

std::optional<FsyncPolicy> ParseFsyncPolicy(std::string_view name) {
  if (name == "always") return FsyncPolicy::kAlways;
  if (name == "batch") return FsyncPolicy::kBatch;
  if (name == "never") return FsyncPolicy::kNever;
  return std::nullopt;
}

void CommittedLog::Append(std::vector<Pending> records, DurableCallback done) {
  Enqueue(std::move(records), std::move(done), 0);
}

void CommittedLog::Enqueue(std::vector<Pending> records, DurableCallback done,
                           uint64_t drop_before) {
  bool mark = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    const size_t first = pending_.size();
    for (Pending& r : records) pending_.push_back(std::move(r));
    groups_.push_back({first, pending_.size(), std::move(done)});
    // With the rewrite, under one lock: a commit that takes the drop point
    // takes the records it waits for.
    if (drop_before != 0) {
      drop_before_ = std::max(drop_before_, drop_before);
      drop_after_ = groups_.size();
    }
    mark = !queued_;
    queued_ = true;
  }
  if (mark) committer_->MarkDirty(shared_from_this());
}

void CommittedLog::Close() {
  std::lock_guard commit(commit_mu_);
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    pending_.clear();
    groups_.clear();
  }
  log_.reset();
}

size_t CommittedLog::segments() {
  std::lock_guard commit(commit_mu_);
  return log_ != nullptr ? log_->segments() : 0;
}

void CommittedLog::Compact(std::vector<Pending> rewrite, uint64_t position) {
  Enqueue(std::move(rewrite), nullptr, position);
}

Committer::Committer(FsyncPolicy policy, std::chrono::microseconds interval)
    : policy_(policy),
      sync_(policy != FsyncPolicy::kNever),
      interval_(interval),
      thread_([this] { Run(); }) {}

Committer::~Committer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

std::shared_ptr<CommittedLog> Committer::Adopt(std::unique_ptr<SegmentedLog> log) {
  // Under `never` a record is answered once written: a roll must not cut
  // it off when its fdatasync fails.
  if (!sync_) log->AnswerWhenWritten();
  return std::shared_ptr<CommittedLog>(new CommittedLog(this, std::move(log)));
}

uint64_t Committer::syncs() const { return syncs_.load(); }

void Committer::Hurry() {
  {
    std::lock_guard lock(mu_);
    hurry_ = true;
  }
  cv_.notify_all();
}

void Committer::MarkDirty(std::shared_ptr<CommittedLog> log) {
  {
    std::lock_guard lock(mu_);
    dirty_.push_back(std::move(log));
  }
  cv_.notify_one();
}

void Committer::Run() {
  core::MarkSharedWorker();
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !dirty_.empty(); });
    if (dirty_.empty()) return;  // stopping, nothing left
    // Batch: at most one round of syncs per interval. After a quiet spell
    // records are synced at once; under load they gather until the interval
    // since the last round has passed, so no put waits longer than that (plus
    // the sync) and the disk sees at most one sync per log per interval.
    if (policy_ == FsyncPolicy::kBatch && !hurry_) {
      cv_.wait_until(lock, last_round_ + interval_, [&] { return stopping_ || hurry_; });
      last_round_ = std::chrono::steady_clock::now();
    }
    std::vector<std::shared_ptr<CommittedLog>> logs = std::move(dirty_);
    dirty_.clear();
    lock.unlock();
    for (const auto& log : logs) Commit(*log);
    lock.lock();
  }
}

void Committer::Commit(CommittedLog& log) {
  std::vector<CommittedLog::Pending> records;
  std::vector<CommittedLog::Group> groups;
  uint64_t drop_before = 0;
  size_t drop_after = 0;
  std::lock_guard commit(log.commit_mu_);
  {
    std::lock_guard lock(log.mu_);
    if (log.closed_) return;
    records.swap(log.pending_);
    groups.swap(log.groups_);
    drop_before = std::exchange(log.drop_before_, 0);
    drop_after = std::exchange(log.drop_after_, 0);
    log.queued_ = false;
  }
  SegmentedLog& segments = *log.log_;
  IoError error;
  // Of each group appended: its first record's position and its end.
  std::vector<uint64_t> positions, ends;
  const bool ok = AppendGroups(segments, records, groups, &positions, &ends, &error);
  if (ok && sync_) ++syncs_;  // before the callbacks: they may ask
  // A compaction's rewrite is synced before the segments holding what it
  // rewrites go, whatever the policy. Under `never` its records already
  // count as written, so a failed sync keeps them and only keeps the drop
  // from happening.
  if (ok && !sync_ && drop_before != 0) {
    IoError ignored;
    if (segments.SyncWritten(&ignored)) ++syncs_;
  }
  // Records reach the file in order and a failure forgets everything past
  // the last safe byte, so the safe groups are a prefix — which may include
  // some of a failed commit (those a roll synced into the segment before).
  const auto prefix = [&](uint64_t safe_end) {
    size_t n = 0;
    while (n < ends.size() && ends[n] <= safe_end) ++n;
    return n;
  };
  const size_t safe = prefix(sync_ ? segments.synced_end() : segments.written_end());
  // A failed drop leaves segments behind; the owner asks again at its next
  // compaction.
  if (drop_before != 0 && drop_after <= prefix(segments.synced_end())) {
    segments.DropBefore(drop_before, nullptr);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!groups[g].done) continue;
    const bool durable = g < safe;
    groups[g].done(durable ? nullptr : &error, durable ? positions[g] : 0);
  }
}

bool Committer::AppendGroups(SegmentedLog& log, const std::vector<CommittedLog::Pending>& records,
                             const std::vector<CommittedLog::Group>& groups,
                             std::vector<uint64_t>* positions, std::vector<uint64_t>* ends,
                             IoError* error) {
  positions->reserve(groups.size());
  ends->reserve(groups.size());
  std::vector<LogRecord> group;
  for (const auto& [first, end, done] : groups) {
    group.clear();
    for (size_t r = first; r < end; ++r) group.push_back({records[r].type, records[r].body});
    // A group of no records (a caller waiting for those before it) is at
    // the log's end and appends nothing.
    const auto position = group.empty() ? log.end() : log.Append(group, error);
    if (!position) return false;
    positions->push_back(*position);
    ends->push_back(log.end());
  }
  return sync_ ? log.Sync(error) : log.Flush(error);
}

}  // namespace basin::storage
