#include "proc_stats.h"

#include <filesystem>
#include <fstream>
#include <string>

namespace basin::soak {

std::optional<ProcStats> ReadProcStats(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream status(dir + "/status");
  if (!status) return std::nullopt;
  ProcStats s;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_bytes = std::stoull(line.substr(6)) * 1024;
    if (line.rfind("Threads:", 0) == 0) s.threads = std::stoi(line.substr(8));
    if (line.rfind("State:", 0) == 0 && line.find('Z') != std::string::npos) return std::nullopt;
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++s.fds;
  }
  if (ec || s.threads == 0) return std::nullopt;
  return s;
}

}  // namespace basin::soak
