// Marks the broker's single shared worker threads — the storage committer and
// the deadline timer — whose delay every durable queue or every deadline
// waits out. Work that a callback could do on the thread that triggered it
// (writing a Consume stream's next response) goes elsewhere when the
// triggering thread is one of these.
#pragma once

namespace basin::core {

namespace detail {
inline thread_local bool t_shared_worker = false;
}  // namespace detail

// True on the committer and timer threads.
inline bool OnSharedWorker() { return detail::t_shared_worker; }

// Called once at the start of such a thread.
inline void MarkSharedWorker() { detail::t_shared_worker = true; }

}  // namespace basin::core
