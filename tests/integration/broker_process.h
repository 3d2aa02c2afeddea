// Starts the real basind on an ephemeral loopback port for a test, reads the
// address it prints once serving, and stops it (SIGTERM) when done.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace basin::testing {

// A child process with its stdout on a pipe.
class Process {
 public:
  Process(const std::string& path, const std::vector<std::string>& args);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reads one line of the child's stdout; nullopt at EOF or after `timeout`.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout);
  void Signal(int sig) const;
  // Waits for exit; returns the wait status, or nullopt after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Writes to the child's stdin.
  void Write(const std::string& text) const;

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stdin_fd_ = -1;
  std::string buffered_;
  bool exited_ = false;
};

class BrokerProcess {
 public:
  explicit BrokerProcess(std::vector<std::string> extra_args = {});
  ~BrokerProcess();

  const std::string& address() const { return address_; }
  pid_t pid() const { return process_.pid(); }
  Process& process() { return process_; }
  // The broker's thread count, from /proc.
  int Threads() const;
  // SIGTERM and wait; returns the exit status.
  std::optional<int> Stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SIGKILL, as a crash would, and wait.
  std::optional<int> Kill();

 private:
  Process process_;
  std::string address_;
  bool stopped_ = false;
};

// Polls `condition` until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Paths of the binaries under test (set by CMake).
std::string BasindPath();
std::string BasinctlPath();
std::string WorkerPath();

}  // namespace basin::testing
