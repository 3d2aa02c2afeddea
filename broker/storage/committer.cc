#include "broker/storage/committer.h"

namespace basin::storage {

void CommittedLog::Append(std::vector<Pending> records, DurableCallback done) {
  bool mark = false;
  {
    std::lock_guard lock(mu_);
    for (Pending& r : records) pending_.push_back(std::move(r));
    if (done) callbacks_.push_back(std::move(done));
    mark = !queued_;
    queued_ = true;
  }
  if (mark) committer_->MarkDirty(shared_from_this());
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
    if (dirty_.empty()) first_dirty_ = std::chrono::steady_clock::now();
    dirty_.push_back(std::move(log));
  }
  cv_.notify_one();
}

void Committer::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !dirty_.empty(); });
    if (dirty_.empty()) return;  // stopping, nothing left
    // Batch: let more records join this sync, up to the interval after the
    // first one that waits.
    if (policy_ == FsyncPolicy::kBatch) {
      cv_.wait_until(lock, first_dirty_ + interval_, [&] { return stopping_; });
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
  std::vector<DurableCallback> callbacks;
  {
    std::lock_guard lock(log.mu_);
    records.swap(log.pending_);
    callbacks.swap(log.callbacks_);
    log.queued_ = false;
  }
  IoError error;
  bool ok = true;
  for (const auto& r : records) {
    if (!log.log_->Append(r.type, r.body, &error)) {
      ok = false;
      break;
    }
  }
  // A failure forgets the records not yet made safe (see SegmentedLog), so
  // every callback of this commit hears of it.
  const bool sync = policy_ != FsyncPolicy::kNever;
  if (ok) ok = sync ? log.log_->Sync(&error) : log.log_->Flush(&error);
  if (ok && sync) ++syncs_;  // before the callbacks: they may ask
  for (const DurableCallback& cb : callbacks) cb(ok ? nullptr : &error);
}

}  // namespace basin::storage
