#include "broker/core/lock_rank.h"

#ifdef BASIN_LOCK_RANK_CHECK

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace basin::lock_rank {
namespace {

// The ranks this thread holds, in the order taken (a handful at most).
thread_local std::vector<LockRank> held;

}  // namespace

void Acquire(LockRank rank) {
  for (LockRank h : held) {
    if (h >= rank) {
      std::fprintf(stderr,
                   "lock order violated: taking a mutex of rank %d while holding one of rank %d "
                   "(docs/design.md, \"Lock order\")\n",
                   static_cast<int>(rank), static_cast<int>(h));
      std::abort();
    }
  }
  held.push_back(rank);
}

void Release(LockRank rank) {
  // Locks are usually released in reverse order, but need not be.
  auto it = std::find(held.rbegin(), held.rend(), rank);
  if (it != held.rend()) held.erase(std::next(it).base());
}

}  // namespace basin::lock_rank

#endif
