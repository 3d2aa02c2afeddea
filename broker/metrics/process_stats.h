// What /proc says about this process: the process_* series every Prometheus
// client library exports, read at scrape time.
#pragma once

#include <cstdint>

namespace basin::metrics {

struct ProcessStats {
  uint64_t resident_bytes = 0;
  uint64_t virtual_bytes = 0;
  uint64_t threads = 0;
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;
  double cpu_seconds = 0;         // user + system
  double start_time_seconds = 0;  // since the Unix epoch
};

ProcessStats ReadProcessStats();

}  // namespace basin::metrics
