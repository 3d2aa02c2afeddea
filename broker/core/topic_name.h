// Topic names and patterns, AMQP topic-exchange style. A name is dot-separated
// words of [A-Za-z0-9_-] (no empty words, at most 255 characters). A pattern
// is a name whose words may also be `*` (exactly one word) or `#` (zero or
// more words).
#pragma once

#include <string_view>

#include "broker/core/errc.h"

namespace basin::core {

Result<void> ValidateTopicName(std::string_view name);
Result<void> ValidateTopicPattern(std::string_view pattern);
// True when `pattern` (valid) matches `topic` (valid).
bool TopicMatches(std::string_view pattern, std::string_view topic);
// True when the pattern has no `*` or `#` word, so it matches one topic only.
bool IsExactPattern(std::string_view pattern);

}  // namespace basin::core
