// Pub/sub: routes each published message to the live subscriptions whose
// topics or patterns match it, and puts a copy into every bound queue.
//
// API:
//   Publish      never blocks. Subscribers get the message through their own
//                bounded buffers (see subscription.h); bound queues get it
//                through Queue::Offer, and a queue that refuses (full, closed,
//                out of memory) is reported back, not waited for. The outcome
//                is reported once every copy into a durable queue is written
//                (a copy whose write fails counts as undelivered).
//   Subscribe / Unsubscribe
//                a subscription lives from Subscribe until Unsubscribe or
//                Shutdown, which both End() it.
//   Bind / Unbind / RemoveBindingsTo
//                topic-to-queue bindings; the Broker calls these under its own
//                lock so that a binding never outlives its queue.
//   ListTopics   counts each tracked topic's subscribers on the live index, a
//                slice of topics at a time under the shared lock, each slice
//                ended by the work done (kListSliceSteps): no copy of the
//                index is made.
//   SetCaps      the caps of TopicCaps; called once, before the router is
//                shared between threads (main does, before serving).
//
// Routing: exact topics of subscriptions sit in a hash map; their patterns and
// all bindings in one word trie (topic_trie.h), so a publish looks only at the
// patterns that can match its topic, and never backtracks. The trie's nodes
// are capped (TopicCaps::max_pattern_nodes): a publish visits at most topic
// words x nodes of them under the shared lock.
//
// Memory: a published message is one shared allocation, charged once to the
// subscriber share of the broker's memory budget (TopicCaps::
// max_subscriber_memory) and released when the last buffer or stream lets it
// go; a subscription's own topics and patterns, every binding and every node
// of the trie are charged there too. The share is set aside from --max-memory
// (see MemoryShare): subscribers, idle or not, can never take what it leaves
// to queues, and queues that fill theirs cannot stop pub/sub.
//
// Ordering: a publisher's messages reach each subscription in publish order,
// since a publish hands the message to every buffer before it returns.
// A subscription that matches a message by several of its topics and patterns
// receives it once, naming the first match (exact topics before patterns,
// then patterns in sorted order).
//
// Lock order: mu_ before stats_mu_. Neither is held while offering to a
// subscription or a queue (a queue runs callbacks and wakes streams).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/lock_rank.h"
#include "broker/core/memory_budget.h"
#include "broker/core/queue.h"
#include "broker/core/subscription.h"
#include "broker/core/time.h"
#include "broker/core/topic_trie.h"

namespace basin::core {

// What clients may make the router keep. Each has a flag (broker/config.cc).
struct TopicCaps {
  size_t max_subscriptions = 10'000;                // live, broker-wide
  size_t max_subscriptions_per_connection = 1'000;  // live, per SubscriptionOptions::owner
  size_t max_subscription_terms = 1'024;            // topics + patterns of one subscription
  size_t max_bindings = 100'000;                    // broker-wide
  size_t max_tracked_topics = 100'000;              // topics ListTopics keeps counters for
  size_t max_pattern_nodes = 100'000;               // nodes of the trie: a publish's work
  uint64_t max_subscriber_memory = 0;               // 0 = a quarter of the budget's limit
};

struct TopicLimits {
  uint64_t max_message_bytes = 1 << 20;
  size_t default_buffer_messages = 10'000;
  uint64_t default_buffer_bytes = 16 << 20;
  size_t max_buffer_messages = 1'000'000;
  uint64_t max_buffer_bytes = 256 << 20;
  TopicCaps caps{};
};

struct PublishOutcome {
  uint64_t receivers = 0;  // subscriptions that buffered the message
  uint64_t queues = 0;     // bound queues that took a copy
  std::vector<std::string> undelivered_queues;
};

struct TopicStats {
  std::string name;
  uint64_t subscribers = 0;  // subscriptions a publish to this topic reaches now
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t routed = 0;
};

struct BindingInfo {
  std::string pattern;
  std::string queue;
};

class TopicRouter {
 public:
  TopicRouter(TopicLimits limits, MemoryBudget* memory);
  ~TopicRouter();
  TopicRouter(const TopicRouter&) = delete;
  TopicRouter& operator=(const TopicRouter&) = delete;

  // Not thread-safe: before the router is used from other threads.
  void SetCaps(const TopicCaps& caps);

  // `done` runs exactly once: inline when no bound durable queue took a copy,
  // else on the thread that wrote the last durable copy.
  using PublishDone = std::function<void(Result<PublishOutcome>)>;
  void Publish(std::string_view topic, std::string_view payload, const Headers& headers,
               TimePoint now, PublishDone done);

  // Whether a subscription of this many topics and patterns may be made: at
  // least one, at most --max-subscription-terms. Subscribe checks it first;
  // callers that look at each term before (authorization) check it earlier.
  Result<void> CheckTerms(size_t topics, size_t patterns) const;
  // Buffer sizes of 0 take the defaults. `wake` is the subscription's wake-up
  // (see Subscription); it must stay callable until Unsubscribe returns.
  Result<std::shared_ptr<Subscription>> Subscribe(SubscriptionOptions options,
                                                  std::function<void()> wake);
  // Removes the subscription and ends its stream with `why`. Idempotent.
  void Unsubscribe(const std::shared_ptr<Subscription>& sub, Error why);

  // Returns false when the binding already existed.
  Result<bool> Bind(const std::string& pattern, std::shared_ptr<Queue> queue);
  // Bind for a binding a durable queue's log holds, at start: kept beyond
  // --max-bindings, --max-pattern-nodes and the subscriber share, and
  // charged all the same (as recovered queues are kept beyond --max-queues).
  // Refusing it would drop it from routing while the log keeps it, so that
  // it would come back, or not, at some later restart. Only an invalid
  // pattern is refused.
  Result<bool> RestoreBinding(const std::string& pattern, std::shared_ptr<Queue> queue);
  Result<void> Unbind(const std::string& pattern, const std::string& queue);
  void RemoveBindingsTo(const std::string& queue);
  std::vector<std::string> BindingsOf(const std::string& queue) const;

  // Ordered by name: the tracked topics (published to or subscribed to by
  // exact name; at most TopicCaps::max_tracked_topics of them).
  std::vector<TopicStats> ListTopics() const;
  // ListTopics lets go of the shared lock once a slice of topics has cost
  // this many steps (trie nodes visited and subscription entries looked at),
  // and counts at least one topic per hold. What bounds a hold is its work,
  // not its topics: one topic can cost 32 x --max-pattern-nodes visits.
  static constexpr size_t kListSliceSteps = size_t{1} << 20;
  // Holds of the shared lock ListTopics has taken, ever (for tests).
  uint64_t list_holds() const { return list_holds_.load(std::memory_order_relaxed); }
  // Ordered by pattern, then queue.
  std::vector<BindingInfo> ListBindings() const;

  // Ends every subscription with kShutdown and refuses new ones.
  void Shutdown();

  // Bytes held in the subscriber share: buffered messages, subscriptions,
  // bindings and the pattern trie.
  uint64_t subscriber_memory() const { return subscriber_memory_.used(); }
  // Nodes of the pattern trie (for tests: unsubscribing prunes it).
  size_t pattern_nodes() const;
  // What the pattern trie's nodes are charged (part of subscriber_memory()).
  uint64_t pattern_bytes() const;

 private:
  using SubPtr = std::shared_ptr<Subscription>;
  using BindingMap = std::map<std::pair<std::string, std::string>, std::shared_ptr<Queue>>;
  using Binding = BindingMap::value_type;

  // A subscription's pattern that ends at a trie node: its index in
  // options().patterns (the lowest, when several collapse to one node).
  struct PatternSub {
    SubPtr sub;
    size_t pattern = 0;
  };
  // What ends at one node of the trie.
  struct Routes {
    std::unordered_map<const Subscription*, PatternSub> subs;
    std::unordered_set<const Binding*> bindings;
    bool empty() const { return subs.empty() && bindings.empty(); }
  };
  struct Receiver {
    SubPtr sub;
    const std::string* pattern = nullptr;
    size_t rank = 0;  // 0 for an exact topic, else 1 + the pattern's index: lowest wins
  };
  using Targets = std::vector<std::pair<std::string, std::shared_ptr<Queue>>>;
  // Dropped messages by topic, for the statistics.
  using DropTally = std::unordered_map<std::string, uint64_t>;

  struct Counters {
    uint64_t published = 0;
    uint64_t delivered = 0;
    uint64_t dropped = 0;
    uint64_t routed = 0;
    uint64_t exact_subscribers = 0;
    std::list<std::string_view>::iterator evictable;  // while exact_subscribers == 0
  };
  struct WordHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };

  // Under mu_ (shared).
  void CollectLocked(std::string_view topic, const TopicWords& words,
                     std::vector<Receiver>* receivers, Targets* queues) const;
  // Subscriptions a publish to `topic` reaches now; adds the work done to
  // `steps`. `several` is scratch, kept between calls for its capacity.
  uint64_t CountSubscribersLocked(const std::string& topic,
                                  std::vector<const Subscription*>* several, size_t* steps) const;
  // Under mu_ (exclusive). Creates the trie path of `pattern` (entries
  // empty), within --max-pattern-nodes and charged to the share, or says why
  // not; with `force`, charged beyond both.
  Result<void> GrowLocked(const TopicWords& pattern, bool force = false);
  Result<bool> BindLocked(const std::string& pattern, std::shared_ptr<Queue> queue, bool force);
  // Removes what of the path of `pattern` nothing uses, and its charge.
  void PruneLocked(const TopicWords& pattern);
  // Reserves `bytes` in the subscriber share, making the receivers drop their
  // oldest messages if it is full. False if it cannot.
  bool MakeRoom(const std::vector<Receiver>& receivers, uint64_t bytes, DropTally* dropped);
  void RemoveLocked(const Subscription& sub);
  void RemoveBindingLocked(BindingMap::iterator it);

  // Under stats_mu_. The counters of `topic`, created if new and `create`,
  // unless the cap is reached and every tracked topic has exact subscribers:
  // then null, and the topic is not counted.
  Counters* TrackLocked(std::string_view topic, bool create);
  void CountStats(std::string_view topic, const PublishOutcome& out, const DropTally& dropped);

  TopicLimits limits_;
  MemoryBudget* const memory_;
  MemoryShare subscriber_memory_;

  // Guards the routing state below. Shared for publishes, ListBindings and
  // BindingsOf; exclusive for changes. Taken under Broker's locks (bindings).
  mutable RankedSharedMutex<LockRank::kTopicRouter> mu_;
  std::unordered_map<uint64_t, SubPtr> subs_;
  std::unordered_map<std::string, size_t> per_owner_;
  std::unordered_map<std::string, std::unordered_map<const Subscription*, SubPtr>, WordHash,
                     std::equal_to<>>
      by_topic_;
  TopicTrie<Routes> trie_;
  BindingMap bindings_;                                  // (pattern, queue)
  std::set<std::pair<std::string, std::string>> bound_;  // (queue, pattern)
  uint64_t next_id_ = 1;
  bool shutting_down_ = false;
  mutable std::atomic<uint64_t> list_holds_{0};

  // Guards topics_ and evictable_; taken under mu_ (Subscribe, Unsubscribe)
  // or alone, and nothing is taken under it.
  mutable RankedMutex<LockRank::kTopicStats> stats_mu_;
  std::map<std::string, Counters, std::less<>> topics_;
  // Tracked topics without exact subscribers, least recently counted first:
  // the first the cap forgets. Views of topics_'s keys.
  std::list<std::string_view> evictable_;
};

}  // namespace basin::core
