#include "broker/core/topic_router.h"

#include <algorithm>

#include "broker/core/topic_name.h"

namespace basin::core {
namespace {

// What a subscription costs to keep besides its terms' characters: the
// object, its buffer, its entries in the exact-topic map and at its patterns'
// trie nodes (the nodes are charged apart, once, by the trie). An estimate,
// charged so that many subscriptions with many terms count against memory
// like messages do; measured with mallinfo2 (glibc): a subscription to one
// exact topic takes about 1,570 bytes, most of it the empty buffer's 512-byte
// deque block, the exact-topic map's entry and the routes' bucket arrays.
constexpr uint64_t kSubscriptionOverhead = 1'280;
constexpr uint64_t kTermOverhead = 320;

// What a binding costs to keep: a node in bindings_ and one in bound_ (a tree
// node holding two strings and, in bindings_, the queue's pointer) and an
// entry in its trie node's set, each with the allocator's header, and both
// names twice. The set's bucket array, allocated by the node's first binding
// and kept until the node goes, is charged with every binding: a charge of its
// own, whatever else the node holds, is one that Bind and RemoveBindingLocked
// agree on. Its trie nodes are charged apart.
constexpr uint64_t kBlockOverhead = 16;
constexpr uint64_t kBindingOverhead =
    2 * (4 * sizeof(void*) + 2 * sizeof(std::string) + kBlockOverhead) +
    sizeof(std::shared_ptr<Queue>) + 3 * sizeof(void*) + kBlockOverhead + kFirstBucketsBytes;

uint64_t BindingBytes(const std::string& pattern, const std::string& queue) {
  return kBindingOverhead + 2 * (pattern.size() + queue.size());
}

uint64_t ShareCap(const TopicCaps& caps, const MemoryBudget& memory) {
  if (caps.max_subscriber_memory != 0) return caps.max_subscriber_memory;
  return memory.limit() == 0 ? 0 : std::max<uint64_t>(1, memory.limit() / 4);
}

// Counts dropped messages by topic and lets them go (releasing their memory
// when they were the last reference): call with no lock held.
void Tally(std::vector<PublishedPtr>& dropped, std::unordered_map<std::string, uint64_t>* tally) {
  for (PublishedPtr& d : dropped) {
    ++(*tally)[d->topic];
    d.reset();
  }
  dropped.clear();
}

// A publish whose copies into durable queues are being written: the outcome
// is reported when the last one is (the publisher's own share counts as one,
// so copies written before the publish has offered them all cannot end it).
struct DurableCopies {
  RankedMutex<LockRank::kPublishCopies> mu;
  int waiting = 1;
  PublishOutcome out;
  std::vector<std::string> failed;
  TopicRouter::PublishDone done;

  void Finished(const std::string* failed_queue) {
    {
      std::lock_guard lock(mu);
      if (failed_queue != nullptr) failed.push_back(*failed_queue);
      if (--waiting > 0) return;
    }
    for (std::string& name : failed) {
      --out.queues;
      out.undelivered_queues.push_back(std::move(name));
    }
    done(std::move(out));
  }
};

}  // namespace

TopicRouter::TopicRouter(TopicLimits limits, MemoryBudget* memory)
    : limits_(limits),
      memory_(memory),
      subscriber_memory_(memory, ShareCap(limits.caps, *memory)) {}

TopicRouter::~TopicRouter() = default;

void TopicRouter::SetCaps(const TopicCaps& caps) {
  limits_.caps = caps;
  subscriber_memory_.set_cap(ShareCap(caps, *memory_));
}

void TopicRouter::CollectLocked(std::string_view topic, const TopicWords& words,
                                std::vector<Receiver>* receivers, Targets* queues) const {
  if (auto it = by_topic_.find(topic); it != by_topic_.end()) {
    receivers->reserve(it->second.size());
    for (const auto& [key, sub] : it->second) receivers->push_back({sub, nullptr, 0});
  }
  // Where each subscription already is in `receivers`: it gets one copy.
  // Exact topics name each subscription once, so this index is built only
  // when a pattern matches too (a publish to a plain topic skips it).
  std::unordered_map<const Subscription*, size_t> seen;
  std::unordered_set<const Queue*> seen_queues;
  trie_.Match(words, [&](const Routes& routes) {
    if (seen.empty() && !routes.subs.empty()) {
      for (size_t i = 0; i < receivers->size(); ++i) seen.emplace((*receivers)[i].sub.get(), i);
    }
    for (const auto& [key, match] : routes.subs) {
      const size_t rank = match.pattern + 1;
      const std::string* pattern = &match.sub->options().patterns[match.pattern];
      auto [it, fresh] = seen.emplace(key, receivers->size());
      if (fresh) {
        receivers->push_back({match.sub, pattern, rank});
      } else if (Receiver& r = (*receivers)[it->second]; rank < r.rank) {
        r.pattern = pattern;
        r.rank = rank;
      }
    }
    for (const Binding* b : routes.bindings) {
      if (seen_queues.insert(b->second.get()).second)
        queues->emplace_back(b->first.second, b->second);
    }
  });
}

bool TopicRouter::MakeRoom(const std::vector<Receiver>& receivers, uint64_t bytes,
                           DropTally* dropped) {
  if (subscriber_memory_.TryReserve(bytes)) return true;
  // The share is set aside from --max-memory, so only its own cap refuses:
  // what queues hold never makes a subscriber drop a message.
  const uint64_t cap = subscriber_memory_.cap();
  if (cap != 0 && bytes > cap) return false;
  // Dropping frees at most what the receivers buffer. When even all of it
  // cannot make room (the share is held by subscriptions, bindings and index
  // nodes, or by other subscribers' messages), the message is lost without
  // emptying every receiver's buffer for nothing.
  uint64_t droppable = 0;
  for (const Receiver& r : receivers) droppable += r.sub->droppable_bytes();
  const uint64_t used = subscriber_memory_.used();
  if (cap != 0 && used - std::min(used, droppable) + bytes > cap) return false;
  // Older messages make way for the new one, as they do in a full buffer:
  // round robin over the receivers, until it fits or none has anything left to
  // drop. A message is freed when the last buffer holding it drops it.
  for (bool progress = true; progress;) {
    progress = false;
    for (const Receiver& r : receivers) {
      PublishedPtr old = r.sub->DropOldest();
      if (old == nullptr) continue;
      progress = true;
      ++(*dropped)[old->topic];
      old.reset();
      if (subscriber_memory_.TryReserve(bytes)) return true;
    }
  }
  return false;
}

void TopicRouter::Publish(std::string_view topic, std::string_view payload, const Headers& headers,
                          TimePoint now, PublishDone done) {
  if (auto ok = ValidateTopicName(topic); !ok.ok()) return done(ok.error());
  auto valid = Message::Validate(payload, headers, limits_.max_message_bytes);
  if (!valid.ok()) return done(valid.error());
  const uint64_t bytes = valid.value();
  const TopicWords words = SplitTopic(topic);

  // Collect the receivers under the lock, deliver after it: Offer never
  // blocks, but queues run their own callbacks.
  std::vector<Receiver> receivers;
  Targets queues;
  bool refused = false;
  {
    std::shared_lock lock(mu_);
    refused = shutting_down_;  // draining (SIGTERM): no new work
    if (!refused) CollectLocked(topic, words, &receivers, &queues);
  }
  if (refused) return done(Error{Errc::kShutdown, "broker is shutting down"});

  PublishOutcome out;
  DropTally dropped;
  if (!receivers.empty()) {
    auto msg = std::make_shared<PublishedMessage>();
    msg->topic = std::string(topic);
    msg->payload = std::string(payload);
    msg->headers = headers;
    msg->bytes = topic.size() + bytes;
    const bool charged = MakeRoom(receivers, msg->bytes, &dropped);
    if (charged) msg->charge = MemoryCharge(&subscriber_memory_, msg->bytes);
    const PublishedPtr shared = std::move(msg);
    for (const Receiver& r : receivers) {
      Subscription::Offered offered =
          charged ? r.sub->Offer(shared, r.pattern) : r.sub->Lose(shared);
      out.receivers += offered.accepted ? 1 : 0;
      Tally(offered.dropped, &dropped);
    }
  }
  std::shared_ptr<DurableCopies> copies;  // only when a durable queue takes a copy
  if (!queues.empty()) {
    Headers routed = headers;
    routed[std::string(kHeaderTopic)] = std::string(topic);
    for (auto& [name, queue] : queues) {
      QueueJournal::Committed written;
      if (queue->config().durable) {
        if (copies == nullptr) copies = std::make_shared<DurableCopies>();
        std::lock_guard lock(copies->mu);
        ++copies->waiting;
        written = [copies, name = name](std::optional<Error> e, TimePoint) {
          copies->Finished(e ? &name : nullptr);
        };
      }
      if (queue->Offer(payload, routed, now, std::move(written)).ok()) {
        ++out.queues;
      } else {
        out.undelivered_queues.push_back(name);
        if (queue->config().durable) copies->Finished(nullptr);  // nothing to wait for
      }
    }
  }
  CountStats(topic, out, dropped);
  if (copies == nullptr) return done(std::move(out));
  {
    std::lock_guard lock(copies->mu);
    copies->out = std::move(out);
    copies->done = std::move(done);
  }
  copies->Finished(nullptr);
}

TopicRouter::Counters* TopicRouter::TrackLocked(std::string_view topic, bool create) {
  if (auto it = topics_.find(topic); it != topics_.end()) {
    Counters& c = it->second;
    if (c.exact_subscribers == 0) evictable_.splice(evictable_.end(), evictable_, c.evictable);
    return &c;
  }
  if (!create) return nullptr;
  if (topics_.size() >= limits_.caps.max_tracked_topics) {
    if (evictable_.empty()) return nullptr;
    auto victim = topics_.find(evictable_.front());
    evictable_.pop_front();
    topics_.erase(victim);
  }
  auto it = topics_.emplace(std::string(topic), Counters{}).first;
  it->second.evictable = evictable_.insert(evictable_.end(), it->first);
  return &it->second;
}

void TopicRouter::CountStats(std::string_view topic, const PublishOutcome& out,
                             const DropTally& dropped) {
  std::lock_guard lock(stats_mu_);
  if (Counters* c = TrackLocked(topic, true)) {
    ++c->published;
    c->delivered += out.receivers;
    c->routed += out.queues;
  }
  for (const auto& [t, n] : dropped) {
    if (Counters* c = TrackLocked(t, false)) c->dropped += n;
  }
}

Result<void> TopicRouter::CheckTerms(size_t topics, size_t patterns) const {
  if (topics == 0 && patterns == 0) {
    return Error{Errc::kInvalidArgument, "subscribe to at least one topic or pattern"};
  }
  const size_t terms = topics + patterns;
  if (terms > limits_.caps.max_subscription_terms) {
    return Error{Errc::kInvalidArgument, "a subscription of " + std::to_string(terms) +
                                             " topics and patterns exceeds " +
                                             "the broker's --max-subscription-terms of " +
                                             std::to_string(limits_.caps.max_subscription_terms)};
  }
  return {};
}

Result<std::shared_ptr<Subscription>> TopicRouter::Subscribe(SubscriptionOptions options,
                                                             std::function<void()> wake) {
  const TopicCaps& caps = limits_.caps;
  if (auto ok = CheckTerms(options.topics.size(), options.patterns.size()); !ok.ok()) {
    return ok.error();
  }
  for (const auto& t : options.topics) {
    if (auto ok = ValidateTopicName(t); !ok.ok()) return ok.error();
  }
  for (const auto& p : options.patterns) {
    if (auto ok = ValidateTopicPattern(p); !ok.ok()) return ok.error();
  }
  if (options.max_messages == 0) options.max_messages = limits_.default_buffer_messages;
  if (options.max_bytes == 0) options.max_bytes = limits_.default_buffer_bytes;
  if (options.max_messages > limits_.max_buffer_messages ||
      options.max_bytes > limits_.max_buffer_bytes) {
    return Error{Errc::kInvalidArgument,
                 "subscriber buffer of " + std::to_string(options.max_messages) + " messages / " +
                     std::to_string(options.max_bytes) + " bytes exceeds the broker limit of " +
                     std::to_string(limits_.max_buffer_messages) + " messages / " +
                     std::to_string(limits_.max_buffer_bytes) + " bytes"};
  }
  auto dedupe = [](std::vector<std::string>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
  };
  dedupe(options.topics);
  dedupe(options.patterns);
  uint64_t footprint = kSubscriptionOverhead + options.owner.size();
  for (const auto& t : options.topics) footprint += kTermOverhead + t.size();
  for (const auto& p : options.patterns) footprint += kTermOverhead + p.size();
  if (!subscriber_memory_.TryReserve(footprint)) {
    return Error{Errc::kBrokerMemory,
                 "no memory for a subscription: the broker's memory for pub/sub "
                 "(--max-subscriber-memory, " +
                     std::to_string(subscriber_memory_.cap()) + " bytes) is full"};
  }
  // Declared before the lock: a refused subscription gives it back after.
  MemoryCharge charge(&subscriber_memory_, footprint);

  std::unique_lock lock(mu_);
  if (shutting_down_) return Error{Errc::kShutdown, "broker is shutting down"};
  if (subs_.size() >= caps.max_subscriptions) {
    return Error{Errc::kTooManySubscriptions, "the broker has " + std::to_string(subs_.size()) +
                                                  " live subscriptions, its --max-subscriptions"};
  }
  auto owned = per_owner_.find(options.owner);
  if (owned != per_owner_.end() && owned->second >= caps.max_subscriptions_per_connection) {
    return Error{Errc::kTooManySubscriptions,
                 "this connection has " + std::to_string(owned->second) +
                     " live subscriptions, the broker's --max-subscriptions-per-connection"};
  }
  // The patterns' trie paths first, each within the node cap and charged:
  // a refusal takes back what the earlier ones added.
  for (size_t i = 0; i < options.patterns.size(); ++i) {
    if (auto grown = GrowLocked(ParsePattern(options.patterns[i])); !grown.ok()) {
      for (size_t j = 0; j < i; ++j) PruneLocked(ParsePattern(options.patterns[j]));
      return grown.error();
    }
  }
  auto sub = std::make_shared<Subscription>(next_id_++, std::move(options), std::move(wake),
                                            std::move(charge));
  subs_.emplace(sub->id(), sub);
  ++per_owner_[sub->options().owner];
  for (const auto& t : sub->options().topics) by_topic_[t].emplace(sub.get(), sub);
  const auto& patterns = sub->options().patterns;
  for (size_t i = 0; i < patterns.size(); ++i) {
    trie_.At(ParsePattern(patterns[i])).subs.emplace(sub.get(), PatternSub{sub, i});
  }
  std::lock_guard stats(stats_mu_);
  for (const auto& t : sub->options().topics) {
    Counters* c = TrackLocked(t, true);
    if (c != nullptr && c->exact_subscribers++ == 0) evictable_.erase(c->evictable);
  }
  return sub;
}

void TopicRouter::RemoveLocked(const Subscription& sub) {
  if (auto it = per_owner_.find(sub.options().owner); it != per_owner_.end() && --it->second == 0) {
    per_owner_.erase(it);
  }
  for (const auto& t : sub.options().topics) {
    auto it = by_topic_.find(t);
    if (it == by_topic_.end()) continue;
    it->second.erase(&sub);
    if (it->second.empty()) by_topic_.erase(it);
  }
  for (const auto& p : sub.options().patterns) {
    const TopicWords words = ParsePattern(p);
    Routes* routes = trie_.Find(words);
    if (routes == nullptr) continue;
    routes->subs.erase(&sub);
    if (routes->empty()) PruneLocked(words);
  }
  std::lock_guard stats(stats_mu_);
  for (const auto& t : sub.options().topics) {
    auto it = topics_.find(t);
    if (it == topics_.end() || it->second.exact_subscribers == 0) continue;
    if (--it->second.exact_subscribers == 0) {
      it->second.evictable = evictable_.insert(evictable_.end(), it->first);
    }
  }
}

void TopicRouter::Unsubscribe(const std::shared_ptr<Subscription>& sub, Error why) {
  {
    std::unique_lock lock(mu_);
    if (subs_.erase(sub->id()) != 0) RemoveLocked(*sub);
  }
  sub->End(std::move(why));
}

Result<bool> TopicRouter::Bind(const std::string& pattern, std::shared_ptr<Queue> queue) {
  if (auto ok = ValidateTopicPattern(pattern); !ok.ok()) return ok.error();
  std::unique_lock lock(mu_);
  return BindLocked(pattern, std::move(queue), false);
}

Result<bool> TopicRouter::RestoreBinding(const std::string& pattern, std::shared_ptr<Queue> queue) {
  if (auto ok = ValidateTopicPattern(pattern); !ok.ok()) return ok.error();
  std::unique_lock lock(mu_);
  return BindLocked(pattern, std::move(queue), true);
}

Result<bool> TopicRouter::BindLocked(const std::string& pattern, std::shared_ptr<Queue> queue,
                                     bool force) {
  auto key = std::make_pair(pattern, queue->name());
  if (bindings_.count(key) != 0) return false;
  if (!force && bindings_.size() >= limits_.caps.max_bindings) {
    return Error{Errc::kTooManyBindings, "the broker has " + std::to_string(bindings_.size()) +
                                             " bindings, its --max-bindings"};
  }
  const TopicWords words = ParsePattern(pattern);
  if (auto grown = GrowLocked(words, force); !grown.ok()) return grown.error();
  const uint64_t bytes = BindingBytes(key.first, key.second);
  if (force) {
    subscriber_memory_.ForceReserve(bytes);
  } else if (!subscriber_memory_.TryReserve(bytes)) {
    PruneLocked(words);
    return Error{Errc::kBrokerMemory,
                 "no memory for a binding: the broker's memory for pub/sub "
                 "(--max-subscriber-memory, " +
                     std::to_string(subscriber_memory_.cap()) + " bytes) is full"};
  }
  bound_.emplace(key.second, key.first);
  auto it = bindings_.emplace(std::move(key), std::move(queue)).first;
  trie_.At(words).bindings.insert(&*it);
  return true;
}

void TopicRouter::RemoveBindingLocked(BindingMap::iterator it) {
  const TopicWords words = ParsePattern(it->first.first);
  if (Routes* routes = trie_.Find(words); routes != nullptr) {
    routes->bindings.erase(&*it);
    if (routes->empty()) PruneLocked(words);
  }
  subscriber_memory_.Release(BindingBytes(it->first.first, it->first.second));
  bound_.erase({it->first.second, it->first.first});
  bindings_.erase(it);
}

Result<void> TopicRouter::GrowLocked(const TopicWords& pattern, bool force) {
  uint64_t bytes = 0;
  const size_t missing = trie_.Missing(pattern, &bytes);
  if (missing == 0) return {};
  if (force) {
    subscriber_memory_.ForceReserve(bytes);
    trie_.At(pattern);
    return {};
  }
  if (trie_.nodes() + missing > limits_.caps.max_pattern_nodes) {
    return Error{Errc::kTooManyPatternNodes,
                 "the broker's pattern index has " + std::to_string(trie_.nodes()) +
                     " nodes and this pattern needs " + std::to_string(missing) +
                     " more; its --max-pattern-nodes is " +
                     std::to_string(limits_.caps.max_pattern_nodes)};
  }
  if (!subscriber_memory_.TryReserve(bytes)) {
    return Error{Errc::kBrokerMemory,
                 "no memory for a pattern: the broker's memory for pub/sub "
                 "(--max-subscriber-memory, " +
                     std::to_string(subscriber_memory_.cap()) + " bytes) is full"};
  }
  trie_.At(pattern);
  return {};
}

void TopicRouter::PruneLocked(const TopicWords& pattern) {
  subscriber_memory_.Release(trie_.Prune(pattern));
}

Result<void> TopicRouter::Unbind(const std::string& pattern, const std::string& queue) {
  std::unique_lock lock(mu_);
  auto it = bindings_.find({pattern, queue});
  if (it == bindings_.end()) {
    return Error{Errc::kBindingNotFound, "queue '" + queue + "' is not bound to '" + pattern + "'"};
  }
  RemoveBindingLocked(it);
  return {};
}

void TopicRouter::RemoveBindingsTo(const std::string& queue) {
  std::unique_lock lock(mu_);
  for (auto it = bound_.lower_bound({queue, std::string()});
       it != bound_.end() && it->first == queue;) {
    auto binding = bindings_.find({it->second, it->first});
    ++it;  // RemoveBindingLocked erases the entry `it` was at
    if (binding != bindings_.end()) RemoveBindingLocked(binding);
  }
}

std::vector<std::string> TopicRouter::BindingsOf(const std::string& queue) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (auto it = bound_.lower_bound({queue, std::string()});
       it != bound_.end() && it->first == queue; ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::vector<TopicStats> TopicRouter::ListTopics() const {
  std::vector<TopicStats> out;
  {
    std::lock_guard lock(stats_mu_);
    out.reserve(topics_.size());
    for (const auto& [name, c] : topics_) {
      out.push_back({name, 0, c.published, c.delivered, c.dropped, c.routed});
    }
  }
  // Counted on the live index: a copy of it would cost as much as the index
  // and be charged to nobody. Publishes share the lock. A hold ends once its
  // topics have cost kListSliceSteps, not after a number of topics: 256
  // topics could each cost 32 x --max-pattern-nodes visits. Nothing found
  // under one hold (an iterator, a node, an entry) is kept past it: only the
  // names in `out`, which are ours.
  std::vector<const Subscription*> several;
  for (size_t i = 0; i < out.size();) {
    std::shared_lock lock(mu_);
    list_holds_.fetch_add(1, std::memory_order_relaxed);
    size_t steps = 0;
    do {
      out[i].subscribers = CountSubscribersLocked(out[i].name, &several, &steps);
      ++i;
    } while (i < out.size() && steps < kListSliceSteps);
  }
  return out;
}

uint64_t TopicRouter::CountSubscribersLocked(const std::string& topic,
                                             std::vector<const Subscription*>* several,
                                             size_t* steps) const {
  uint64_t n = 0;
  if (auto it = by_topic_.find(topic); it != by_topic_.end()) n = it->second.size();
  const TopicWords words = SplitTopic(topic);
  *steps += words.size();
  // Subscriptions with several patterns may match at several nodes: they are
  // collected and counted once, after a sort. A hash set cleared per topic
  // would cost its bucket count each time, however few entries the topic has
  // (a set grown by one widely matched topic stays that wide).
  several->clear();
  trie_.Match(
      words,
      [&](const Routes& routes) {
        *steps += routes.subs.size();
        for (const auto& [key, match] : routes.subs) {
          const SubscriptionOptions& o = match.sub->options();
          if (std::binary_search(o.topics.begin(), o.topics.end(), topic)) continue;  // counted
          // One pattern ends at one node, which a match visits once.
          if (o.patterns.size() == 1) {
            ++n;
          } else {
            several->push_back(key);
          }
        }
      },
      steps);
  std::sort(several->begin(), several->end());
  n += std::unique(several->begin(), several->end()) - several->begin();
  return n;
}

std::vector<BindingInfo> TopicRouter::ListBindings() const {
  std::shared_lock lock(mu_);
  std::vector<BindingInfo> out;
  out.reserve(bindings_.size());
  for (const auto& [key, q] : bindings_) out.push_back({key.first, key.second});
  return out;
}

size_t TopicRouter::pattern_nodes() const {
  std::shared_lock lock(mu_);
  return trie_.nodes();
}

uint64_t TopicRouter::pattern_bytes() const {
  std::shared_lock lock(mu_);
  return trie_.bytes();
}

void TopicRouter::Shutdown() {
  std::vector<SubPtr> all;
  {
    std::unique_lock lock(mu_);
    shutting_down_ = true;
    for (auto& [id, sub] : subs_) all.push_back(sub);
  }
  for (auto& sub : all) sub->End(Error{Errc::kShutdown, "broker is shutting down"});
}

}  // namespace basin::core
