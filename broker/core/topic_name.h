// Topic names and patterns, AMQP topic-exchange style. A name is dot-separated
// words of [A-Za-z0-9_-] (no empty words). A pattern is a name whose words may
// also be `*` (exactly one word) or `#` (zero or more words).
//
// Both are bounded before anything else looks at them: at most kMaxTopicBytes
// characters and kMaxTopicWords words (a pattern's words counted as written,
// before runs of `#` are collapsed). Matching never backtracks: it costs at
// most (pattern words + 1) x topic words steps, whatever the wildcards.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "broker/core/errc.h"

namespace basin::core {

inline constexpr size_t kMaxTopicBytes = 255;
inline constexpr size_t kMaxTopicWords = 32;

Result<void> ValidateTopicName(std::string_view name);
Result<void> ValidateTopicPattern(std::string_view pattern);

// Views into the string that was split: it must outlive them.
using TopicWords = std::vector<std::string_view>;

// The words of a valid name.
TopicWords SplitTopic(std::string_view name);
// The words of a valid pattern, with each run of `#` collapsed into one
// (`a.#.#.b` matches exactly what `a.#.b` does).
TopicWords ParsePattern(std::string_view pattern);

// True when `pattern` (from ParsePattern) matches `topic` (from SplitTopic).
// Adds the steps taken to `*steps` when given, so that tests can bound them.
bool MatchWords(const TopicWords& pattern, const TopicWords& topic, size_t* steps = nullptr);
// True when `pattern` (valid) matches `topic` (valid).
bool TopicMatches(std::string_view pattern, std::string_view topic);
// True when the pattern has no `*` or `#` word, so it matches one topic only.
bool IsExactPattern(std::string_view pattern);

}  // namespace basin::core
