// Bounds a call that must not hang (a destructor, a flush) without sleeping:
// the call runs on its own thread and the test waits for it with a generous
// limit. A call that has not returned by then is left running, so a
// regression fails the test instead of hanging it; the caller must then leak
// whatever the call still uses.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>

namespace basin::testing {

// True when `call` returned within `limit` (an exception it threw is rethrown).
inline bool ReturnsWithin(std::chrono::milliseconds limit, std::function<void()> call) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> returned = done->get_future();
  std::thread([call = std::move(call), done] {
    try {
      call();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (returned.wait_for(limit) != std::future_status::ready) return false;
  returned.get();
  return true;
}

}  // namespace basin::testing
