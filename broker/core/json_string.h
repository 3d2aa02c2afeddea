// A string as a JSON string literal, for the few places basind writes JSON by
// hand (the dashboard's /api/overview, audit log lines). Plain C++, so that
// both the HTTP listener and the service layer use this one escaper.
#pragma once

#include <string>
#include <string_view>

namespace basin::core {

// `text` as a JSON string literal, quotes included. Besides `"` and `\`,
// every control byte, every byte from 0x7f up (client-chosen names need not
// be UTF-8, and the line must stay valid JSON) and `<`, `>`, `&` (the JSON is
// safe to drop into a page) are written as \u00XX.
std::string JsonString(std::string_view text);

}  // namespace basin::core
