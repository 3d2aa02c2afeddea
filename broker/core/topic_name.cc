#include "broker/core/topic_name.h"

#include <algorithm>
#include <string>
#include <vector>

namespace basin::core {
namespace {

constexpr size_t kMaxTopicLength = 255;

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::vector<std::string_view> Words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t dot; (dot = s.find('.', start)) != std::string_view::npos; start = dot + 1) {
    out.push_back(s.substr(start, dot - start));
  }
  out.push_back(s.substr(start));
  return out;
}

Result<void> Validate(std::string_view s, bool wildcards, const char* what) {
  auto bad = [&](const std::string& why) {
    return Error{Errc::kInvalidTopic, std::string(what) + " '" + std::string(s.substr(0, 64)) +
                                          (s.size() > 64 ? "..." : "") + "' is invalid: " + why};
  };
  if (s.empty() || s.size() > kMaxTopicLength) return bad("use 1 to 255 characters");
  for (std::string_view w : Words(s)) {
    if (w.empty()) return bad("empty word (leading, trailing or doubled '.')");
    if (wildcards && (w == "*" || w == "#")) continue;
    if (!std::all_of(w.begin(), w.end(), IsWordChar)) {
      return bad(wildcards ? "words are [A-Za-z0-9_-]+, '*' or '#'" : "words are [A-Za-z0-9_-]+");
    }
  }
  return {};
}

// Does pattern[p..] match topic[t..]? `#` may absorb zero or more words.
bool MatchFrom(const std::vector<std::string_view>& pattern, size_t p,
               const std::vector<std::string_view>& topic, size_t t) {
  for (; p < pattern.size(); ++p, ++t) {
    if (pattern[p] == "#") {
      for (size_t skip = t; skip <= topic.size(); ++skip) {
        if (MatchFrom(pattern, p + 1, topic, skip)) return true;
      }
      return false;
    }
    if (t >= topic.size()) return false;
    if (pattern[p] != "*" && pattern[p] != topic[t]) return false;
  }
  return t == topic.size();
}

}  // namespace

Result<void> ValidateTopicName(std::string_view name) { return Validate(name, false, "topic"); }

Result<void> ValidateTopicPattern(std::string_view pattern) {
  return Validate(pattern, true, "topic pattern");
}

bool TopicMatches(std::string_view pattern, std::string_view topic) {
  if (IsExactPattern(pattern)) return pattern == topic;
  return MatchFrom(Words(pattern), 0, Words(topic), 0);
}

bool IsExactPattern(std::string_view pattern) {
  for (std::string_view w : Words(pattern)) {
    if (w == "*" || w == "#") return false;
  }
  return true;
}

}  // namespace basin::core
