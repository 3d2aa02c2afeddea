"""Futures completed a batch at a time.

A ``concurrent.futures.Future`` builds its own Condition (~0.4 µs) and takes
it again to complete (~0.5 µs): more than the rest of a send. The futures of
one batch share one Condition and are all completed under one hold of it, so
a waiter woken by it always finds its own future done (Future.result treats
any wake-up without a result as a timeout). They cannot be cancelled: a
message handed to the producer is on its way.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, _base
from typing import Any, Dict, List, Optional, Sequence, Union


class BatchFuture(Future):  # type: ignore[type-arg]
    """A Future whose Condition is its batch's."""

    def __init__(self, condition: threading.Condition) -> None:
        # Future.__init__'s fields, with the shared condition.
        self._condition = condition
        self._state = _base.PENDING
        self._result = None
        self._exception = None
        self._waiters: List[Any] = []
        self._done_callbacks: List[Any] = []

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
            # The first failure, with every message's id or error attached.
            setattr(self.failure, "results", list(self.results))
            self.future.set_exception(self.failure)


class Span:
    """A run of one Group's messages inside one batch."""

    __slots__ = ("group", "start", "count")

    def __init__(self, group: Group, start: int, count: int) -> None:
        self.group = group
        self.start = start
        self.count = count


def complete(condition: threading.Condition, sinks: Sequence[Any],
             results: Optional[Sequence[Any]],
             failures: Union[BaseException, Dict[int, BaseException], None]) -> None:
    """Finishes a batch's sinks under one hold of its condition. A sink is a
    BatchFuture (one message) or a Span (a run of a Group's). Message i fails
    with ``failures`` (one exception for all) or ``failures[i]``, else gets
    ``results[i]``. Done-callbacks and completed groups run afterwards,
    outside the condition."""
    with_callbacks = []
    groups_done = []
    each = failures if isinstance(failures, dict) else None
    i = 0
    with condition:
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
            error = failures if isinstance(failures, BaseException) else (
                each.get(index) if each else None)
            if error is None:
                f._result = results[index] if results is not None else None
            else:
                f._exception = error
            f._state = _base.FINISHED
            for waiter in f._waiters:
                if error is None:
                    waiter.add_result(f)
                else:
                    waiter.add_exception(f)
            if f._done_callbacks:
                with_callbacks.append(f)
        condition.notify_all()
    for f in with_callbacks:
        f._invoke_callbacks()
    for group in groups_done:
        group.resolve()
