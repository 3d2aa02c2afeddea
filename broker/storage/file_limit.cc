#include "broker/storage/file_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace basin::storage {

uint64_t RaiseOpenFileLimit(std::string* error) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    *error = std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno);
    return 0;
  }
  if (limit.rlim_cur >= limit.rlim_max) return limit.rlim_cur;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    *error =
        "setrlimit(RLIMIT_NOFILE, " + std::to_string(limit.rlim_max) + "): " + std::strerror(errno);
    return before;
  }
  return limit.rlim_cur;
}

}  // namespace basin::storage
