// Fuzz target (b): what the storage layer reads back from disk. The first
// byte picks what the rest becomes:
//   0  record bodies: queue definitions, every record type of QueueReplay,
//      Message::Decode — each whole and cut short;
//   1  raw segment files (names, sizes and bytes from the input), replayed;
//   2  a well-formed log (records from the input, checksummed as the broker
//      writes them), then damaged: bytes flipped and files cut where the
//      input says, and replayed.
// A replayed log must recover what lies before the first damaged byte,
// replay only records that were written, and once opened take an append
// that the next opening finds after the same records: recovery repairs the
// log for good. Files go to a fresh directory (on tmpfs when there is one)
// that is removed after each input. The seed corpus is written by this
// target too: BASIN_STORAGE_SEEDS=tests/fuzz/corpus/storage ./storage_fuzz -runs=0
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core/message.h"
#include "broker/storage/crc32c.h"
#include "broker/storage/queue_definition.h"
#include "broker/storage/queue_records.h"
#include "broker/storage/record_format.h"
#include "broker/storage/segmented_log.h"

namespace {

using basin::storage::IoError;
using basin::storage::ReplayReport;
using basin::storage::SegmentedLog;

// Aborts on a broken promise of the storage layer (a crash for libFuzzer).
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "storage_fuzz: %s\n", what);
    std::abort();
  }
}

// Takes values off the front of the input; zeros once it runs out.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const auto b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  uint64_t Number(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(Byte()) << (8 * i);
    return v;
  }
  std::string_view Bytes(size_t n) {
    const std::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(out.size());
    return out;
  }
  std::string_view Rest() { return Bytes(rest_.size()); }

 private:
  std::string_view rest_;
};

class ScratchDir {
 public:
  ScratchDir() {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/basin-fuzz.XXXXXX";
    Check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string SegmentName(uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.log", static_cast<unsigned long long>(base));
  return name;
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void DecodeBodies(std::string_view bytes) {
  for (const size_t cut : {bytes.size(), bytes.size() / 2, bytes.empty() ? 0 : bytes.size() - 1}) {
    const std::string_view body = bytes.substr(0, cut);
    if (auto config = basin::storage::DecodeDefinition(body)) {
      const auto again =
          basin::storage::DecodeDefinition(basin::storage::EncodeDefinition(*config));
      Check(again.has_value() && *again == *config, "a decoded definition does not round-trip");
    }
    basin::storage::QueueReplay replay;
    for (uint8_t type = 0; type <= 12; ++type) replay.Apply(type, type, body);
    for (const auto& [id, live] : replay.live()) {
      // As QueueStore does: the attributes go into the message's trailer.
      basin::core::MessageAttrs attrs;
      attrs.priority = live.attrs.priority;
      attrs.group = live.attrs.group;
      if (auto m = basin::core::Message::Decode(id, live.deliveries, live.message, attrs); m.ok()) {
        Check(m.value()->group() == live.attrs.group, "a decoded group does not read back");
      }
    }
    if (auto message = basin::core::Message::Decode(1, 0, body); message.ok()) {
      (void)message.value()->headers();
      std::string encoded;
      message.value()->EncodeTo(encoded);
      Check(encoded == body, "a decoded message does not encode to the same bytes");
    }
  }
}

struct Written {
  uint64_t position;
  uint8_t type;
  std::string body;
  bool operator==(const Written&) const = default;
};

struct Replayed {
  std::vector<Written> records;
  ReplayReport report;
  std::unique_ptr<SegmentedLog> log;
  IoError error;
};

Replayed Replay(const std::string& dir) {
  Replayed out;
  basin::storage::QueueReplay replay;
  out.log = SegmentedLog::Open(
      dir, {.max_segment_bytes = 512},
      [&](uint64_t position, uint8_t type, std::string_view body) {
        out.records.push_back({position, type, std::string(body)});
        replay.Apply(position, type, body);
      },
      &out.report, &out.error);
  // What QueueStore::RecoverQueue does with a replay.
  if (replay.definition()) (void)basin::storage::DecodeDefinition(*replay.definition());
  for (const auto& [id, live] : replay.live()) {
    (void)basin::core::Message::Decode(id, live.deliveries, live.message);
  }
  return out;
}

// Replays the log in `dir` and checks what every replay owes. `written`
// (null if unknown) is every record the log held before the damage, which
// starts at `damage_from`.
void ReplayAndCheck(const std::string& dir, const std::vector<Written>* written,
                    uint64_t damage_from) {
  Replayed first = Replay(dir);
  if (first.log == nullptr) {
    // Only a later format or overlapping segments may keep a log shut.
    Check(first.error.message.find("later log format") != std::string::npos ||
              first.error.message.find("starts inside") != std::string::npos,
          "a log did not open for another reason than its format or its layout");
    return;
  }
  if (written != nullptr) {
    size_t next = 0;
    for (const Written& r : first.records) {
      while (next < written->size() && !((*written)[next] == r)) ++next;
      Check(next < written->size(), "replayed a record that was never written");
    }
    size_t intact = 0;
    while (intact < written->size() &&
           (*written)[intact].position +
                   basin::storage::RecordBytes((*written)[intact].body.size()) <=
               damage_from) {
      ++intact;
    }
    Check(first.records.size() >= intact &&
              std::equal(written->begin(), written->begin() + static_cast<ptrdiff_t>(intact),
                         first.records.begin()),
          "a record before the damage was not recovered");
  }
  IoError error;
  Check(first.log->Append(7, "appended after recovery", &error).has_value(), "append failed");
  Check(first.log->Sync(&error), "sync failed");
  first.log.reset();
  Replayed second = Replay(dir);
  Check(second.log != nullptr, "a log that opened once did not open again");
  Check(second.records.size() == first.records.size() + 1 &&
            std::equal(first.records.begin(), first.records.end(), second.records.begin()) &&
            second.records.back().body == "appended after recovery",
        "the second replay differs from the first plus the append");
  for (const auto& d : second.report.damage)
    Check(!d.truncated, "the repaired tail was torn again");
}

void RawSegments(Input& in, const std::string& dir) {
  const int files = 1 + in.Byte() % 3;
  uint64_t end = 0;
  for (int i = 0; i < files; ++i) {
    const uint8_t how = in.Byte();
    const uint64_t base = how & 1 ? end : in.Number(how & 2 ? 8 : 2);
    std::string bytes;
    if (how & 4) bytes = basin::storage::EncodeSegmentHeader({base, in.Number(8)});
    bytes += in.Bytes(in.Number(2) % 2048);
    WriteFile(dir + "/" + SegmentName(base), bytes);
    end = base + bytes.size();
  }
  ReplayAndCheck(dir, nullptr, 0);
}

void BuiltLog(Input& in, const std::string& dir) {
  const uint64_t max_segment = 64 + in.Byte() * 4;
  const uint64_t salt = in.Number(8);
  std::vector<std::pair<uint64_t, std::string>> segments{
      {0, basin::storage::EncodeSegmentHeader({0, salt})}};
  std::vector<Written> written;
  for (int count = in.Byte() % 48; count > 0; --count) {
    const uint8_t type = in.Byte() % 11;
    const std::string body(in.Bytes(in.Byte() % 96));
    const uint64_t bytes = basin::storage::RecordBytes(body.size());
    auto* tail = &segments.back();
    if (tail->second.size() > basin::storage::kSegmentHeaderBytes &&
        tail->second.size() + bytes > max_segment) {
      const uint64_t base = tail->first + tail->second.size();
      segments.push_back({base, basin::storage::EncodeSegmentHeader({base, salt})});
      tail = &segments.back();
    }
    const uint64_t position = tail->first + tail->second.size();
    basin::storage::EncodeRecord(tail->second, salt, position, type, body);
    written.push_back({position, type, body});
  }
  uint64_t damage_from = UINT64_MAX;
  for (int damage = in.Byte() % 4; damage > 0; --damage) {
    auto& [base, bytes] = segments[in.Byte() % segments.size()];
    if (bytes.empty()) continue;
    const size_t at = in.Number(2) % bytes.size();
    const uint8_t flip = in.Byte();
    if (flip == 0) {
      bytes.resize(at);
    } else {
      bytes[at] = static_cast<char>(bytes[at] ^ flip);
    }
    damage_from = std::min(damage_from, base + at);
  }
  for (const auto& [base, bytes] : segments) WriteFile(dir + "/" + SegmentName(base), bytes);
  ReplayAndCheck(dir, &written, damage_from);
}

// The seed corpus (tests/fuzz/corpus/storage), written in the layout the
// modes above read: BASIN_STORAGE_SEEDS=DIR ./storage_fuzz -runs=0
class Seed {
 public:
  Seed& Byte(uint8_t b) {
    bytes_.push_back(static_cast<char>(b));
    return *this;
  }
  Seed& Number(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Seed& Bytes(std::string_view b) {
    bytes_.append(b);
    return *this;
  }
  // A record of a built log (mode 2): type, length, body.
  Seed& Record(basin::storage::QueueRecord type, std::string_view body) {
    return Byte(static_cast<uint8_t>(type)).Byte(static_cast<uint8_t>(body.size())).Bytes(body);
  }
  void Write(const std::string& path) const { WriteFile(path, bytes_); }

 private:
  std::string bytes_;
};

void WriteSeeds(const std::string& dir) {
  using basin::storage::QueueRecord;
  basin::core::QueueConfig config;
  config.name = "jobs";
  config.max_size = 100;
  config.visibility_timeout = std::chrono::nanoseconds(1500);
  config.dead_letter_queue = "jobs.dead";
  config.durable = true;
  const std::string definition = basin::storage::EncodeDefinition(config);
  std::string message;
  basin::core::Message::Make(1, "payload", {{"k", "v"}})->EncodeTo(message);
  basin::core::PutKeys keys;
  keys.dedup_ids = {{"d-1", 1}};
  keys.producer = "p";
  keys.sequences = {{7, 1}};
  Seed().Byte(0).Bytes(definition).Write(dir + "/definition");
  Seed().Byte(0).Bytes(message).Write(dir + "/message");
  Seed().Byte(0).Bytes(basin::storage::EncodePutKeys(keys)).Write(dir + "/put_keys");
  // Scheduling: a put with every attribute, a retry, a definition with options.
  basin::core::MessageAttrs attrs;
  attrs.ready_at = basin::core::TimePoint(std::chrono::seconds(100));
  attrs.expires_at = basin::core::TimePoint(std::chrono::seconds(200));
  attrs.priority = 3;
  attrs.group = "customer-42";
  const auto scheduled = basin::core::Message::Make(4, "scheduled", {{"k", "v"}}, attrs);
  const std::string put_attrs =
      basin::storage::EncodePutAttrs(*scheduled, std::chrono::seconds(0), scheduled->ready_at(), 2);
  const std::string retry =
      basin::storage::EncodeRetry({4, 2, attrs.ready_at}, std::chrono::seconds(0));
  Seed().Byte(0).Bytes(put_attrs).Write(dir + "/put_attrs");
  Seed().Byte(0).Bytes(retry).Write(dir + "/retry");
  basin::core::QueueConfig scheduled_config = config;
  scheduled_config.retry_backoff = {std::chrono::seconds(1), std::chrono::seconds(5)};
  scheduled_config.max_priority = 5;
  scheduled_config.message_ttl = std::chrono::hours(1);
  Seed()
      .Byte(0)
      .Bytes(basin::storage::EncodeDefinition(scheduled_config))
      .Write(dir + "/definition_v3");
  // A short queue's life, as a well-formed log over two segments.
  const auto queue_log = [&](Seed& seed) -> Seed& {
    return seed.Byte(2)
        .Byte(40)  // segments of 224 bytes
        .Number(0x5A17, 8)
        .Byte(9)
        .Record(QueueRecord::kDefined, definition)
        .Record(QueueRecord::kPut, basin::storage::EncodePut(1, message))
        .Record(QueueRecord::kPut, basin::storage::EncodePut(2, message))
        .Record(QueueRecord::kPutKeys, basin::storage::EncodePutKeys(keys))
        .Record(QueueRecord::kDelivered, basin::storage::EncodeIds({1, 2}))
        .Record(QueueRecord::kDone, basin::storage::EncodeIds({1}))
        .Record(QueueRecord::kBound, "orders.*")
        .Record(QueueRecord::kPutAttrs, put_attrs)
        .Record(QueueRecord::kRetry, retry)
        .Record(QueueRecord::kNextId, basin::storage::EncodeNextId(5))
        .Record(QueueRecord::kClosed, "");
  };
  Seed intact;
  queue_log(intact).Byte(0).Write(dir + "/log");
  Seed flipped;
  queue_log(flipped).Byte(1).Byte(0).Number(60, 2).Byte(0x40).Write(dir + "/log_flipped");
  Seed cut;
  queue_log(cut).Byte(1).Byte(1).Number(50, 2).Byte(0).Write(dir + "/log_cut");
  // The same kind of log as raw files (mode 1): a header, records, a torn tail.
  std::string raw;
  basin::storage::EncodeRecord(raw, 0x5A17, basin::storage::kSegmentHeaderBytes,
                               static_cast<uint8_t>(QueueRecord::kDefined), definition);
  raw += "torn";
  Seed()
      .Byte(1)
      .Byte(0)  // one file
      .Byte(5)  // at the log's start, with a header
      .Number(0x5A17, 8)
      .Number(raw.size(), 2)
      .Bytes(raw)
      .Write(dir + "/raw_log");
  // A format-1 segment: what a broker before segment headers wrote.
  std::string v1 = "\x01" + definition;
  const uint32_t crc = basin::storage::Crc32c(v1.data(), v1.size());
  std::string v1_segment;
  for (const uint32_t word : {0xB45171A5u, static_cast<uint32_t>(v1.size()), crc}) {
    for (int i = 0; i < 4; ++i) v1_segment.push_back(static_cast<char>(word >> (8 * i)));
  }
  v1_segment += v1;
  Seed()
      .Byte(1)
      .Byte(0)
      .Byte(1)
      .Number(v1_segment.size(), 2)
      .Bytes(v1_segment)
      .Write(dir + "/format_1");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("BASIN_STORAGE_SEEDS")) WriteSeeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  switch (in.Byte() % 3) {
    case 0:
      DecodeBodies(in.Rest());
      break;
    case 1: {
      ScratchDir dir;
      RawSegments(in, dir.path());
      break;
    }
    default: {
      ScratchDir dir;
      BuiltLog(in, dir.path());
      break;
    }
  }
  return 0;
}
