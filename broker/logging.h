// spdlog set-up for basind: one logger, as text or one JSON object per line,
// to stderr or to --log-file. stdout is kept for the "listening on" lines
// tools read.
#pragma once

#include <string>

namespace basin {

// Returns false (and says why on stderr) if the level is unknown or the file
// cannot be opened.
bool SetupLogging(const std::string& level, const std::string& format, const std::string& file);
// SIGHUP: reopens --log-file (after logrotate moved it); false, with the old
// file kept, if it cannot be opened.
bool ReopenLogFile();

}  // namespace basin
