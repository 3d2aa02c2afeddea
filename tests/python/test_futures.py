"""The Producer's futures (basin._futures) against concurrent.futures'
own waiting functions, with no broker: a batch completed while wait() or
as_completed() is setting up must be reported once."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from concurrent.futures import _base
from typing import Any, List

import pytest

from basin._futures import BatchFuture, Outcome, complete


def _complete_during_setup(monkeypatch: Any, outcome: Outcome, ids: List[int]) -> None:
    """Makes the next _AcquireFutures (the start of wait/as_completed) run
    complete(outcome) up to the point where it needs a future's Condition,
    which the waiting function holds."""
    original = _base._AcquireFutures.__enter__

    def enter(self: Any) -> None:
        original(self)
        threading.Thread(target=complete, args=(outcome, ids, None), daemon=True).start()
        deadline = time.monotonic() + 10
        while outcome.state != _base.FINISHED and time.monotonic() < deadline:
            time.sleep(0.001)  # polls the Outcome: complete() has no hook to wait on
        monkeypatch.setattr(_base._AcquireFutures, "__enter__", original)

    monkeypatch.setattr(_base._AcquireFutures, "__enter__", enter)


def test_as_completed_reports_a_future_once(monkeypatch: Any) -> None:
    outcome, other = Outcome(), Outcome()
    f, pending = BatchFuture(outcome, 0), BatchFuture(other, 0)
    f.add_done_callback(lambda _: None)  # f has a Condition of its own
    _complete_during_setup(monkeypatch, outcome, [7])
    it = concurrent.futures.as_completed([f, pending], timeout=0.5)
    assert next(it) is f
    with pytest.raises(concurrent.futures.TimeoutError):
        next(it)  # not f a second time
    assert f.result() == 7 and not pending.done()


def test_wait_all_completed_waits_for_every_future(monkeypatch: Any) -> None:
    outcome, other = Outcome(), Outcome()
    f, later = BatchFuture(outcome, 0), BatchFuture(other, 0)
    f.add_done_callback(lambda _: None)
    _complete_during_setup(monkeypatch, outcome, [1])
    threading.Timer(0.2, complete, args=(other, [2], None)).start()
    done, not_done = concurrent.futures.wait([f, later], timeout=30)
    assert done == {f, later} and not not_done  # returned once both were done


def test_futures_read_their_batch_outcome() -> None:
    outcome = Outcome()
    futures = [BatchFuture(outcome, i) for i in range(3)]
    called: List[int] = []
    futures[1].add_done_callback(lambda f: called.append(f.result()))
    assert not any(f.done() for f in futures)
    complete(outcome, range(10, 13), {2: ValueError("third")})
    assert [f.result() for f in futures[:2]] == [10, 11] and called == [11]
    assert isinstance(futures[2].exception(), ValueError)
    complete(outcome, None, RuntimeError("again"))  # a second completion changes nothing
    assert futures[0].result() == 10
    assert not futures[0].cancel()


def test_a_callback_may_read_another_future_of_its_batch() -> None:
    """Callbacks run once every waited future of the batch is finished: on
    the receiving thread nobody else would finish the one a callback reads."""
    outcome = Outcome()
    first, second = BatchFuture(outcome, 0), BatchFuture(outcome, 1)
    seen: List[Any] = []
    second.add_done_callback(lambda _: seen.append(first.result(timeout=5)))
    first.add_done_callback(lambda _: None)  # first's Condition is made after second's
    complete(outcome, [1, 2], None)
    assert seen == [1]
