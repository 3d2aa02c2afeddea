// How a wake-up from the core reaches a streaming reactor that may be ending
// at that very moment. OnDone marks the link done; no lock is held while the
// woken reactor writes or finishes (gRPC may run reactions on that thread), so
// whichever of OnDone and the last wake-up in progress comes second deletes
// the reactor. `Call` must have WriteNext().
#pragma once

#include <mutex>

#include "broker/core/lock_rank.h"

namespace basin::service {

template <typename Call>
class CallLink {
 public:
  explicit CallLink(Call* call) : call_(call) {}

  void Wake() {
    {
      std::lock_guard lock(mu_);
      if (done_) return;
      ++waking_;
    }
    call_->WriteNext();
    bool last = false;
    {
      std::lock_guard lock(mu_);
      last = --waking_ == 0 && done_;
    }
    if (last) delete call_;
  }

  // From OnDone; true if the caller may delete the call now.
  bool Detach() {
    std::lock_guard lock(mu_);
    done_ = true;
    return waking_ == 0;
  }

 private:
  RankedMutex<LockRank::kServiceCall> mu_;
  Call* const call_;
  int waking_ = 0;
  bool done_ = false;
};

}  // namespace basin::service
