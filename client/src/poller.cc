// Why the SDK picks gRPC's poller. With epoll1 one thread at a time polls for
// the whole process and hands each event to the thread that waits for it, so
// an SDK process whose threads each wait on their own stream (a Consumer's
// next(), a Producer's confirm reader, the Producer's writer) pays a wake-up
// of another thread for most reads. With "poll" each waiting thread polls its
// own call's connection and is woken by the kernel directly. Measured here
// (docs/design.md, "Latency"): stream put-to-receipt at 5,000 msg/s went from
// about 9 to 5.5 client context switches per message and its p50 down by
// about 10 %; stream 1P/1C throughput rose about 10 % with 13 % less client
// CPU per message. A process with a few connections, which is what an SDK
// user has, does not feel poll()'s cost per descriptor; a server (basind)
// keeps epoll1.
#include "poller.h"

#include <grpc/grpc.h>

#include <cstdlib>
#include <mutex>

namespace basin::detail {

void ChooseClientPoller() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (grpc_is_initialized() || std::getenv("GRPC_POLL_STRATEGY") != nullptr) return;
    // gRPC reads its poller from the environment when it starts, and only
    // then: set it, start gRPC (a reference held for the life of the process,
    // so gRPC never restarts and reads it again), and take it back out, so a
    // process this one starts (a basind, say) keeps its own default.
    setenv("GRPC_POLL_STRATEGY", "poll", 1);
    grpc_init();
    unsetenv("GRPC_POLL_STRATEGY");
  });
}

}  // namespace basin::detail
