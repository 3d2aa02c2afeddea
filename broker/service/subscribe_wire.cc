#include "broker/service/subscribe_wire.h"

#include <grpcpp/support/slice.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <string_view>

#include "broker/core/lock_rank.h"

namespace basin::service {
namespace {

// Protobuf wire format: a tag is (field number << 3) | wire type; type 2 is
// length-delimited, 0 a varint.
constexpr char kResponseMessages = (2 << 3) | 2;  // SubscribeResponse.messages
constexpr char kTopic = (1 << 3) | 2;             // TopicMessage.topic
constexpr char kPattern = (2 << 3) | 2;           // TopicMessage.pattern
constexpr char kPayload = (3 << 3) | 2;           // TopicMessage.payload
constexpr char kHeader = (4 << 3) | 2;            // TopicMessage.headers (map entry)
constexpr char kDroppedBefore = (5 << 3) | 0;     // TopicMessage.dropped_before
constexpr char kEntryKey = (1 << 3) | 2;
constexpr char kEntryValue = (2 << 3) | 2;

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// A length-delimited field's size, tag included.
size_t FieldSize(size_t len) { return 1 + VarintSize(len) + len; }

void PutField(std::string* out, char tag, std::string_view bytes) {
  out->push_back(tag);
  PutVarint(out, bytes.size());
  out->append(bytes);
}

// A map entry carries its key and value even when empty, as protobuf writes it.
size_t EntrySize(const std::string& key, const std::string& value) {
  return FieldSize(key.size()) + FieldSize(value.size());
}

// The TopicMessage's size, without its own tag and length.
size_t MessageSize(const core::Delivered& d) {
  const core::PublishedMessage& m = *d.message;
  size_t n = 0;
  if (!m.topic.empty()) n += FieldSize(m.topic.size());
  if (d.pattern != nullptr && !d.pattern->empty()) n += FieldSize(d.pattern->size());
  if (!m.payload.empty()) n += FieldSize(m.payload.size());
  for (const auto& [key, value] : m.headers) n += FieldSize(EntrySize(key, value));
  if (d.dropped_before != 0) n += 1 + VarintSize(d.dropped_before);
  return n;
}

// Slices that reference a shared message, not yet let go by gRPC.
std::atomic<int64_t> g_shared_slices{0};

// Who waits for the count to reach zero. Never destroyed: gRPC may let go of
// a slice as the process exits, after static destructors.
struct Released {
  RankedMutex<LockRank::kSharedSlices> mu;
  std::condition_variable_any cv;
};
Released& released() {
  static Released* r = new Released();
  return *r;
}

// The slice's hold on the shared message, let go when gRPC is done with it.
void Unref(void* held) {
  delete static_cast<core::PublishedPtr*>(held);
  if (g_shared_slices.fetch_sub(1) == 1) {
    Released& r = released();
    std::lock_guard lock(r.mu);
    r.cv.notify_all();
  }
}

}  // namespace

grpc::ByteBuffer EncodeMessages(const std::vector<core::Delivered>& messages) {
  std::vector<grpc::Slice> slices;
  std::string frame;  // bytes not yet in a slice
  auto cut = [&] {
    if (frame.empty()) return;
    slices.emplace_back(frame);
    frame.clear();
  };
  for (const core::Delivered& d : messages) {
    const core::PublishedMessage& m = *d.message;
    frame.push_back(kResponseMessages);
    PutVarint(&frame, MessageSize(d));
    if (!m.topic.empty()) PutField(&frame, kTopic, m.topic);
    if (d.pattern != nullptr && !d.pattern->empty()) PutField(&frame, kPattern, *d.pattern);
    if (m.payload.size() >= kSharedBodyBytes) {
      frame.push_back(kPayload);
      PutVarint(&frame, m.payload.size());
      cut();
      // gRPC does not write through the pointer: the slice only reads it.
      g_shared_slices.fetch_add(1);
      slices.emplace_back(const_cast<char*>(m.payload.data()), m.payload.size(), &Unref,
                          new core::PublishedPtr(d.message));
    } else if (!m.payload.empty()) {
      PutField(&frame, kPayload, m.payload);
    }
    for (const auto& [key, value] : m.headers) {
      frame.push_back(kHeader);
      PutVarint(&frame, EntrySize(key, value));
      PutField(&frame, kEntryKey, key);
      PutField(&frame, kEntryValue, value);
    }
    if (d.dropped_before != 0) {
      frame.push_back(kDroppedBefore);
      PutVarint(&frame, d.dropped_before);
    }
  }
  cut();
  return grpc::ByteBuffer(slices.data(), slices.size());
}

bool AwaitSharedSlices(std::chrono::milliseconds timeout) {
  Released& r = released();
  std::unique_lock lock(r.mu);
  return r.cv.wait_for(lock, timeout, [] { return g_shared_slices.load() == 0; });
}

}  // namespace basin::service
