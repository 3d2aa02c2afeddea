// Broker-wide accounting of message bytes against --max-memory. A message's
// bytes are reserved when it enters a queue and released when it is finished
// (task_done, dead-lettered, dropped). Above the limit puts wait like a full
// queue; whoever frees memory wakes the queues that have such waiters.
//
// Shares (MemoryShare) are set aside from the limit: queues see the limit less
// every share's cap, so a share's owner (pub/sub) keeps its part however full
// the queues are, and what it holds never takes room from the queues. used()
// counts both.
//
// Lock order: a queue's mutex may be held while calling ReserveOrWait; Release
// must be called with no queue lock held, since it calls listeners that lock.
#pragma once

#include <algorithm>
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

  // Reserves n bytes if they fit in queue_limit(); otherwise registers
  // `waiter` to be told when memory is freed and returns false. Never misses a
  // wake-up: a Release that races with the registration is seen by the retry
  // below it.
  bool ReserveOrWait(uint64_t n, const std::weak_ptr<MemoryListener>& waiter);
  // Reserves n bytes if they fit in queue_limit(); never waits.
  bool TryReserve(uint64_t n);
  // Reserves unconditionally: requeues and dead letters must never fail.
  void ForceReserve(uint64_t n) { used_.fetch_add(n); }
  void Release(uint64_t n, TimePoint now);

  // Everything held: queues' bytes and the shares'.
  uint64_t used() const { return used_.load() + shared_.load(); }
  // Listeners registered and not yet woken (for tests).
  size_t listeners() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }
  uint64_t limit() const { return limit_; }
  // What queues may hold: the limit less what the shares set aside (0 when
  // the limit is 0, unlimited).
  uint64_t queue_limit() const {
    const uint64_t aside = std::min(set_aside_.load(), limit_);
    return limit_ - aside;
  }

 private:
  friend class MemoryShare;

  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};       // queues' bytes, against queue_limit()
  std::atomic<uint64_t> shared_{0};     // the shares' bytes, each against its own cap
  std::atomic<uint64_t> set_aside_{0};  // the shares' caps
  std::atomic<bool> has_waiters_{false};
  mutable RankedMutex<LockRank::kMemoryBudget> mu_;  // guards waiters_
  std::vector<std::weak_ptr<MemoryListener>> waiters_;
};

// A part of a MemoryBudget set aside for one owner: its cap is taken off what
// queues may hold, for as long as the share exists. Pub/sub draws from one, so
// that idle subscribers hold at most the share and never the memory queues
// need, and queues that fill theirs cannot stop pub/sub. Never waits, and
// Release wakes nobody (queues' room does not change), so both may be called
// under any lock.
class MemoryShare {
 public:
  // cap 0 = no cap and nothing set aside (for an unlimited budget).
  MemoryShare(MemoryBudget* whole, uint64_t cap);
  ~MemoryShare();
  MemoryShare(const MemoryShare&) = delete;
  MemoryShare& operator=(const MemoryShare&) = delete;

  bool TryReserve(uint64_t n);
  // Reserves whatever the cap: for what must be kept anyway (bindings a
  // durable queue's log holds, restored at start). used() may then exceed
  // cap(), and TryReserve refuses until enough is released.
  void ForceReserve(uint64_t n);
  void Release(uint64_t n);

  uint64_t used() const { return used_.load(); }
  uint64_t cap() const { return cap_.load(); }
  // Takes effect for later reservations; what is held stays held. Not
  // thread-safe against another set_cap.
  void set_cap(uint64_t cap);

 private:
  MemoryBudget* const whole_;
  std::atomic<uint64_t> cap_;
  std::atomic<uint64_t> used_{0};
};

// Bytes reserved from a MemoryShare, given back when the charge is destroyed:
// a thing shared by pointer (a published message in many subscriber buffers)
// carries one, and is paid for once.
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
    if (share_ != nullptr) share_->Release(bytes_);
    share_ = nullptr;
  }
  MemoryShare* share_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace basin::core
