// Where the broker keeps its durable queues (--data-dir). broker/storage
// implements it (storage::QueueStore); the core knows only this interface,
// so a later replicated store can take its place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/message.h"
#include "broker/core/queue.h"
#include "broker/core/queue_journal.h"

namespace basin::core {

class DurableStore {
 public:
  // A durable queue as its log left it.
  struct Recovered {
    QueueConfig config;
    std::vector<MessagePtr> messages;  // live, in put order, delivery counts set
    uint64_t next_id = 1;
    bool closed = false;
    std::vector<std::string> bindings;  // topic patterns bound to it
    std::vector<PutKeys> keys;          // of recent puts (see Queue::Restore)
    std::shared_ptr<QueueJournal> journal;
  };

  virtual ~DurableStore() = default;
  // Makes room for a new durable queue and writes its definition durably
  // before returning (a create is answered only once it would survive).
  virtual Result<std::shared_ptr<QueueJournal>> Create(const QueueConfig& config) = 0;
  // Forgets a deleted queue and everything it held.
  virtual void Remove(const std::string& name) = 0;
  // Every durable queue found at start, in no particular order. An error if
  // a queue could not be read for a reason outside its data that a restart
  // cures once it is removed (too many open files, a full disk): the broker
  // must not start without that queue, or a create of its name would find
  // its messages in the way. A queue whose own files fail (a bad sector) is
  // left out instead, with its files: one bad sector must not keep every
  // other queue down.
  virtual Result<std::vector<Recovered>> Recover() = 0;
};

}  // namespace basin::core
