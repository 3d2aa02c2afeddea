// The gRPC poller a process that uses the SDK runs on.
#pragma once

namespace basin::detail {

// Once per process, before gRPC starts: gRPC's "poll" poller rather than its
// Linux default, "epoll1", unless the process chose one (GRPC_POLL_STRATEGY
// set) or started gRPC already (then nothing changes). Every Client calls it.
void ChooseClientPoller();

}  // namespace basin::detail
