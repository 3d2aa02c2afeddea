#include "broker/service/live_calls.h"

#include <vector>

namespace basin::service {

bool LiveCalls::Add(Call* call) {
  std::lock_guard lock(mu_);
  calls_.insert(call);
  return !ended_;
}

bool LiveCalls::Done(Call* call) {
  std::lock_guard lock(mu_);
  calls_.erase(call);
  call->done_ = true;
  return call->pins_ == 0;
}

void LiveCalls::EndAll() {
  std::vector<Call*> pinned;
  {
    std::lock_guard lock(mu_);
    ended_ = true;
    pinned.assign(calls_.begin(), calls_.end());
    for (Call* c : pinned) ++c->pins_;
  }
  // Outside mu_: ending a call may run its OnDone, which takes mu_.
  for (Call* c : pinned) c->EndForShutdown();
  std::vector<Call*> finished;
  {
    std::lock_guard lock(mu_);
    for (Call* c : pinned) {
      if (--c->pins_ == 0 && c->done_) finished.push_back(c);
    }
  }
  for (Call* c : finished) delete c;
}

}  // namespace basin::service
