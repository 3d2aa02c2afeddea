#include "broker/metrics/broker_collector.h"

#include <prometheus/metric_family.h>

#include <limits>
#include <string>
#include <utility>

#include "broker/metrics/broker_snapshot.h"
#include "broker/metrics/histogram_metric.h"
#include "broker/metrics/process_stats.h"

namespace basin::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

class Families {
 public:
  MetricFamily& Add(std::string name, std::string help, MetricType type) {
    out_.push_back({std::move(name), std::move(help), type, {}});
    return out_.back();
  }
  // A family of one series, no labels.
  void Gauge(std::string name, std::string help, double value) {
    Add(std::move(name), std::move(help), MetricType::Gauge).metric.push_back(GaugeOf({}, value));
  }
  void Counter(std::string name, std::string help, double value) {
    Add(std::move(name), std::move(help), MetricType::Counter)
        .metric.push_back(CounterOf({}, value));
  }
  std::vector<MetricFamily> Take() { return std::move(out_); }

  static ClientMetric GaugeOf(std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = value;
    return m;
  }
  static ClientMetric CounterOf(std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = value;
    return m;
  }

 private:
  std::vector<MetricFamily> out_;
};

// One family per field, one series per row: `get` reads the field.
template <typename Row, typename Get>
void PerRow(Families& f, const std::vector<Row>& rows, const char* label, std::string name,
            std::string help, MetricType type, Get get) {
  MetricFamily& family = f.Add(std::move(name), std::move(help), type);
  for (const Row& row : rows) {
    std::vector<ClientMetric::Label> labels{{label, row.name}};
    const auto value = static_cast<double>(get(row));
    family.metric.push_back(type == MetricType::Counter
                                ? Families::CounterOf(std::move(labels), value)
                                : Families::GaugeOf(std::move(labels), value));
  }
}

void QueueFamilies(Families& f, const BrokerSnapshot& s) {
  const auto& q = s.queues;
  const auto gauge = MetricType::Gauge;
  const auto counter = MetricType::Counter;
  f.Gauge("basin_queues", "Queues in the broker, dead-letter queues included",
          static_cast<double>(s.queue_count));
  PerRow(f, q, "queue", "basin_queue_messages_ready", "Messages waiting to be delivered", gauge,
         [](const QueueRow& r) { return r.stats.size; });
  PerRow(f, q, "queue", "basin_queue_messages_in_flight",
         "Messages delivered whose lease has not ended (not yet done or released)", gauge,
         [](const QueueRow& r) { return r.stats.in_flight; });
  PerRow(f, q, "queue", "basin_queue_messages_delayed",
         "Messages put with a delay that has not passed yet (unfinished, not yet ready)", gauge,
         [](const QueueRow& r) { return r.stats.delayed; });
  PerRow(f, q, "queue", "basin_queue_active_groups",
         "Ordering groups whose next message is handed out or retrying (their others wait)", gauge,
         [](const QueueRow& r) { return r.stats.active_groups; });
  PerRow(f, q, "queue", "basin_queue_messages_unfinished",
         "Messages put and not yet task_done (what join waits for)", gauge,
         [](const QueueRow& r) { return r.stats.unfinished; });
  PerRow(f, q, "queue", "basin_queue_ready_bytes", "Bytes of the messages waiting to be delivered",
         gauge, [](const QueueRow& r) { return r.stats.bytes; });
  PerRow(f, q, "queue", "basin_queue_capacity_messages",
         "The queue's max_size (0: unbounded; summed for the aggregated row)", gauge,
         [](const QueueRow& r) { return r.max_size; });
  PerRow(f, q, "queue", "basin_queue_waiting_getters", "Blocked Get calls", gauge,
         [](const QueueRow& r) { return r.stats.waiting_getters; });
  PerRow(f, q, "queue", "basin_queue_waiting_putters", "Blocked Put calls (queue or memory full)",
         gauge, [](const QueueRow& r) { return r.stats.waiting_putters; });
  PerRow(f, q, "queue", "basin_queue_waiting_joiners", "Blocked Join calls", gauge,
         [](const QueueRow& r) { return r.stats.waiting_joiners; });
  PerRow(f, q, "queue", "basin_queue_consumers", "Consume streams attached", gauge,
         [](const QueueRow& r) { return r.consumers; });
  PerRow(f, q, "queue", "basin_queue_consumers_at_prefetch",
         "Consume streams holding as many unacked deliveries as their prefetch allows", gauge,
         [](const QueueRow& r) { return r.consumers_at_prefetch; });
  PerRow(f, q, "queue", "basin_queue_put_total", "Messages accepted into the queue", counter,
         [](const QueueRow& r) { return r.stats.total_put; });
  PerRow(f, q, "queue", "basin_queue_delivered_total", "Deliveries (redeliveries included)",
         counter, [](const QueueRow& r) { return r.stats.total_delivered; });
  PerRow(f, q, "queue", "basin_queue_done_total", "Messages finished with task_done or an ack",
         counter, [](const QueueRow& r) { return r.stats.total_done; });
  PerRow(f, q, "queue", "basin_queue_redelivered_total",
         "Deliveries of a message delivered before (lease expired or released)", counter,
         [](const QueueRow& r) { return r.stats.total_redelivered; });
  PerRow(f, q, "queue", "basin_queue_dead_lettered_total",
         "Messages moved to the dead-letter queue (or dropped): out of deliveries, rejected or "
         "expired",
         counter, [](const QueueRow& r) { return r.stats.total_dead_lettered; });
  PerRow(f, q, "queue", "basin_queue_expired_total",
         "Messages that expired (TTL) before they were finished; in dead_lettered too", counter,
         [](const QueueRow& r) { return r.stats.total_expired; });
  PerRow(f, q, "queue", "basin_queue_rejected_total",
         "Copies routed from a topic that the queue refused (full or closed)", counter,
         [](const QueueRow& r) { return r.stats.total_rejected; });
}

void TopicFamilies(Families& f, const BrokerSnapshot& s) {
  const auto& t = s.topics;
  f.Gauge("basin_topics", "Topics with counters (published to or subscribed to by name)",
          static_cast<double>(s.topic_count));
  PerRow(f, t, "topic", "basin_topic_subscribers", "Subscriptions a publish to the topic reaches",
         MetricType::Gauge, [](const TopicRow& r) { return r.stats.subscribers; });
  PerRow(f, t, "topic", "basin_topic_published_total", "Messages published to the topic",
         MetricType::Counter, [](const TopicRow& r) { return r.stats.published; });
  PerRow(f, t, "topic", "basin_topic_delivered_total", "Copies buffered for subscribers",
         MetricType::Counter, [](const TopicRow& r) { return r.stats.delivered; });
  PerRow(f, t, "topic", "basin_topic_dropped_total", "Copies a full subscriber buffer dropped",
         MetricType::Counter, [](const TopicRow& r) { return r.stats.dropped; });
  PerRow(f, t, "topic", "basin_topic_routed_total", "Copies put into bound queues",
         MetricType::Counter, [](const TopicRow& r) { return r.stats.routed; });
}

void StorageFamilies(Families& f, const storage::StorageCounters& c, double recovery_seconds) {
  f.Gauge("basin_storage_segments", "Segment files of the durable queues' logs",
          static_cast<double>(c.segments.load(std::memory_order_relaxed)));
  f.Counter("basin_storage_written_bytes_total", "Bytes written to the durable queues' logs",
            static_cast<double>(c.bytes_written.load(std::memory_order_relaxed)));
  f.Gauge("basin_storage_recovery_duration_seconds",
          "How long recovering the data directory took at start", recovery_seconds);
  f.Add("basin_storage_fsync_duration_seconds", "Duration of each fdatasync of a log segment",
        MetricType::Histogram)
      .metric.push_back(HistogramMetric(c.fsync.Read(), {}));
}

void ProcessFamilies(Families& f, const CollectorOptions& o) {
  const ProcessStats p = ReadProcessStats();
  f.Gauge("process_resident_memory_bytes", "Resident memory size in bytes",
          static_cast<double>(p.resident_bytes));
  f.Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes",
          static_cast<double>(p.virtual_bytes));
  f.Gauge("process_open_fds", "Open file descriptors", static_cast<double>(p.open_fds));
  f.Gauge("process_max_fds", "The open-file limit", static_cast<double>(p.max_fds));
  f.Gauge("process_threads", "Threads of the process", static_cast<double>(p.threads));
  f.Counter("process_cpu_seconds_total", "User and system CPU time spent in seconds",
            p.cpu_seconds);
  f.Gauge("process_start_time_seconds", "Start time of the process since the Unix epoch",
          p.start_time_seconds);
  f.Gauge("basin_uptime_seconds", "Seconds since basind started",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - o.started).count());
}

}  // namespace

std::vector<MetricFamily> BrokerCollector::Collect(const BrokerSnapshot& s) const {
  Families f;
  QueueFamilies(f, s);
  TopicFamilies(f, s);
  f.Gauge("basin_memory_used_bytes",
          "Bytes held against --max-memory (messages, subscriber buffers, pub/sub bookkeeping)",
          static_cast<double>(s.memory_used));
  f.Gauge("basin_memory_limit_bytes", "--max-memory (0: unlimited)",
          static_cast<double>(s.memory_limit));
  if (storage_ != nullptr) StorageFamilies(f, *storage_, options_.recovery_seconds);
  ProcessFamilies(f, options_);
  return f.Take();
}

}  // namespace basin::metrics
