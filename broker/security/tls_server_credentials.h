// TLS for the gRPC listener, with certificates that can change under a running
// broker. gRPC 1.51's own reloading provider (FileWatcherCertificateProvider)
// polls the files on a timer; operators expect SIGHUP to take effect at once,
// so this uses the SSL credentials' certificate-config fetcher instead: gRPC
// asks it before every handshake, Reload() (on SIGHUP) hands it new material,
// and connections already open keep the session they have. One listening
// port per credentials object: a reload is handed to the first handshake
// that asks.
#pragma once

#include <grpc/grpc_security.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "broker/core/lock_rank.h"
#include "broker/security/tls_files.h"

namespace basin::security {

enum class ClientAuth { kNone, kRequest, kRequire };

class TlsServerCredentials final : public grpc::ServerCredentials {
 public:
  // Null, with *error set, when the files do not load (LoadTlsMaterial).
  static std::shared_ptr<TlsServerCredentials> Create(TlsPaths paths, ClientAuth client_auth,
                                                      std::string* error);
  ~TlsServerCredentials() override;

  // Re-reads the files. On success the next handshake uses them and "" is
  // returned; otherwise the old material stays and the reason is returned.
  std::string Reload();
  // The leaf now served (or about to be): subject and expiry, for the log.
  TlsMaterial current() const;

  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  TlsServerCredentials(TlsPaths paths, TlsMaterial material);
  int AddPortToServer(const std::string& addr, grpc_server* server) override;
  static grpc_ssl_certificate_config_reload_status Fetch(
      void* self, grpc_ssl_server_certificate_config** config);

  const TlsPaths paths_;
  mutable RankedMutex<LockRank::kTlsMaterial> mu_;
  TlsMaterial current_;
  bool changed_ = true;  // gRPC fetches once at creation: hand it the first files
  // Lets the per-handshake Fetch skip the mutex when nothing changed.
  std::atomic<bool> pending_{true};
  grpc_server_credentials* creds_ = nullptr;
};

}  // namespace basin::security
