"""basin.Producer and basin.Consumer against the real broker, across restarts."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import Future
from typing import Any, Dict, List, Set

import pytest

import basin
from conftest import unique, wait_until


def test_produce_then_consume_everything_once(broker: Any) -> None:
    name = unique("stream")
    q = basin.JoinableQueue(name, address=broker.address)
    with basin.Producer(name, address=broker.address, linger=0.002) as producer:
        futures = [producer.send({"n": i}) for i in range(5000)]
        assert producer.flush(timeout=60)
    ids = [f.result() for f in futures]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    seen: List[int] = []
    with basin.Consumer(name, address=broker.address, prefetch=200) as consumer:
        for msg in consumer:
            seen.append(msg.value["n"])
            msg.ack()
            if len(seen) == 5000:
                break
    assert seen == list(range(5000))
    assert wait_until(lambda: q.info().stats.unfinished == 0)
    q.join(timeout=10)


def test_producer_cuts_batches_to_a_small_queue_bound(broker: Any) -> None:
    name = unique("bound")
    basin.JoinableQueue(name, 3, address=broker.address)
    consumer = basin.Consumer(name, address=broker.address, prefetch=10)
    with basin.Producer(name, address=broker.address, max_batch_messages=500) as producer:
        futures = [producer.send(i) for i in range(50)]
        got = []
        for msg in consumer:  # the queue holds 3: consume while producing
            got.append(msg.value)
            msg.ack()
            if len(got) == 50:
                break
        assert producer.flush(timeout=30)
    assert got == list(range(50)) and all(f.exception() is None for f in futures)
    consumer.close()


def test_producer_errors_fail_their_futures(broker: Any) -> None:
    name = unique("producer-errors")
    q = basin.JoinableQueue(name, address=broker.address, serializer="bytes")
    producer = basin.Producer(name, address=broker.address, serializer="bytes")
    too_big = producer.send(b"x" * ((1 << 20) + 1024))
    fine = producer.send(b"ok")
    assert producer.flush(timeout=30)
    with pytest.raises(basin.MessageTooLarge):
        too_big.result()
    assert fine.result() > 0
    q.close_queue()
    refused = producer.send(b"after close")
    producer.flush(timeout=30)
    with pytest.raises(basin.Closed):
        refused.result(timeout=30)
    with pytest.raises(basin.Closed):  # permanent: later sends fail at once
        producer.send(b"again").result(timeout=1)
    producer.close()
    with pytest.raises(basin.NotFound):
        basin.Producer(unique("nowhere"), address=broker.address)
    with pytest.raises(basin.NotFound):
        basin.Consumer(unique("nowhere"), address=broker.address)


def test_consumer_get_timeout_release_and_close(broker: Any) -> None:
    name = unique("consumer")
    q = basin.JoinableQueue(name, address=broker.address)
    consumer = basin.Consumer(name, address=broker.address, prefetch=5)
    with pytest.raises(basin.Empty):
        consumer.get(timeout=0.2)
    q.put("a")
    m = consumer.get(timeout=30)
    assert m.value == "a" and m.delivery_count == 1
    m.release()
    again = consumer.get(timeout=30)
    assert again.value == "a" and again.delivery_count == 2
    # Closing gives back what the consumer holds unacked.
    consumer.close()
    assert wait_until(lambda: q.qsize() == 1)
    with pytest.raises(basin.Closed):
        consumer.get(timeout=1)
    with pytest.raises(ValueError):
        q.task_done(again)  # a stream's delivery is acked through its Consumer
    q.close_queue()
    rest = [m.value for m in basin.Consumer(name, address=broker.address)
            if m.ack() is None]
    assert rest == ["a"]


def test_cancel_from_another_thread_ends_iteration(broker: Any) -> None:
    name = unique("cancel")
    basin.JoinableQueue(name, address=broker.address)
    consumer = basin.Consumer(name, address=broker.address)
    ended = threading.Event()

    def iterate() -> None:
        for _ in consumer:
            pass
        ended.set()

    t = threading.Thread(target=iterate)
    t.start()
    consumer.cancel()
    t.join(30)
    assert ended.is_set()


def test_ack_timeout_redelivers(broker: Any) -> None:
    name = unique("ack-timeout")
    q = basin.JoinableQueue(name, address=broker.address)
    q.put("slow")
    consumer = basin.Consumer(name, address=broker.address, ack_timeout=0.2)
    first = consumer.get(timeout=30)
    second = consumer.get(timeout=30)  # the same message, after the timeout
    assert second.value == first.value == "slow" and second.delivery_count == 2
    assert consumer.expired >= 1
    second.ack()
    consumer.close()
    q.join(timeout=30)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_producer_and_consumer_reconnect_across_a_broker_restart(durable_broker: Any,
                                                                 how: int) -> None:
    """Producer sends and a consumer acks while the broker restarts: every
    message arrives, none is enqueued twice (the producer's resends are
    deduplicated), and the queue ends empty."""
    name = unique("restart")
    address = durable_broker.address
    q = basin.JoinableQueue(name, address=address, durable=True)
    total = 3000
    received: Dict[int, Set[int]] = {}  # value -> message ids it arrived under
    done = threading.Event()
    errors: List[BaseException] = []

    def consume() -> None:
        try:
            with basin.Consumer(name, address=address, prefetch=100) as consumer:
                for msg in consumer:
                    received.setdefault(msg.value, set()).add(msg.id)
                    msg.ack()
                    if len(received) == total:
                        break
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        done.set()

    consumer_thread = threading.Thread(target=consume)
    consumer_thread.start()
    producer = basin.Producer(name, address=address, linger=0.001)
    futures: List["Future[int]"] = []
    for i in range(total):
        futures.append(producer.send(i))
        if i == total // 3:
            producer.flush(timeout=30)
            durable_broker.restart(how)
    assert producer.flush(timeout=60)
    ids = [f.result() for f in futures]
    producer.close()
    assert len(set(ids)) == total  # one id per message, resends deduplicated
    assert done.wait(60), "the consumer did not receive everything"
    consumer_thread.join(30)
    assert not errors, errors
    assert sorted(received) == list(range(total))
    # Nothing enqueued twice: each value arrived under one message id (a
    # redelivery keeps its id), and the queue drains to zero.
    assert all(len(ids_seen) == 1 for ids_seen in received.values())
    assert wait_until(lambda: q.info().stats.unfinished == 0, timeout=30), q.info().stats
    assert producer.reconnects >= 1


def test_send_many_and_batches(broker: Any) -> None:
    name = unique("batches")
    q = basin.JoinableQueue(name, 700, address=broker.address, serializer="bytes")
    with basin.Producer(name, address=broker.address, serializer="bytes",
                        max_batch_messages=300) as producer:
        first = producer.send(b"single")
        many = producer.send_many([b"%d" % i for i in range(1000)])  # spans several batches
        empty = producer.send_many([])
        got: List[bytes] = []
        with basin.Consumer(name, address=broker.address, serializer="bytes",
                            prefetch=500) as consumer:
            for batch in consumer.batches():
                got.extend(batch)
                assert len(batch) == len(batch.payloads) == len(batch.messages)
                batch.ack()
                if len(got) == 1001:
                    break
        ids = many.result(timeout=30)
    assert first.result() < ids[0] and ids == sorted(ids) and len(set(ids)) == 1000
    assert empty.result() == []
    assert got == [b"single"] + [b"%d" % i for i in range(1000)]
    assert wait_until(lambda: q.info().stats.unfinished == 0)


def test_send_many_reports_each_failure(broker: Any) -> None:
    name = unique("batch-failures")
    basin.JoinableQueue(name, address=broker.address, serializer="bytes")
    with basin.Producer(name, address=broker.address, serializer="bytes") as producer:
        future = producer.send_many([b"ok", b"x" * ((1 << 20) + 1024), b"fine"])
        with pytest.raises(basin.MessageTooLarge) as e:
            future.result(timeout=30)
    results = e.value.results  # type: ignore[attr-defined]
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], basin.MessageTooLarge)


def test_batch_release_and_mixed_get(broker: Any) -> None:
    name = unique("batch-release")
    q = basin.JoinableQueue(name, address=broker.address)
    q.put_many(range(10))
    consumer = basin.Consumer(name, address=broker.address, prefetch=10)
    first = consumer.get(timeout=30)
    rest = consumer.get_batch(timeout=30)  # what get() left, as a batch
    assert first.value == 0 and list(rest) == list(range(1, len(rest) + 1))
    rest.release()
    first.ack()
    again = []
    while len(again) < 9:
        batch = consumer.get_batch(timeout=30)
        again.extend(batch.values)
        batch.ack()
    assert sorted(again) == list(range(1, 10))
    consumer.close()
    assert wait_until(lambda: q.info().stats.unfinished == 0)


def test_consumer_messages_carry_ids_headers_and_delivery_counts(broker: Any) -> None:
    """The Consumer reads deliveries as columns (ConsumeRequest.columns):
    every field of a Message is still there, headers only where set."""
    name = unique("columns")
    basin.JoinableQueue(name, address=broker.address, serializer="json")
    with basin.Producer(name, address=broker.address, serializer="json") as producer:
        plain = producer.send({"n": 1})
        tagged = producer.send({"n": 2}, headers={"trace": "abc"})
        assert producer.flush(timeout=30)
    with basin.Consumer(name, address=broker.address, serializer="json") as consumer:
        batch = consumer.get_batch(timeout=30)
        while len(batch) < 2:  # both may not come in one response
            batch.messages.extend(consumer.get_batch(timeout=30).messages)
        first, second = batch.messages
        assert (first.value, first.id, first.headers) == ({"n": 1}, plain.result(), {})
        assert (second.value, second.id, second.headers["trace"]) == (
            {"n": 2}, tagged.result(), "abc")
        assert first.delivery_count == second.delivery_count == 1
        second.release()  # back to the queue: delivered again, counted
        again = consumer.get(timeout=30)
        assert again.id == second.id and again.delivery_count == 2
        assert again.headers["trace"] == "abc"
        first.ack()
        again.ack()
