"""Scheduling from Python: put(delay=...)/deliver_at on Queue, put_many,
Producer.send and basin.aio, against the real broker."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import basin
import basin.aio
from conftest import unique


def test_a_delayed_put_is_unfinished_and_unseen_until_its_time(broker: Any) -> None:
    q = basin.JoinableQueue(unique("delay"), 1, address=broker.address)
    start = time.monotonic()
    q.put("later", delay=2)
    q.put("now")  # the delayed one takes no place in the bounded queue
    assert q.info().stats.delayed == 1
    assert q.unfinished() == 2
    assert q.get(timeout=5) == "now"
    q.task_done()
    assert q.get(timeout=20) == "later"
    assert time.monotonic() - start >= 2
    q.task_done()
    q.join(timeout=5)


def test_deliver_at_and_timedelta_forms(broker: Any) -> None:
    q = basin.Queue(unique("at"), address=broker.address)
    q.put("past", deliver_at=datetime.now(timezone.utc) - timedelta(seconds=5))
    assert q.get(timeout=0) == "past"
    q.put("epoch", deliver_at=time.time() + 0.2)
    q.put("timedelta", delay=timedelta(milliseconds=200))
    assert sorted([q.get(timeout=20), q.get(timeout=20)]) == ["epoch", "timedelta"]


def test_bad_schedules_are_refused(broker: Any) -> None:
    q = basin.Queue(unique("bad"), address=broker.address)
    with pytest.raises(ValueError):
        q.put("x", delay=1, deliver_at=time.time())
    with pytest.raises(ValueError):
        q.put("x", delay=-1)
    with pytest.raises(basin.InvalidArgument, match="30 days"):
        q.put("x", delay=timedelta(days=31))
    assert q.qsize() == 0 and q.info().stats.delayed == 0


def test_put_many_and_producer_send_delayed(broker: Any) -> None:
    name = unique("many")
    q = basin.Queue(name, address=broker.address)
    assert len(q.put_many(["a", "b"], delay=0.2)) == 2
    with basin.Producer(name, address=broker.address) as producer:
        producer.send("c", delay=0.2)
        producer.send_many(["d", "e"], delay=0.2).result(timeout=10)
        producer.flush()
    assert q.info().stats.delayed + q.qsize() == 5
    got = [q.get(timeout=20) for _ in range(5)]
    assert sorted(got) == ["a", "b", "c", "d", "e"]


def test_aio_put_with_delay(broker: Any) -> None:
    # In a process of its own, as test_aio's scenarios: an event loop's
    # channel must not outlive it in a process that later forks.
    process = multiprocessing.get_context("spawn").Process(target=_aio_put_with_delay,
                                                           args=(broker.address,))
    process.start()
    process.join(120)
    assert process.exitcode == 0, "the scenario failed: its traceback is on stderr above"


def _aio_put_with_delay(address: str) -> None:
    async def main() -> None:
        q = basin.aio.Queue(unique("aio-delay"), address=address)
        await q.put("later", delay=2)
        assert await q.put_many(["x"], delay=2) != []
        with pytest.raises(basin.Empty):
            await q.get(timeout=0)
        assert sorted([await q.get(timeout=20), await q.get(timeout=20)]) == ["later", "x"]
        dead = basin.aio.JoinableQueue(unique("aio-dead"), address=address)
        await dead.attach()  # aio queues are made on first use
        jq = basin.aio.JoinableQueue(unique("aio-retry"), address=address,
                                     dead_letter_queue=dead.name, retry_backoff=[2])
        await jq.put("job")
        m = await jq.get_message(timeout=5)
        await m.release()
        assert (await jq.info()).stats.delayed == 1
        m = await jq.get_message(timeout=20)
        assert m.delivery_count == 2
        await m.release(delay=0)
        m = await jq.get_message(timeout=0)
        await m.reject()
        assert await dead.get(timeout=5) == "job"
    asyncio.run(main())


def test_retry_backoff_release_delay_and_reject(broker: Any) -> None:
    dead = basin.JoinableQueue(unique("retry-dead"), address=broker.address)
    name = unique("retry")
    q = basin.JoinableQueue(name, address=broker.address, dead_letter_queue=dead.name,
                            retry_backoff=[1.5, timedelta(seconds=3)])
    assert [d.ToMilliseconds() for d in q.info().options.retry_backoff] == [1500, 3000]
    # Attaching with the same backoff agrees; another one is a conflict.
    basin.JoinableQueue(name, address=broker.address, retry_backoff=[1.5, 3])
    with pytest.raises(basin.AlreadyExists, match="retry_backoff"):
        basin.JoinableQueue(name, address=broker.address, retry_backoff=[1])
    q.put("job")
    m = q.get_message(timeout=5)
    start = time.monotonic()
    m.release()  # waits the backoff's first entry
    assert q.info().stats.delayed == 1
    m = q.get_message(timeout=20)
    assert time.monotonic() - start >= 1.5
    assert m.delivery_count == 2
    m.release(delay=0)  # at once
    m = q.get_message(timeout=0)
    m.reject()
    dl = dead.get_message(timeout=5)
    assert dl.headers["basin-death-reason"] == "rejected"
    dl.task_done()
    q.join(timeout=5)


def test_consumer_release_delay_and_reject(broker: Any) -> None:
    dead = basin.JoinableQueue(unique("c-dead"), address=broker.address)
    q = basin.JoinableQueue(unique("c-retry"), address=broker.address,
                            dead_letter_queue=dead.name)
    q.put_many(["later", "poison"])
    with basin.Consumer(q.name, address=broker.address, prefetch=10) as consumer:
        a = consumer.get(timeout=5)
        b = consumer.get(timeout=5)
        a.release(delay=0.3)
        b.reject()
        assert dead.get(timeout=5) == "poison"
        again = consumer.get(timeout=20)
        assert again.value == "later" and again.delivery_count == 2
        again.ack()


def test_priority_and_ttl(broker: Any) -> None:
    dead = basin.JoinableQueue(unique("ttl-dead"), address=broker.address)
    name = unique("ranked")
    q = basin.JoinableQueue(name, address=broker.address, max_priority=5, message_ttl=3600,
                            dead_letter_queue=dead.name)
    assert q.info().options.max_priority == 5
    assert q.info().options.message_ttl.ToSeconds() == 3600
    with pytest.raises(basin.AlreadyExists, match="max_priority"):
        basin.JoinableQueue(name, address=broker.address, max_priority=3)
    q.put("low", priority=1)
    q.put("brief", priority=5, ttl=0.1)
    q.put_many(["high"], priority=5)
    assert dead.get(timeout=20) == "brief"
    dead.task_done()
    assert q.get(timeout=0) == "high"
    assert q.get(timeout=0) == "low"
    q.task_done()
    q.task_done()
    assert q.info().stats.total_expired == 1
    with pytest.raises(basin.InvalidArgument):
        q.put("x", priority=11)
    with pytest.raises(ValueError):
        q.put("x", ttl=-1)
    with basin.Producer(name, address=broker.address) as producer:
        producer.send("sent", priority=2, ttl=60).result(timeout=10)
    assert q.get(timeout=5) == "sent"
    q.task_done()


def test_ordered_groups(broker: Any) -> None:
    q = basin.JoinableQueue(unique("grouped"), address=broker.address)
    q.put("a1", group="a")
    q.put_many(["a2", "a3"], group="a")
    q.put("b1", group="b")
    assert q.info().stats.groups == 2
    first = q.get_message(timeout=0)
    assert first.value == "a1"
    assert q.get(timeout=0) == "b1"  # a2 waits for a1
    with pytest.raises(basin.Empty):
        q.get(timeout=0)
    assert q.info().stats.active_groups == 2
    first.task_done()
    assert q.get(timeout=0) == "a2"
    with pytest.raises(basin.InvalidArgument):
        q.put("x", group="a", delay=1)
