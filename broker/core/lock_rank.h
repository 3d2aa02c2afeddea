// Every mutex in basind has a rank, and a thread takes mutexes only in rising
// rank: the lock order of docs/design.md ("Lock order"), written as code. In
// builds with BASIN_LOCK_RANK_CHECK (the test builds: scripts/test.sh turns it
// on) RankedMutex keeps the ranks a thread holds and aborts, naming both
// ranks, on an acquisition that breaks the order — a deadlock found by a test
// that merely passes through the wrong order, not only by one that loses the
// race. Otherwise it is a plain std::mutex.
//
// Two mutexes of one rank are never held at once (one queue at a time, one
// subscription at a time). A mutex that is not ranked here is a bug.
#pragma once

#include <mutex>
#include <shared_mutex>

namespace basin {

enum class LockRank : int {
  // Outermost: held while calling things that take the ranks below.
  kBrokerBindings = 10,  // Broker::bindings_mu_: binding changes vs. DeleteQueue
  kCommitterLog = 15,    // CommittedLog::commit_mu_: held while commit callbacks run
  kBrokerRegistry = 20,  // Broker::mu_: the queue registry, lookups only
  kQueueStore = 25,      // QueueStore::mu_: one create/remove of queue files at a time
  kTopicRouter = 30,     // TopicRouter's routing table
  kTopicStats = 35,      // TopicRouter's per-topic statistics
  kQueue = 40,           // Queue::mu_
  kSubscription = 50,    // Subscription::mu_
  kConsumerOutbox = 55,  // ConsumerOutbox::mu_ (pushed to under Queue::mu_)
  kLogJournal = 60,      // LogJournal::mu_ (appended to under Queue::mu_)
  kCommittedLog = 65,    // CommittedLog::mu_: a log's queued records
  kCommitter = 70,       // Committer::mu_: the committer thread's work list
  kMemoryBudget = 75,    // MemoryBudget::mu_: its listeners (ReserveOrWait under Queue::mu_)
  kDeadlineTimer = 80,   // DeadlineTimer::mu_
  kPublishCopies = 85,   // one Publish's tracker of durable copies (under commit callbacks)
  // Leaves: a service call object's own state. Nothing is taken under them,
  // and no core call is made while one is held.
  kServiceCall = 90,    // ProduceCall, ConsumeCall, SubscribeCall, CallLink
  kLiveCalls = 92,      // service::LiveCalls: the streams a drain must end
  kCallTracker = 94,    // service::CallTracker: wakes the drain when calls are done
  kTlsMaterial = 96,    // security::TlsServerCredentials: the files the next handshake uses
  kAccessQuota = 97,    // service::Access: who created which queue
  kAccessState = 98,    // service::Access: the users in force (the pointer only)
  kAccessCache = 99,    // service::Access: tokens already looked up
  kRateBucket = 100,    // service::Access: one user's message rate
  kSharedSlices = 101,  // service: the wait for gRPC to let go of shared messages
};

#ifdef BASIN_LOCK_RANK_CHECK

namespace lock_rank {
// Records that this thread takes (releases) a mutex of `rank`; aborts if it
// already holds one of the same or a higher rank.
void Acquire(LockRank rank);
void Release(LockRank rank);
}  // namespace lock_rank

template <LockRank kRank>
class RankedMutex {
 public:
  void lock() {
    lock_rank::Acquire(kRank);
    mu_.lock();
  }
  bool try_lock() {
    lock_rank::Acquire(kRank);
    if (mu_.try_lock()) return true;
    lock_rank::Release(kRank);
    return false;
  }
  void unlock() {
    mu_.unlock();
    lock_rank::Release(kRank);
  }

 private:
  std::mutex mu_;
};

// The same for a reader-writer mutex: shared and exclusive holds both count.
template <LockRank kRank>
class RankedSharedMutex {
 public:
  void lock() {
    lock_rank::Acquire(kRank);
    mu_.lock();
  }
  void unlock() {
    mu_.unlock();
    lock_rank::Release(kRank);
  }
  void lock_shared() {
    lock_rank::Acquire(kRank);
    mu_.lock_shared();
  }
  void unlock_shared() {
    mu_.unlock_shared();
    lock_rank::Release(kRank);
  }

 private:
  std::shared_mutex mu_;
};

#else

template <LockRank kRank>
using RankedMutex = std::mutex;
template <LockRank kRank>
using RankedSharedMutex = std::shared_mutex;

#endif

}  // namespace basin
