#include "broker/security/users.h"

#include <set>
#include <toml.hpp>

namespace basin::security {
namespace {

std::string Where(const toml::value& v, const std::string& path) {
  const auto loc = v.location();
  return path + ":" + std::to_string(loc.line());
}

// The keys a [[users]] table may have; any other is a typo worth refusing.
const std::set<std::string> kKeys = {"name", "tokens", "certificates", "configure", "write",
                                     "read", "tags",   "max_queues",   "rate"};

std::string Pattern(const toml::value& table, const char* key, std::unique_ptr<RE2>* out) {
  if (!table.contains(key)) return "";
  const std::string text = toml::find<std::string>(table, key);
  if (text.size() > kMaxPatternBytes) return std::string(key) + " is longer than 4096 bytes";
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(text, options);
  if (!re->ok()) return std::string(key) + " is not a regular expression: " + re->error();
  *out = std::move(re);
  return "";
}

std::string ParseUser(const toml::value& t, User* u) {
  for (const auto& [key, value] : t.as_table()) {
    (void)value;
    if (kKeys.count(key) == 0) return "unknown key '" + key + "' in [[users]]";
  }
  if (!t.contains("name")) return "[[users]] needs a name";
  u->name = toml::find<std::string>(t, "name");
  if (u->name.empty() || u->name.size() > 200) return "a user name is 1 to 200 characters";
  if (t.contains("tokens")) {
    const auto tokens = toml::find<std::vector<std::string>>(t, "tokens");
    if (tokens.size() > kMaxTokensPerUser) return "at most 16 tokens per user";
    for (const std::string& text : tokens) {
      TokenHash h;
      if (std::string e = ParseTokenHash(text, &h); !e.empty()) return e;
      u->tokens.push_back(std::move(h));
    }
  }
  if (t.contains("certificates")) {
    u->certificates = toml::find<std::vector<std::string>>(t, "certificates");
    if (u->certificates.size() > kMaxTokensPerUser) return "at most 16 certificate names per user";
  }
  if (u->tokens.empty() && u->certificates.empty()) {
    return "user '" + u->name + "' has neither tokens nor certificates: no one could be them";
  }
  for (const auto& [key, out] : {std::pair{"configure", &u->configure},
                                 std::pair{"write", &u->write}, std::pair{"read", &u->read}}) {
    if (std::string e = Pattern(t, key, out); !e.empty()) return e;
  }
  u->configure_all = u->configure != nullptr && u->configure->pattern() == ".*";
  u->write_all = u->write != nullptr && u->write->pattern() == ".*";
  u->read_all = u->read != nullptr && u->read->pattern() == ".*";
  if (t.contains("tags")) {
    for (const std::string& tag : toml::find<std::vector<std::string>>(t, "tags")) {
      if (tag != "admin") return "unknown tag '" + tag + "' (the one tag is admin)";
      u->admin = true;
    }
  }
  if (t.contains("max_queues")) {
    const auto n = toml::find<int64_t>(t, "max_queues");
    if (n < 0 || n > (int64_t{1} << 32)) return "max_queues is 0 to 4294967296";
    u->max_queues = static_cast<uint64_t>(n);
  }
  if (t.contains("rate")) {
    const toml::value& r = toml::find(t, "rate");
    const double rate = r.is_integer() ? static_cast<double>(r.as_integer()) : r.as_floating();
    if (!(rate >= 0 && rate <= 1e9)) return "rate is 0 to 1e9 messages per second";
    u->rate = rate;
  }
  return "";
}

}  // namespace

const char* PermissionName(Permission p) {
  switch (p) {
    case Permission::kConfigure:
      return "configure";
    case Permission::kWrite:
      return "write";
    case Permission::kRead:
      return "read";
  }
  return "?";
}

bool User::May(Permission p, std::string_view object) const {
  const bool all = p == Permission::kConfigure ? configure_all
                   : p == Permission::kWrite   ? write_all
                                               : read_all;
  if (all) return true;
  const RE2* re = p == Permission::kConfigure ? configure.get()
                  : p == Permission::kWrite   ? write.get()
                                              : read.get();
  return re != nullptr && RE2::FullMatch(re2::StringPiece(object.data(), object.size()), *re);
}

bool User::Sees(std::string_view object) const {
  return May(Permission::kConfigure, object) || May(Permission::kWrite, object) ||
         May(Permission::kRead, object);
}

std::shared_ptr<const UserTable> UserTable::Load(const std::string& path, std::string* error) {
  std::vector<std::shared_ptr<const User>> users;
  try {
    const toml::value file = toml::parse(path);
    if (file.contains("users")) {
      const auto& list = toml::find(file, "users");
      if (!list.is_array()) {
        *error = Where(list, path) + ": users is a list of tables, written [[users]]";
        return nullptr;
      }
      if (list.as_array().size() > kMaxUsers) {
        *error = path + ": more than 1000 users";
        return nullptr;
      }
      std::set<std::string> names;
      for (const toml::value& t : list.as_array()) {
        if (!t.is_table()) {
          *error = Where(t, path) + ": each user is a table, written [[users]]";
          return nullptr;
        }
        auto u = std::make_shared<User>();
        if (std::string e = ParseUser(t, u.get()); !e.empty()) {
          *error = Where(t, path) + ": " + e;
          return nullptr;
        }
        if (!names.insert(u->name).second) {
          *error = Where(t, path) + ": user '" + u->name + "' is defined twice";
          return nullptr;
        }
        users.push_back(std::move(u));
      }
    }
  } catch (const std::exception& e) {
    // toml11's messages name the file, line and column already.
    *error = e.what();
    return nullptr;
  }
  if (users.empty()) {
    // Read because users were asked for: none would lock every client out.
    *error = path + " has no [[users]]: no one could call the broker";
    return nullptr;
  }
  return FromUsers(std::move(users));
}

std::shared_ptr<const UserTable> UserTable::FromUsers(std::vector<std::shared_ptr<const User>> u) {
  auto table = std::make_shared<UserTable>();
  table->users_ = std::move(u);
  for (size_t u = 0; u < table->users_.size(); ++u) {
    const User& user = *table->users_[u];
    table->by_name_.emplace(user.name, u);
    for (size_t i = 0; i < user.tokens.size(); ++i) {
      table->by_id_.emplace(user.tokens[i].id, std::pair{u, i});
    }
  }
  return table;
}

std::shared_ptr<const User> UserTable::FindByToken(std::string_view token) const {
  const auto [begin, end] = by_id_.equal_range(TokenId(token));
  for (auto it = begin; it != end; ++it) {
    const auto& [user, index] = it->second;
    if (TokenMatches(token, users_[user]->tokens[index])) return users_[user];
  }
  return nullptr;
}

std::shared_ptr<const User> UserTable::FindByName(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : users_[it->second];
}

std::shared_ptr<const User> UserTable::FindByCertificate(
    const std::vector<std::string>& names) const {
  for (const auto& u : users_) {
    for (const std::string& wanted : u->certificates) {
      for (const std::string& name : names) {
        if (name == wanted) return u;
      }
    }
  }
  return nullptr;
}

}  // namespace basin::security
