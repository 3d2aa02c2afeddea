// basin::use_poll_poller(): the opt-in that makes a client process's gRPC run
// its "poll" poller. Each test needs a process in which gRPC has not started
// yet, which ctest gives it (gtest_discover_tests runs one test per process);
// run in one process, only the first of them can pass.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "basin/client.h"
#include "broker_process.h"

// gRPC 1.51's name for the poller it runs (src/core/lib/iomgr/ev_posix.h),
// exported by libgrpc though not in its public headers.
const char* grpc_get_poll_strategy_name();

namespace basin {
namespace {

using testing::BrokerProcess;

TEST(ClientPollerTest, OptInBeforeGrpcStartsMakesTheProcessPoll) {
  if (std::getenv("GRPC_POLL_STRATEGY") != nullptr) GTEST_SKIP() << "GRPC_POLL_STRATEGY is set";
  ASSERT_TRUE(use_poll_poller());
  BrokerProcess broker;
  Client client(broker.address());
  client.queue("q", {}).put("x");
  EXPECT_STREQ(grpc_get_poll_strategy_name(), "poll");
  EXPECT_FALSE(use_poll_poller()) << "a second call, with the choice made, changes nothing";
  EXPECT_EQ(client.queue("q", {}).get().payload(), "x");
}

TEST(ClientPollerTest, OptInLeavesAChosenPollerAlone) {
  setenv("GRPC_POLL_STRATEGY", "epoll1", 1);
  EXPECT_FALSE(use_poll_poller());
  BrokerProcess broker;
  Client(broker.address()).queue("q", {});
  EXPECT_STREQ(grpc_get_poll_strategy_name(), "epoll1");
  EXPECT_STREQ(std::getenv("GRPC_POLL_STRATEGY"), "epoll1");
}

TEST(ClientPollerTest, OptInAfterGrpcStartedChangesNothing) {
  if (std::getenv("GRPC_POLL_STRATEGY") != nullptr) GTEST_SKIP() << "GRPC_POLL_STRATEGY is set";
  BrokerProcess broker;
  Client client(broker.address());
  client.queue("q", {});
  EXPECT_FALSE(use_poll_poller());
  EXPECT_EQ(std::getenv("GRPC_POLL_STRATEGY"), nullptr);
  EXPECT_STREQ(grpc_get_poll_strategy_name(), "epoll1");
}

}  // namespace
}  // namespace basin
