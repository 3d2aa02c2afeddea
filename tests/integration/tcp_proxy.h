// A loopback TCP proxy in front of the broker whose connections a test can
// cut, to break client streams while the broker stays up (a network blip).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace basin::testing {

class TcpProxy {
 public:
  // Forwards 127.0.0.1:<port()> to `target` ("127.0.0.1:PORT").
  explicit TcpProxy(const std::string& target);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Closes every connection open now; new ones are accepted as before.
  void CutAll();
  // How many connections were accepted so far.
  int accepted() const { return accepted_; }

 private:
  void AcceptLoop();
  void Pump(int from, int to);

  int target_port_ = 0;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> open_fds_;
  std::vector<std::thread> pumps_;
};

}  // namespace basin::testing
