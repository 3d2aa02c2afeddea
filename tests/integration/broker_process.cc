#include "broker_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace basin::testing {

std::string BasindPath() { return BASIN_BASIND_PATH; }
std::string BasinctlPath() { return BASIN_BASINCTL_PATH; }
std::string WorkerPath() { return BASIN_WORKER_PATH; }

Process::Process(const std::string& path, const std::vector<std::string>& args) {
  int out[2], in[2];
  if (pipe(out) != 0 || pipe(in) != 0) throw std::runtime_error("pipe failed");
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec. The child dies with the test:
    // a test that aborts must not leave a broker behind, holding ctest's
    // output pipe open and the run hanging.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(out[1], STDOUT_FILENO);
    dup2(in[0], STDIN_FILENO);
    close(out[0]);
    close(out[1]);
    close(in[0]);
    close(in[1]);
    execve(path.c_str(), argv.data(), environ);
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  stdout_fd_ = out[0];
  stdin_fd_ = in[1];
  if (pid_ < 0) throw std::runtime_error("cannot start " + path);
}

Process::~Process() {
  if (!exited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  if (stdin_fd_ >= 0) close(stdin_fd_);
}

std::optional<std::string> Process::ReadLine(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(stdout_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    buffered_.append(buf, static_cast<size_t>(n));
  }
}

void Process::Signal(int sig) const { kill(pid_, sig); }

void Process::Write(const std::string& text) const {
  if (write(stdin_fd_, text.data(), text.size()) < 0) throw std::runtime_error("write failed");
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  int status = 0;
  const bool exited = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
  if (!exited) return std::nullopt;
  exited_ = true;
  return status;
}

BrokerProcess::BrokerProcess(std::vector<std::string> extra_args)
    : process_(BasindPath(), [&] {
        std::vector<std::string> args = {"--log-level", "warn"};
        // An ephemeral port, unless the test names one (a restart on the same port).
        if (std::find(extra_args.begin(), extra_args.end(), "--listen") == extra_args.end()) {
          args.insert(args.end(), {"--listen", "127.0.0.1:0"});
        }
        args.insert(args.end(), extra_args.begin(), extra_args.end());
        return args;
      }()) {
  const auto line = process_.ReadLine(std::chrono::seconds(20));
  const std::string prefix = "basind listening on ";
  if (!line || line->rfind(prefix, 0) != 0) {
    throw std::runtime_error("basind did not start: " + line.value_or("<no output>"));
  }
  address_ = line->substr(prefix.size());
}

BrokerProcess::~BrokerProcess() {
  if (!stopped_) Stop();
}

std::optional<int> BrokerProcess::Kill() {
  stopped_ = true;
  process_.Signal(SIGKILL);
  return process_.Wait(std::chrono::seconds(10));
}

std::optional<int> BrokerProcess::Stop(std::chrono::milliseconds timeout) {
  stopped_ = true;
  process_.Signal(SIGTERM);
  return process_.Wait(timeout);
}

int BrokerProcess::Threads() const {
  std::ifstream in("/proc/" + std::to_string(pid()) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace basin::testing
