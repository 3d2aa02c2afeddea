#include "broker/core/topic_name.h"

#include <algorithm>
#include <string>

namespace basin::core {
namespace {

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

TopicWords Words(std::string_view s) {
  TopicWords out;
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
  if (s.empty() || s.size() > kMaxTopicBytes) {
    return bad("use 1 to " + std::to_string(kMaxTopicBytes) + " characters");
  }
  // Counted before splitting, so that a long name costs nothing to refuse.
  if (static_cast<size_t>(std::count(s.begin(), s.end(), '.')) >= kMaxTopicWords) {
    return bad("use at most " + std::to_string(kMaxTopicWords) + " words");
  }
  for (std::string_view w : Words(s)) {
    if (w.empty()) return bad("empty word (leading, trailing or doubled '.')");
    if (wildcards && (w == "*" || w == "#")) continue;
    if (!std::all_of(w.begin(), w.end(), IsWordChar)) {
      return bad(wildcards ? "words are [A-Za-z0-9_-]+, '*' or '#'" : "words are [A-Za-z0-9_-]+");
    }
  }
  return {};
}

}  // namespace

Result<void> ValidateTopicName(std::string_view name) { return Validate(name, false, "topic"); }

Result<void> ValidateTopicPattern(std::string_view pattern) {
  return Validate(pattern, true, "topic pattern");
}

TopicWords SplitTopic(std::string_view name) { return Words(name); }

TopicWords ParsePattern(std::string_view pattern) {
  TopicWords words = Words(pattern);
  words.erase(
      std::unique(words.begin(), words.end(),
                  [](std::string_view a, std::string_view b) { return a == "#" && b == "#"; }),
      words.end());
  return words;
}

// A simulation of the pattern as a nondeterministic automaton: `live[i]` says
// that the first i pattern words can match the topic words seen so far. Each
// topic word moves every live position once, so there is nothing to backtrack
// over (the recursive matcher this replaced took exponential time on `#.#.#...`).
bool MatchWords(const TopicWords& pattern, const TopicWords& topic, size_t* steps) {
  const size_t n = pattern.size();
  std::vector<char> live(n + 1, 0), next(n + 1, 0);
  // A `#` may match no word: whatever reaches it also reaches the word after it.
  auto close = [&](std::vector<char>& v) {
    for (size_t i = 0; i < n; ++i) {
      if (v[i] && pattern[i] == "#") v[i + 1] = 1;
    }
  };
  live[0] = 1;
  close(live);
  size_t taken = 0;
  for (std::string_view word : topic) {
    std::fill(next.begin(), next.end(), 0);
    bool any = false;
    for (size_t i = 0; i < n; ++i) {
      ++taken;
      if (!live[i]) continue;
      if (pattern[i] == "#") {
        next[i] = 1;
        any = true;
      } else if (pattern[i] == "*" || pattern[i] == word) {
        next[i + 1] = 1;
        any = true;
      }
    }
    if (!any) {
      if (steps != nullptr) *steps += taken;
      return false;
    }
    close(next);
    live.swap(next);
  }
  if (steps != nullptr) *steps += taken;
  return live[n] != 0;
}

bool TopicMatches(std::string_view pattern, std::string_view topic) {
  if (IsExactPattern(pattern)) return pattern == topic;
  return MatchWords(ParsePattern(pattern), SplitTopic(topic));
}

bool IsExactPattern(std::string_view pattern) {
  for (std::string_view w : Words(pattern)) {
    if (w == "*" || w == "#") return false;
  }
  return true;
}

}  // namespace basin::core
