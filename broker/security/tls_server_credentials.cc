#include "broker/security/tls_server_credentials.h"

#include <grpc/grpc.h>

namespace basin::security {
namespace {

grpc_ssl_client_certificate_request_type RequestType(ClientAuth auth) {
  switch (auth) {
    case ClientAuth::kNone:
      return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    case ClientAuth::kRequest:
      // A certificate is optional, but one that is sent must verify.
      return GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    case ClientAuth::kRequire:
      return GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
}

}  // namespace

std::shared_ptr<TlsServerCredentials> TlsServerCredentials::Create(TlsPaths paths,
                                                                   ClientAuth client_auth,
                                                                   std::string* error) {
  TlsMaterial material;
  *error = LoadTlsMaterial(paths, &material);
  if (!error->empty()) return nullptr;
  std::shared_ptr<TlsServerCredentials> creds(
      new TlsServerCredentials(std::move(paths), std::move(material)));
  grpc_ssl_server_credentials_options* options =
      grpc_ssl_server_credentials_create_options_using_config_fetcher(
          RequestType(client_auth), &TlsServerCredentials::Fetch, creds.get());
  creds->creds_ = grpc_ssl_server_credentials_create_with_options(options);
  if (creds->creds_ == nullptr) {
    *error = "gRPC refused the TLS settings";
    return nullptr;
  }
  return creds;
}

TlsServerCredentials::TlsServerCredentials(TlsPaths paths, TlsMaterial material)
    : paths_(std::move(paths)), current_(std::move(material)) {}

TlsServerCredentials::~TlsServerCredentials() {
  if (creds_ != nullptr) grpc_server_credentials_release(creds_);
}

std::string TlsServerCredentials::Reload() {
  TlsMaterial fresh;
  std::string error = LoadTlsMaterial(paths_, &fresh);
  if (!error.empty()) return error;
  std::lock_guard lock(mu_);
  current_ = std::move(fresh);
  changed_ = true;
  pending_.store(true, std::memory_order_release);
  return "";
}

TlsMaterial TlsServerCredentials::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

int TlsServerCredentials::AddPortToServer(const std::string& addr, grpc_server* server) {
  return grpc_server_add_http2_port(server, addr.c_str(), creds_);
}

grpc_ssl_certificate_config_reload_status TlsServerCredentials::Fetch(
    void* user_data, grpc_ssl_server_certificate_config** config) {
  auto* self = static_cast<TlsServerCredentials*>(user_data);
  if (!self->pending_.load(std::memory_order_acquire)) {
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  }
  std::lock_guard lock(self->mu_);
  if (!self->changed_) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  const TlsMaterial& m = self->current_;
  grpc_ssl_pem_key_cert_pair pair = {m.key_pem.c_str(), m.cert_pem.c_str()};
  // gRPC copies the strings; the config is its to destroy. A reloadable
  // config must name root certificates even when no client certificate is
  // asked for (gRPC asserts it); then they are never used, and the server's
  // own chain stands in.
  const std::string& roots = m.client_ca_pem.empty() ? m.cert_pem : m.client_ca_pem;
  *config = grpc_ssl_server_certificate_config_create(roots.c_str(), &pair, 1);
  self->changed_ = false;
  self->pending_.store(false, std::memory_order_release);
  return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

}  // namespace basin::security
