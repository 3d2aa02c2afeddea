"""Futures completed a batch at a time.

A ``concurrent.futures.Future`` builds its own Condition (~0.4 µs) and takes
it again to complete (~0.5 µs): more than the rest of a send. A BatchFuture
makes its Condition only when something waits on it (``result``,
``add_done_callback``, ``concurrent.futures.wait``); the futures nobody
waits on are completed under one hold of their batch's lock. Every future
keeps a Condition of its own, never a shared one: ``concurrent.futures.wait``
takes the Conditions of many futures in id order, which only avoids
deadlocks when each is a different lock. They cannot be cancelled: a
message handed to the producer is on its way.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import Future, _base
from typing import Any, Dict, List, Optional, Sequence, Union


class BatchFuture(Future):  # type: ignore[type-arg]
    """A Future whose Condition is made on first use, under its batch's lock."""

    def __init__(self, batch_lock: Any) -> None:
        # Future.__init__'s fields, but no Condition yet.
        self._batch_lock = batch_lock
        self._own: Optional[threading.Condition] = None
        self._state = _base.PENDING
        self._result = None
        self._exception = None
        self._waiters: List[Any] = []
        self._done_callbacks: List[Any] = []

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        own = self._own
        if own is None:
            with self._batch_lock:  # complete() decides under it how to finish us
                own = self._own
                if own is None:
                    own = self._own = threading.Condition()
        return own

    def done(self) -> bool:
        return self._state in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED, _base.FINISHED)

    def cancel(self) -> bool:
        return False


class Group:
    """The messages of one ``send_many``: one Future for all their ids."""

    __slots__ = ("future", "results", "pending", "failure", "lock")

    def __init__(self, count: int) -> None:
        self.future: "Future[List[int]]" = Future()
        self.results: List[Any] = [None] * count
        self.pending = count
        self.failure: Optional[BaseException] = None
        self.lock = threading.Lock()

    def fill(self, start: int, results: Optional[Sequence[Any]], offset: int, count: int,
             failures: Union[BaseException, Dict[int, BaseException], None]) -> bool:
        """Records ``count`` outcomes of a batch (from ``offset``) as this
        group's ``start``...; True once the group is complete."""
        with self.lock:
            if failures is None and results is not None:
                self.results[start:start + count] = results[offset:offset + count]
            else:
                for k in range(count):
                    error = failures if isinstance(failures, BaseException) else (
                        failures.get(offset + k) if failures else None)
                    if error is None and results is not None:
                        self.results[start + k] = results[offset + k]
                    else:
                        self.results[start + k] = error
                        self.failure = self.failure or error
            self.pending -= count
            return self.pending == 0

    def resolve(self) -> None:
        if self.failure is None:
            self.future.set_result(self.results)
        else:
            # The first failure, with every message's id or error attached;
            # a copy, as one exception may fail several groups' messages.
            failure = self.failure
            try:
                failure = copy.copy(failure)
            except Exception:  # noqa: BLE001 (an exception type copy cannot rebuild)
                pass
            setattr(failure, "results", list(self.results))
            self.future.set_exception(failure)


class Span:
    """A run of one Group's messages inside one batch."""

    __slots__ = ("group", "start", "count")

    def __init__(self, group: Group, start: int, count: int) -> None:
        self.group = group
        self.start = start
        self.count = count


def _settle(f: Any, result: Any, error: Optional[BaseException]) -> None:
    if error is None:
        f._result = result
    else:
        f._exception = error
    f._state = _base.FINISHED
    for waiter in f._waiters:
        if error is None:
            waiter.add_result(f)
        else:
            waiter.add_exception(f)


def complete(batch_lock: Any, sinks: Sequence[Any], results: Optional[Sequence[Any]],
             failures: Union[BaseException, Dict[int, BaseException], None]) -> None:
    """Finishes a batch's sinks. A sink is a BatchFuture (one message) or a
    Span (a run of a Group's). Message i fails with ``failures`` (one
    exception for all) or ``failures[i]``, else gets ``results[i]``. Futures
    nobody waits on are finished under one hold of ``batch_lock``; the others
    under their own Condition, with their waiters woken. Done-callbacks and
    completed groups run last, under no lock."""
    waited: List[Any] = []
    groups_done: List[Group] = []
    each = failures if isinstance(failures, dict) else None
    common = failures if isinstance(failures, BaseException) else None
    i = 0
    with batch_lock:
        for sink in sinks:
            if type(sink) is Span:
                if sink.group.fill(sink.start, results, i, sink.count, failures):
                    groups_done.append(sink.group)
                i += sink.count
                continue
            f: Any = sink
            index = i
            i += 1
            if f._state != _base.PENDING:
                continue
            error = common or (each.get(index) if each else None)
            result = results[index] if results is not None and error is None else None
            if f._own is None:
                _settle(f, result, error)  # nobody can be waiting: no Condition yet
            else:
                waited.append((f, result, error))
    for f, result, error in waited:
        with f._own:
            if f._state == _base.PENDING:
                _settle(f, result, error)
            f._own.notify_all()
        if f._done_callbacks:
            f._invoke_callbacks()
    for group in groups_done:
        group.resolve()
