// spdlog set-up for basind: one logger writing to stderr, as text or one JSON
// object per line. stdout is kept for the "listening on" line tools read.
#pragma once

#include <string>

namespace basin {

// Returns false (and says why on stderr) for an unknown level.
bool SetupLogging(const std::string& level, const std::string& format);

}  // namespace basin
