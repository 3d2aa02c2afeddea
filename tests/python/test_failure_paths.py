"""Failure paths of the throughput classes and pub/sub: what happens when a
stream breaks, a producer stops with work pending, a subscriber stalls or
is closed from another thread."""

from __future__ import annotations

import concurrent.futures
import queue
import signal
import threading
from typing import Any, Dict, List

import pytest

import basin
from basin import errors as basin_errors
from conftest import unique, wait_until


def test_errors_reported_inside_responses_map_like_status_errors() -> None:
    for reason in ("SHUTTING_DOWN", "STORAGE_UNAVAILABLE"):
        assert isinstance(basin_errors.from_reason(reason, "x"), basin.Unavailable)


def test_infinite_timeout_is_no_timeout_and_nan_is_refused(broker: Any) -> None:
    q = basin.JoinableQueue(unique("inf"), address=broker.address)
    q.put("x", timeout=float("inf"))
    assert q.get(timeout=float("inf")) == "x"
    q.task_done()
    with pytest.raises(ValueError):
        q.get(timeout=float("nan"))


def test_join_works_after_close_as_in_the_standard_library(broker: Any) -> None:
    q = basin.JoinableQueue(unique("join-closed"), address=broker.address)
    q.put(1)
    assert q.get() == 1
    q.task_done()
    q.close()
    q.join()  # multiprocessing.JoinableQueue allows it too


# -- Producer ------------------------------------------------------------------


def _stuck_producer(broker: Any, **options: Any) -> Any:
    """A producer whose queue (of 2) is full, so nothing it sends is
    confirmed; its batches hold 2 messages at most."""
    name = unique("stuck")
    q = basin.Queue(name, 2, address=broker.address)
    q.put_many(["filler", "filler"])
    return basin.Producer(name, address=broker.address, linger=0.001, **options)


def test_flush_returns_after_a_close_timeout_failed_what_was_pending(broker: Any) -> None:
    producer = _stuck_producer(broker, max_in_flight_batches=1)
    # Two in the batch in flight, the third in the open batch (no room).
    futures = [producer.send(i) for i in range(3)]
    producer.close(timeout=0.3)
    assert producer.flush(timeout=30)  # every batch is failed, none pending
    for f in futures:
        with pytest.raises(basin.Error):
            f.result(timeout=30)


def test_send_many_groups_failed_by_one_error_get_their_own_results(broker: Any) -> None:
    producer = _stuck_producer(broker)
    first = producer.send_many(["a", "b"])
    second = producer.send_many(["c"])
    producer.close(timeout=0.3)
    e1, e2 = first.exception(timeout=30), second.exception(timeout=30)
    assert e1 is not None and e2 is not None and e1 is not e2
    assert len(e1.results) == 2 and len(e2.results) == 1  # type: ignore[attr-defined]


def test_a_future_callback_may_use_the_producer(broker: Any) -> None:
    """Callbacks run under no producer lock: one may send again."""
    name = unique("callback")
    basin.Queue(name, address=broker.address)
    with basin.Producer(name, address=broker.address) as producer:
        chained: List[Any] = []
        done = threading.Event()

        def again(_: Any) -> None:
            chained.append(producer.send("second"))
            done.set()

        producer.send("first").add_done_callback(again)
        assert done.wait(30)
        assert chained[0].result(timeout=30) > 0


def test_futures_of_one_batch_wait_in_any_order_from_many_threads(broker: Any) -> None:
    """concurrent.futures.wait takes each future's Condition in id order;
    futures of one batch must not share one (two waiters would deadlock)."""
    name = unique("wait-order")
    basin.Queue(name, address=broker.address)
    with basin.Producer(name, address=broker.address, linger=0.05) as producer:
        futures = [producer.send(i) for i in range(40)]
        assert futures[0]._condition is not futures[1]._condition
        pool = concurrent.futures.ThreadPoolExecutor(8)
        waits = [pool.submit(concurrent.futures.wait, futures[k::3] + futures[:k:2])
                 for k in range(8)]
        waits += [pool.submit(lambda: [f.result() for f in
                                       concurrent.futures.as_completed(futures, timeout=30)])]
        for w in waits:
            w.result(timeout=30)
        pool.shutdown()
        assert sorted(f.result() for f in futures) == sorted(set(f.result() for f in futures))


# -- Consumer ------------------------------------------------------------------


# Tests that stop a broker talk to it through a Client of their own,
# closed at the end: a channel left to a dead broker keeps gRPC's threads
# busy, and gRPC then cannot prepare a later test's fork().


def test_acks_pending_at_a_reconnect_do_not_ack_the_new_streams_deliveries(
        durable_broker: Any) -> None:
    """Delivery tags number one stream's deliveries: an ack held back when the
    stream broke must not be sent on the next one, where the same tag names
    another delivery (that would finish work nobody did)."""
    name = unique("stale-ack")
    with basin.Client(durable_broker.address) as client:
        q = basin.JoinableQueue(name, client=client, durable=True)
        q.put("a")
        q.put("b")
        consumer = basin.Consumer(name, client=client, prefetch=1, ack_batch=100)
        first = consumer.get(timeout=30)
        first.ack()  # held back: ack_batch is 100
        durable_broker.restart(signal.SIGKILL)
        again = consumer.get(timeout=60)  # on the new stream; flushes what was held back
        assert again.value in ("a", "b")
        consumer.cancel()  # nothing acked on the new stream: both come back
        assert wait_until(lambda: q.info().stats.size == 2)
        assert q.unfinished() == 2


def test_close_while_reconnecting_returns(fresh_broker: Any) -> None:
    name = unique("close-reconnect")
    with basin.Client(fresh_broker.address) as client:
        basin.Queue(name, client=client)
        consumer = basin.Consumer(name, client=client, reconnect_for=300, close_timeout=1)
        fresh_broker.stop(signal.SIGKILL)
        closer = threading.Thread(target=consumer.close)
        closer.start()
        closer.join(60)
        assert not closer.is_alive(), "close() hung while the consumer was reconnecting"
        with pytest.raises(basin.Closed):
            consumer.get(timeout=0)
        fresh_broker.start()


def test_cancel_while_reconnecting_ends_the_consumer(fresh_broker: Any) -> None:
    name = unique("cancel-reconnect")
    with basin.Client(fresh_broker.address) as client:
        basin.Queue(name, client=client)
        consumer = basin.Consumer(name, client=client, reconnect_for=300)
        fresh_broker.stop(signal.SIGKILL)
        consumer.cancel()
        with pytest.raises(basin.Closed):
            consumer.get(timeout=60)  # not Empty: the consumer ended, it did not wait on
        fresh_broker.start()


def test_a_stalled_consumer_holds_at_most_prefetch_deliveries(broker: Any) -> None:
    """With ack_timeout the broker sends more as leases expire; a program
    that stops taking messages makes the stream wait, not this process grow."""
    name = unique("stalled")
    q = basin.Queue(name, address=broker.address)
    q.put_many(list(range(200)))
    consumer = basin.Consumer(name, address=broker.address, prefetch=5, ack_timeout=0.05)
    assert wait_until(lambda: q.info().stats.total_redelivered >= 100)
    assert consumer._inbox_deliveries <= 5
    consumer.close()


def test_a_consumer_refuses_use_in_another_process(broker: Any) -> None:
    """A Consumer's threads stay in the process that made it: used elsewhere
    it raises rather than wait forever. (Simulated: a real fork() with the
    Consumer's stream live is what gRPC cannot survive, see the README.)"""
    name = unique("fork-consumer")
    basin.Queue(name, address=broker.address)
    consumer = basin.Consumer(name, address=broker.address)
    made_in = consumer._pid
    consumer._pid = made_in + 1  # as a forked child sees it: another pid
    with pytest.raises(RuntimeError):
        consumer.get(timeout=1)
    consumer._pid = made_in
    consumer.close()


# -- PubSub --------------------------------------------------------------------


def test_close_from_another_thread_ends_listen(broker: Any) -> None:
    p = basin.PubSub(broker.address)
    p.subscribe(unique("topic"))
    seen: List[Dict[str, Any]] = []
    listener = threading.Thread(target=lambda: seen.extend(p.listen()))
    listener.start()
    assert wait_until(lambda: len(seen) == 1)  # the subscribe item
    p.close()
    listener.join(30)
    assert not listener.is_alive(), "listen() went on after close()"


def test_a_payload_that_is_not_utf8_fails_only_its_own_item(broker: Any) -> None:
    topic = unique("topic")
    p = basin.PubSub(broker.address, decode_responses=True)
    p.subscribe(topic)
    basin.publish(topic, b"\xff\xfe", address=broker.address)
    basin.publish(topic, "after", address=broker.address)
    assert p.get_message(timeout=30)["type"] == "subscribe"  # type: ignore[index]
    with pytest.raises(UnicodeDecodeError):
        p.get_message(timeout=30)
    item = p.get_message(timeout=30)
    assert item is not None and item["data"] == "after"
    p.close()


def test_a_subscription_the_broker_ended_can_be_made_again(fresh_broker: Any) -> None:
    topic = unique("topic")
    with basin.Client(fresh_broker.address) as client:
        p = basin.PubSub(client=client)
        p.subscribe(topic)
        assert p.get_message(timeout=30)["type"] == "subscribe"  # type: ignore[index]
        fresh_broker.restart(signal.SIGKILL)
        with pytest.raises(basin.Error):
            for _ in p.listen():  # raises, rather than end as if unsubscribed
                pass
        assert not p.subscribed
        p.subscribe(topic)  # a new stream, not a no-op
        assert p.get_message(timeout=30)["type"] == "subscribe"  # type: ignore[index]
        assert client.publish(topic, "back") == 1
        item = p.get_message(timeout=30)
        assert item is not None and item["data"] == b"back"
        p.close()


def test_nothing_of_a_subscription_follows_its_unsubscribe_item(broker: Any) -> None:
    topic = unique("topic")
    p = basin.PubSub(broker.address, buffer_messages=10)
    p.subscribe(topic)
    for i in range(50):
        basin.publish(topic, str(i), address=broker.address)
    # Wait until the local buffer is full and the reader waits for room.
    assert wait_until(lambda: len(p._items) >= 10)
    p.unsubscribe(topic)
    items = []
    while True:
        item = p.get_message(timeout=0)
        if item is None:
            break
        items.append(item)
    kinds = [i["type"] for i in items]
    assert "unsubscribe" in kinds
    assert "message" not in kinds[kinds.index("unsubscribe"):]


def test_a_callback_may_send_while_the_window_is_full(broker: Any) -> None:
    """Only the receiving thread confirms batches: a callback's send() on it
    must not wait for room (it would wait for itself)."""
    name = unique("callback-full")
    basin.Queue(name, address=broker.address)
    with basin.Producer(name, address=broker.address, max_batch_messages=1,
                        max_in_flight_batches=1) as producer:
        chained: List[Any] = []
        producer.send("first").add_done_callback(
            lambda _: chained.append(producer.send("from the callback")))
        rest = [producer.send(i) for i in range(200)]  # keeps the window full
        assert producer.flush(timeout=30)
        assert all(f.result(timeout=30) > 0 for f in rest)
        assert wait_until(lambda: len(chained) == 1)
        assert chained[0].result(timeout=30) > 0
        with pytest.raises(RuntimeError):
            flushed: List[Any] = []
            done = threading.Event()

            def flush_in_callback(_: Any) -> None:
                try:
                    producer.flush()
                except RuntimeError as e:
                    flushed.append(e)
                done.set()

            producer.send("last").add_done_callback(flush_in_callback)
            assert done.wait(30)
            raise flushed[0]


def test_a_refused_batch_fails_alone_and_later_ones_are_resent(broker: Any) -> None:
    """A refusal answers the first unconfirmed batch only; the batches after
    it are resent on a new stream, not failed."""
    name = unique("refusal")
    q = basin.Queue(name, address=broker.address, max_bytes=1000, serializer="bytes")
    with basin.Producer(name, address=broker.address, serializer="bytes",
                        linger=0.05) as producer:
        before = producer.send(b"a")
        too_big = producer.send(b"x" * 2000)  # can never fit the queue's 1,000 bytes
        after = producer.send(b"c")
        assert producer.flush(timeout=30)
        with pytest.raises(basin.InvalidArgument):
            too_big.result()
        assert before.result() > 0 and after.result() > before.result()
    assert [q.get(timeout=30), q.get(timeout=30)] == [b"a", b"c"]


def test_acks_from_many_threads_are_all_sent(broker: Any) -> None:
    name = unique("threaded-acks")
    q = basin.JoinableQueue(name, address=broker.address)
    total = 3000
    q.put_many(list(range(total)))
    work: "queue.Queue[Any]" = queue.Queue()
    consumer = basin.Consumer(name, address=broker.address, prefetch=50, ack_batch=7)

    def worker() -> None:
        while True:
            msg = work.get()
            if msg is None:
                return
            msg.ack()

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for _ in range(total):  # one thread takes, four ack
        work.put(consumer.get(timeout=30))
    for _ in workers:
        work.put(None)
    for w in workers:
        w.join(30)
    consumer.close()  # sends what is pending
    assert wait_until(lambda: q.info().stats.unfinished == 0), q.info().stats


def test_concurrent_subscribes_to_one_topic_make_one_subscription(broker: Any) -> None:
    topic = unique("topic")
    p = basin.PubSub(broker.address)
    threads = [threading.Thread(target=p.subscribe, args=(topic,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert list(p.channels) == [topic.encode()]
    assert wait_until(lambda: basin.publish(topic, "x", address=broker.address) == 1)
    p.close()
    assert wait_until(lambda: basin.publish(topic, "x", address=broker.address) == 0)


def test_acks_from_a_worker_reach_a_consumer_that_waits(broker: Any) -> None:
    """prefetch below ack_batch: the taking thread waits for more while a
    worker acks; those acks must go out, or the broker never sends more."""
    name = unique("worker-acks")
    q = basin.JoinableQueue(name, address=broker.address)
    q.put_many(list(range(30)))
    consumer = basin.Consumer(name, address=broker.address, prefetch=10, ack_batch=64)
    work: "queue.Queue[Any]" = queue.Queue()
    worker = threading.Thread(target=lambda: [m.ack() for m in iter(work.get, None)])
    worker.start()
    got = []
    for _ in range(30):
        msg = consumer.get(timeout=30)
        got.append(msg.value)
        work.put(msg)
    work.put(None)
    worker.join(30)
    consumer.close()
    assert sorted(got) == list(range(30))
    assert wait_until(lambda: q.info().stats.unfinished == 0)
