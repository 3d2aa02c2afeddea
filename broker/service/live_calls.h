// Streams the service ends itself when the broker drains (SIGTERM): a
// Produce stream between batches waits on a read, and the core, which ends
// blocked calls and consumers, holds nothing of it.
//
// EndAll may reach a call while gRPC is finishing it on another thread, so a
// call it is talking to is pinned: whichever of EndAll and the call's OnDone
// lets go last deletes it.
#pragma once

#include <mutex>
#include <unordered_set>

#include "broker/core/lock_rank.h"

namespace basin::service {

class LiveCalls {
 public:
  class Call {
   public:
    virtual ~Call() = default;
    // Ends the stream with UNAVAILABLE once what it owes is written.
    virtual void EndForShutdown() = 0;

   private:
    friend class LiveCalls;
    int pins_ = 0;
    bool done_ = false;
  };

  // False once EndAll has run: the call should end at once.
  bool Add(Call* call);
  // From the call's OnDone: true if the caller deletes the call now.
  bool Done(Call* call);
  // Ends every live call; calls added later are refused by Add.
  void EndAll();

 private:
  RankedMutex<LockRank::kLiveCalls> mu_;
  std::unordered_set<Call*> calls_;
  bool ended_ = false;
};

}  // namespace basin::service
