// The broker's TLS material as read from disk: a certificate chain, its
// private key, and optionally the CAs that sign client certificates. Read and
// checked with OpenSSL before gRPC ever sees it, so that a bad file is a clear
// start-up error (or, on SIGHUP, a logged refusal that keeps the old files).
#pragma once

#include <cstdint>
#include <string>

namespace basin::security {

struct TlsPaths {
  std::string cert;       // PEM certificate chain, leaf first
  std::string key;        // PEM private key of the leaf
  std::string client_ca;  // PEM CAs for client certificates; empty: none
};

struct TlsMaterial {
  std::string cert_pem, key_pem, client_ca_pem;
  std::string subject;    // of the leaf, for the log
  int64_t not_after = 0;  // of the leaf, seconds since the epoch
};

// Reads and checks the files: each parses, the key belongs to the leaf, the
// CA file holds at least one certificate. Returns "" or what is wrong (naming
// the file); fills *out only on success.
std::string LoadTlsMaterial(const TlsPaths& paths, TlsMaterial* out);

}  // namespace basin::security
