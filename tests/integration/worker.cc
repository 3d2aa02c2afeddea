// A consumer process for tests that kill or freeze consumers.
//   worker ADDR QUEUE hold    get one message, print its payload, then wait
//                             on stdin forever without acknowledging it
//   worker ADDR QUEUE block   block in get() on the queue; print what arrives
//   worker ADDR QUEUE consume a Consume stream with prefetch 20: take 20
//                             messages, ack the first 5, print "held", wait
//   worker ADDR TOPIC subscribe
//                             subscribe to the topic, print "ready" once live,
//                             then print each payload
//   worker ADDR QUEUE poll-first | poll-chosen | poll-late
//                             basin::use_poll_poller() before the first Client
//                             (poll-chosen: with GRPC_POLL_STRATEGY=epoll1
//                             set first) or after a call (poll-late); prints
//                             "<first call's result> <poller gRPC runs>
//                             <second call's result> <GRPC_POLL_STRATEGY or ->"
#include <grpc/grpc.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"

// gRPC 1.51's name for the poller it runs (src/core/lib/iomgr/ev_posix.h),
// exported by Debian's libgrpc.so.29 though not in its public headers (a
// gRPC upgrade may rename it); valid once gRPC has started.
const char* grpc_get_poll_strategy_name();

namespace {

int Poller(const std::string& addr, const std::string& queue, const std::string& mode) {
  if (mode == "poll-chosen") setenv("GRPC_POLL_STRATEGY", "epoll1", 1);
  const bool late = mode == "poll-late";
  bool first = false;
  if (!late) first = basin::use_poll_poller();
  basin::Client client(addr);
  client.queue(queue, {});  // a call: gRPC has started
  if (late) first = basin::use_poll_poller();
  const bool second = basin::use_poll_poller();
  const char* env = std::getenv("GRPC_POLL_STRATEGY");
  std::cout << first << " " << grpc_get_poll_strategy_name() << " " << second << " "
            << (env != nullptr ? env : "-") << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: worker ADDR QUEUE hold|block|consume|poll-first|poll-chosen|poll-late, "
                 "or worker ADDR TOPIC subscribe\n";
    return 2;
  }
  const std::string mode = argv[3];
  if (mode.rfind("poll-", 0) == 0) return Poller(argv[1], argv[2], mode);
  basin::Client client(argv[1]);
  if (mode == "consume") {
    basin::Consumer consumer(client, argv[2], {.prefetch = 20});
    std::vector<basin::Message> got;
    while (got.size() < 20) got.push_back(*consumer.next());
    for (int i = 0; i < 5; ++i) consumer.ack(got[static_cast<size_t>(i)]);
    consumer.flush();
    std::cout << "held" << std::endl;
    std::string ignored;
    std::getline(std::cin, ignored);
    return 0;
  }
  if (mode == "subscribe") {
    auto sub = client.subscribe({argv[2]});
    std::cout << "ready" << std::endl;
    for (const auto& m : sub) std::cout << m.payload << std::endl;
    return 0;
  }
  auto q = client.queue(argv[2]);
  basin::Message m = q.get();
  std::cout << m.payload() << std::endl;
  if (mode == "hold") {
    std::string ignored;
    std::getline(std::cin, ignored);
  }
  return 0;
}
