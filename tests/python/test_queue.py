"""basin.Queue / JoinableQueue against the real broker: attaching, typed
errors, serializers, batches, messages, processes and threads."""

from __future__ import annotations

import json
import multiprocessing
import queue
import threading
from typing import Any, List

import grpc
import pytest

import basin
from conftest import no_basin_threads, unique, wait_until


def test_attach_by_name_and_settings_conflicts(broker: Any) -> None:
    name = unique("attach")
    q = basin.JoinableQueue(name, 3, address=broker.address, visibility_timeout=5)
    q.put("a")
    # Defaults never conflict: another object attaches to the same queue.
    other = basin.JoinableQueue(name, address=broker.address)
    assert other.qsize() == 1
    assert basin.JoinableQueue(name, 3, address=broker.address, visibility_timeout=5).qsize() == 1
    with pytest.raises(basin.AlreadyExists) as e:
        basin.JoinableQueue(name, 4, address=broker.address)
    assert e.value.reason == "QUEUE_EXISTS" and "maxsize=3" in str(e.value)
    with pytest.raises(basin.AlreadyExists, match="visibility_timeout"):
        basin.JoinableQueue(name, address=broker.address, visibility_timeout=6)
    assert q.info().max_size == 3


def test_typed_errors_carry_code_and_reason(broker: Any) -> None:
    with pytest.raises(basin.InvalidArgument) as bad_name:
        basin.Queue("no spaces allowed", address=broker.address)
    assert bad_name.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_name.value.reason == "INVALID_NAME"
    assert isinstance(bad_name.value, ValueError)

    q = basin.JoinableQueue(unique("errors"), address=broker.address, serializer="bytes")
    with pytest.raises(basin.MessageTooLarge) as too_large:
        q.put(b"x" * ((1 << 20) + 1024))
    assert too_large.value.reason == "MESSAGE_TOO_LARGE"
    assert q.qsize() == 0

    q.put(b"one")
    q.close_queue()
    with pytest.raises(basin.Closed) as closed:
        q.put(b"two")
    assert closed.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert q.get(timeout=10) == b"one"
    q.task_done()
    with pytest.raises(basin.Closed) as drained:
        q.get()
    assert drained.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert q.close_queue() is True

    assert q.delete_queue() == 0
    with pytest.raises(basin.NotFound) as gone:
        q.put(b"three")
    assert gone.value.reason == "QUEUE_NOT_FOUND"


def test_delete_wakes_a_blocked_get_with_not_found(broker: Any) -> None:
    q = basin.JoinableQueue(unique("deleted"), address=broker.address)
    caught: List[BaseException] = []

    def blocked_get() -> None:
        try:
            q.get()
        except BaseException as e:  # noqa: BLE001
            caught.append(e)

    t = threading.Thread(target=blocked_get)
    t.start()
    from conftest import wait_until
    assert wait_until(lambda: q.info().stats.waiting_getters == 1)
    q.delete_queue()
    t.join(30)
    assert len(caught) == 1 and isinstance(caught[0], basin.NotFound)
    assert caught[0].reason == "QUEUE_DELETED"


def test_unreachable_broker_is_unavailable() -> None:
    # A Client of its own, closed at the end: a channel left reconnecting in
    # the background would keep gRPC busy when a later test forks.
    with basin.Client("127.0.0.1:1") as client:
        with pytest.raises(basin.Unavailable) as e:
            basin.Queue("q", client=client)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_iteration_ends_at_close_without_sentinels(broker: Any) -> None:
    q = basin.Queue(unique("iterate"), address=broker.address)
    for i in range(10):
        q.put(i)
    q.put(None)  # a None is just a value
    q.close_queue()
    assert list(q) == [*range(10), None]
    with pytest.raises(basin.Closed):
        q.get_nowait()
    assert q.info().stats.unfinished == 0  # Queue.get finishes what it hands out


@pytest.mark.parametrize("serializer,value", [
    ("json", {"a": [1, 2, "三"]}),
    ("bytes", b"\x00raw"),
    ((lambda o: str(o).encode(), lambda b: int(b)), 42),
])
def test_serializers(broker: Any, serializer: Any, value: Any) -> None:
    q = basin.Queue(unique("ser"), address=broker.address, serializer=serializer)
    q.put(value)
    m = q.get_message(timeout=10)
    assert m.value == value
    if serializer == "json":
        assert json.loads(m.payload) == value


def test_bytes_serializer_refuses_other_types(broker: Any) -> None:
    q = basin.Queue(unique("ser-bytes"), address=broker.address, serializer="bytes")
    with pytest.raises(TypeError):
        q.put(12)
    with pytest.raises(ValueError):
        basin.Queue(unique("ser-bad"), address=broker.address, serializer="yaml")


def test_put_many_get_many_and_explicit_task_done(broker: Any) -> None:
    q = basin.JoinableQueue(unique("batch"), address=broker.address)
    ids = q.put_many(range(100))
    assert ids == sorted(ids) and len(set(ids)) == 100
    got = q.get_many(60, timeout=10)
    assert [m.value for m in got] == list(range(60))
    # Finish them out of order, explicitly; then the rest without argument.
    for m in reversed(got):
        q.task_done(m)
    rest = q.get_many(100, timeout=10)
    assert [m.value for m in rest] == list(range(60, 100))
    assert rest[0].delivery_count == 1 and rest[0].id == ids[60]
    for _ in rest:
        q.task_done()
    q.join(timeout=10)
    with pytest.raises(ValueError):
        q.get_many(0)
    with pytest.raises(ValueError):
        q.put_many(range(10_001))


def test_put_many_larger_than_bound_is_invalid(broker: Any) -> None:
    q = basin.JoinableQueue(unique("batch-bound"), 3, address=broker.address)
    with pytest.raises(basin.InvalidArgument):
        q.put_many(range(4))
    assert q.qsize() == 0


def test_release_and_redelivery(broker: Any) -> None:
    q = basin.JoinableQueue(unique("release"), address=broker.address, max_deliveries=2)
    q.put("job")
    m = q.get_message(timeout=10)
    m.release()
    again = q.get_message(timeout=10)
    assert again.value == "job" and again.delivery_count == 2
    with pytest.raises(basin.DeliveryError):
        m.task_done()  # its lease ended with the release
    again.task_done()
    q.join(timeout=10)


def test_join_timeout(broker: Any) -> None:
    q = basin.JoinableQueue(unique("join"), address=broker.address)
    q.put(1)
    with pytest.raises(basin.JoinTimeout) as e:
        q.join(timeout=0.2)
    assert e.value.reason == "QUEUE_UNFINISHED"
    q.get()
    q.task_done()
    q.join()


def _child_put(q: basin.JoinableQueue, ready: Any, values: List[int]) -> None:
    q.qsize()  # this child reached the broker: the parent may fork the next
    ready.set()
    for v in values:
        q.put(v)


def _child_get(q: basin.JoinableQueue, ready: Any, count: int, out: Any) -> None:
    q.qsize()
    ready.set()
    for _ in range(count):
        out.put(q.get(timeout=30))
        q.task_done()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_queue_made_before_the_child_processes_works_in_them(broker: Any, method: str) -> None:
    ctx = multiprocessing.get_context(method)
    assert no_basin_threads(), [t.name for t in threading.enumerate()]
    q = basin.JoinableQueue(unique(f"mp-{method}"), 5, address=broker.address)
    q.put(-1)  # the parent used its connection before the fork
    # gRPC runs a thread per channel while calls are active; one still
    # running at the fork (it ends just after the put) makes gRPC skip its
    # fork handlers, and the children cannot use gRPC. Fork once it is gone.
    assert wait_until(lambda: threading.active_count() == 1), threading.enumerate()
    results = ctx.Queue()
    work = [(_child_put, (list(range(i * 20, i * 20 + 20)),)) for i in range(3)]
    work += [(_child_get, (n, results)) for n in (30, 31)]
    children = []
    for target, args in work:
        # One fork at a time: right after a fork gRPC restarts its threads in
        # the parent, and a second fork racing that restart leaves a child
        # whose gRPC hangs (seen under ASan). A child that has used its
        # connection proves the parent's gRPC settled again.
        ready = ctx.Event()
        child = ctx.Process(target=target, args=(q, ready, *args))
        child.start()
        assert ready.wait(60), f"child {len(children)} never reached the broker"
        children.append(child)
    got = [results.get(timeout=60) for _ in range(61)]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert sorted(got) == [-1, *range(60)]
    q.join(timeout=30)


def test_threads_share_one_queue_object(broker: Any) -> None:
    q = basin.JoinableQueue(unique("threads"), 10, address=broker.address)
    got: "queue.Queue[int]" = queue.Queue()

    def consume() -> None:
        for _ in range(100):
            got.put(q.get(timeout=30))
            q.task_done()

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    producers = [threading.Thread(target=lambda i=i: [q.put(i * 100 + k) for k in range(100)])
                 for i in range(4)]
    for t in consumers + producers:
        t.start()
    for t in consumers + producers:
        t.join(60)
    q.join(timeout=30)
    values = sorted(got.get_nowait() for _ in range(400))
    assert values == list(range(400))
