#include "broker/core/waiter_set.h"

namespace basin::core {

Result<void> WaiterSet::CheckCap(const std::string& what) const {
  const size_t waiting = getters_.size() - turns_ + putters_.size() + joiners_.size();
  if (waiting < max_waiters_) return {};
  return Error{Errc::kTooManyWaiters, what + " has " + std::to_string(waiting) +
                                          " blocked calls (limit " + std::to_string(max_waiters_) +
                                          ")"};
}

WaitId WaiterSet::Index(TimePoint deadline) {
  const WaitId id = next_id_++;
  if (deadline != kNever) deadlines_.emplace(deadline, id);
  return id;
}

WaitId WaiterSet::AddGetter(GetWaiter g) {
  const WaitId id = Index(g.deadline);
  getters_.emplace(id, std::move(g));
  return id;
}

WaitId WaiterSet::AddPutter(PutWaiter p) {
  const WaitId id = Index(p.deadline);
  putters_.emplace(id, std::move(p));
  return id;
}

WaitId WaiterSet::AddJoiner(JoinWaiter j) {
  const WaitId id = Index(j.deadline);
  joiners_.emplace(id, std::move(j));
  return id;
}

WaitId WaiterSet::AddTurn(uint64_t consumer, Getters::node_type& spare) {
  const WaitId id = next_id_++;
  if (spare.empty()) {
    getters_.emplace(id, GetWaiter{kNever, {}, 1, 0, nullptr, consumer});
  } else {
    spare.key() = id;
    spare.mapped().consumer = consumer;  // the spare may be another consumer's old turn
    getters_.insert(std::move(spare));
  }
  ++turns_;
  return id;
}

WaiterSet::Getters::node_type WaiterSet::TakeTurn(WaitId turn) {
  auto node = getters_.extract(turn);
  if (!node.empty()) --turns_;
  return node;
}

void WaiterSet::PopGetter() {
  auto it = getters_.begin();
  deadlines_.erase({it->second.deadline, it->first});
  if (it->second.consumer != 0) --turns_;  // keeps waiting_getters() true for any caller
  getters_.erase(it);
}

void WaiterSet::PopPutter() {
  auto it = putters_.begin();
  deadlines_.erase({it->second.deadline, it->first});
  putters_.erase(it);
}

void WaiterSet::PopJoiner() {
  auto it = joiners_.begin();
  deadlines_.erase({it->second.deadline, it->first});
  joiners_.erase(it);
}

std::optional<WaiterSet::Ended> WaiterSet::Take(WaitId id) {
  if (auto it = getters_.find(id); it != getters_.end() && it->second.consumer == 0) {
    deadlines_.erase({it->second.deadline, id});
    Ended out{std::move(it->second)};
    getters_.erase(it);
    return out;
  }
  if (auto it = putters_.find(id); it != putters_.end()) {
    deadlines_.erase({it->second.deadline, id});
    Ended out{std::move(it->second)};
    putters_.erase(it);
    return out;
  }
  if (auto it = joiners_.find(id); it != joiners_.end()) {
    deadlines_.erase({it->second.deadline, id});
    Ended out{std::move(it->second)};
    joiners_.erase(it);
    return out;
  }
  return std::nullopt;
}

std::vector<WaiterSet::Ended> WaiterSet::TakeDue(TimePoint now) {
  std::vector<Ended> out;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const WaitId id = deadlines_.begin()->second;
    if (auto w = Take(id)) {
      out.push_back(std::move(*w));
    } else {
      deadlines_.erase(deadlines_.begin());  // cannot happen: every entry is live
    }
  }
  return out;
}

std::vector<WaiterSet::Ended> WaiterSet::TakeAll() {
  std::vector<Ended> out;
  for (GetWaiter& g : TakeGetters()) out.emplace_back(std::move(g));
  for (PutWaiter& p : TakePutters()) out.emplace_back(std::move(p));
  for (JoinWaiter& j : TakeJoiners()) out.emplace_back(std::move(j));
  return out;
}

template <typename Map>
std::vector<typename Map::mapped_type> WaiterSet::TakeEvery(Map& waiters) {
  std::vector<typename Map::mapped_type> out;
  out.reserve(waiters.size());
  for (auto& [id, w] : waiters) {
    deadlines_.erase({w.deadline, id});
    out.push_back(std::move(w));
  }
  waiters.clear();
  return out;
}

std::vector<PutWaiter> WaiterSet::TakePutters() { return TakeEvery(putters_); }

std::vector<GetWaiter> WaiterSet::TakeGetters() {
  std::vector<GetWaiter> out;
  for (auto it = getters_.begin(); it != getters_.end();) {
    if (it->second.consumer != 0) {
      ++it;
      continue;
    }
    deadlines_.erase({it->second.deadline, it->first});
    out.push_back(std::move(it->second));
    it = getters_.erase(it);
  }
  return out;
}

std::vector<JoinWaiter> WaiterSet::TakeJoiners() { return TakeEvery(joiners_); }

TimePoint WaiterSet::next_deadline() const {
  return deadlines_.empty() ? kNever : deadlines_.begin()->first;
}

std::function<void()> WaiterSet::Fail(Ended&& w, Error e) {
  return std::visit(
      [&e](auto& waiter) -> std::function<void()> {
        return [cb = std::move(waiter.cb), e = std::move(e)] { cb(e); };
      },
      w);
}

}  // namespace basin::core
