#include "broker/security/token_hash.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdio>
#include <stdexcept>

namespace basin::security {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kMaxToken = 4096;
constexpr char kPrefix[] = "sha256:";

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

bool Unhex(std::string_view text, std::string* out) {
  if (text.size() % 2 != 0) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    const int hi = digit(text[i]), lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

std::string Sha256(std::string_view salt, std::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, salt.data(), salt.size()) == 1 &&
                  EVP_DigestUpdate(ctx, token.data(), token.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest, nullptr) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("SHA-256 failed");
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("no random bytes from OpenSSL");
  }
  return out;
}

}  // namespace

uint32_t TokenId(std::string_view token) {
  const std::string digest = Sha256("", token);
  uint32_t id = 0;
  for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<unsigned char>(digest[i]);
  return id;
}

std::string HashToken(std::string_view token) {
  const std::string salt = RandomBytes(kSaltBytes);
  char id[9];
  std::snprintf(id, sizeof id, "%08x", TokenId(token));
  return kPrefix + std::string(id) + ":" + Hex(salt) + ":" + Hex(Sha256(salt, token));
}

std::string ParseTokenHash(std::string_view text, TokenHash* out) {
  constexpr std::string_view prefix = kPrefix;
  if (text.substr(0, prefix.size()) != prefix) {
    return "a token hash starts with sha256: (make one with basind --hash-token)";
  }
  text.remove_prefix(prefix.size());
  const auto first = text.find(':');
  const auto second = first == std::string_view::npos ? first : text.find(':', first + 1);
  TokenHash h;
  std::string id;
  if (second == std::string_view::npos || !Unhex(text.substr(0, first), &id) || id.size() != 4 ||
      !Unhex(text.substr(first + 1, second - first - 1), &h.salt) ||
      !Unhex(text.substr(second + 1), &h.hash) || h.salt.empty() ||
      h.hash.size() != SHA256_DIGEST_LENGTH) {
    return "a token hash is sha256:ID:SALT:HASH in hex (make one with basind --hash-token)";
  }
  for (char c : id) h.id = (h.id << 8) | static_cast<unsigned char>(c);
  *out = std::move(h);
  return "";
}

bool TokenMatches(std::string_view token, const TokenHash& stored) {
  const std::string hash = Sha256(stored.salt, token);
  return CRYPTO_memcmp(hash.data(), stored.hash.data(), hash.size()) == 0;
}

std::string NewToken() {
  const std::string bytes = RandomBytes(32);
  std::string out(48, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  // base64url, unpadded: safe in headers, shells and URLs alike.
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

bool ValidTokenText(std::string_view token) {
  if (token.empty() || token.size() > kMaxToken) return false;
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace basin::security
