// What the soak test watches of the broker process, from /proc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace basin::soak {

struct ProcStats {
  uint64_t rss_bytes = 0;  // VmRSS
  int threads = 0;         // Threads
  int fds = 0;             // entries of /proc/PID/fd
};

// nullopt once the process is gone (or a zombie).
std::optional<ProcStats> ReadProcStats(pid_t pid);

}  // namespace basin::soak
