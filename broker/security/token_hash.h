// Bearer tokens as the broker keeps them: never the token itself, only a
// salted SHA-256 of it ("sha256:ID:SALT:HASH", hex), made by `basind
// --hash-token`. Tokens are meant to be random (`basind --new-token` makes
// 256-bit ones), which is what makes one round of SHA-256 enough: there is no
// dictionary to try, and the salt keeps a stolen file from being checked
// against precomputed tables.
//
// ID is the first 4 bytes of the token's unsalted SHA-256: it lets the broker
// find the one stored hash a token can match with one SHA-256 and a table
// lookup, so that a client sending made-up tokens costs one hash per call, not
// one per stored token. 32 bits of a hash say nothing usable about a 256-bit
// token (and of a weak token, nothing the salted hash does not); they do show
// two entries holding the same token, which is a mistake in the file anyway.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace basin::security {

// A stored hash, parsed.
struct TokenHash {
  uint32_t id = 0;   // the first 4 bytes of SHA-256(token), big-endian
  std::string salt;  // raw bytes
  std::string hash;  // raw SHA-256(salt || token)
};

// "sha256:ID:SALT:HASH" with a fresh 16-byte salt.
std::string HashToken(std::string_view token);
// Parses the stored form; returns "" or what is wrong with it.
std::string ParseTokenHash(std::string_view text, TokenHash* out);
// TokenHash::id of a token.
uint32_t TokenId(std::string_view token);
// Whether `token` hashes to `stored`; constant time in the hash compared.
bool TokenMatches(std::string_view token, const TokenHash& stored);
// 32 random bytes, base64url without padding (43 characters).
std::string NewToken();
// A token a client can send: printable ASCII without spaces, 1 to 4096 bytes.
bool ValidTokenText(std::string_view token);

}  // namespace basin::security
