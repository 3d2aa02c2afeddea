// The --config file (TOML, read with toml11): top-level keys are the flags'
// names (max-memory = "2GiB"), [[queues]] and [[bindings]] declare what must
// exist at start. See docs/operations.md, "Configuration file".
#pragma once

#include <map>
#include <string>
#include <vector>

#include "broker/config.h"

namespace basin::config {

struct FileValue {
  std::string text;   // as a flag would carry it: "2GiB", "100", "true"
  std::string where;  // "FILE:LINE"
};

struct ConfigFile {
  std::map<std::string, FileValue> values;  // by flag name
  std::vector<DeclaredQueue> queues;        // in file order
  std::vector<DeclaredBinding> bindings;
  bool has_users = false;  // [[users]]: read by security::UserTable, also on SIGHUP
};

// False with *error naming the file, the line and the key when the file
// cannot be read or parsed, has a key no flag has, or a value of the wrong
// kind. Flag values are checked later, by the flag table's parsers.
bool ReadConfigFile(const std::string& path, ConfigFile* out, std::string* error);

}  // namespace basin::config
