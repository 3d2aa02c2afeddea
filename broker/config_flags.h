// The table of basind's flags: the one definition that --help, the BASIN_*
// environment, the config file's keys, GetServerInfo and the configuration
// reference in docs/operations.md are all made from.
#pragma once

#include <string>
#include <vector>

#include "broker/config.h"

namespace basin::config {

enum class Kind { kText, kAddress, kPath, kBytes, kDuration, kCount, kBool, kChoice };

struct Flag {
  const char* name;  // "max-memory": --max-memory, BASIN_MAX_MEMORY, max-memory = ...
  Kind kind;
  const char* default_text;  // as a user writes it; "" when there is none or it is computed
  const char* help;          // one line; says what the default is when default_text is ""
  // Parses `text` into `c`; returns "" or why the value is invalid.
  std::string (*apply)(Config& c, const std::string& text);
};

const std::vector<Flag>& Flags();
const Flag* FindFlag(const std::string& name);
// BASIN_ and the name in capitals with '_' for '-'.
std::string EnvName(const Flag& flag);
// "BYTES", "DURATION", "N", "ADDR", ...: how --help names the value.
const char* ValueName(Kind kind);
// The configuration reference as a Markdown table (basind --config-reference).
std::string Reference();

}  // namespace basin::config
