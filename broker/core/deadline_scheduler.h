// The core never sleeps and owns no timer. An object with deadlines (a queue's
// blocked calls and leases) asks its DeadlineScheduler to call ExpireDue(now) at
// or after a time; the server implements the scheduler with one Asio timer armed
// for the earliest deadline, and unit tests call ExpireDue by hand.
#pragma once

#include <memory>

#include "broker/core/time.h"

namespace basin::core {

class Expirable {
 public:
  virtual ~Expirable() = default;
  // Ends whatever is due at `now` and returns the next deadline (kNever if none).
  // A call before anything is due does nothing harmful: schedulers may fire early.
  virtual TimePoint ExpireDue(TimePoint now) = 0;
};

class DeadlineScheduler {
 public:
  virtual ~DeadlineScheduler() = default;
  // Thread-safe; called without the target's lock held. Duplicate or stale
  // requests are allowed: the target recomputes its deadline when called.
  virtual void ScheduleAt(std::weak_ptr<Expirable> target, TimePoint when) = 0;
};

}  // namespace basin::core
