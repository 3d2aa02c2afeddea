// basin::use_poll_poller(): the opt-in that makes a client process's gRPC run
// its "poll" poller. gRPC picks its poller once per process, so each case runs
// in a fresh worker process (tests/integration/worker.cc, the poll-* modes),
// which prints "<first call's result> <poller gRPC runs> <second call's
// result> <GRPC_POLL_STRATEGY or ->".
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "broker_process.h"

namespace basin {
namespace {

using testing::BrokerProcess;
using testing::Process;
using testing::WorkerPath;

std::string RunWorker(const BrokerProcess& broker, const std::string& mode) {
  Process worker(WorkerPath(), {broker.address(), "q", mode});
  std::string line = worker.ReadLine(std::chrono::seconds(20)).value_or("(no output)");
  worker.Wait(std::chrono::seconds(20));
  return line;
}

TEST(ClientPollerTest, OptInBeforeGrpcStartsMakesTheProcessPoll) {
  BrokerProcess broker;
  // Set, used by gRPC, and a second call changes nothing.
  EXPECT_EQ(RunWorker(broker, "poll-first"), "1 poll 0 poll");
}

TEST(ClientPollerTest, OptInLeavesAChosenPollerAlone) {
  BrokerProcess broker;
  EXPECT_EQ(RunWorker(broker, "poll-chosen"), "0 epoll1 0 epoll1");
}

TEST(ClientPollerTest, OptInAfterGrpcStartedChangesNothing) {
  BrokerProcess broker;
  EXPECT_EQ(RunWorker(broker, "poll-late"), "0 epoll1 0 -");
}

}  // namespace
}  // namespace basin
