// basind: the Basin broker daemon. Parses flags, wires the core to the gRPC
// service and the deadline timer, serves until SIGINT/SIGTERM, then answers
// every blocked call with UNAVAILABLE and exits 0.
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "broker/config.h"
#include "broker/core/broker.h"
#include "broker/deadline_timer.h"
#include "broker/dispatcher.h"
#include "broker/logging.h"
#include "broker/server.h"

int main(int argc, char** argv) {
  int exit_code = 0;
  const auto config = basin::ParseConfig(argc, argv, &exit_code);
  if (!config) return exit_code;
  if (!basin::SetupLogging(config->log_level, config->log_format)) return 2;

  // Block the stop signals before any thread starts, so every thread inherits
  // the mask and only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  basin::DeadlineTimer timer;
  basin::Dispatcher dispatcher(1);
  basin::core::Broker broker(config->limits, &timer);
  auto server = basin::Server::Start(*config, &broker, &dispatcher);
  if (server == nullptr) return 1;

  spdlog::info(
      "basind listening on {} (max-message-bytes {}, max-memory {}, max-wait {} ms)",
      server->address(), config->limits.max_message_bytes, config->limits.max_memory,
      std::chrono::duration_cast<std::chrono::milliseconds>(config->limits.max_wait).count());
  // Tools and tests read this line to learn the port.
  std::printf("basind listening on %s\n", server->address().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}, stopping", strsignal(sig));
  broker.Shutdown();
  // Every blocked call and stream has its answer now; the grace is for calls
  // being processed this instant. gRPC also waits for clients to drop their
  // connections after GOAWAY, so keep the grace short.
  server->Shutdown(std::chrono::milliseconds(1000));
  dispatcher.Stop();
  timer.Stop();
  spdlog::info("stopped");
  return 0;
}
