// The broker's only timer. Queues ask to be woken at a deadline (a blocked
// call's timeout, a lease's expiry); this keeps those requests ordered by time
// and arms one Asio steady_timer for the earliest, on a thread of its own. The
// expiry work itself is short and never blocks.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "broker/core/deadline_scheduler.h"
#include "broker/core/lock_rank.h"

namespace basin {

class DeadlineTimer final : public core::DeadlineScheduler {
 public:
  DeadlineTimer();
  ~DeadlineTimer() override;
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  void ScheduleAt(std::weak_ptr<core::Expirable> target, core::TimePoint when) override;
  // Stops the thread; later requests are ignored.
  void Stop();

 private:
  void Arm();
  void Fire();

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::steady_timer timer_;
  using Due = std::multimap<core::TimePoint, std::weak_ptr<core::Expirable>>;
  // Keeps at most one entry per target (the earliest), so a queue that lowers
  // its deadline many times does not pile up timer entries.
  void InsertLocked(std::weak_ptr<core::Expirable> target, core::TimePoint when);

  RankedMutex<LockRank::kDeadlineTimer> mu_;  // guards due_, by_target_ and armed_
  Due due_;
  std::map<std::weak_ptr<core::Expirable>, Due::iterator, std::owner_less<>> by_target_;
  core::TimePoint armed_ = core::kNever;
  std::thread thread_;
};

}  // namespace basin
