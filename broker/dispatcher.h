// A small pool of threads for work that must not run on the thread that
// triggered it: waking a subscription stream writes to gRPC, and doing that on
// the publisher's thread would make every publish pay for every subscriber's
// write. Posted work is short and never blocks.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>

namespace basin {

class Dispatcher {
 public:
  explicit Dispatcher(size_t threads) : pool_(threads) {}
  ~Dispatcher() { Stop(); }
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Post(std::function<void()> work) { boost::asio::post(pool_, std::move(work)); }
  // Runs what was posted, then joins the threads.
  void Stop() { pool_.join(); }

 private:
  boost::asio::thread_pool pool_;
};

}  // namespace basin
