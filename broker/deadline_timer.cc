#include "broker/deadline_timer.h"

#include <boost/asio/post.hpp>
#include <vector>

#include "broker/core/shared_thread.h"

namespace basin {

DeadlineTimer::DeadlineTimer()
    : work_(boost::asio::make_work_guard(io_)), timer_(io_), thread_([this] {
        core::MarkSharedWorker();
        io_.run();
      }) {}

DeadlineTimer::~DeadlineTimer() { Stop(); }

void DeadlineTimer::Stop() {
  if (!thread_.joinable()) return;
  work_.reset();
  io_.stop();
  thread_.join();
}

void DeadlineTimer::ScheduleAt(std::weak_ptr<core::Expirable> target, core::TimePoint when) {
  std::lock_guard lock(mu_);
  InsertLocked(std::move(target), when);
  if (when < armed_) {
    armed_ = when;
    boost::asio::post(io_, [this] { Arm(); });
  }
}

void DeadlineTimer::InsertLocked(std::weak_ptr<core::Expirable> target, core::TimePoint when) {
  auto it = by_target_.find(target);
  if (it != by_target_.end()) {
    if (it->second->first <= when) return;
    due_.erase(it->second);
    by_target_.erase(it);
  }
  auto entry = due_.emplace(when, target);
  by_target_.emplace(std::move(target), entry);
}

// Runs on the timer thread.
void DeadlineTimer::Arm() {
  core::TimePoint first;
  {
    std::lock_guard lock(mu_);
    if (due_.empty()) {
      armed_ = core::kNever;
      return;
    }
    first = due_.begin()->first;
    armed_ = first;
  }
  timer_.expires_at(first);  // cancels a pending wait: its handler sees operation_aborted
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Fire();
  });
}

// Runs on the timer thread.
void DeadlineTimer::Fire() {
  const core::TimePoint now = core::Clock::now();
  std::vector<std::weak_ptr<core::Expirable>> ready;
  {
    std::lock_guard lock(mu_);
    while (!due_.empty() && due_.begin()->first <= now) {
      ready.push_back(due_.begin()->second);
      by_target_.erase(due_.begin()->second);
      due_.erase(due_.begin());
    }
    armed_ = core::kNever;
  }
  for (auto& weak : ready) {
    auto target = weak.lock();
    if (!target) continue;
    const core::TimePoint next = target->ExpireDue(now);
    if (next != core::kNever) {
      std::lock_guard lock(mu_);
      InsertLocked(std::move(weak), next);
    }
  }
  Arm();
}

}  // namespace basin
