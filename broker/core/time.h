// Time enters the core as an argument: callers pass `now`, the core returns the
// next deadline it cares about, and the server owns the only timer. Unit tests
// drive time by hand.
#pragma once

#include <chrono>

namespace basin::core {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

inline constexpr TimePoint kNever = TimePoint::max();

// now + d without overflowing past kNever.
inline TimePoint AddSaturating(TimePoint now, Duration d) {
  if (d >= kNever - now) return kNever;
  return now + d;
}

}  // namespace basin::core
