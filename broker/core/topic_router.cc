#include "broker/core/topic_router.h"

#include <algorithm>

#include "broker/core/topic_name.h"

namespace basin::core {
namespace {

// Topic statistics are kept for at most this many topics; past it, topics
// with no exact subscribers are forgotten, so a publisher inventing topic
// names cannot grow the broker without bound.
constexpr size_t kMaxTrackedTopics = 100'000;
constexpr size_t kMaxSubscriptionTerms = 1'024;

}  // namespace

TopicRouter::TopicRouter(TopicLimits limits, MemoryBudget* memory)
    : limits_(limits), memory_(memory) {}

TopicRouter::~TopicRouter() = default;

TopicRouter::Counters& TopicRouter::CountersLocked(const std::string& topic) {
  auto it = topics_.find(topic);
  if (it != topics_.end()) return it->second;
  if (topics_.size() >= kMaxTrackedTopics) {
    for (auto i = topics_.begin(); i != topics_.end();) {
      i = i->second.exact_subscribers == 0 ? topics_.erase(i) : std::next(i);
    }
  }
  return topics_[topic];
}

namespace {

// A publish whose copies into durable queues are being written: the outcome
// is reported when the last one is (the publisher's own share counts as one,
// so copies written before the publish has offered them all cannot end it).
struct DurableCopies {
  std::mutex mu;
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

void TopicRouter::Publish(std::string_view topic, std::string_view payload, const Headers& headers,
                          TimePoint now, PublishDone done) {
  if (auto ok = ValidateTopicName(topic); !ok.ok()) return done(ok.error());
  auto valid = Message::Validate(payload, headers, limits_.max_message_bytes);
  if (!valid.ok()) return done(valid.error());
  const uint64_t bytes = valid.value();

  // Collect the receivers under the lock, deliver after it: Offer never
  // blocks, but queues run their own callbacks.
  std::vector<std::pair<SubPtr, const std::string*>> receivers;
  std::vector<std::pair<std::string, std::shared_ptr<Queue>>> queues;
  {
    std::shared_lock lock(mu_);
    if (auto it = by_topic_.find(std::string(topic)); it != by_topic_.end()) {
      for (const SubPtr& s : it->second) receivers.emplace_back(s, nullptr);
    }
    for (const auto& [pattern, sub] : by_pattern_) {
      if (!TopicMatches(*pattern, topic)) continue;
      const bool seen = std::any_of(receivers.begin(), receivers.end(),
                                    [&](const auto& r) { return r.first == sub; });
      if (!seen) receivers.emplace_back(sub, pattern);
    }
    for (const auto& [key, queue] : bindings_) {
      if (!TopicMatches(key.first, topic)) continue;
      const bool seen = std::any_of(queues.begin(), queues.end(),
                                    [&](const auto& q) { return q.second == queue; });
      if (!seen) queues.emplace_back(key.second, queue);
    }
  }

  PublishOutcome out;
  std::vector<PublishedPtr> dropped;
  if (!receivers.empty()) {
    auto msg = std::make_shared<PublishedMessage>();
    msg->topic = std::string(topic);
    msg->payload = std::string(payload);
    msg->headers = headers;
    msg->bytes = topic.size() + bytes;
    const PublishedPtr shared = std::move(msg);
    for (auto& [sub, pattern] : receivers) {
      Subscription::Offered offered = sub->Offer(shared, pattern);
      out.receivers += offered.accepted ? 1 : 0;
      for (auto& d : offered.dropped) dropped.push_back(std::move(d));
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
        written = [copies, name = name](std::optional<Error> e) {
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

void TopicRouter::CountStats(std::string_view topic, const PublishOutcome& out,
                             const std::vector<PublishedPtr>& dropped) {
  std::lock_guard lock(stats_mu_);
  Counters& c = CountersLocked(std::string(topic));
  ++c.published;
  c.delivered += out.receivers;
  c.routed += out.queues;
  for (const PublishedPtr& d : dropped) {
    if (d->topic == topic) {
      ++c.dropped;
    } else if (auto it = topics_.find(d->topic); it != topics_.end()) {
      ++it->second.dropped;
    }
  }
}

Result<std::shared_ptr<Subscription>> TopicRouter::Subscribe(SubscriptionOptions options,
                                                             std::function<void()> wake) {
  if (options.topics.empty() && options.patterns.empty()) {
    return Error{Errc::kInvalidArgument, "subscribe to at least one topic or pattern"};
  }
  if (options.topics.size() + options.patterns.size() > kMaxSubscriptionTerms) {
    return Error{Errc::kInvalidArgument, "a subscription takes at most " +
                                             std::to_string(kMaxSubscriptionTerms) +
                                             " topics and patterns"};
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

  std::unique_lock lock(mu_);
  if (shutting_down_) return Error{Errc::kShutdown, "broker is shutting down"};
  auto sub =
      std::make_shared<Subscription>(next_id_++, std::move(options), memory_, std::move(wake));
  subs_.emplace(sub->id(), sub);
  for (const auto& t : sub->options().topics) by_topic_[t].push_back(sub);
  for (const auto& p : sub->options().patterns) by_pattern_.emplace_back(&p, sub);
  std::lock_guard stats(stats_mu_);
  for (const auto& t : sub->options().topics) ++CountersLocked(t).exact_subscribers;
  return sub;
}

void TopicRouter::RemoveLocked(const Subscription& sub) {
  for (const auto& t : sub.options().topics) {
    auto it = by_topic_.find(t);
    if (it == by_topic_.end()) continue;
    auto& v = it->second;
    v.erase(std::remove_if(v.begin(), v.end(), [&](const SubPtr& s) { return s.get() == &sub; }),
            v.end());
    if (v.empty()) by_topic_.erase(it);
  }
  by_pattern_.erase(std::remove_if(by_pattern_.begin(), by_pattern_.end(),
                                   [&](const auto& e) { return e.second.get() == &sub; }),
                    by_pattern_.end());
  std::lock_guard stats(stats_mu_);
  for (const auto& t : sub.options().topics) {
    if (auto it = topics_.find(t); it != topics_.end() && it->second.exact_subscribers > 0) {
      --it->second.exact_subscribers;
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
  const auto key = std::make_pair(pattern, queue->name());
  if (bindings_.count(key) != 0) return false;
  bindings_.emplace(key, std::move(queue));
  return true;
}

Result<void> TopicRouter::Unbind(const std::string& pattern, const std::string& queue) {
  std::unique_lock lock(mu_);
  if (bindings_.erase({pattern, queue}) == 0) {
    return Error{Errc::kBindingNotFound, "queue '" + queue + "' is not bound to '" + pattern + "'"};
  }
  return {};
}

void TopicRouter::RemoveBindingsTo(const std::string& queue) {
  std::unique_lock lock(mu_);
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    it = it->first.second == queue ? bindings_.erase(it) : std::next(it);
  }
}

std::vector<std::string> TopicRouter::BindingsOf(const std::string& queue) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [key, q] : bindings_) {
    if (key.second == queue) out.push_back(key.first);
  }
  return out;
}

std::vector<TopicStats> TopicRouter::ListTopics() const {
  std::shared_lock lock(mu_);
  std::lock_guard stats(stats_mu_);
  std::vector<TopicStats> out;
  out.reserve(topics_.size());
  for (const auto& [name, c] : topics_) {
    TopicStats s{name, 0, c.published, c.delivered, c.dropped, c.routed};
    if (auto it = by_topic_.find(name); it != by_topic_.end()) s.subscribers = it->second.size();
    for (const auto& [pattern, sub] : by_pattern_) {
      const auto& topics = sub->options().topics;
      const bool exact = std::binary_search(topics.begin(), topics.end(), name);
      // Count each subscription once, and the first pattern of it that matches.
      if (exact || !TopicMatches(*pattern, name)) continue;
      const auto& patterns = sub->options().patterns;
      const auto first = std::find_if(patterns.begin(), patterns.end(),
                                      [&](const std::string& p) { return TopicMatches(p, name); });
      if (&*first == pattern) ++s.subscribers;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<BindingInfo> TopicRouter::ListBindings() const {
  std::shared_lock lock(mu_);
  std::vector<BindingInfo> out;
  for (const auto& [key, q] : bindings_) out.push_back({key.first, key.second});
  return out;
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
