#include "broker/config_file.h"

#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "broker/config_flags.h"

namespace basin::config {
namespace {

using Value = toml::basic_value<toml::discard_comments, std::map, std::vector>;

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  std::string Where(const Value& v) const {
    return path_ + ":" + std::to_string(v.location().line());
  }
  bool Fail(const Value& v, const std::string& why) {
    if (error_.empty()) error_ = Where(v) + ": " + why;
    return false;
  }
  const std::string& error() const { return error_; }

  // A scalar as flag text; false (and an error) for arrays and tables.
  bool Text(const std::string& key, const Value& v, std::string* out) {
    if (v.is_string()) {
      *out = v.as_string().str;
    } else if (v.is_integer()) {
      if (v.as_integer() < 0) return Fail(v, "'" + key + "' must not be negative");
      *out = std::to_string(v.as_integer());
    } else if (v.is_boolean()) {
      *out = v.as_boolean() ? "true" : "false";
    } else if (v.is_floating()) {
      std::ostringstream s;
      s << v.as_floating();
      *out = s.str();
    } else {
      return Fail(v, "'" + key + "' must be a string, a number or a boolean");
    }
    return true;
  }

  bool Queue(const Value& table, ConfigFile* out) {
    if (!table.is_table()) return Fail(table, "each [[queues]] entry must be a table");
    DeclaredQueue q;
    q.where = Where(table);
    bool named = false;
    for (const auto& [key, v] : table.as_table()) {
      std::string text;
      if (!Text(key, v, &text)) return false;
      const auto bad = [&](const std::string& why) {
        return Fail(v, "invalid value '" + text + "' for queues." + key + ": " + why);
      };
      if (key == "name") {
        q.config.name = text;
        named = true;
      } else if (key == "max-size" || key == "max-deliveries") {
        if (!v.is_integer()) return bad("a whole number");
        if (key == "max-size") {
          q.config.max_size = static_cast<uint64_t>(v.as_integer());
        } else if (v.as_integer() > std::numeric_limits<uint32_t>::max()) {
          return bad("too large");
        } else {
          q.config.max_deliveries = static_cast<uint32_t>(v.as_integer());
        }
      } else if (key == "max-bytes") {
        const auto n = ParseBytes(text);
        if (!n) return bad("a size (e.g. 64MiB)");
        q.config.max_bytes = *n;
      } else if (key == "visibility-timeout") {
        const auto d = ParseDuration(text);
        if (!d) return bad("a duration (e.g. 30s)");
        q.config.visibility_timeout = std::chrono::duration_cast<core::Duration>(*d);
      } else if (key == "dead-letter-queue") {
        q.config.dead_letter_queue = text;
      } else if (key == "durable") {
        if (!v.is_boolean()) return bad("true or false");
        q.config.durable = v.as_boolean();
      } else {
        return Fail(v, "unknown key 'queues." + key +
                           "' (name, max-size, max-bytes, visibility-timeout, max-deliveries, "
                           "dead-letter-queue, durable)");
      }
    }
    if (!named) return Fail(table, "a [[queues]] entry needs a name");
    out->queues.push_back(std::move(q));
    return true;
  }

  bool Binding(const Value& table, ConfigFile* out) {
    if (!table.is_table()) return Fail(table, "each [[bindings]] entry must be a table");
    DeclaredBinding b;
    b.where = Where(table);
    for (const auto& [key, v] : table.as_table()) {
      if (!v.is_string()) return Fail(v, "'bindings." + key + "' must be a string");
      if (key == "pattern" || key == "topic") {
        b.pattern = v.as_string().str;
      } else if (key == "queue") {
        b.queue = v.as_string().str;
      } else {
        return Fail(v, "unknown key 'bindings." + key + "' (pattern, queue)");
      }
    }
    if (b.pattern.empty() || b.queue.empty()) {
      return Fail(table, "a [[bindings]] entry needs a pattern and a queue");
    }
    out->bindings.push_back(std::move(b));
    return true;
  }

  bool Read(const Value& root, ConfigFile* out) {
    for (const auto& [key, v] : root.as_table()) {
      if (key == "users") {
        out->has_users = true;
        continue;
      }
      if (key == "queues" || key == "bindings") {
        if (!v.is_array())
          return Fail(v, "'" + key + "' must be an array of tables: [[" + key + "]]");
        for (const Value& entry : v.as_array()) {
          if (!(key == "queues" ? Queue(entry, out) : Binding(entry, out))) return false;
        }
        continue;
      }
      if (FindFlag(key) == nullptr) {
        return Fail(v, "unknown key '" + key + "' (keys are basind's flags without the --)");
      }
      std::string text;
      if (!Text(key, v, &text)) return false;
      out->values[key] = {text, Where(v)};
    }
    return true;
  }

 private:
  const std::string path_;
  std::string error_;
};

}  // namespace

bool ReadConfigFile(const std::string& path, ConfigFile* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  Value root;
  try {
    root = toml::parse<toml::discard_comments, std::map, std::vector>(in, path);
  } catch (const std::exception& e) {
    // toml11's message names the file and line, with the line quoted.
    *error = e.what();
    return false;
  }
  Reader reader(path);
  if (!reader.Read(root, out)) {
    *error = reader.error();
    return false;
  }
  return true;
}

}  // namespace basin::config
