#include "broker/security/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <sstream>

namespace basin::security {
namespace {

// PEM files are a few KiB; anything far larger is not one, and is not worth
// holding in memory.
constexpr std::streamoff kMaxPemBytes = 1 << 20;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "not PEM";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot read " + path;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size > kMaxPemBytes) return path + " is not a PEM file (over 1 MiB)";
  in.seekg(0);
  std::ostringstream text;
  text << in.rdbuf();
  *out = text.str();
  return "";
}

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string Describe(X509* cert, std::string* subject, int64_t* not_after) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  *subject = buf;
  const ASN1_TIME* end = X509_get0_notAfter(cert);
  struct tm t = {};
  if (end == nullptr || ASN1_TIME_to_tm(end, &t) != 1) return "has no valid end date";
  *not_after = static_cast<int64_t>(timegm(&t));
  return "";
}

}  // namespace

std::string LoadTlsMaterial(const TlsPaths& paths, TlsMaterial* out) {
  TlsMaterial m;
  if (std::string e = ReadFile(paths.cert, &m.cert_pem); !e.empty()) return e;
  if (std::string e = ReadFile(paths.key, &m.key_pem); !e.empty()) return e;
  ERR_clear_error();
  Cert leaf(PEM_read_bio_X509(MemoryBio(m.cert_pem).get(), nullptr, nullptr, nullptr));
  if (leaf == nullptr) return paths.cert + ": no certificate (" + OpenSslError() + ")";
  // A passphrase callback that refuses: OpenSSL's default would prompt on the
  // terminal, and block the signal thread on a SIGHUP.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return -1; };
  Key key(PEM_read_bio_PrivateKey(MemoryBio(m.key_pem).get(), nullptr, no_passphrase, nullptr));
  if (key == nullptr) {
    return paths.key + ": no private key (" + OpenSslError() +
           "; an encrypted key is not supported: decrypt it with openssl pkey)";
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return paths.key + " is not the key of the certificate in " + paths.cert;
  }
  if (std::string e = Describe(leaf.get(), &m.subject, &m.not_after); !e.empty()) {
    return paths.cert + " " + e;
  }
  if (!paths.client_ca.empty()) {
    if (std::string e = ReadFile(paths.client_ca, &m.client_ca_pem); !e.empty()) return e;
    Cert ca(PEM_read_bio_X509(MemoryBio(m.client_ca_pem).get(), nullptr, nullptr, nullptr));
    if (ca == nullptr) return paths.client_ca + ": no certificate (" + OpenSslError() + ")";
  }
  *out = std::move(m);
  return "";
}

}  // namespace basin::security
