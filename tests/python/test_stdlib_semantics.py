"""The same calls against multiprocessing.JoinableQueue and basin.JoinableQueue
must give the same results and the same exceptions.

multiprocessing's put() hands the item to a feeder thread, so an item put a
moment ago may not be gettable yet by get_nowait() or visible to empty(); the
table only uses calls whose result multiprocessing defines (a get that
expects an item waits for it; get_nowait and empty only on a drained queue).
"""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any, Dict, List, Tuple

import pytest

import basin
from conftest import unique

Step = Tuple[str, Tuple[Any, ...], Dict[str, Any]]


def S(method: str, *args: Any, **kwargs: Any) -> Step:
    return (method, args, kwargs)


GET = S("get", timeout=10)  # an item is expected: wait for multiprocessing's feeder

SCENARIOS: Dict[str, Tuple[int, List[Step]]] = {
    "bounded_three": (3, [
        S("put", "hello"), S("put", {"a": 3}), S("put", [1, 2, 3]),
        S("full"), S("qsize"),
        S("put_nowait", "one more"), S("put", "x", timeout=0.2), S("put", "x", False),
        GET, S("qsize"), S("full"), S("task_done"),
        GET, S("get", True, 10),
        S("get_nowait"), S("get", timeout=0.2), S("get", False),
        S("empty"), S("qsize"),
        S("task_done"), S("task_done"), S("task_done"),
        S("join"),
    ]),
    "unbounded_in_order": (0, [
        *[S("put", i) for i in range(5)], S("qsize"), S("full"),
        *[GET for _ in range(5)], *[S("task_done") for _ in range(5)],
        S("join"), S("task_done"), S("empty"), S("get_nowait"),
    ]),
    "values_round_trip": (0, [
        S("put", None), S("put", (1, "two", 3.0)), S("put", {"k": [b"bytes", None]}),
        S("put", "包子 1"), *[GET for _ in range(4)],
        *[S("task_done") for _ in range(4)], S("join"),
    ]),
    "negative_and_zero_timeouts": (1, [
        S("get", timeout=-1), S("get", True, 0),
        S("put", 1, timeout=-1), S("put", 2, True, 0), S("put", 3, timeout=-1),
        GET, S("task_done"), S("task_done"), S("join"),
    ]),
}


def call(q: Any, step: Step) -> Tuple[str, Any]:
    method, args, kwargs = step
    try:
        return ("ok", getattr(q, method)(*args, **kwargs))
    except queue.Full:
        return ("raise", "queue.Full")
    except queue.Empty:
        return ("raise", "queue.Empty")
    except ValueError as e:
        return ("raise", f"ValueError: {e}")


def run(q: Any, steps: List[Step]) -> List[Tuple[str, Any]]:
    return [call(q, s) for s in steps]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_same_results_as_multiprocessing(broker: Any, scenario: str) -> None:
    maxsize, steps = SCENARIOS[scenario]
    reference = multiprocessing.JoinableQueue(maxsize)
    try:
        expected = run(reference, steps)
    finally:
        reference.close()
        reference.join_thread()
    q = basin.JoinableQueue(unique(scenario), maxsize, address=broker.address)
    got = run(q, steps)
    for i, (step, want, have) in enumerate(zip(steps, expected, got)):
        assert have == want, f"step {i} {step}: multiprocessing gave {want}, basin gave {have}"


def test_exceptions_are_the_queue_modules(broker: Any) -> None:
    q = basin.JoinableQueue(unique("exc"), 1, address=broker.address)
    with pytest.raises(queue.Empty) as empty:
        q.get_nowait()
    assert isinstance(empty.value, basin.Empty) and empty.value.reason == "QUEUE_EMPTY"
    q.put("x")
    with pytest.raises(queue.Full) as full:
        q.put_nowait("y")
    assert isinstance(full.value, basin.Full) and full.value.reason == "QUEUE_FULL"
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()


def test_close_then_use_is_a_value_error_as_in_multiprocessing(broker: Any) -> None:
    name = unique("closed-object")
    for q in (multiprocessing.JoinableQueue(), basin.JoinableQueue(name, address=broker.address)):
        q.close()
        with pytest.raises(ValueError, match="is closed"):
            q.put(1)
        with pytest.raises(ValueError, match="is closed"):
            q.get()
        q.join_thread()
    # The broker's queue is untouched by an object's close(): another
    # object still uses it.
    other = basin.JoinableQueue(name, address=broker.address)
    other.put(1)
    assert other.get(timeout=10) == 1


def test_standard_methods_exist(broker: Any) -> None:
    q = basin.JoinableQueue(unique("methods"), address=broker.address)
    for name in dir(multiprocessing.JoinableQueue()):
        if not name.startswith("_"):
            assert hasattr(q, name), f"basin.JoinableQueue lacks {name}"
    plain = basin.Queue(unique("plain"), address=broker.address)
    for name in dir(multiprocessing.Queue()):
        if not name.startswith("_"):
            assert hasattr(plain, name), f"basin.Queue lacks {name}"
    assert not hasattr(plain, "task_done") and not hasattr(plain, "join")


def test_task_done_counts_deliveries_not_puts(broker: Any) -> None:
    """The one documented difference: multiprocessing counts task_done()
    against puts (any process may call it, even before a get); basin
    finishes a delivery this object received, so a task_done() with none
    outstanding is the ValueError at once."""
    reference = multiprocessing.JoinableQueue()
    reference.put("a")
    reference.task_done()  # allowed by multiprocessing before any get
    reference.close()
    reference.join_thread()
    q = basin.JoinableQueue(unique("deliveries"), address=broker.address)
    q.put("a")
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()
    assert q.get(timeout=10) == "a"
    q.task_done()
    q.join()
