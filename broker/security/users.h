// Who may do what: users, their credentials and their permissions, in
// RabbitMQ's model (docs/security.md). Three regular expressions per user
// (configure, write, read), each matched against the whole name of a queue or
// topic (RE2, full match: "orders" grants "orders" only, "orders\..*" its
// family); an `admin` tag for listing everything and server information.
// Loaded from TOML ([[users]] in --config or --users), replaced whole on
// SIGHUP.
#pragma once

#include <re2/re2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/security/token_hash.h"

namespace basin::security {

enum class Permission { kConfigure, kWrite, kRead };
const char* PermissionName(Permission p);  // "configure", "write", "read"

struct User {
  std::string name;
  std::vector<TokenHash> tokens;  // any one of them admits (several: rotation)
  // A client certificate whose common name or any subject alternative name
  // equals one of these is this user (mutual TLS).
  std::vector<std::string> certificates;
  std::unique_ptr<RE2> configure, write, read;  // null: nothing
  // The patterns that are ".*", answered without running RE2 (the common
  // case of an application's own user, checked on every call).
  bool configure_all = false, write_all = false, read_all = false;
  bool admin = false;
  uint64_t max_queues = 0;  // queues this user may have created at once; 0: --user-max-queues
  double rate = 0;          // messages/s it may put and publish; 0: --user-rate

  bool May(Permission p, std::string_view object) const;
  // Any permission at all on `object`: what makes it show in a listing.
  bool Sees(std::string_view object) const;
};

// Bounds on a users file: what one SIGHUP may make the broker hold.
inline constexpr size_t kMaxUsers = 1000;
inline constexpr size_t kMaxTokensPerUser = 16;
inline constexpr size_t kMaxPatternBytes = 4096;

class UserTable {
 public:
  // Parses the [[users]] tables of a TOML file. Returns null and sets *error
  // (naming FILE:LINE) if anything in them is wrong, or if there are none.
  static std::shared_ptr<const UserTable> Load(const std::string& path, std::string* error);
  static std::shared_ptr<const UserTable> FromUsers(std::vector<std::shared_ptr<const User>> u);

  bool empty() const { return users_.empty(); }
  size_t size() const { return users_.size(); }
  const std::vector<std::shared_ptr<const User>>& users() const { return users_; }
  // The user one of whose tokens this is, or null: one SHA-256 to find the
  // candidates by TokenHash::id, one salted SHA-256 per candidate (almost
  // always one). Callers cache the answer all the same.
  std::shared_ptr<const User> FindByToken(std::string_view token) const;
  // The user of this name, or null.
  std::shared_ptr<const User> FindByName(std::string_view name) const;
  // The user a certificate with these names (CN, SANs) belongs to, or null.
  std::shared_ptr<const User> FindByCertificate(const std::vector<std::string>& names) const;

 private:
  std::vector<std::shared_ptr<const User>> users_;
  // TokenHash::id -> (index in users_, index of the token), for FindByToken.
  std::unordered_multimap<uint32_t, std::pair<size_t, size_t>> by_id_;
  std::unordered_map<std::string_view, size_t> by_name_;  // keys view users_' names
};

}  // namespace basin::security
