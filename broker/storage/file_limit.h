// The process's limit on open files. Every durable queue keeps its tail
// segment open, so the common soft limit of 1024 would stop recovery of a
// data directory with more queues than that (and every gRPC connection
// takes one too); the hard limit is what the administrator granted.
#pragma once

#include <cstdint>
#include <string>

namespace basin::storage {

// Raises the soft RLIMIT_NOFILE to the hard one. Returns the soft limit in
// effect afterwards; sets `error` (and leaves the limit) if it could not be
// read or raised.
uint64_t RaiseOpenFileLimit(std::string* error);

}  // namespace basin::storage
