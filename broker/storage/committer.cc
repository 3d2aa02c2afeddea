#include "broker/storage/committer.h"

#include <algorithm>
#include <utility>

namespace basin::storage {

std::optional<FsyncPolicy> ParseFsyncPolicy(std::string_view name) {
  if (name == "always") return FsyncPolicy::kAlways;
  if (name == "batch") return FsyncPolicy::kBatch;
  if (name == "never") return FsyncPolicy::kNever;
  return std::nullopt;
}

void CommittedLog::Append(std::vector<Pending> records, DurableCallback done) {
  bool mark = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (done) callbacks_.emplace_back(pending_.size(), std::move(done));
    for (Pending& r : records) pending_.push_back(std::move(r));
    mark = !queued_;
    queued_ = true;
  }
  if (mark) committer_->MarkDirty(shared_from_this());
}

void CommittedLog::Close() {
  std::lock_guard commit(commit_mu_);
  std::lock_guard lock(mu_);
  closed_ = true;
  pending_.clear();
  callbacks_.clear();
}

size_t CommittedLog::segments() {
  std::lock_guard commit(commit_mu_);
  return log_->segments();
}

void CommittedLog::Compact(std::vector<Pending> rewrite, uint64_t position) {
  {
    std::lock_guard lock(mu_);
    drop_before_ = std::max(drop_before_, position);
  }
  Append(std::move(rewrite), nullptr);
}

Committer::Committer(FsyncPolicy policy, std::chrono::microseconds interval)
    : policy_(policy), interval_(interval), thread_([this] { Run(); }) {}

Committer::~Committer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

std::shared_ptr<CommittedLog> Committer::Adopt(std::unique_ptr<SegmentedLog> log) {
  return std::shared_ptr<CommittedLog>(new CommittedLog(this, std::move(log)));
}

uint64_t Committer::syncs() const { return syncs_.load(); }

void Committer::MarkDirty(std::shared_ptr<CommittedLog> log) {
  {
    std::lock_guard lock(mu_);
    dirty_.push_back(std::move(log));
  }
  cv_.notify_one();
}

void Committer::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !dirty_.empty(); });
    if (dirty_.empty()) return;  // stopping, nothing left
    // Batch: at most one round of syncs per interval. After a quiet spell
    // records are synced at once; under load they gather until the interval
    // since the last round has passed, so no put waits longer than that (plus
    // the sync) and the disk sees at most one sync per log per interval.
    if (policy_ == FsyncPolicy::kBatch) {
      cv_.wait_until(lock, last_round_ + interval_, [&] { return stopping_; });
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
  std::vector<std::pair<size_t, DurableCallback>> callbacks;
  uint64_t drop_before = 0;
  std::lock_guard commit(log.commit_mu_);
  {
    std::lock_guard lock(log.mu_);
    if (log.closed_) return;
    records.swap(log.pending_);
    callbacks.swap(log.callbacks_);
    drop_before = std::exchange(log.drop_before_, 0);
    log.queued_ = false;
  }
  IoError error;
  bool ok = true;
  std::vector<uint64_t> positions;
  positions.reserve(records.size() + 1);
  for (const auto& r : records) {
    const auto position = log.log_->Append(r.type, r.body, &error);
    if (!position) {
      ok = false;
      break;
    }
    positions.push_back(*position);
  }
  positions.push_back(log.log_->end());  // a callback that waits for no record
  // A failure forgets the records not yet made safe (see SegmentedLog), so
  // every callback of this commit hears of it.
  const bool sync = policy_ != FsyncPolicy::kNever;
  if (ok) ok = sync ? log.log_->Sync(&error) : log.log_->Flush(&error);
  if (ok && sync) ++syncs_;  // before the callbacks: they may ask
  // A failed drop leaves segments behind; the owner asks again at its next
  // compaction.
  if (ok && drop_before != 0) log.log_->DropBefore(drop_before, nullptr);
  for (const auto& [first, cb] : callbacks) {
    cb(ok ? nullptr : &error, ok ? positions[std::min(first, positions.size() - 1)] : 0);
  }
}

}  // namespace basin::storage
