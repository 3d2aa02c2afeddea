// core::QueueJournal over a committed log: each call becomes one record
// (see queue_records.h) appended for the Committer to make durable.
#pragma once

#include <memory>
#include <string>

#include "broker/core/queue_journal.h"
#include "broker/storage/committer.h"

namespace basin::storage {

class LogJournal final : public core::QueueJournal {
 public:
  explicit LogJournal(std::shared_ptr<CommittedLog> log) : log_(std::move(log)) {}

  // The queue's definition, first in its log (encoded by the caller).
  void Defined(std::string definition, Committed committed);

  void Put(const std::vector<const core::Message*>& messages, Committed committed) override;
  void Delivered(const std::vector<uint64_t>& ids) override;
  void Done(const std::vector<uint64_t>& ids) override;
  void Closed(Committed committed) override;

 private:
  static DurableCallback Adapt(Committed committed);

  const std::shared_ptr<CommittedLog> log_;
};

}  // namespace basin::storage
