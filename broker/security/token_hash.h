// Bearer tokens as the broker keeps them: never the token itself, only a
// salted SHA-256 of it ("sha256:SALT:HASH", hex), made by `basind
// --hash-token`. Tokens are meant to be random (`basind --new-token` makes
// 256-bit ones), which is what makes one round of SHA-256 enough: there is no
// dictionary to try, and a salt per token keeps equal tokens from showing as
// equal hashes.
#pragma once

#include <string>
#include <string_view>

namespace basin::security {

// A stored hash, parsed.
struct TokenHash {
  std::string salt;  // raw bytes
  std::string hash;  // raw SHA-256(salt || token)
};

// "sha256:SALT:HASH" with a fresh 16-byte salt.
std::string HashToken(std::string_view token);
// Parses the stored form; returns "" or what is wrong with it.
std::string ParseTokenHash(std::string_view text, TokenHash* out);
// Whether `token` hashes to `stored`; constant time in the hash compared.
bool TokenMatches(std::string_view token, const TokenHash& stored);
// 32 random bytes, base64url without padding (43 characters).
std::string NewToken();
// A token a client can send: printable ASCII without spaces, 1 to 4096 bytes.
bool ValidTokenText(std::string_view token);

}  // namespace basin::security
