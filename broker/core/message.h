// A queued message is one heap block: this small header, the encoded headers and
// the payload, back to back. A ready message costs that block plus one pointer in
// the queue's deque; lease state lives apart, in the queue's map of deliveries.
//
// Ownership: the queue owns a message (MessagePtr: one owner, who may change
// its delivery count, under the queue's lock). A stream that must write it
// after the lock is released holds a MessageRef instead of a copy: the block
// lives until the owner and every ref have let it go.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "broker/core/errc.h"
#include "broker/core/time.h"

namespace basin::core {

using Headers = std::map<std::string, std::string>;

// Header names starting with this are the broker's; clients may not set them.
inline constexpr std::string_view kReservedHeaderPrefix = "basin-";

class Message;

// What a put may ask beyond payload and headers: when the message becomes
// ready, when it expires, its priority and its ordering group. A message
// that asks for none of it is stored without them (the common case costs
// nothing); one that asks for any carries all of them in a trailer.
struct MessageAttrs {
  TimePoint ready_at{};  // at or before the put: ready at once
  TimePoint expires_at = kNever;
  uint8_t priority = 0;
  std::string_view group;

  bool empty() const {
    return ready_at == TimePoint{} && expires_at == kNever && priority == 0 && group.empty();
  }
};

struct MessageDeleter {
  void operator()(Message* m) const;
};
using MessagePtr = std::unique_ptr<Message, MessageDeleter>;

// A reader's hold on a message's block. Through it read only what never
// changes once the message is enqueued: id, payload, headers, bytes. The
// delivery count changes under the queue's lock; copy it there. Dropping the
// last hold frees the block (no lock needed; no memory budget is involved:
// the owner's charge covers it, see ConsumerOutbox).
class MessageRef {
 public:
  MessageRef() = default;
  explicit MessageRef(const Message& m);
  MessageRef(const MessageRef& o);
  MessageRef(MessageRef&& o) noexcept : m_(o.m_) { o.m_ = nullptr; }
  MessageRef& operator=(MessageRef o) noexcept {
    std::swap(m_, o.m_);
    return *this;
  }
  ~MessageRef();

  const Message* get() const { return m_; }
  const Message* operator->() const { return m_; }
  const Message& operator*() const { return *m_; }
  explicit operator bool() const { return m_ != nullptr; }

 private:
  const Message* m_ = nullptr;
};

class Message {
 public:
  // Encodes headers and payload (and the attributes, unless there are none)
  // into one allocation.
  static MessagePtr Make(uint64_t id, std::string_view payload, const Headers& headers,
                         const MessageAttrs& attrs = {});

  // What a message with attributes is accounted beyond its group name: the
  // trailer and the queue's index entries for it (timer, expiry, group).
  static constexpr uint64_t kAttrsOverhead = 64;

  // Bytes a message of this payload, headers and attributes is accounted as
  // (the limits --max-message-bytes, max_bytes and --max-memory apply to this
  // figure).
  static uint64_t AccountedBytes(std::string_view payload, const Headers& headers,
                                 const MessageAttrs& attrs = {});

  // What every message from a client must satisfy: no `basin-` header, at most
  // `max_bytes` accounted bytes. Returns the accounted bytes.
  static Result<uint64_t> Validate(std::string_view payload, const Headers& headers,
                                   uint64_t max_bytes, const MessageAttrs& attrs = {});

  uint64_t id() const { return (uint64_t{id_hi_} << 32) | id_lo_; }
  void set_id(uint64_t id) {
    id_lo_ = static_cast<uint32_t>(id);
    id_hi_ = static_cast<uint32_t>(id >> 32);
  }
  // Appends the message as a durable queue's log keeps it: u32 headers length,
  // the encoded headers, the payload. The id and delivery count are logged
  // apart.
  void EncodeTo(std::string& out) const;
  // The inverse; kInvalidArgument if `encoded` is not one.
  static Result<MessagePtr> Decode(uint64_t id, uint32_t delivery_count, std::string_view encoded,
                                   const MessageAttrs& attrs = {});

  uint32_t delivery_count() const { return delivery_count_; }
  void add_delivery() { ++delivery_count_; }
  // A hand-out taken back before it reached the client (see Queue::EndHeld).
  void undo_delivery() { --delivery_count_; }
  std::string_view payload() const;
  Headers headers() const;
  // Payload plus encoded headers, plus the attributes' share: what the
  // queue's byte counters hold.
  uint64_t bytes() const {
    const uint64_t base = uint64_t{headers_len()} + payload_len_;
    return has_attrs() ? base + kAttrsOverhead + stored_attrs().group_len : base;
  }

  // The attributes it was put with; never change once it is enqueued.
  bool has_attrs() const { return (headers_len_ & kHasAttrs) != 0; }
  MessageAttrs attrs() const;
  TimePoint ready_at() const;
  TimePoint expires_at() const;
  uint8_t priority() const { return has_attrs() ? stored_attrs().priority : 0; }
  std::string_view group() const;
  // Where the queue keeps a message with attributes (a HoleDeque position),
  // so it can take it out of the middle; changed under the queue's lock
  // only, and never read through a MessageRef.
  uint64_t slot() const { return has_attrs() ? stored_attrs().slot : 0; }
  void set_slot(uint64_t slot) {
    if (has_attrs()) mutable_attrs().slot = slot;
  }
  // The queue's note of which of its structures holds the message (with
  // attributes only; 0 otherwise), and a retry's ready time: the same rules.
  uint8_t place() const { return has_attrs() ? stored_attrs().place : 0; }
  void set_place(uint8_t place) {
    if (has_attrs()) mutable_attrs().place = place;
  }
  void set_ready_at(TimePoint at) {
    if (has_attrs()) mutable_attrs().ready_at = at.time_since_epoch().count();
  }

 private:
  friend struct MessageDeleter;
  friend class MessageRef;
  // The trailer of a message with attributes, first in its data (8-byte
  // aligned: the header is 24 bytes), followed by the group name.
  struct StoredAttrs {
    int64_t ready_at;    // steady clock, ns since its epoch
    int64_t expires_at;  // INT64_MAX: never
    uint64_t slot;       // see slot()
    uint16_t group_len;
    uint8_t priority;
    uint8_t place;  // see place()
  };
  // headers_len_'s top bit: the message has a trailer. Messages are far
  // below 2 GiB (--max-message-bytes), so the bit is free.
  static constexpr uint32_t kHasAttrs = uint32_t{1} << 31;

  Message() = default;
  static MessagePtr Allocate(uint64_t id, const MessageAttrs& attrs, uint64_t rest);
  uint32_t headers_len() const { return headers_len_ & ~kHasAttrs; }
  const StoredAttrs& stored_attrs() const {
    return *reinterpret_cast<const StoredAttrs*>(this + 1);
  }
  StoredAttrs& mutable_attrs() { return *reinterpret_cast<StoredAttrs*>(this + 1); }
  size_t attrs_len() const {
    return has_attrs() ? sizeof(StoredAttrs) + stored_attrs().group_len : 0;
  }
  // Encoded headers, then the payload.
  const char* data() const { return reinterpret_cast<const char*>(this + 1) + attrs_len(); }
  char* data() { return reinterpret_cast<char*>(this + 1) + attrs_len(); }
  // Drops one hold (the owner's or a ref's); the last frees the block.
  static void Unref(const Message* m);

  // Six 32-bit fields, no padding, so that the header adds little to every
  // message: a 100-byte message is a 124-byte block. jemalloc, when the
  // broker links it, serves that from its 128-byte class; glibc's malloc (the
  // fallback, since jemalloc is optional) adds its 8-byte size field and
  // rounds up to 16 bytes: a 144-byte chunk.
  uint32_t id_lo_ = 0;
  uint32_t id_hi_ = 0;
  uint32_t delivery_count_ = 0;
  uint32_t headers_len_ = 0;
  uint32_t payload_len_ = 0;
  mutable std::atomic<uint32_t> holds_{1};  // the owner and every MessageRef
};
static_assert(sizeof(Message) == 24);

}  // namespace basin::core
