// basin::use_poll_poller(). Why a process would want gRPC's "poll" poller:
// with epoll1 one thread at a time polls for the whole process and hands each
// event to the thread that waits for it, so an SDK process whose threads each
// wait on their own stream (a Consumer's next(), a Producer's confirm reader)
// pays a wake-up of another thread for most reads; with poll each waiting
// thread polls its own call's connection and the kernel wakes it directly.
// Why it is an opt-in: gRPC takes its poller from the environment when it
// first starts, for the whole process and its life, and writing the environment races any other
// thread's getenv() — only the program knows when it is still single-threaded,
// and whether its own gRPC servers (which want epoll1) share the process.
#include <grpc/grpc.h>

#include <cstdlib>

#include "basin/client.h"

namespace basin {

bool use_poll_poller() {
  if (grpc_is_initialized() || std::getenv("GRPC_POLL_STRATEGY") != nullptr) return false;
  return setenv("GRPC_POLL_STRATEGY", "poll", 0) == 0;
}

}  // namespace basin
