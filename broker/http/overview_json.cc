#include "broker/http/overview_json.h"

#include <cstdio>

#include "broker/build_info.h"
#include "broker/core/json_string.h"

namespace basin::http {
namespace {

class Json {
 public:
  Json& Key(std::string_view key) {
    Comma();
    out_ += core::JsonString(key);
    out_ += ':';
    fresh_ = true;
    return *this;
  }
  Json& Value(uint64_t v) { return Raw(std::to_string(v)); }
  Json& Value(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return Raw(buf);
  }
  Json& Value(bool v) { return Raw(v ? "true" : "false"); }
  Json& Value(std::string_view v) { return Raw(core::JsonString(v)); }
  Json& Open(char bracket) {
    Comma();
    out_ += bracket;
    fresh_ = true;
    return *this;
  }
  Json& Close(char bracket) {
    out_ += bracket;
    fresh_ = false;
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  Json& Raw(std::string_view text) {
    Comma();
    out_ += text;
    fresh_ = false;
    return *this;
  }
  void Comma() {
    if (!fresh_) out_ += ',';
    fresh_ = false;
  }
  std::string out_;
  bool fresh_ = true;
};

void QueueJson(Json& j, const metrics::QueueRow& q) {
  const core::QueueStats& s = q.stats;
  j.Open('{');
  j.Key("name").Value(q.name).Key("queues").Value(q.queues);
  j.Key("durable").Value(q.durable).Key("closed").Value(s.closed);
  j.Key("max_size").Value(q.max_size).Key("dead_letter_queue").Value(q.dead_letter_queue);
  j.Key("ready").Value(s.size).Key("in_flight").Value(s.in_flight).Key("delayed").Value(s.delayed);
  j.Key("expired_total").Value(s.total_expired);
  j.Key("unfinished").Value(s.unfinished).Key("bytes").Value(s.bytes);
  j.Key("waiting_getters").Value(s.waiting_getters);
  j.Key("waiting_putters").Value(s.waiting_putters);
  j.Key("waiting_joiners").Value(s.waiting_joiners);
  j.Key("put_total").Value(s.total_put).Key("delivered_total").Value(s.total_delivered);
  j.Key("done_total").Value(s.total_done).Key("redelivered_total").Value(s.total_redelivered);
  j.Key("dead_lettered_total").Value(s.total_dead_lettered);
  j.Key("rejected_total").Value(s.total_rejected);
  j.Key("consumer_count").Value(q.consumers);
  j.Key("consumers_at_prefetch").Value(q.consumers_at_prefetch);
  j.Key("consumers").Open('[');
  for (size_t i = 0; i < s.consumers.size(); ++i) {  // TakeSnapshot capped the list
    const core::ConsumerStats& c = s.consumers[i];
    j.Open('{');
    j.Key("id").Value(c.id).Key("prefetch").Value(static_cast<uint64_t>(c.prefetch));
    j.Key("in_flight").Value(c.in_flight).Key("delivered").Value(c.delivered);
    j.Key("acked").Value(c.acked);
    j.Close('}');
  }
  j.Close(']');
  j.Close('}');
}

}  // namespace

std::string OverviewJson(const metrics::BrokerSnapshot& s, const OverviewContext& context) {
  Json j;
  j.Open('{');
  j.Key("version").Value(BuildVersion()).Key("revision").Value(BuildRevision());
  j.Key("uptime_seconds").Value(context.uptime_seconds).Key("admin").Value(context.admin);
  j.Key("memory_used").Value(s.memory_used).Key("memory_limit").Value(s.memory_limit);
  j.Key("queue_count").Value(s.queue_count).Key("topic_count").Value(s.topic_count);
  j.Key("queues").Open('[');
  for (const auto& q : s.queues) QueueJson(j, q);
  j.Close(']');
  j.Key("topics").Open('[');
  for (const auto& t : s.topics) {
    j.Open('{');
    j.Key("name").Value(t.name).Key("topics").Value(t.topics);
    j.Key("subscribers").Value(t.stats.subscribers);
    j.Key("published_total").Value(t.stats.published);
    j.Key("delivered_total").Value(t.stats.delivered);
    j.Key("dropped_total").Value(t.stats.dropped).Key("routed_total").Value(t.stats.routed);
    j.Close('}');
  }
  j.Close(']');
  j.Close('}');
  return j.Take();
}

}  // namespace basin::http
