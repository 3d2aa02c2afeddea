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

#include "broker/core/lock_rank.h"
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
  // Listeners registered and not yet woken (for tests).
  size_t listeners() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
  std::atomic<bool> has_waiters_{false};
  mutable RankedMutex<LockRank::kMemoryBudget> mu_;  // guards waiters_
  std::vector<std::weak_ptr<MemoryListener>> waiters_;
};

// A capped part of a MemoryBudget: bytes reserved through it count against
// both its cap and the whole budget. Pub/sub draws from one, so that idle
// subscribers hold at most the share and never the memory queues need. Never
// waits; Release, like MemoryBudget's, must be called with no lock held.
class MemoryShare {
 public:
  // cap 0 = no cap of its own (the whole budget's limit still applies).
  MemoryShare(MemoryBudget* whole, uint64_t cap) : whole_(whole), cap_(cap) {}

  bool TryReserve(uint64_t n);
  void Release(uint64_t n, TimePoint now);

  uint64_t used() const { return used_.load(); }
  uint64_t cap() const { return cap_.load(); }
  // Takes effect for later reservations; what is held stays held.
  void set_cap(uint64_t cap) { cap_.store(cap); }

 private:
  MemoryBudget* const whole_;
  std::atomic<uint64_t> cap_;
  std::atomic<uint64_t> used_{0};
};

// Bytes reserved from a MemoryShare, given back when the charge is destroyed:
// a thing shared by pointer (a published message in many subscriber buffers)
// carries one, and is paid for once. Whoever may drop the last reference must
// hold no lock (see MemoryShare::Release).
class MemoryCharge {
 public:
  MemoryCharge() = default;
  MemoryCharge(MemoryShare* share, uint64_t bytes) : share_(share), bytes_(bytes) {}
  ~MemoryCharge() { Reset(); }
  MemoryCharge(MemoryCharge&& o) noexcept : share_(o.share_), bytes_(o.bytes_) {
    o.share_ = nullptr;
  }
  MemoryCharge& operator=(MemoryCharge&& o) noexcept {
    if (this != &o) {
      Reset();
      share_ = o.share_;
      bytes_ = o.bytes_;
      o.share_ = nullptr;
    }
    return *this;
  }
  MemoryCharge(const MemoryCharge&) = delete;
  MemoryCharge& operator=(const MemoryCharge&) = delete;

  uint64_t bytes() const { return share_ != nullptr ? bytes_ : 0; }

 private:
  void Reset() {
    if (share_ != nullptr) share_->Release(bytes_, Clock::now());
    share_ = nullptr;
  }
  MemoryShare* share_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace basin::core
