// basin.v1.ServerService: what this basind is (GetServerInfo).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "basin/v1/server.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"

namespace basin::service {

// Facts fixed at start, handed over by main.
struct ServerFacts {
  struct Setting {
    std::string name, value, source;
  };
  std::vector<Setting> settings;
  std::string config_file;
  std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  uint64_t max_calls_per_connection = 0, user_rate = 0, user_max_queues = 0;
  // The listener's TLS as it is now (it changes on SIGHUP); null: plaintext.
  std::function<std::string()> transport;
};

class ServerService final : public v1::ServerService::CallbackService {
 public:
  // `broker` and `access` must outlive the service.
  ServerService(const core::Broker* broker, Access* access, ServerFacts facts)
      : broker_(broker), access_(access), facts_(std::move(facts)) {}

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx,
                                          const v1::GetServerInfoRequest* req,
                                          v1::GetServerInfoResponse* resp) override;

 private:
  const core::Broker* const broker_;
  Access* const access_;
  const ServerFacts facts_;
};

}  // namespace basin::service
