// Broker-wide accounting of message bytes against --max-memory. A message's
// bytes are reserved when it enters a queue and released when it is finished
// (task_done, dead-lettered, dropped). Above the limit puts wait like a full
// queue; whoever frees memory wakes the queues that have such waiters.
//
// Lock order: a queue's mutex may be held while calling ReserveOrWait; Release
// must be called with no queue lock held, since it calls listeners that lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "broker/core/time.h"

namespace basin::core {

class MemoryListener {
 public:
  virtual ~MemoryListener() = default;
  virtual void OnMemoryFreed(TimePoint now) = 0;
};

class MemoryBudget {
 public:
  // limit 0 = unlimited.
  explicit MemoryBudget(uint64_t limit) : limit_(limit) {}

  // Reserves n bytes if they fit; otherwise registers `waiter` to be told when
  // memory is freed and returns false. Never misses a wake-up: a Release that
  // races with the registration is seen by the retry below it.
  bool ReserveOrWait(uint64_t n, const std::weak_ptr<MemoryListener>& waiter);
  // Reserves n bytes if they fit; never waits.
  bool TryReserve(uint64_t n);
  // Reserves unconditionally: requeues and dead letters must never fail.
  void ForceReserve(uint64_t n) { used_.fetch_add(n); }
  void Release(uint64_t n, TimePoint now);

  uint64_t used() const { return used_.load(); }
  size_t listeners() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
  std::atomic<bool> has_waiters_{false};
  mutable std::mutex mu_;  // guards waiters_
  std::vector<std::weak_ptr<MemoryListener>> waiters_;
};

}  // namespace basin::core
