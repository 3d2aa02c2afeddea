// Values that cross a queue's boundary: what a put takes and a get hands out.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/message.h"
#include "broker/core/time.h"

namespace basin::core {

// What a Get hands out: a copy of the message and the lease that now holds it.
struct Delivery {
  uint64_t message_id = 0;
  std::string payload;
  Headers headers;
  uint32_t delivery_count = 0;
  std::string tag;
  Duration lease{};
};

// One message of a batch put.
struct MessageSpec {
  std::string_view payload;
  const Headers* headers = nullptr;  // null: none
  std::string dedup_id;              // empty: none
  MessageAttrs attrs = {};           // delay and the like; group points into the caller's data
  // What the caller already found wrong with it (a malformed field): the
  // message is answered with this error and left out, as if the core had
  // refused it.
  std::optional<Error> invalid = {};
};

// Who sent a batch, for idempotent produce (see ProducerSequences): message i
// of the batch has sequence first_sequence + i. An empty producer: none.
struct BatchOrigin {
  std::string_view producer;
  uint64_t first_sequence = 0;
};

// What became of one message of a batch put.
struct PutResult {
  uint64_t message_id = 0;
  bool duplicate = false;      // its dedup_id was seen: message_id is the original's
  std::optional<Error> error;  // it failed validation and was not enqueued
};

using WaitId = uint64_t;
using PutCallback = std::function<void(Result<uint64_t>)>;  // the message id
using PutBatchCallback = std::function<void(Result<std::vector<PutResult>>)>;
using GetCallback = std::function<void(Result<Delivery>)>;
using GetBatchCallback = std::function<void(Result<std::vector<Delivery>>)>;
using JoinCallback = std::function<void(Result<void>)>;

}  // namespace basin::core
