"""basin.PubSub (redis-py's shape) and publish against the real broker."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

import basin
from conftest import unique


def messages(p: basin.PubSub, count: int, timeout: float = 30) -> List[Dict[str, Any]]:
    out = []
    while len(out) < count:
        item = p.get_message(ignore_subscribe_messages=True, timeout=timeout)
        assert item is not None, f"only {len(out)} of {count} messages arrived"
        out.append(item)
    return out


def test_subscribe_listen_like_redis_py(broker: Any) -> None:
    topic = unique("spub").replace("-", "_")
    p = basin.PubSub(broker.address)
    p.subscribe(topic, "cctv1")
    assert p.subscribed
    confirms = [p.get_message(timeout=5), p.get_message(timeout=5)]
    assert confirms == [
        {"type": "subscribe", "pattern": None, "channel": topic.encode(), "data": 1,
         "dropped_before": 0},
        {"type": "subscribe", "pattern": None, "channel": b"cctv1", "data": 2,
         "dropped_before": 0},
    ]
    assert basin.publish(topic, "hello", address=broker.address) == 1
    assert basin.publish(topic, b"\x00bytes", address=broker.address) == 1
    assert basin.publish(topic, 7, address=broker.address) == 1
    listened = []
    for item in p.listen():
        listened.append(item)
        if len(listened) == 3:
            break
    assert [i["data"] for i in listened] == [b"hello", b"\x00bytes", b"7"]
    assert all(i["type"] == "message" and i["channel"] == topic.encode() for i in listened)
    p.unsubscribe(topic)
    assert p.get_message(timeout=5) == {"type": "unsubscribe", "pattern": None,
                                        "channel": topic.encode(), "data": 1,
                                        "dropped_before": 0}
    # Unsubscribing ends the stream; the broker may still count it as a
    # receiver for a moment, but nothing published afterwards shows up.
    basin.publish(topic, "nobody", address=broker.address)
    basin.publish("cctv1", "marker", address=broker.address)
    assert messages(p, 1)[0]["data"] == b"marker"
    p.unsubscribe()
    assert not p.subscribed
    assert [i["type"] for i in p.listen()] == ["unsubscribe"]
    p.close()


def test_patterns_and_message_plus_pmessage(broker: Any) -> None:
    base = unique("news").replace("-", "_")
    p = basin.PubSub(broker.address, decode_responses=True)
    p.subscribe(f"{base}.eu")
    p.psubscribe(f"{base}.*", f"{base}.#")
    assert basin.publish(f"{base}.eu", "one", address=broker.address) == 3
    got = messages(p, 3)
    kinds = sorted((i["type"], i["pattern"]) for i in got)
    assert kinds == [("message", None), ("pmessage", f"{base}.#"), ("pmessage", f"{base}.*")]
    assert {i["channel"] for i in got} == {f"{base}.eu"} and {i["data"] for i in got} == {"one"}
    # `*` is one word, `#` any number of words (not Redis globs).
    assert basin.publish(f"{base}.eu.fr", "two", address=broker.address) == 1
    assert basin.publish(base, "three", address=broker.address) == 1
    two, three = messages(p, 2)
    assert (two["pattern"], two["data"]) == (f"{base}.#", "two")
    assert (three["pattern"], three["data"]) == (f"{base}.#", "three")
    p.punsubscribe(f"{base}.#")
    basin.publish(f"{base}.eu.fr", "four", address=broker.address)
    basin.publish(f"{base}.eu", "marker", address=broker.address)
    assert [i["data"] for i in messages(p, 2)] == ["marker", "marker"]
    assert p.get_message(timeout=0.2) is None
    p.close()


def test_slow_subscriber_gap_notice(broker: Any) -> None:
    topic = unique("gap").replace("-", "_")
    p = basin.PubSub(broker.address, buffer_messages=10)
    p.subscribe(topic)
    # Nothing is read while 2,000 × 10 KB are published: this PubSub holds
    # 10, the connection's flow-control window some MB, the broker's buffer
    # 10, and the broker drops the oldest of the rest.
    client = basin.Client(broker.address)
    for i in range(2000):
        client.publish(topic, f"{i:<10000}")
    got = []
    while True:
        item = p.get_message(ignore_subscribe_messages=True, timeout=2)
        if item is None:
            break
        got.append(item)
    dropped = sum(i["dropped_before"] for i in got)
    assert dropped > 0 and len(got) + dropped == 2000
    assert [int(i["data"]) for i in got] == sorted(int(i["data"]) for i in got)
    p.close()
    client.close()


def test_disconnect_policy_raises_slow_subscriber(broker: Any) -> None:
    topic = unique("slow").replace("-", "_")
    p = basin.PubSub(broker.address, buffer_messages=1, overflow="disconnect")
    p.subscribe(topic)
    client = basin.Client(broker.address)
    with pytest.raises(basin.SlowSubscriber) as e:
        for i in range(100_000):
            client.publish(topic, b"x" * 1000)
            while p.get_message(timeout=0) is not None:
                pass
    assert e.value.reason == "SLOW_SUBSCRIBER"
    p.close()
    client.close()


def test_bind_queue_routes_copies(broker: Any) -> None:
    base = unique("orders").replace("-", "_")
    q = basin.JoinableQueue(unique("bound"), address=broker.address, serializer="bytes")
    assert basin.bind_queue(f"{base}.#", q.name, address=broker.address) is True
    assert basin.bind_queue(f"{base}.#", q.name, address=broker.address) is False
    result = basin.Client(broker.address).publish_ex(f"{base}.new", b"order 1")
    assert (result.receivers, result.queues, result.undelivered_queues) == (0, 1, [])
    m = q.get_message(timeout=10)
    assert m.value == b"order 1" and m.headers["basin-topic"] == f"{base}.new"
    m.task_done()
    basin.unbind_queue(f"{base}.#", q.name, address=broker.address)
    with pytest.raises(basin.NotFound):
        basin.unbind_queue(f"{base}.#", q.name, address=broker.address)


def test_invalid_topics_are_invalid_argument(broker: Any) -> None:
    p = basin.PubSub(broker.address)
    with pytest.raises(basin.InvalidArgument) as e:
        p.subscribe("no spaces")
    assert e.value.reason == "INVALID_TOPIC"
    assert not p.subscribed
    with pytest.raises(basin.InvalidArgument):
        basin.publish("news.*", "wildcards are for patterns", address=broker.address)
    with pytest.raises(TypeError):
        basin.publish("news", {"not": "bytes"}, address=broker.address)  # type: ignore[arg-type]
    p.close()
