"""Futures completed a batch at a time.

A ``concurrent.futures.Future`` builds its own Condition (~0.4 µs) and takes
it again to complete (~0.5 µs): more than the rest of a send. A BatchFuture
sets two attributes (its batch's Outcome and its index): its state, result and
exception are read from the Outcome, which completes every future of the
batch at once, under the batch's lock, by setting three fields. A
BatchFuture makes a Condition of its own only when something waits on it
(``result``, ``add_done_callback``, ``concurrent.futures.wait``) and then
registers with the Outcome, which wakes it. Each waited future has its own
Condition, never a shared one: ``concurrent.futures.wait`` takes the
Conditions of many futures in id order, which only avoids deadlocks when
each is a different lock. They cannot be cancelled: a message handed to the
producer is on its way.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import Future, _base
from typing import Any, Dict, List, Optional, Sequence, Union

Failures = Union[BaseException, Dict[int, BaseException], None]


class Outcome:
    """How a batch ended, for its BatchFutures; its Spans (send_many runs)
    are filled from it when it completes."""

    __slots__ = ("lock", "state", "results", "failures", "spans", "waited")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: str = _base.PENDING
        self.results: Optional[Sequence[Any]] = None  # message i's id
        self.failures: Failures = None  # one error for all, or by index
        self.spans: List[Span] = []
        self.waited: List[BatchFuture] = []  # futures with a Condition of their own

    def failure(self, index: int) -> Optional[BaseException]:
        failures = self.failures
        if failures is None or isinstance(failures, BaseException):
            return failures
        return failures.get(index)


class BatchFuture(Future):  # type: ignore[type-arg]
    """Message ``index`` of a batch: a Future read from the batch's Outcome."""

    _own: Optional[threading.Condition] = None
    # A waited future's state, kept under its own Condition (None: read the
    # Outcome's). complete() finishes the Outcome first and tells each
    # waited future later: in between, a concurrent.futures.wait() must not
    # see it done *and* be told again (it would count it twice).
    _own_state: Optional[str] = None
    # Shared empty tuples until _condition makes the future's own lists:
    # Future appends to them only while holding the Condition.
    _waiters: Any = ()
    _done_callbacks: Any = ()

    def __init__(self, outcome: Outcome, index: int) -> None:
        self._outcome = outcome
        self._index = index

    @property  # type: ignore[override]
    def _state(self) -> str:
        own_state = self._own_state
        return self._outcome.state if own_state is None else own_state

    @property  # type: ignore[override]
    def _result(self) -> Any:
        results = self._outcome.results
        return None if results is None else results[self._index]

    @property  # type: ignore[override]
    def _exception(self) -> Optional[BaseException]:
        return self._outcome.failure(self._index)

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        own = self._own
        if own is None:
            outcome = self._outcome
            with outcome.lock:  # complete() snapshots `waited` under it
                own = self._own
                if own is None:
                    self._waiters = []
                    self._done_callbacks = []
                    self._own_state = outcome.state
                    own = self._own = threading.Condition()
                    outcome.waited.append(self)
        return own

    def done(self) -> bool:
        return self._state == _base.FINISHED

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
    """A run of one Group's messages inside one batch: the group's messages
    ``start``... are the batch's ``offset``..., ``count`` of them."""

    __slots__ = ("group", "start", "count", "offset")

    def __init__(self, group: Group, start: int, count: int, offset: int) -> None:
        self.group = group
        self.start = start
        self.count = count
        self.offset = offset


def complete(outcome: Outcome, results: Optional[Sequence[Any]], failures: Failures) -> None:
    """Completes a batch: message i fails with ``failures`` (one exception
    for all) or ``failures[i]``, else gets ``results[i]``. Its BatchFutures
    read that at once; the waited ones are woken, their callbacks run and
    the completed send_many groups resolve afterwards, under no lock. A
    second completion (a batch failed after it was confirmed) does nothing."""
    groups_done: List[Group] = []
    with outcome.lock:
        if outcome.state == _base.FINISHED:
            return
        outcome.results = results
        outcome.failures = failures
        outcome.state = _base.FINISHED
        waited = list(outcome.waited)
        for span in outcome.spans:
            if span.group.fill(span.start, results, span.offset, span.count, failures):
                groups_done.append(span.group)
    # Every waited future finished before any callback runs: a callback may
    # read another future of the batch, and on the receiving thread nobody
    # else would finish it.
    for f in waited:
        own = f._own
        assert own is not None
        with own:
            f._own_state = _base.FINISHED
            error = f._exception
            for waiter in f._waiters:
                if error is None:
                    waiter.add_result(f)
                else:
                    waiter.add_exception(f)
            own.notify_all()
    for f in waited:
        if f._done_callbacks:
            f._invoke_callbacks()  # type: ignore[attr-defined]
    for group in groups_done:
        group.resolve()
