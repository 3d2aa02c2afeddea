"""basin.Publisher (batched publishing over PublishStream) against the real broker."""

from __future__ import annotations

from typing import Any, List

import pytest

import basin
from conftest import Broker, unique


def topic_name(prefix: str) -> str:
    return unique(prefix).replace("-", "_")


def received(p: basin.PubSub, count: int) -> List[Any]:
    out = []
    while len(out) < count:
        item = p.get_message(ignore_subscribe_messages=True, timeout=30)
        assert item is not None, f"only {len(out)} of {count} messages arrived"
        out.append((item["channel"], item["data"]))
    return out


def test_publisher_batches_confirms_and_keeps_order(broker: Any) -> None:
    a, b = topic_name("pa"), topic_name("pb")
    p = basin.PubSub(broker.address)
    p.subscribe(a, b)
    with basin.Publisher(broker.address, max_batch_messages=300) as publisher:
        for i in range(2000):
            publisher.publish(a, str(i))
            publisher.publish(b, i, {"n": str(i)})
        summary = publisher.flush()
        assert summary == basin.PublishSummary(confirmed=4000, receivers=4000)
        assert publisher.flush() == basin.PublishSummary()  # handed out once
    got = received(p, 4000)
    # Each subscribe is a subscription of its own (as in Redis): the two
    # topics interleave as they arrive, each in publish order.
    for t in (a, b):
        assert [d for c, d in got if c == t.encode()] == [str(i).encode() for i in range(2000)]
    p.close()


def test_invalid_messages_are_listed_and_the_rest_go(broker: Any) -> None:
    ok = topic_name("ok")
    p = basin.PubSub(broker.address)
    p.subscribe(ok)
    publisher = basin.Publisher(broker.address)
    publisher.publish(ok, "first")
    publisher.publish("not a topic", "x")
    publisher.publish(ok, b"x" * ((1 << 20) + 100))  # over the default 1 MiB
    publisher.publish(ok, "last")
    s = publisher.flush()
    publisher.close()
    assert (s.confirmed, s.receivers, s.failed) == (4, 2, 2)
    assert [(f.topic, f.error_reason) for f in s.failures] == [
        ("not a topic", "INVALID_TOPIC"), (ok, "MESSAGE_TOO_LARGE")]
    assert all(f.error_message for f in s.failures)
    assert received(p, 2) == [(ok.encode(), b"first"), (ok.encode(), b"last")]
    p.close()


def test_refusing_bound_queue_is_named(broker: Any) -> None:
    name = unique("one-slot")
    basin.Queue(name, 1, address=broker.address)
    topic = topic_name("fill")
    basin.bind_queue(topic, name, address=broker.address)
    with basin.Publisher(broker.address) as publisher:
        for i in range(3):
            publisher.publish(topic, i)
        s = publisher.flush()
    assert (s.confirmed, s.queues, s.failed) == (3, 1, 0)
    assert [f.undelivered_queues for f in s.failures] == [[name], [name]]


def test_flush_raises_once_after_the_broker_goes() -> None:
    b = Broker()
    # A connection of its own, closed at the end: a channel left to a dead
    # broker keeps reconnecting, and gRPC threads at work break later forks.
    client = basin.Client(b.address)
    try:
        publisher = basin.Publisher(client=client)
        publisher.publish("t", "before")
        assert publisher.flush().confirmed == 1
        b.stop()
        publisher.publish("t", "after")
        with pytest.raises(basin.Unavailable):
            publisher.flush()
        assert publisher.flush() == basin.PublishSummary()  # the error was raised once
        publisher.close()
        with pytest.raises(basin.Error):
            publisher.publish("t", "closed")
    finally:
        client.close()
        b.close()


def test_bad_options_are_refused(broker: Any) -> None:
    with pytest.raises(ValueError):
        basin.Publisher(broker.address, max_batch_messages=0)
    with pytest.raises(ValueError):
        basin.Publisher(broker.address, linger=-1)


def test_hand_framed_requests_are_protobufs() -> None:
    from basin.publisher import _frame
    from basin.v1 import topic_pb2 as pb
    for payload in (b"", b"x", b"y" * 300):
        for headers in (None, {"k": "v"}):
            want = pb.PublishStreamRequest(messages=[
                pb.PublishRequest(topic="news.eu", payload=payload, headers=headers)])
            assert pb.PublishStreamRequest.FromString(_frame(b"news.eu", payload, headers)) == want
            if not headers:
                assert _frame(b"news.eu", payload, headers) == want.SerializeToString()
