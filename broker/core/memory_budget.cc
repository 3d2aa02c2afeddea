#include "broker/core/memory_budget.h"

namespace basin::core {

bool MemoryBudget::TryReserve(uint64_t n) {
  if (limit_ == 0) {
    used_.fetch_add(n);
    return true;
  }
  const uint64_t limit = queue_limit();
  uint64_t cur = used_.load();
  while (cur + n <= limit) {
    if (used_.compare_exchange_weak(cur, cur + n)) return true;
  }
  return false;
}

bool MemoryBudget::ReserveOrWait(uint64_t n, const std::weak_ptr<MemoryListener>& waiter) {
  if (TryReserve(n)) return true;
  {
    std::lock_guard lock(mu_);
    waiters_.push_back(waiter);
    has_waiters_.store(true);
  }
  // Release() subtracts before reading has_waiters_, we set has_waiters_ before
  // retrying: with sequentially consistent atomics one of us sees the other. A
  // successful retry leaves a spurious listener behind, which is harmless.
  return TryReserve(n);
}

void MemoryBudget::Release(uint64_t n, TimePoint now) {
  if (n == 0) return;
  used_.fetch_sub(n);
  if (!has_waiters_.load()) return;
  std::vector<std::weak_ptr<MemoryListener>> wake;
  {
    std::lock_guard lock(mu_);
    wake.swap(waiters_);
    has_waiters_.store(false);
  }
  for (auto& w : wake) {
    if (auto l = w.lock()) l->OnMemoryFreed(now);
  }
}

MemoryShare::MemoryShare(MemoryBudget* whole, uint64_t cap) : whole_(whole), cap_(cap) {
  whole_->set_aside_.fetch_add(cap);
}

MemoryShare::~MemoryShare() { whole_->set_aside_.fetch_sub(cap_.load()); }

void MemoryShare::set_cap(uint64_t cap) {
  const uint64_t old = cap_.exchange(cap);
  whole_->set_aside_.fetch_add(cap - old);  // modular: a smaller cap subtracts
}

bool MemoryShare::TryReserve(uint64_t n) {
  const uint64_t cap = cap_.load();
  uint64_t cur = used_.load();
  do {
    if (cap != 0 && cur + n > cap) return false;
  } while (!used_.compare_exchange_weak(cur, cur + n));
  whole_->shared_.fetch_add(n);
  return true;
}

void MemoryShare::ForceReserve(uint64_t n) {
  used_.fetch_add(n);
  whole_->shared_.fetch_add(n);
}

void MemoryShare::Release(uint64_t n) {
  used_.fetch_sub(n);
  whole_->shared_.fetch_sub(n);
}

}  // namespace basin::core
