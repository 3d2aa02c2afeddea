// The SDK's choice of gRPC poller (client/src/poller.cc): the first Client
// picks "poll", and a process started afterwards does not inherit it. Each
// test runs in a process of its own (gtest_discover_tests), so the Client made
// here is the process's first use of gRPC.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "basin/client.h"
#include "broker_process.h"

// gRPC 1.51's own name for the poller it runs (src/core/lib/iomgr/ev_posix.h),
// exported by libgrpc; not in its public headers.
const char* grpc_get_poll_strategy_name();

namespace basin {
namespace {

using testing::BrokerProcess;

std::string EnvironmentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ClientPollerTest, FirstClientPicksPollAndABrokerStartedLaterKeepsItsDefault) {
  if (std::getenv("GRPC_POLL_STRATEGY") != nullptr) {
    GTEST_SKIP() << "GRPC_POLL_STRATEGY is set: the SDK leaves the choice to it";
  }
  BrokerProcess first;
  Client client(first.address());
  client.queue("q", {});  // a call, so gRPC has certainly started
  EXPECT_STREQ(grpc_get_poll_strategy_name(), "poll");
  EXPECT_EQ(std::getenv("GRPC_POLL_STRATEGY"), nullptr) << "the setting was not taken back out";

  BrokerProcess second;
  const std::string env = EnvironmentOf(second.pid());
  ASSERT_FALSE(env.empty());
  EXPECT_EQ(env.find("GRPC_POLL_STRATEGY="), std::string::npos)
      << "a broker the SDK's process started inherited the SDK's poller";
  Client(second.address()).queue("q", {});  // and it serves
}

}  // namespace
}  // namespace basin
