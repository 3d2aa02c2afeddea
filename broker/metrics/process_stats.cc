#include "broker/metrics/process_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace basin::metrics {
namespace {

uint64_t CountEntries(const char* dir) {
  DIR* d = ::opendir(dir);
  if (d == nullptr) return 0;
  uint64_t n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// Seconds since the epoch at which the machine booted (/proc/stat btime).
double BootTime() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

}  // namespace

ProcessStats ReadProcessStats() {
  ProcessStats p;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string line;
  std::getline(stat_file, line);
  // The command name (field 2) may hold spaces and parentheses: the fields
  // that matter follow its last ')'.
  const auto close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(line.substr(close + 2));
    std::string f[22];
    for (auto& field : f) fields >> field;
    // Fields 3.. of proc(5): f[0] is field 3 (state).
    const auto num = [&](int field) {
      return std::stod(f[field - 3].empty() ? "0" : f[field - 3]);
    };
    p.cpu_seconds = (num(14) + num(15)) / ticks;
    p.threads = static_cast<uint64_t>(num(20));
    p.start_time_seconds = BootTime() + num(22) / ticks;
    p.virtual_bytes = static_cast<uint64_t>(num(23));
    p.resident_bytes = static_cast<uint64_t>(num(24)) * page;
  }
  // Less the descriptor the listing itself holds open.
  const uint64_t listed = CountEntries("/proc/self/fd");
  p.open_fds = listed > 0 ? listed - 1 : 0;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) p.max_fds = limit.rlim_cur;
  return p;
}

}  // namespace basin::metrics
