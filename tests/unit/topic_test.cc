// Topic names, pattern matching, subscription buffers and the router, with no
// transport: what the TopicService promises, checked in the core.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "broker/core/broker.h"
#include "broker/core/subscription.h"
#include "broker/core/topic_name.h"
#include "broker/core/topic_router.h"
#include "broker/core/topic_trie.h"
#include "broker/storage/committer.h"
#include "broker/storage/queue_store.h"
#include "temp_dir.h"

// Whether the heap in use can be read from glibc (mallinfo2): not under a
// sanitizer, whose allocator glibc does not see.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define BASIN_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BASIN_TEST_SANITIZED 1
#endif
#if defined(__GLIBC__) && !defined(BASIN_TEST_SANITIZED)
#include <malloc.h>
#define BASIN_TEST_MALLINFO 1
#endif

namespace basin::core {
namespace {

using std::chrono::seconds;

TEST(TopicNameTest, NamesAndPatterns) {
  for (const char* ok : {"spub", "cctv1", "news.sports.eu", "a-b_c.D9", "x"}) {
    EXPECT_TRUE(ValidateTopicName(ok).ok()) << ok;
    EXPECT_TRUE(ValidateTopicPattern(ok).ok()) << ok;
  }
  for (const char* bad : {"", ".", "a.", ".a", "a..b", "a b", "a/b", "news.*", "news.#", "ü"}) {
    EXPECT_EQ(ValidateTopicName(bad).error().code, Errc::kInvalidTopic) << bad;
  }
  EXPECT_FALSE(ValidateTopicName(std::string(256, 'a')).ok());
  EXPECT_TRUE(ValidateTopicName(std::string(255, 'a')).ok());
  for (const char* ok : {"*", "#", "news.*", "news.#", "#.eu", "*.*.eu", "a.#.b"}) {
    EXPECT_TRUE(ValidateTopicPattern(ok).ok()) << ok;
  }
  for (const char* bad : {"", "news.", "news.**", "news.a*", "#x", "a..#"}) {
    EXPECT_EQ(ValidateTopicPattern(bad).error().code, Errc::kInvalidTopic) << bad;
  }
}

struct MatchCase {
  const char* pattern;
  const char* topic;
  bool matches;
};

TEST(TopicNameTest, StarMatchesOneWordHashMatchesZeroOrMore) {
  const MatchCase cases[] = {
      {"news", "news", true},
      {"news", "news.eu", false},
      {"news.*", "news.eu", true},
      {"news.*", "news", false},
      {"news.*", "news.eu.fr", false},
      {"news.#", "news", true},
      {"news.#", "news.eu", true},
      {"news.#", "news.eu.fr", true},
      {"news.#", "sports.eu", false},
      {"#", "anything.at.all", true},
      {"#", "x", true},
      {"*", "x", true},
      {"*", "x.y", false},
      {"*.eu", "news.eu", true},
      {"*.eu", "eu", false},
      {"#.eu", "eu", true},
      {"#.eu", "a.b.eu", true},
      {"#.eu", "a.b.eu.x", false},
      {"a.#.b", "a.b", true},
      {"a.#.b", "a.x.y.b", true},
      {"a.#.b", "a.x.y.c", false},
      {"a.*.#", "a", false},
      {"a.*.#", "a.b", true},
      {"a.*.#", "a.b.c.d", true},
      {"#.#", "a", true},
      {"news.*", "newsx.eu", false},
  };
  for (const MatchCase& c : cases) {
    EXPECT_EQ(TopicMatches(c.pattern, c.topic), c.matches) << c.pattern << " ~ " << c.topic;
  }
}

std::string Repeat(const std::string& word, size_t n, const std::string& last = "") {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? "." : "") + word;
  if (!last.empty()) out += (n ? "." : "") + last;
  return out;
}

TEST(TopicNameTest, WordsPerNameAndPatternAreBounded) {
  EXPECT_TRUE(ValidateTopicName(Repeat("w", kMaxTopicWords)).ok());
  EXPECT_TRUE(ValidateTopicPattern(Repeat("*", kMaxTopicWords)).ok());
  EXPECT_TRUE(ValidateTopicPattern(Repeat("#", kMaxTopicWords)).ok());
  for (const std::string& bad : {Repeat("w", kMaxTopicWords + 1), Repeat("w", 60)}) {
    auto r = ValidateTopicName(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kInvalidTopic);
    EXPECT_NE(r.error().message.find("at most 32 words"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(ValidateTopicPattern(Repeat("#", kMaxTopicWords + 1)).error().code,
            Errc::kInvalidTopic);
  EXPECT_EQ(ValidateTopicPattern(Repeat("#", 20, "z") + ".a.b.c.d.e.f.g.h.i.j.k.l").error().code,
            Errc::kInvalidTopic);
  // The most absurd: as many words as 255 characters hold, and far more.
  EXPECT_FALSE(ValidateTopicPattern(Repeat("#", 128)).ok());
  EXPECT_FALSE(ValidateTopicName(Repeat("w", 1'000'000)).ok());
}

TEST(TopicNameTest, RunsOfHashCollapse) {
  EXPECT_EQ(ParsePattern("a.#.#.b"), (TopicWords{"a", "#", "b"}));
  EXPECT_EQ(ParsePattern(Repeat("#", kMaxTopicWords)), TopicWords{"#"});
  EXPECT_EQ(ParsePattern("#.*.#.#.*"), (TopicWords{"#", "*", "#", "*"}));
  EXPECT_EQ(SplitTopic("news.eu"), (TopicWords{"news", "eu"}));
}

// The reproduced hang: the recursive matcher tried every way of spreading the
// topic's words over twenty `#`s and never answered.
TEST(TopicNameTest, TwentyHashesAgainstALongTopicAnswerAtOnce) {
  const std::string pattern = Repeat("#", 20, "z");
  const std::string miss = Repeat("w", kMaxTopicWords);
  const std::string hit = Repeat("w", kMaxTopicWords - 1, "z");
  EXPECT_FALSE(TopicMatches(pattern, miss));
  EXPECT_TRUE(TopicMatches(pattern, hit));
  size_t steps = 0;
  EXPECT_FALSE(MatchWords(ParsePattern(pattern), SplitTopic(miss), &steps));
  EXPECT_LE(steps, 2 * kMaxTopicWords);  // collapsed to `#.z`
  steps = 0;
  // Uncollapsed, the cost is still words x words, not exponential.
  const TopicWords raw(20, "#");
  TopicWords raw_z = raw;
  raw_z.push_back("z");
  EXPECT_FALSE(MatchWords(raw_z, SplitTopic(miss), &steps));
  EXPECT_LE(steps, raw_z.size() * kMaxTopicWords);
}

// Patterns of every shape at the word limit, matching or not, collapsed or as
// written: the cost stays within pattern words x topic words.
TEST(TopicNameTest, MatchingCostIsAtMostPatternTimesTopicWords) {
  const std::string topic_text = Repeat("a", kMaxTopicWords);
  const TopicWords topic = SplitTopic(topic_text);
  for (const std::string& p :
       {Repeat("#", kMaxTopicWords), Repeat("#.*", kMaxTopicWords / 2), Repeat("*.#", 16),
        Repeat("#.a", 16), Repeat("a.#", 16), Repeat("*", 32), Repeat("#", 31, "b"),
        Repeat("#.a", 15, "b"), Repeat("*.#", 15, "b"), Repeat("#.*", 15, "b")}) {
    ASSERT_TRUE(ValidateTopicPattern(p).ok()) << p;
    for (const TopicWords& words : {ParsePattern(p), SplitTopic(p)}) {
      size_t steps = 0;
      MatchWords(words, topic, &steps);
      EXPECT_LE(steps, words.size() * topic.size()) << p;
    }
  }
}

// The reference: the plain recursive definition, fine for short inputs.
bool NaiveMatch(const TopicWords& p, size_t i, const TopicWords& t, size_t j) {
  if (i == p.size()) return j == t.size();
  if (p[i] == "#") {
    for (size_t k = j; k <= t.size(); ++k) {
      if (NaiveMatch(p, i + 1, t, k)) return true;
    }
    return false;
  }
  return j < t.size() && (p[i] == "*" || p[i] == t[j]) && NaiveMatch(p, i + 1, t, j + 1);
}

std::string RandomWords(std::mt19937& rng, const std::vector<std::string>& alphabet,
                        size_t max_words) {
  const size_t n = 1 + rng() % max_words;
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? "." : "") + alphabet[rng() % alphabet.size()];
  return out;
}

TEST(TopicNameTest, MatcherAndTrieAgreeWithTheDefinition) {
  std::mt19937 rng(11);
  const std::vector<std::string> pattern_words = {"a", "b", "*", "#", "#"};
  const std::vector<std::string> topic_words = {"a", "b", "c"};
  std::vector<std::string> patterns;
  for (int i = 0; i < 300; ++i) patterns.push_back(RandomWords(rng, pattern_words, 7));
  TopicTrie<std::vector<size_t>> trie;
  for (size_t i = 0; i < patterns.size(); ++i) trie.At(ParsePattern(patterns[i])).push_back(i);
  for (int n = 0; n < 500; ++n) {
    const std::string topic = RandomWords(rng, topic_words, 7);
    const TopicWords t = SplitTopic(topic);
    std::vector<size_t> want, got;
    for (size_t i = 0; i < patterns.size(); ++i) {
      const bool naive = NaiveMatch(SplitTopic(patterns[i]), 0, t, 0);
      ASSERT_EQ(MatchWords(ParsePattern(patterns[i]), t), naive) << patterns[i] << " ~ " << topic;
      ASSERT_EQ(TopicMatches(patterns[i], topic), naive) << patterns[i] << " ~ " << topic;
      if (naive) want.push_back(i);
    }
    trie.Match(
        t, [&](const std::vector<size_t>& ids) { got.insert(got.end(), ids.begin(), ids.end()); });
    std::sort(got.begin(), got.end());
    ASSERT_EQ(got, want) << topic;
  }
}

// A publish looks at the patterns that can match its topic, not at all of them.
TEST(TopicTrieTest, MatchCostDoesNotGrowWithUnrelatedPatterns) {
  TopicTrie<std::vector<int>> trie;
  std::vector<std::string> patterns;
  for (int i = 0; i < 10'000; ++i) {
    patterns.push_back("p" + std::to_string(i) + ".#");
    patterns.push_back("#.q" + std::to_string(i));
    patterns.push_back("*.r" + std::to_string(i) + ".*");
  }
  for (size_t i = 0; i < patterns.size(); ++i) trie.At(ParsePattern(patterns[i])).push_back(int(i));
  const std::string topic = Repeat("p7", 30, "q7");
  size_t steps = 0, matched = 0;
  trie.Match(
      SplitTopic(topic), [&](const std::vector<int>& ids) { matched += ids.size(); }, &steps);
  EXPECT_EQ(matched, 2u);  // p7.# and #.q7
  EXPECT_LE(steps, 5 * kMaxTopicWords);
  // Twenty `#` patterns of every length share their nodes once collapsed.
  for (size_t n = 1; n <= 20; ++n) trie.At(ParsePattern(Repeat("#", n, "z"))).push_back(-1);
  steps = 0;
  trie.Match(
      SplitTopic(Repeat("w", kMaxTopicWords)), [](const auto&) {}, &steps);
  EXPECT_LE(steps, 5 * kMaxTopicWords);
}

TEST(TopicTrieTest, PruneRemovesWhatNothingUses) {
  TopicTrie<std::vector<int>> trie;
  for (const char* p : {"a.#.b", "a.*", "a.#", "#"}) trie.At(ParsePattern(p)).push_back(1);
  EXPECT_EQ(trie.nodes(), 5u);  // a, a.#, a.#.b, a.*, #
  for (const char* p : {"a.#", "a.#.b", "a.*", "#"}) {
    trie.Find(ParsePattern(p))->clear();
    trie.Prune(ParsePattern(p));
  }
  EXPECT_EQ(trie.nodes(), 0u);
  EXPECT_EQ(trie.Find(ParsePattern("a")), nullptr);
}

// Bytes glibc's malloc has handed out and not taken back, headers and
// rounding included; nullopt where another allocator serves the test.
std::optional<uint64_t> HeapInUse() {
#ifdef BASIN_TEST_MALLINFO
  return mallinfo2().uordblks;
#else
  return std::nullopt;
#endif
}

// `n` valid patterns of literal words that no two patterns share: the trie's
// costliest shape, a node per word. Every other one has 32 short words, the
// rest 14 words too long for a string's inline buffer (a block of their own).
std::vector<std::string> LongLiteralPatterns(size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    const bool short_words = i % 2 == 0;
    std::string p;
    for (size_t w = 0; w < (short_words ? kMaxTopicWords : 14); ++w) {
      std::string word = std::to_string(i) + "w" + std::to_string(w);
      if (!short_words) word.resize(17, '-');
      p += (w ? "." : "") + word;
    }
    out.push_back(std::move(p));
  }
  return out;
}

size_t WordsIn(const std::vector<std::string>& patterns) {
  size_t n = 0;
  for (const std::string& p : patterns) n += SplitTopic(p).size();
  return n;
}

// A node's word map allocates 13 buckets with its first literal child and
// keeps them: NodeBytes left them out, so a long literal pattern was charged
// about three quarters of the heap it took.
TEST(TopicTrieTest, NodesAreChargedAtLeastWhatTheyTakeFromTheHeap) {
  if (!HeapInUse()) GTEST_SKIP() << "the heap in use cannot be read here";
  auto trie = std::make_unique<TopicTrie<std::vector<int>>>();
  const std::vector<std::string> patterns = LongLiteralPatterns(200);
  std::vector<TopicWords> parsed;
  for (const std::string& p : patterns) parsed.push_back(ParsePattern(p));
  const uint64_t before = *HeapInUse();
  for (const TopicWords& w : parsed) trie->At(w);
  const uint64_t grown = *HeapInUse() - before;
  ASSERT_EQ(trie->nodes(), WordsIn(patterns));
  if (grown < trie->nodes() * 100) GTEST_SKIP() << "the heap did not grow: not glibc's malloc";
  EXPECT_GE(trie->bytes(), grown);
  EXPECT_LE(trie->bytes(), grown * 3 / 2);  // and not a guess far above it
  for (const TopicWords& w : parsed) trie->Prune(w);
  EXPECT_EQ(trie->nodes(), 0u);
  EXPECT_EQ(trie->bytes(), 0u);
}

PublishedPtr Msg(const std::string& topic, const std::string& payload) {
  auto m = std::make_shared<PublishedMessage>();
  m->topic = topic;
  m->payload = payload;
  m->bytes = topic.size() + payload.size();
  return m;
}

// Pulls one batch and returns its payloads, or "<idle>" / "<end:REASON>".
std::vector<std::string> Pull(Subscription& sub, size_t max = 100) {
  auto pulled = sub.Next(max, 1 << 20);
  if (!pulled) return {"<idle>"};
  if (pulled->end) return {"<end>"};
  std::vector<std::string> out;
  for (const auto& d : pulled->messages) {
    out.push_back((d.dropped_before ? "+" + std::to_string(d.dropped_before) + " " : "") +
                  d.message->payload);
  }
  return out;
}

using Strings = std::vector<std::string>;

TEST(SubscriptionTest, WakesOnceWhenIdleAndKeepsOrder) {
  int wakes = 0;
  SubscriptionOptions o;
  o.topics = {"t"};
  Subscription sub(1, o, [&] { ++wakes; });
  // Busy at first (the stream writes its confirmation): no wake.
  sub.Offer(Msg("t", "a"), nullptr);
  EXPECT_EQ(wakes, 0);
  EXPECT_EQ(Pull(sub), Strings{"a"});
  EXPECT_EQ(Pull(sub), Strings{"<idle>"});
  sub.Offer(Msg("t", "b"), nullptr);
  sub.Offer(Msg("t", "c"), nullptr);
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(Pull(sub), (Strings{"b", "c"}));  // one batch
  EXPECT_EQ(Pull(sub), Strings{"<idle>"});
}

TEST(SubscriptionTest, BatchesAreBounded) {
  Subscription sub(1, SubscriptionOptions{{"t"}, {}, 100, 1000, OverflowPolicy::kDropOldest},
                   [] {});
  for (const char* p : {"1", "2", "3", "4", "5"}) sub.Offer(Msg("t", p), nullptr);
  EXPECT_EQ(Pull(sub, 2), (Strings{"1", "2"}));
  auto big = sub.Next(100, 3);  // 2 bytes a message: one fits, then the bound
  EXPECT_EQ(big->messages.size(), 1u);
  EXPECT_EQ(Pull(sub), (Strings{"4", "5"}));
}

TEST(SubscriptionTest, DropOldestPutsTheGapWhereTheMessagesWere) {
  SubscriptionOptions o;
  o.topics = {"t"};
  o.max_messages = 2;
  Subscription sub(1, o, [] {});
  for (const char* p : {"1", "2", "3", "4", "5"}) sub.Offer(Msg("t", p), nullptr);
  EXPECT_EQ(Pull(sub), (Strings{"+3 4", "5"}));
  sub.Offer(Msg("t", "6"), nullptr);
  EXPECT_EQ(Pull(sub), Strings{"6"});
}

TEST(SubscriptionTest, ByteBoundIsAnOverflowToo) {
  SubscriptionOptions o;
  o.topics = {"t"};
  o.max_bytes = 10;  // "t" + 4-byte payload = 5 bytes a message
  Subscription sub(1, o, [] {});
  for (const char* p : {"aaaa", "bbbb", "cccc"}) sub.Offer(Msg("t", p), nullptr);
  EXPECT_EQ(Pull(sub), (Strings{"+1 bbbb", "cccc"}));
  // A message larger than the whole buffer is lost; the next one says so.
  EXPECT_FALSE(sub.Offer(Msg("t", std::string(2000, 'x')), nullptr).accepted);
  sub.Offer(Msg("t", "c"), nullptr);
  sub.Offer(Msg("t", std::string(2000, 'x')), nullptr);
  sub.Offer(Msg("t", "d"), nullptr);
  EXPECT_EQ(Pull(sub), (Strings{"+1 c", "+1 d"}));
}

TEST(SubscriptionTest, DropOldestAndLoseServeTheMemoryShare) {
  SubscriptionOptions o;
  o.topics = {"t"};
  Subscription sub(1, o, [] {});
  EXPECT_EQ(sub.DropOldest(), nullptr);  // nothing buffered
  sub.Offer(Msg("t", "1"), nullptr);
  sub.Offer(Msg("t", "2"), nullptr);
  EXPECT_EQ(sub.DropOldest()->payload, "1");
  EXPECT_EQ(sub.Lose(Msg("t", "3")).dropped.size(), 1u);
  sub.Offer(Msg("t", "4"), nullptr);
  EXPECT_EQ(Pull(sub), (Strings{"+1 2", "+1 4"}));

  o.policy = OverflowPolicy::kDisconnect;
  int wakes = 0;
  Subscription strict(2, o, [&] { ++wakes; });
  strict.Offer(Msg("t", "1"), nullptr);
  EXPECT_EQ(strict.DropOldest(), nullptr);  // never loses a message silently
  EXPECT_EQ(Pull(strict), Strings{"1"});
  EXPECT_EQ(Pull(strict), Strings{"<idle>"});
  EXPECT_EQ(strict.Lose(Msg("t", "2")).dropped.size(), 1u);
  EXPECT_EQ(wakes, 1);
  auto end = strict.Next(10, 100);
  ASSERT_TRUE(end->end.has_value());
  EXPECT_EQ(end->end->code, Errc::kSlowSubscriber);
}

TEST(SubscriptionTest, DisconnectPolicyEndsTheStream) {
  SubscriptionOptions o;
  o.topics = {"t"};
  o.max_messages = 1;
  o.policy = OverflowPolicy::kDisconnect;
  Subscription sub(1, o, [] {});
  EXPECT_TRUE(sub.Offer(Msg("t", "1"), nullptr).accepted);
  auto offered = sub.Offer(Msg("t", "2"), nullptr);
  EXPECT_FALSE(offered.accepted);
  EXPECT_EQ(offered.dropped.size(), 2u);  // the buffer and the new message
  auto end = sub.Next(10, 100);
  ASSERT_TRUE(end->end.has_value());
  EXPECT_EQ(end->end->code, Errc::kSlowSubscriber);
  EXPECT_FALSE(sub.Offer(Msg("t", "3"), nullptr).accepted);
}

TEST(SubscriptionTest, EndWakesAnIdleStream) {
  int wakes = 0;
  Subscription sub(1, SubscriptionOptions{{"t"}, {}, 10, 100, OverflowPolicy::kDropOldest},
                   [&] { ++wakes; });
  EXPECT_EQ(Pull(sub), Strings{"<idle>"});
  sub.End(Error{Errc::kShutdown, "bye"});
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(sub.Next(10, 100)->end->code, Errc::kShutdown);
  sub.End(Error{Errc::kCancelled, "again"});  // idempotent
  EXPECT_EQ(wakes, 1);
}

class TopicRouterTest : public ::testing::Test {
 protected:
  TopicRouterTest() : broker_(BrokerLimits{}, nullptr) {}
  std::shared_ptr<Subscription> Sub(std::vector<std::string> topics,
                                    std::vector<std::string> patterns = {}) {
    SubscriptionOptions o;
    o.topics = std::move(topics);
    o.patterns = std::move(patterns);
    auto r = broker_.topics().Subscribe(o, [] {});
    EXPECT_TRUE(r.ok()) << r.error().message;
    r.value()->Next(1, 1);  // the stream's first pull: idle from here on
    return r.value();
  }
  // Without durable queues the outcome is reported before Publish returns.
  Result<PublishOutcome> TryPublish(const std::string& topic, const std::string& payload,
                                    const Headers& headers = {}) {
    std::optional<Result<PublishOutcome>> out;
    broker_.topics().Publish(topic, payload, headers, now_,
                             [&out](Result<PublishOutcome> r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out.value_or(Error{Errc::kInvalidArgument, "not reported"});
  }
  PublishOutcome Publish(const std::string& topic, const std::string& payload) {
    auto r = TryPublish(topic, payload);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.value();
  }
  Broker broker_;
  TimePoint now_ = TimePoint() + seconds(1);
};

TEST_F(TopicRouterTest, PublishReachesMatchingSubscriptionsOnce) {
  auto exact = Sub({"spub", "cctv1"});
  auto pattern = Sub({}, {"news.*"});
  auto both = Sub({"news.eu"}, {"news.*", "#"});
  EXPECT_EQ(Publish("spub", "hello").receivers, 2u);  // exact and `#`
  EXPECT_EQ(Publish("news.eu", "n").receivers, 2u);   // pattern, and `both` once
  EXPECT_EQ(Publish("nobody.listens", "x").receivers, 1u);

  auto e = exact->Next(10, 1000)->messages;
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].message->payload, "hello");
  EXPECT_EQ(e[0].pattern, nullptr);
  auto p = pattern->Next(10, 1000)->messages;
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].message->topic, "news.eu");
  EXPECT_EQ(*p[0].pattern, "news.*");
  auto b = both->Next(10, 1000)->messages;
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(*b[0].pattern, "#");
  EXPECT_EQ(b[1].message->payload, "n");
  EXPECT_EQ(b[1].pattern, nullptr);  // the exact topic wins
}

TEST_F(TopicRouterTest, SeveralMatchingPatternsNameTheFirstInSortedOrder) {
  // Sorted: "#" < "a.#" < "a.#.#" < "a.*"; the last two collapse onto one node.
  auto sub = Sub({}, {"a.*", "a.#.#", "a.#"});
  auto other = Sub({}, {"a.#.#", "a.*"});
  EXPECT_EQ(Publish("a.b", "x").receivers, 2u);
  EXPECT_EQ(*sub->Next(10, 1000)->messages.at(0).pattern, "a.#");
  EXPECT_EQ(*other->Next(10, 1000)->messages.at(0).pattern, "a.#.#");
  EXPECT_EQ(broker_.topics().ListTopics().size(), 1u);
  EXPECT_EQ(broker_.topics().ListTopics()[0].subscribers, 2u);
}

TEST_F(TopicRouterTest, UnsubscribeStopsDeliveryAndCounts) {
  auto a = Sub({"t"});
  auto b = Sub({}, {"t.#"});
  auto topics = broker_.topics().ListTopics();
  ASSERT_EQ(topics.size(), 1u);
  EXPECT_EQ(topics[0].subscribers, 2u);
  broker_.topics().Unsubscribe(a, Error{Errc::kCancelled, "gone"});
  EXPECT_TRUE(a->Next(10, 100)->end.has_value());
  EXPECT_EQ(Publish("t", "x").receivers, 1u);
  topics = broker_.topics().ListTopics();
  EXPECT_EQ(topics[0].subscribers, 1u);
  EXPECT_EQ(topics[0].published, 1u);
  EXPECT_EQ(topics[0].delivered, 1u);
  // Nothing of the subscriptions stays behind in the pattern index.
  broker_.topics().Unsubscribe(b, Error{Errc::kCancelled, "gone"});
  EXPECT_EQ(broker_.topics().pattern_nodes(), 0u);
  a.reset();
  b.reset();
  EXPECT_EQ(broker_.topics().subscriber_memory(), 0u);
}

TEST_F(TopicRouterTest, ListTopicsCountsEachSubscriptionOnce) {
  auto a = Sub({"x.y"}, {"x.*", "#"});  // exact and two patterns: one subscriber
  auto b = Sub({}, {"x.*", "*.y"});     // two patterns: one subscriber
  auto c = Sub({}, {"#"});
  auto d = Sub({}, {"z"});
  Publish("x.y", "m");
  Publish("q", "m");
  auto topics = broker_.topics().ListTopics();
  ASSERT_EQ(topics.size(), 2u);
  EXPECT_EQ(topics[0].name, "q");
  EXPECT_EQ(topics[0].subscribers, 2u);  // a and c through `#`
  EXPECT_EQ(topics[1].name, "x.y");
  EXPECT_EQ(topics[1].subscribers, 3u);
  EXPECT_EQ(topics[1].delivered, 3u);
}

TEST_F(TopicRouterTest, TwentyHashPatternAndALongTopicAnswer) {
  auto sub = Sub({}, {Repeat("#", 20, "z")});
  // Sixty words used to take forever; now the topic is refused at once.
  EXPECT_EQ(TryPublish(Repeat("w", 60), "x").error().code, Errc::kInvalidTopic);
  EXPECT_EQ(Publish(Repeat("w", kMaxTopicWords), "x").receivers, 0u);
  EXPECT_EQ(Publish(Repeat("w", kMaxTopicWords - 1, "z"), "x").receivers, 1u);
  SubscriptionOptions too_long;
  too_long.patterns = {Repeat("#", 60, "z")};
  EXPECT_EQ(broker_.topics().Subscribe(too_long, [] {}).error().code, Errc::kInvalidTopic);
}

TEST_F(TopicRouterTest, BoundQueuesGetACopyAndFullOnesAreReported) {
  QueueConfig big;
  big.name = "all";
  auto all = broker_.CreateQueue(big).value().queue;
  QueueConfig small;
  small.name = "one";
  small.max_size = 1;
  auto one = broker_.CreateQueue(small).value().queue;
  EXPECT_TRUE(broker_.BindQueue("orders.#", "all").value());
  EXPECT_FALSE(broker_.BindQueue("orders.#", "all").value());   // idempotent
  EXPECT_TRUE(broker_.BindQueue("orders.#.#", "all").value());  // same node, one copy
  EXPECT_TRUE(broker_.BindQueue("orders.eu", "one").value());
  EXPECT_EQ(broker_.BindQueue("orders.#", "nosuch").error().code, Errc::kQueueNotFound);
  EXPECT_EQ(broker_.BindQueue("bad..pattern", "all").error().code, Errc::kInvalidTopic);

  PublishOutcome first = Publish("orders.eu", "1");
  EXPECT_EQ(first.queues, 2u);
  EXPECT_TRUE(first.undelivered_queues.empty());
  PublishOutcome second = Publish("orders.eu", "2");
  EXPECT_EQ(second.queues, 1u);
  EXPECT_EQ(second.undelivered_queues, std::vector<std::string>{"one"});
  EXPECT_EQ(one->Stats().total_rejected, 1u);
  EXPECT_EQ(all->Stats().size, 2u);

  std::optional<Result<Delivery>> got;
  WaitId id = 0;
  all->Get({}, now_, now_, &id, [&](Result<Delivery> r) { got = r; });
  EXPECT_EQ(got->value().headers.at("basin-topic"), "orders.eu");

  EXPECT_EQ(broker_.topics().BindingsOf("all"),
            (std::vector<std::string>{"orders.#", "orders.#.#"}));
  EXPECT_TRUE(broker_.UnbindQueue("orders.#", "all").ok());
  EXPECT_EQ(broker_.UnbindQueue("orders.#", "all").error().code, Errc::kBindingNotFound);
  EXPECT_EQ(Publish("orders.us", "3").queues, 1u);  // still bound by orders.#.#
  EXPECT_TRUE(broker_.UnbindQueue("orders.#.#", "all").ok());
  ASSERT_TRUE(broker_.DeleteQueue("one").ok());
  EXPECT_TRUE(broker_.topics().ListBindings().empty());
  EXPECT_EQ(broker_.topics().pattern_nodes(), 0u);
}

TEST_F(TopicRouterTest, BadInputIsRefused) {
  EXPECT_EQ(TryPublish("a..b", "x").error().code, Errc::kInvalidTopic);
  EXPECT_EQ(TryPublish("news.*", "x").error().code, Errc::kInvalidTopic);
  EXPECT_EQ(TryPublish("t", "x", {{"basin-topic", "x"}}).error().code, Errc::kReservedHeader);
  EXPECT_EQ(TryPublish("t", std::string(2 << 20, 'x')).error().code, Errc::kMessageTooLarge);
  SubscriptionOptions none;
  EXPECT_EQ(broker_.topics().Subscribe(none, [] {}).error().code, Errc::kInvalidArgument);
  SubscriptionOptions bad;
  bad.patterns = {"news.**"};
  EXPECT_EQ(broker_.topics().Subscribe(bad, [] {}).error().code, Errc::kInvalidTopic);
  SubscriptionOptions huge;
  huge.topics = {"t"};
  huge.max_messages = 10'000'000;
  EXPECT_EQ(broker_.topics().Subscribe(huge, [] {}).error().code, Errc::kInvalidArgument);
  huge.max_messages = 0;
  huge.max_bytes = UINT64_MAX;
  EXPECT_EQ(broker_.topics().Subscribe(huge, [] {}).error().code, Errc::kInvalidArgument);
}

TEST_F(TopicRouterTest, BindingsAreCapped) {
  TopicCaps caps;
  caps.max_bindings = 2;
  broker_.topics().SetCaps(caps);
  QueueConfig q;
  q.name = "q";
  ASSERT_TRUE(broker_.CreateQueue(q).ok());
  EXPECT_TRUE(broker_.BindQueue("a", "q").value());
  EXPECT_TRUE(broker_.BindQueue("b.#", "q").value());
  auto refused = broker_.BindQueue("c", "q");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kTooManyBindings);
  EXPECT_NE(refused.error().message.find("--max-bindings"), std::string::npos);
  EXPECT_FALSE(broker_.BindQueue("a", "q").value());  // an existing one: still idempotent
  EXPECT_TRUE(broker_.UnbindQueue("a", "q").ok());
  EXPECT_TRUE(broker_.BindQueue("c", "q").value());
}

// Bindings and their trie nodes once cost nothing against memory.
TEST_F(TopicRouterTest, BindingsAreChargedWithTheirTrieNodes) {
  QueueConfig q;
  q.name = "q";
  ASSERT_TRUE(broker_.CreateQueue(q).ok());
  const std::string pattern = Repeat("word", kMaxTopicWords - 1, "#");
  ASSERT_TRUE(broker_.BindQueue(pattern, "q").value());
  TopicRouter& router = broker_.topics();
  EXPECT_EQ(router.pattern_nodes(), kMaxTopicWords);
  EXPECT_GE(router.pattern_bytes(), uint64_t{kMaxTopicWords} * 200);
  EXPECT_GT(router.subscriber_memory(), router.pattern_bytes() + 2 * pattern.size());
  // A second binding of the same pattern shares the nodes.
  QueueConfig q2;
  q2.name = "q2";
  ASSERT_TRUE(broker_.CreateQueue(q2).ok());
  const uint64_t one = router.subscriber_memory();
  ASSERT_TRUE(broker_.BindQueue(pattern, "q2").value());
  EXPECT_LT(router.subscriber_memory() - one, one - router.pattern_bytes() + 10);
  ASSERT_TRUE(broker_.UnbindQueue(pattern, "q").ok());
  ASSERT_TRUE(broker_.DeleteQueue("q2").ok());
  EXPECT_EQ(router.pattern_nodes(), 0u);
  EXPECT_EQ(router.subscriber_memory(), 0u);
}

TEST_F(TopicRouterTest, BindingsAreRefusedBeyondTheNodeCap) {
  TopicCaps caps;
  caps.max_pattern_nodes = 4;
  broker_.topics().SetCaps(caps);
  QueueConfig q;
  q.name = "q";
  ASSERT_TRUE(broker_.CreateQueue(q).ok());
  ASSERT_TRUE(broker_.BindQueue("a.b.c", "q").value());
  auto refused = broker_.BindQueue("x.y", "q");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kTooManyPatternNodes);
  EXPECT_TRUE(broker_.topics().BindingsOf("q") == std::vector<std::string>{"a.b.c"});
  EXPECT_TRUE(broker_.BindQueue("a.b.c.#", "q").value());  // one more node: the last
  EXPECT_TRUE(broker_.BindQueue("a.b", "q").value());      // no new node
  EXPECT_EQ(broker_.topics().pattern_nodes(), 4u);
}

TEST_F(TopicRouterTest, ShutdownEndsSubscriptions) {
  auto s = Sub({"t"});
  broker_.Shutdown();
  EXPECT_EQ(s->Next(10, 100)->end->code, Errc::kShutdown);
  SubscriptionOptions o;
  o.topics = {"t"};
  EXPECT_EQ(broker_.topics().Subscribe(o, [] {}).error().code, Errc::kShutdown);
  // Nor is anything published once the broker drains.
  const auto published = TryPublish("t", "late");
  ASSERT_FALSE(published.ok());
  EXPECT_EQ(published.error().code, Errc::kShutdown);
}

// The router alone, with caps and a memory budget of the test's choosing.
class TopicCapsTest : public ::testing::Test {
 protected:
  explicit TopicCapsTest(uint64_t memory = 0) : memory_(memory), router_(TopicLimits{}, &memory_) {}
  Result<std::shared_ptr<Subscription>> TrySub(
      const std::string& owner, std::vector<std::string> topics,
      std::vector<std::string> patterns = {}, OverflowPolicy policy = OverflowPolicy::kDropOldest) {
    SubscriptionOptions o;
    o.topics = std::move(topics);
    o.patterns = std::move(patterns);
    o.owner = owner;
    o.policy = policy;
    auto r = router_.Subscribe(o, [] {});
    if (r.ok()) r.value()->Next(1, 1);
    return r;
  }
  std::shared_ptr<Subscription> Sub(const std::string& owner, std::vector<std::string> topics,
                                    std::vector<std::string> patterns = {},
                                    OverflowPolicy policy = OverflowPolicy::kDropOldest) {
    auto r = TrySub(owner, std::move(topics), std::move(patterns), policy);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : nullptr;
  }
  PublishOutcome Publish(const std::string& topic, const std::string& payload) {
    std::optional<Result<PublishOutcome>> out;
    router_.Publish(topic, payload, {}, TimePoint(), [&](Result<PublishOutcome> r) { out = r; });
    EXPECT_TRUE(out.has_value() && out->ok());
    return out.has_value() && out->ok() ? out->value() : PublishOutcome{};
  }
  // An in-memory queue to bind, outside any Broker.
  std::shared_ptr<Queue> MakeQueue(const std::string& name) {
    QueueConfig c;
    c.name = name;
    c.visibility_timeout = seconds(30);
    return std::make_shared<Queue>(c, 1, QueueLimits{}, &memory_, nullptr, nullptr, nullptr);
  }
  void SetShare(uint64_t bytes) {
    TopicCaps caps;
    caps.max_subscriber_memory = bytes;
    router_.SetCaps(caps);
  }
  MemoryBudget memory_;
  TopicRouter router_;
};

TEST_F(TopicCapsTest, SubscriptionsPerConnectionAndInTotalAreCapped) {
  TopicCaps caps;
  caps.max_subscriptions = 5;
  caps.max_subscriptions_per_connection = 3;
  router_.SetCaps(caps);
  std::vector<std::shared_ptr<Subscription>> a;
  for (int i = 0; i < 3; ++i) a.push_back(Sub("ipv4:10.0.0.1:5000", {"t"}));
  auto refused = TrySub("ipv4:10.0.0.1:5000", {"t"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kTooManySubscriptions);
  EXPECT_NE(refused.error().message.find("--max-subscriptions-per-connection"), std::string::npos);
  auto b1 = Sub("ipv4:10.0.0.1:5001", {"t"});
  auto b2 = Sub("ipv4:10.0.0.1:5001", {"t"});
  auto total = TrySub("ipv4:10.0.0.2:5000", {"t"});
  ASSERT_FALSE(total.ok());
  EXPECT_EQ(total.error().code, Errc::kTooManySubscriptions);
  EXPECT_EQ(Publish("t", "x").receivers, 5u);
  router_.Unsubscribe(a[0], Error{Errc::kCancelled, "gone"});
  EXPECT_TRUE(TrySub("ipv4:10.0.0.2:5000", {"t"}).ok());
  EXPECT_FALSE(TrySub("ipv4:10.0.0.1:5000", {"t"}).ok());  // the total again
}

TEST_F(TopicCapsTest, TermsPerSubscriptionAreCapped) {
  TopicCaps caps;
  caps.max_subscription_terms = 4;
  router_.SetCaps(caps);
  EXPECT_TRUE(TrySub("c", {"a", "b"}, {"c.*", "#"}).ok());
  auto r = TrySub("c", {"a", "b", "c"}, {"c.*", "#"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message.find("--max-subscription-terms"), std::string::npos);
  // The most absurd: refused by the count, before a term is looked at.
  std::vector<std::string> million(1'000'000, "a..b");
  EXPECT_EQ(TrySub("c", million).error().code, Errc::kInvalidArgument);
}

TEST_F(TopicCapsTest, TrackedTopicsNeverExceedTheCap) {
  TopicCaps caps;
  caps.max_tracked_topics = 3;
  router_.SetCaps(caps);
  // Published-only topics make way for newer ones, least recently counted first.
  for (int i = 0; i < 10; ++i) Publish("p" + std::to_string(i), "x");
  Publish("p8", "x");
  Publish("new", "x");
  auto topics = router_.ListTopics();
  ASSERT_EQ(topics.size(), 3u);
  EXPECT_EQ(topics[0].name, "new");
  EXPECT_EQ(topics[1].name, "p8");
  EXPECT_EQ(topics[2].name, "p9");
  // Topics with exact subscribers are never forgotten; when every tracked
  // topic has them, new topics go uncounted rather than grow the table.
  std::vector<std::shared_ptr<Subscription>> subs;
  for (const char* t : {"s1", "s2", "s3", "s4"}) subs.push_back(Sub("c", {t}));
  for (int i = 0; i < 1000; ++i) Publish("q" + std::to_string(i), "x");
  topics = router_.ListTopics();
  ASSERT_EQ(topics.size(), 3u);
  EXPECT_EQ(topics[0].name, "s1");
  EXPECT_EQ(topics[2].name, "s3");
  EXPECT_EQ(Publish("s4", "x").receivers, 1u);  // routing does not depend on it
  router_.Unsubscribe(subs[0], Error{Errc::kCancelled, "gone"});
  Publish("q0", "x");
  topics = router_.ListTopics();
  ASSERT_EQ(topics.size(), 3u);
  EXPECT_EQ(topics[0].name, "q0");
}

// N idle subscribers to one topic hold one copy of each message, not N.
TEST_F(TopicCapsTest, ASharedMessageIsChargedOnce) {
  std::vector<std::shared_ptr<Subscription>> subs;
  for (int i = 0; i < 100; ++i) subs.push_back(Sub("c", {"t"}));
  const uint64_t idle = router_.subscriber_memory();
  EXPECT_GT(idle, 0u);  // the subscriptions themselves
  EXPECT_EQ(memory_.used(), idle);
  const std::string payload(10'000, 'p');
  EXPECT_EQ(Publish("t", payload).receivers, 100u);
  EXPECT_EQ(router_.subscriber_memory(), idle + 1 + payload.size());
  EXPECT_EQ(memory_.used(), idle + 1 + payload.size());
  // Released when the last buffer lets it go, not before.
  for (int i = 0; i < 99; ++i) subs[i]->Next(10, 1 << 20);
  EXPECT_EQ(router_.subscriber_memory(), idle + 1 + payload.size());
  subs[99]->Next(10, 1 << 20);
  EXPECT_EQ(router_.subscriber_memory(), idle);
  for (auto& s : subs) router_.Unsubscribe(s, Error{Errc::kCancelled, "gone"});
  subs.clear();
  EXPECT_EQ(memory_.used(), 0u);
}

// A pattern of 32 words is 32 nodes of the trie, each a few hundred bytes:
// it was charged as 128 bytes plus its characters.
TEST_F(TopicCapsTest, TrieNodesAreChargedAtTheirSize) {
  const std::string pattern = Repeat("w", kMaxTopicWords - 1, "*");
  auto sub = Sub("c", {}, {pattern});
  EXPECT_EQ(router_.pattern_nodes(), kMaxTopicWords);
  EXPECT_GE(router_.pattern_bytes(), uint64_t{kMaxTopicWords} * 200);
  EXPECT_GE(router_.subscriber_memory(), uint64_t{kMaxTopicWords} * 200 + pattern.size());
  EXPECT_EQ(memory_.used(), router_.subscriber_memory());
  // A second subscription to the same pattern pays for its entry, not the nodes.
  const uint64_t first = router_.subscriber_memory();
  auto again = Sub("c", {}, {pattern});
  EXPECT_LT(router_.subscriber_memory() - first, first - router_.pattern_bytes() + 10);
  router_.Unsubscribe(sub, Error{Errc::kCancelled, "gone"});
  EXPECT_EQ(router_.pattern_nodes(), kMaxTopicWords);
  router_.Unsubscribe(again, Error{Errc::kCancelled, "gone"});
  sub.reset();
  again.reset();
  EXPECT_EQ(router_.pattern_nodes(), 0u);
  EXPECT_EQ(router_.subscriber_memory(), 0u);
  EXPECT_EQ(memory_.used(), 0u);
}

// A publish walks at most topic words x nodes: the nodes are capped, and a
// subscription that needs more is refused whole.
TEST_F(TopicCapsTest, PatternNodesAreCapped) {
  TopicCaps caps;
  caps.max_pattern_nodes = 8;
  router_.SetCaps(caps);
  auto five = Sub("c", {}, {"a.b.c.d.e"});
  auto refused = TrySub("c", {}, {"x.y.z.w"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kTooManyPatternNodes);
  EXPECT_NE(refused.error().message.find("--max-pattern-nodes"), std::string::npos);
  // Its first pattern fits, its second does not: neither stays.
  const uint64_t before = router_.subscriber_memory();
  refused = TrySub("c", {"exact"}, {"p.q", "r.s.t.u"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kTooManyPatternNodes);
  EXPECT_EQ(router_.pattern_nodes(), 5u);
  EXPECT_EQ(router_.subscriber_memory(), before);
  // Shared prefixes cost nothing new; exact topics are not in the trie.
  auto shared = Sub("c", {"t1", "t2"}, {"a.b", "a.b.c.d.f", "a.b.c.*"});
  EXPECT_EQ(router_.pattern_nodes(), 7u);
  EXPECT_EQ(Publish("a.b.c.d.e", "x").receivers, 1u);
  router_.Unsubscribe(five, Error{Errc::kCancelled, "gone"});  // frees `e`
  EXPECT_TRUE(TrySub("c", {}, {"x.y"}).ok());
  EXPECT_EQ(router_.pattern_nodes(), 8u);
}

// A binding's first entry at a node allocates its set's 13 buckets, and every
// node its word map's: both were left out, so bindings of long patterns were
// charged some three quarters of their heap, one-word ones some 85%.
TEST_F(TopicCapsTest, BindingsAndTheirNodesAreChargedAtLeastWhatTheyTakeFromTheHeap) {
  if (!HeapInUse()) GTEST_SKIP() << "the heap in use cannot be read here";
  auto q = MakeQueue("q");
  const std::vector<std::string> long_patterns = LongLiteralPatterns(200);
  const std::vector<std::string> one_word = [] {
    std::vector<std::string> out;
    for (int i = 0; i < 2'000; ++i) out.push_back("word" + std::to_string(i));
    return out;
  }();
  for (const std::vector<std::string>* patterns : {&long_patterns, &one_word}) {
    const uint64_t charged_before = router_.subscriber_memory();
    const uint64_t before = *HeapInUse();
    for (const std::string& p : *patterns) ASSERT_TRUE(router_.Bind(p, q).value()) << p;
    const uint64_t grown = *HeapInUse() - before;
    const uint64_t charged = router_.subscriber_memory() - charged_before;
    if (grown < patterns->size() * 100) GTEST_SKIP() << "the heap did not grow: not glibc's malloc";
    EXPECT_GE(charged, grown) << patterns->front();
    EXPECT_LE(charged, grown * 3 / 2) << patterns->front();
  }
  EXPECT_EQ(router_.pattern_nodes(), WordsIn(long_patterns) + one_word.size());
  router_.RemoveBindingsTo("q");
  EXPECT_EQ(router_.pattern_nodes(), 0u);
  EXPECT_EQ(router_.subscriber_memory(), 0u);
}

// A bind whose trie path fits in the share but whose binding then does not
// must give the path back: nodes left behind would hold memory and make
// publishes walk them for nothing.
TEST_F(TopicCapsTest, ABindingRefusedForMemoryLeavesNoNodesOrCharge) {
  auto q = MakeQueue("q");
  auto sub = Sub("c", {}, {"a.x"});  // `a` is there before, and stays
  const size_t nodes = router_.pattern_nodes();
  const uint64_t node_bytes = router_.pattern_bytes();
  const uint64_t used = router_.subscriber_memory();
  // What the bind costs: its two new nodes and the binding.
  ASSERT_TRUE(router_.Bind("a.b.c", q).value());
  const uint64_t path = router_.pattern_bytes() - node_bytes;
  const uint64_t cost = router_.subscriber_memory() - used;
  ASSERT_TRUE(router_.Unbind("a.b.c", "q").ok());
  ASSERT_EQ(router_.subscriber_memory(), used);
  ASSERT_GT(cost, path);
  // Room for the path, not for the binding after it.
  SetShare(used + cost - 1);
  auto refused = router_.Bind("a.b.c", q);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kBrokerMemory);
  EXPECT_NE(refused.error().message.find("no memory for a binding"), std::string::npos)
      << refused.error().message;  // the trie grew first
  EXPECT_EQ(router_.pattern_nodes(), nodes);
  EXPECT_EQ(router_.pattern_bytes(), node_bytes);
  EXPECT_EQ(router_.subscriber_memory(), used);
  EXPECT_TRUE(router_.BindingsOf("q").empty());
  EXPECT_EQ(Publish("a.b.c", "x").queues, 0u);
  SetShare(used + cost);  // exactly enough
  EXPECT_TRUE(router_.Bind("a.b.c", q).value());
}

// A subscription's patterns grow the trie one by one; when a later one finds
// no memory, what the earlier ones grew must go too, with its charge.
TEST_F(TopicCapsTest, ASubscriptionRefusedForMemoryLeavesNoNodesOrCharge) {
  auto other = Sub("c", {}, {"p.q"});  // `p` and `p.q` are there before, and stay
  const size_t nodes = router_.pattern_nodes();
  const uint64_t node_bytes = router_.pattern_bytes();
  const uint64_t used = router_.subscriber_memory();
  // What the subscription costs; its patterns grow in sorted order, so
  // `p.q.r.s` (two new nodes) before `z.y.x` (three).
  const std::vector<std::string> patterns = {"z.y.x", "p.q.r.s"};
  auto probe = Sub("c", {"t"}, patterns);
  const uint64_t cost = router_.subscriber_memory() - used;
  router_.Unsubscribe(probe, Error{Errc::kCancelled, "gone"});
  probe.reset();
  ASSERT_EQ(router_.subscriber_memory(), used);
  ASSERT_EQ(router_.pattern_nodes(), nodes);
  // Room for the subscription and `p.q.r.s`, not for all of `z.y.x`.
  SetShare(used + cost - 1);
  auto refused = TrySub("c", {"t"}, patterns);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kBrokerMemory);
  EXPECT_NE(refused.error().message.find("no memory for a pattern"), std::string::npos)
      << refused.error().message;  // not the subscription's own charge
  EXPECT_EQ(router_.pattern_nodes(), nodes);
  EXPECT_EQ(router_.pattern_bytes(), node_bytes);
  EXPECT_EQ(router_.subscriber_memory(), used);
  EXPECT_EQ(Publish("p.q.r.s", "x").receivers, 0u);
  SetShare(used + cost);  // exactly enough
  EXPECT_TRUE(TrySub("c", {"t"}, patterns).ok());
}

// The topics of the ListTopics tests below: 12 words, the first ten `w`.
std::string FanTopic(size_t i) {
  return Repeat("w", 10, "x" + std::to_string(i % 20) + ".y" + std::to_string(i / 20));
}

// 1,024 patterns, every one matching every FanTopic: {w,*}^10 then `#`.
std::vector<std::string> FanPatterns() {
  std::vector<std::string> out;
  for (size_t bits = 0; bits < 1024; ++bits) {
    std::string p;
    for (size_t w = 0; w < 10; ++w) p += (bits >> w & 1) ? "*." : "w.";
    out.push_back(p + "#");
  }
  return out;
}

// A hold of the shared lock used to count 256 topics whatever they cost: up
// to 32 x --max-pattern-nodes node visits each. It now ends by work.
TEST_F(TopicCapsTest, ListTopicsEndsEachHoldOfTheLockByWork) {
  constexpr size_t kTopics = 600;
  std::vector<std::string> topics;
  for (size_t i = 0; i < kTopics; ++i) topics.push_back(FanTopic(i));
  auto tracker = Sub("c", topics);  // tracks them all, one subscriber each
  std::vector<std::shared_ptr<Subscription>> fans;
  constexpr size_t kFans = 10;
  for (size_t i = 0; i < kFans; ++i) fans.push_back(Sub("c", {}, FanPatterns()));
  const uint64_t holds = router_.list_holds();
  const auto listed = router_.ListTopics();
  const uint64_t taken = router_.list_holds() - holds;
  ASSERT_EQ(listed.size(), kTopics);
  for (const TopicStats& t : listed) ASSERT_EQ(t.subscribers, kFans + 1) << t.name;
  // Each topic looks at kFans x 1,024 entries at least: a hold covers at most
  // kListSliceSteps of them (and one topic more).
  const uint64_t entries = kTopics * kFans * 1024;
  EXPECT_GE(taken, entries / TopicRouter::kListSliceSteps);
  // ...and not much more than that: nodes visited add at most 12 x the trie.
  const uint64_t most = kTopics * (kFans * 1024 + 12 * (router_.pattern_nodes() + 1) + 12);
  EXPECT_LE(taken, most / TopicRouter::kListSliceSteps + 1);
}

// Subscriptions come and go while ListTopics counts, between its holds of the
// lock: nothing found under one hold may be used under the next, and once
// quiet every count is what a brute-force count says.
TEST_F(TopicCapsTest, ListTopicsCountsRightWhileSubscriptionsChange) {
  constexpr size_t kTopics = 600;
  std::vector<std::string> topics;
  for (size_t i = 0; i < kTopics; ++i) topics.push_back(FanTopic(i));
  // Stable: a tracker of every topic, two fans (so that a listing takes
  // several holds), and a few narrower patterns.
  std::vector<SubscriptionOptions> stable;
  auto add = [&](std::vector<std::string> t, std::vector<std::string> p) {
    SubscriptionOptions o;
    o.topics = std::move(t);
    o.patterns = std::move(p);
    return o;
  };
  stable.push_back(add(topics, {}));
  stable.push_back(add({}, FanPatterns()));
  stable.push_back(add({}, FanPatterns()));
  stable.push_back(add({}, {"#.x3.*", "#.y7"}));
  stable.push_back(add({topics[5]}, {"w.#.x5.#"}));
  std::vector<std::shared_ptr<Subscription>> held;
  for (const auto& o : stable) held.push_back(Sub("c", o.topics, o.patterns));

  // What the churn thread subscribes: exact topics of the tracked set and
  // patterns of every kind, one to three terms.
  std::vector<SubscriptionOptions> kinds = {
      add({}, {"#"}),
      add({topics[1], topics[42]}, {}),
      add({}, {"#.x1.*", "*.*.*.*.*.*.*.*.*.*.x1.y0"}),
      add({topics[100]}, {"w.w.#.y5", "#.x0.#"}),
      add({}, {"w.*.w.#.x7.y3", "#.y11", "#.x19.#"}),
      add({}, {"#.x2.y2"}),
  };
  std::atomic<bool> stop{false};
  std::vector<std::pair<size_t, std::shared_ptr<Subscription>>> churned;
  size_t churns = 0;
  std::thread churn([&] {
    std::mt19937 rng(7);
    while (!stop.load()) {
      if (churned.size() < 8 && (churned.empty() || rng() % 2 == 0)) {
        const size_t k = rng() % kinds.size();
        auto r = router_.Subscribe(kinds[k], [] {});
        if (r.ok()) churned.emplace_back(k, r.value());
      } else {
        const size_t at = rng() % churned.size();
        router_.Unsubscribe(churned[at].second, Error{Errc::kCancelled, "gone"});
        churned.erase(churned.begin() + static_cast<std::ptrdiff_t>(at));
      }
      ++churns;
    }
  });
  // What each topic's count must be while churning: the stable subscriptions,
  // plus at most 8 of the churning ones.
  auto brute = [&](const std::string& topic, const std::vector<SubscriptionOptions>& subs) {
    uint64_t n = 0;
    const TopicWords words = SplitTopic(topic);
    for (const SubscriptionOptions& o : subs) {
      bool hit = std::find(o.topics.begin(), o.topics.end(), topic) != o.topics.end();
      for (const std::string& p : o.patterns) hit = hit || MatchWords(ParsePattern(p), words);
      n += hit ? 1 : 0;
    }
    return n;
  };
  std::vector<uint64_t> floor;
  for (const std::string& t : topics) floor.push_back(brute(t, stable));
  const uint64_t holds = router_.list_holds();
  size_t listings = 0;
  for (; listings < 20; ++listings) {
    const auto listed = router_.ListTopics();
    ASSERT_EQ(listed.size(), kTopics);
    for (size_t i = 0; i < kTopics; ++i) {
      // ListTopics orders by name; FanTopic's order differs.
      const size_t at = std::find(topics.begin(), topics.end(), listed[i].name) - topics.begin();
      ASSERT_LT(at, kTopics) << listed[i].name;
      EXPECT_GE(listed[i].subscribers, floor[at]) << listed[i].name;
      EXPECT_LE(listed[i].subscribers, floor[at] + 8) << listed[i].name;
    }
  }
  stop = true;
  churn.join();
  EXPECT_GT(churns, 0u);
  EXPECT_GE(router_.list_holds() - holds, 2 * listings);  // several holds per listing
  // Quiet: every count is exact.
  std::vector<SubscriptionOptions> live = stable;
  for (const auto& [k, sub] : churned) live.push_back(kinds[k]);
  for (const TopicStats& t : router_.ListTopics()) {
    EXPECT_EQ(t.subscribers, brute(t.name, live)) << t.name;
  }
}

class TopicMemoryTest : public TopicCapsTest {
 protected:
  TopicMemoryTest() : TopicCapsTest(4 << 20) {}  // a 1 MiB share by default
};

TEST_F(TopicMemoryTest, IdleSubscribersCannotStarveQueues) {
  std::vector<std::shared_ptr<Subscription>> idle;
  for (int i = 0; i < 50; ++i) idle.push_back(Sub("c" + std::to_string(i), {"feed"}));
  const std::string payload(10'000, 'p');
  for (int n = 0; n < 1'000; ++n) Publish("feed", payload);  // 10 MB published
  EXPECT_LE(router_.subscriber_memory(), uint64_t{1} << 20);
  EXPECT_GT(router_.subscriber_memory(), uint64_t{900} << 10);
  // Three quarters of --max-memory are still there for queues.
  EXPECT_TRUE(memory_.TryReserve(uint64_t{3} << 20));
  memory_.Release(uint64_t{3} << 20, TimePoint());
  // The idle subscribers lost their oldest messages, and each says so.
  auto first = idle[7]->Next(1, 1 << 20);
  ASSERT_TRUE(first.has_value());
  EXPECT_GT(first->messages.at(0).dropped_before, 0u);
}

// The share was only a cap inside --max-memory: queues that filled memory
// left subscriptions and publishes nothing, and pub/sub stopped.
TEST_F(TopicMemoryTest, QueuesThatFillMemoryDoNotStopPubSub) {
  uint64_t queued = 0;
  while (memory_.TryReserve(64 << 10)) queued += 64 << 10;
  EXPECT_EQ(queued, uint64_t{3} << 20);  // --max-memory less the share
  EXPECT_EQ(memory_.queue_limit(), uint64_t{3} << 20);
  auto sub = TrySub("c", {"t"}, {"t.#"});
  ASSERT_TRUE(sub.ok()) << sub.error().message;
  const std::string payload(10'000, 'p');
  for (int n = 0; n < 10; ++n) EXPECT_EQ(Publish("t", payload).receivers, 1u);
  auto got = sub.value()->Next(100, 1 << 20);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->messages.size(), 10u);
  EXPECT_EQ(got->messages[9].dropped_before, 0u);
  // ...and what pub/sub holds never gives queues room beyond their part.
  EXPECT_FALSE(memory_.TryReserve(1));
  EXPECT_EQ(memory_.used(), queued + router_.subscriber_memory());
  memory_.Release(queued, TimePoint());
}

TEST_F(TopicMemoryTest, AFullShareDropsOldestOrDisconnects) {
  TopicCaps caps;
  caps.max_subscriber_memory = 64 << 10;
  router_.SetCaps(caps);
  auto lossy = Sub("a", {"t"});
  auto strict = Sub("b", {"u"}, {}, OverflowPolicy::kDisconnect);
  const std::string payload(10'000, 'p');
  EXPECT_EQ(Publish("u", payload).receivers, 1u);
  for (int n = 0; n < 20; ++n) EXPECT_EQ(Publish("t", payload).receivers, 1u);
  EXPECT_LE(router_.subscriber_memory(), uint64_t{64} << 10);
  // `lossy` made room by dropping its own oldest; `strict` may not, so the
  // next message for it finds no room and ends its stream.
  EXPECT_EQ(Publish("u", payload).receivers, 0u);
  auto end = strict->Next(10, 1 << 20);
  ASSERT_TRUE(end.has_value() && end->end.has_value());
  EXPECT_EQ(end->end->code, Errc::kSlowSubscriber);
  // A message larger than the whole share is lost to everyone, and dropping
  // buffered ones would not help: nothing else is dropped for it.
  auto before = lossy->Next(100, 1 << 20)->messages.size();
  EXPECT_GT(before, 0u);
  Publish("t", payload);
  EXPECT_EQ(Publish("t", std::string(100'000, 'x')).receivers, 0u);
  auto after = lossy->Next(100, 1 << 20)->messages;
  ASSERT_EQ(after.size(), 1u);
  Publish("t", "last");
  EXPECT_EQ(lossy->Next(100, 1 << 20)->messages.at(0).dropped_before, 1u);
}

// Subscriptions, bindings and index nodes hold the share too, and dropping
// frees none of that: a publish that cannot fit even if its receivers drop
// everything they buffer is lost without emptying their buffers for nothing.
TEST_F(TopicMemoryTest, APublishThatCannotFitDropsNothingForIt) {
  TopicCaps caps;
  caps.max_subscriber_memory = 64 << 10;
  caps.max_subscriptions_per_connection = 1'000'000;
  caps.max_subscriptions = 1'000'000;
  router_.SetCaps(caps);
  auto lossy = Sub("a", {"t"});
  const std::string payload(10'000, 'p');
  ASSERT_EQ(Publish("t", payload).receivers, 1u);
  ASSERT_EQ(Publish("t", payload).receivers, 1u);
  std::vector<std::shared_ptr<Subscription>> fixed;
  for (int i = 0;; ++i) {
    auto r = TrySub("c", {"other" + std::to_string(i)});
    if (!r.ok()) break;
    fixed.push_back(r.value());
  }
  ASSERT_GT(fixed.size(), 10u);
  EXPECT_EQ(Publish("t", std::string(30'000, 'x')).receivers, 0u);
  Publish("t", "");  // fits after dropping one old message at most
  auto got = lossy->Next(100, 1 << 20);
  ASSERT_TRUE(got.has_value());
  ASSERT_GE(got->messages.size(), 2u) << "the buffer was emptied for a message that never fit";
  EXPECT_EQ(got->messages[0].message->payload, payload);
  for (auto& f : fixed) router_.Unsubscribe(f, Error{Errc::kCancelled, "gone"});
}

TEST_F(TopicMemoryTest, SubscriptionsThemselvesCountAgainstTheShare) {
  TopicCaps caps;
  caps.max_subscriber_memory = 64 << 10;
  caps.max_subscriptions_per_connection = 1'000'000;
  caps.max_subscriptions = 1'000'000;
  router_.SetCaps(caps);
  std::vector<std::shared_ptr<Subscription>> subs;
  std::vector<std::string> patterns;
  for (int i = 0; i < 100; ++i) patterns.push_back(Repeat("#", 31, "z" + std::to_string(i)));
  Result<std::shared_ptr<Subscription>> r = TrySub("c", {}, patterns);
  while (r.ok()) {
    subs.push_back(r.value());
    r = TrySub("c", {}, patterns);
  }
  EXPECT_EQ(r.error().code, Errc::kBrokerMemory);
  EXPECT_LE(router_.subscriber_memory(), uint64_t{64} << 10);
  EXPECT_LT(subs.size(), 10u);
  for (auto& s : subs) router_.Unsubscribe(s, Error{Errc::kCancelled, "gone"});
  subs.clear();
  EXPECT_EQ(router_.subscriber_memory(), 0u);
  EXPECT_EQ(router_.pattern_nodes(), 0u);
}

// A durable queue's bindings are in its log. Recovery used to bind them like
// a client does: past --max-pattern-nodes or the subscriber share, a binding
// was only logged as not restored while its log kept it, so that it routed
// nothing now and might come back at some later restart.
TEST(TopicRecoveryTest, DurableBindingsAreRestoredBeyondTheCapsAndCharged) {
  basin::testing::TempDir tmp;
  const std::string dir = tmp.Sub("data");
  const std::vector<std::string> patterns = {"a.b.c.d", "x.y", "x.#"};
  auto open = [&](storage::Committer& committer) {
    std::string error;
    auto store = storage::QueueStore::Open(dir, {}, &committer, &error);
    EXPECT_NE(store, nullptr) << error;
    return store;
  };
  QueueConfig q;
  q.name = "q";
  q.durable = true;
  {
    storage::Committer committer(storage::FsyncPolicy::kBatch, std::chrono::milliseconds(1));
    auto store = open(committer);
    ASSERT_NE(store, nullptr);
    Broker broker(BrokerLimits{}, nullptr, store.get());
    ASSERT_TRUE(broker.CreateQueue(q).ok());
    for (const std::string& p : patterns) ASSERT_TRUE(broker.BindQueue(p, "q").value()) << p;
  }  // the committer writes what waits before it stops
  // Restarted with caps the bindings exceed: 7 nodes and some 4 KiB of
  // charges against a cap of 2 nodes and a 1 KiB share.
  BrokerLimits limits;
  limits.max_memory = 64 << 20;
  limits.topic_caps.max_pattern_nodes = 2;
  limits.topic_caps.max_subscriber_memory = 1 << 10;
  storage::Committer committer(storage::FsyncPolicy::kBatch, std::chrono::milliseconds(1));
  auto store = open(committer);
  ASSERT_NE(store, nullptr);
  Broker broker(limits, nullptr, store.get());
  auto recovered = broker.Recover(TimePoint() + seconds(1));
  ASSERT_TRUE(recovered.ok()) << recovered.error().message;
  EXPECT_TRUE(recovered.value().warnings.empty()) << recovered.value().warnings.front();
  TopicRouter& router = broker.topics();
  std::vector<std::string> want = patterns;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(router.BindingsOf("q"), want);
  EXPECT_EQ(router.pattern_nodes(), 7u);  // a, a.b, a.b.c, a.b.c.d, x, x.y, x.#
  // Charged all the same, beyond the share's cap.
  EXPECT_GT(router.subscriber_memory(), router.pattern_bytes());
  EXPECT_GT(router.subscriber_memory(), uint64_t{1} << 10);
  // A durable copy is reported once written, on the committer's thread.
  std::promise<Result<PublishOutcome>> published;
  router.Publish("a.b.c.d", "x", {}, TimePoint() + seconds(1),
                 [&](Result<PublishOutcome> r) { published.set_value(std::move(r)); });
  auto done = published.get_future();
  ASSERT_EQ(done.wait_for(seconds(10)), std::future_status::ready);
  const Result<PublishOutcome> out = done.get();
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out.value().queues, 1u);
  // New bindings still meet the caps.
  EXPECT_EQ(broker.BindQueue("m.n", "q").error().code, Errc::kTooManyPatternNodes);
  // Unbinding gives every byte back.
  for (const std::string& p : patterns) ASSERT_TRUE(broker.UnbindQueue(p, "q").ok()) << p;
  EXPECT_EQ(router.pattern_nodes(), 0u);
  EXPECT_EQ(router.subscriber_memory(), 0u);
}

}  // namespace
}  // namespace basin::core
