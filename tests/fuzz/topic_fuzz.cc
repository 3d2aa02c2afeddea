// Fuzzes topic names, patterns and the TopicRouter, in process.
//
// The input is lines. First, line 0 is a topic and every other line a pattern:
// each is validated, and every valid pattern is matched against the valid
// topic three ways (MatchWords, a memoised reference of the definition, the
// trie), which must agree, within the promised number of steps. Then the same
// lines drive a Broker's TopicRouter, one operation a line:
//   S[!]terms   subscribe (`!`: disconnect policy); terms with `*`/`#` are patterns
//   U<n>        unsubscribe subscription n
//   P<topic> <payload>
//               publish
//   N<n>        pull a batch from subscription n; each message must name the
//               first of its terms that matches
//   L           ListTopics; subscriber counts must agree with a brute-force count
//   B<pattern>  bind queue "q";  X<pattern>  unbind it
// At the end everything is unsubscribed and unbound: the subscriber memory and
// the pattern trie must be empty again. libFuzzer's -timeout bounds each input,
// so a match that takes exponential time is a finding too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core/broker.h"
#include "broker/core/topic_name.h"
#include "broker/core/topic_router.h"
#include "broker/core/topic_trie.h"

namespace {

using namespace basin::core;

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

std::vector<std::string_view> Lines(std::string_view in) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t nl; (nl = in.find('\n', start)) != std::string_view::npos; start = nl + 1) {
    out.push_back(in.substr(start, nl - start));
  }
  out.push_back(in.substr(start));
  return out;
}

// The definition, memoised over (pattern word, topic word): polynomial, and
// written as plainly as the grammar reads.
bool Reference(const TopicWords& p, const TopicWords& t) {
  std::map<std::pair<size_t, size_t>, bool> memo;
  auto go = [&](auto&& self, size_t i, size_t j) -> bool {
    if (i == p.size()) return j == t.size();
    auto key = std::make_pair(i, j);
    if (auto it = memo.find(key); it != memo.end()) return it->second;
    bool r;
    if (p[i] == "#") {
      r = self(self, i + 1, j) || (j < t.size() && self(self, i, j + 1));
    } else {
      r = j < t.size() && (p[i] == "*" || p[i] == t[j]) && self(self, i + 1, j + 1);
    }
    memo[key] = r;
    return r;
  };
  return go(go, 0, 0);
}

void NamesAndPatterns(const std::vector<std::string_view>& lines) {
  const std::string_view topic = lines[0];
  const bool topic_ok = ValidateTopicName(topic).ok();
  if (topic_ok) {
    CHECK(topic.size() <= kMaxTopicBytes);
    CHECK(SplitTopic(topic).size() <= kMaxTopicWords);
    CHECK(ValidateTopicPattern(topic).ok());
  }
  std::vector<std::string> valid;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (!ValidateTopicPattern(lines[i]).ok()) continue;
    CHECK(lines[i].size() <= kMaxTopicBytes);
    valid.emplace_back(lines[i]);
  }
  if (!topic_ok) return;
  const TopicWords t = SplitTopic(topic);
  TopicTrie<std::vector<size_t>> trie;
  std::vector<size_t> want;
  for (size_t i = 0; i < valid.size(); ++i) {
    const TopicWords p = ParsePattern(valid[i]);
    const TopicWords raw = SplitTopic(valid[i]);  // splitting does not look at wildcards
    CHECK(raw.size() <= kMaxTopicWords);
    size_t steps = 0;
    const bool m = MatchWords(p, t, &steps);
    CHECK(steps <= p.size() * t.size());
    CHECK(m == Reference(raw, t));
    CHECK(m == MatchWords(raw, t));
    CHECK(m == TopicMatches(valid[i], topic));
    if (m) want.push_back(i);
    trie.At(p).push_back(i);
  }
  std::vector<size_t> got;
  trie.Match(
      t, [&](const std::vector<size_t>& ids) { got.insert(got.end(), ids.begin(), ids.end()); });
  std::sort(got.begin(), got.end());
  CHECK(got == want);
}

bool MatchesTerm(const Subscription& s, const std::string& topic) {
  const auto& o = s.options();
  if (std::find(o.topics.begin(), o.topics.end(), topic) != o.topics.end()) return true;
  for (const auto& p : o.patterns) {
    if (TopicMatches(p, topic)) return true;
  }
  return false;
}

void Router(const std::vector<std::string_view>& lines) {
  BrokerLimits limits;
  limits.max_memory = 1 << 20;
  limits.default_subscriber_buffer_messages = 8;
  limits.default_subscriber_buffer_bytes = 4 << 10;
  Broker broker(limits, nullptr);
  TopicCaps caps;
  caps.max_subscriptions = 8;
  caps.max_subscriptions_per_connection = 4;
  caps.max_subscription_terms = 16;
  caps.max_bindings = 8;
  caps.max_tracked_topics = 16;
  caps.max_pattern_nodes = 24;
  caps.max_subscriber_memory = 32 << 10;
  TopicRouter& router = broker.topics();
  router.SetCaps(caps);
  QueueConfig q;
  q.name = "q";
  q.max_size = 16;
  CHECK(broker.CreateQueue(q).ok());

  std::vector<std::shared_ptr<Subscription>> subs;
  auto pick = [&](std::string_view arg) -> std::shared_ptr<Subscription> {
    if (subs.empty()) return nullptr;
    return subs[(arg.empty() ? 0 : static_cast<unsigned char>(arg[0])) % subs.size()];
  };
  for (size_t i = 0; i < lines.size() && i < 256; ++i) {
    if (lines[i].empty()) continue;
    const char op = lines[i][0];
    std::string_view arg = lines[i].substr(1);
    switch (op) {
      case 'S': {
        SubscriptionOptions o;
        if (!arg.empty() && arg[0] == '!') {
          o.policy = OverflowPolicy::kDisconnect;
          arg.remove_prefix(1);
        }
        size_t start = 0;
        while (start <= arg.size()) {
          size_t sp = arg.find(' ', start);
          if (sp == std::string_view::npos) sp = arg.size();
          std::string term(arg.substr(start, sp - start));
          if (!term.empty()) {
            const bool wild = term.find_first_of("*#") != std::string::npos;
            (wild ? o.patterns : o.topics).push_back(std::move(term));
          }
          start = sp + 1;
        }
        o.owner = "peer" + std::to_string(i % 3);
        auto r = router.Subscribe(o, [] {});
        if (r.ok()) {
          r.value()->Next(1, 1);  // as the stream does after its confirmation
          subs.push_back(r.value());
        }
        break;
      }
      case 'U':
        if (auto s = pick(arg)) {
          router.Unsubscribe(s, Error{Errc::kCancelled, "fuzz"});
          subs.erase(std::find(subs.begin(), subs.end(), s));
        }
        break;
      case 'P': {
        const size_t sp = arg.find(' ');
        const std::string_view topic = arg.substr(0, sp);
        const std::string_view payload = sp == std::string_view::npos ? "" : arg.substr(sp + 1);
        std::optional<Result<PublishOutcome>> out;
        router.Publish(topic, payload, {}, TimePoint(),
                       [&](Result<PublishOutcome> r) { out = std::move(r); });
        CHECK(out.has_value());
        if (out->ok()) {
          uint64_t matching = 0;
          for (const auto& s : subs) matching += MatchesTerm(*s, std::string(topic)) ? 1 : 0;
          CHECK(out->value().receivers <= matching);
        } else {
          CHECK(!ValidateTopicName(topic).ok() || out->error().code == Errc::kMessageTooLarge);
        }
        break;
      }
      case 'N':
        if (auto s = pick(arg)) {
          auto pulled = s->Next(4, 1 << 10);
          if (!pulled || pulled->end) break;
          for (const Delivered& d : pulled->messages) {
            const auto& o = s->options();
            const std::string& t = d.message->topic;
            const bool exact = std::binary_search(o.topics.begin(), o.topics.end(), t);
            if (d.pattern == nullptr) {
              CHECK(exact);
              continue;
            }
            CHECK(!exact && TopicMatches(*d.pattern, t));
            for (const auto& p : o.patterns) {
              if (&p == d.pattern) break;
              CHECK(!TopicMatches(p, t));  // the first matching pattern is named
            }
          }
        }
        break;
      case 'L':
        for (const TopicStats& st : router.ListTopics()) {
          uint64_t want = 0;
          for (const auto& s : subs) want += MatchesTerm(*s, st.name) ? 1 : 0;
          CHECK(st.subscribers == want);
        }
        CHECK(router.ListTopics().size() <= caps.max_tracked_topics);
        break;
      case 'B':
        (void)broker.BindQueue(std::string(arg), "q");
        break;
      case 'X':
        (void)broker.UnbindQueue(std::string(arg), "q");
        break;
      default:
        break;
    }
    CHECK(router.subscriber_memory() <= caps.max_subscriber_memory);
    CHECK(router.pattern_nodes() <= caps.max_pattern_nodes);
    CHECK(router.pattern_bytes() <= router.subscriber_memory());
  }
  for (const auto& s : subs) router.Unsubscribe(s, Error{Errc::kCancelled, "fuzz"});
  subs.clear();
  for (const std::string& p : router.BindingsOf("q")) CHECK(broker.UnbindQueue(p, "q").ok());
  // Bindings and the trie are charged to the share too.
  CHECK(router.subscriber_memory() == 0);
  CHECK(router.pattern_nodes() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 << 10) return -1;  // the broker's own limits are far below; no news past them
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> lines = Lines(in);
  NamesAndPatterns(lines);
  Router(lines);
  return 0;
}
