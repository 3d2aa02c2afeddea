"""basin.aio against the real broker.

Each test runs in a spawned process: once grpc.aio has run in a process,
gRPC cannot be used in children fork()ed from it (grpcio's fork handlers
fail in the child), and the other tests fork.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any, Callable, List

import pytest

import basin
import basin.aio
from conftest import unique


def isolated(scenario: Callable[[str], None], address: str) -> None:
    process = multiprocessing.get_context("spawn").Process(target=scenario, args=(address,))
    process.start()
    process.join(120)
    assert process.exitcode == 0, "the scenario failed: its traceback is on stderr above"


def test_aio_joinable_queue(broker: Any) -> None:
    isolated(_aio_joinable_queue, broker.address)


def _aio_joinable_queue(address: str) -> None:
    async def main() -> None:
        q = basin.aio.JoinableQueue(unique("aio"), 2, address=address)
        await q.put({"n": 1})
        await q.put_nowait({"n": 2})
        assert await q.full()
        with pytest.raises(basin.Full):
            await q.put(3, timeout=0.1)
        assert await q.get() == {"n": 1}
        await q.task_done()
        m = await q.get_message()
        assert m.value == {"n": 2}
        await m.task_done()
        with pytest.raises(ValueError):
            await q.task_done()
        await q.join(timeout=10)
        with pytest.raises(basin.Empty):
            await q.get(timeout=0.1)
        assert await q.put_many(["a", "b"]) != []
        await q.close_queue()
        got = []
        async for item in q:
            got.append(item)
            await q.task_done()
        assert got == ["a", "b"]
        with pytest.raises(basin.AlreadyExists):
            await basin.aio.JoinableQueue(q.name, 5, address=address).attach()
    asyncio.run(main())


def test_aio_consumer_and_gathered_puts(broker: Any) -> None:
    isolated(_aio_consumer_and_gathered_puts, broker.address)


def _aio_consumer_and_gathered_puts(address: str) -> None:
    async def main() -> None:
        name = unique("aio-consumer")
        q = basin.aio.JoinableQueue(name, address=address)
        await asyncio.gather(*(q.put(i) for i in range(500)))
        seen: List[int] = []
        async with basin.aio.Consumer(name, address=address, prefetch=50) as consumer:
            async for msg in consumer:
                seen.append(msg.value)
                await msg.ack()
                if len(seen) == 500:
                    break
        assert sorted(seen) == list(range(500))
        await q.join(timeout=10)
        with pytest.raises(basin.NotFound):
            await basin.aio.Consumer(unique("nowhere"), address=address).start()
    asyncio.run(main())


def test_aio_pubsub(broker: Any) -> None:
    isolated(_aio_pubsub, broker.address)


def _aio_pubsub(address: str) -> None:
    async def main() -> None:
        base = unique("aio_news").replace("-", "_")
        p = basin.aio.PubSub(address, decode_responses=True)
        await p.subscribe(f"{base}.eu")
        await p.psubscribe(f"{base}.#")
        assert await basin.aio.publish(f"{base}.eu", "hi", address=address) == 2
        items = []
        async for item in p.listen():
            items.append(item)
            if len(items) == 4:
                break
        assert [i["type"] for i in items[:2]] == ["subscribe", "psubscribe"]
        assert sorted(i["type"] for i in items[2:]) == ["message", "pmessage"]
        assert {i["data"] for i in items[2:]} == {"hi"}
        await p.unsubscribe()
        await p.punsubscribe()
        assert not p.subscribed
        with pytest.raises(basin.InvalidArgument):
            await p.subscribe("bad topic")
        await p.close()
    asyncio.run(main())


def test_aio_consumer_get_timeout_keeps_the_stream(broker: Any) -> None:
    isolated(_aio_consumer_get_timeout_keeps_the_stream, broker.address)


def _aio_consumer_get_timeout_keeps_the_stream(address: str) -> None:
    async def main() -> None:
        name = unique("aio-timeout")
        q = basin.aio.JoinableQueue(name, address=address)
        await q.attach()
        async with basin.aio.Consumer(name, address=address, prefetch=2,
                                      ack_timeout=30) as consumer:
            with pytest.raises(basin.Empty):
                await consumer.get(timeout=0.05)  # a timed-out wait ends only itself
            await q.put_many(list(range(10)))
            got = []
            for _ in range(10):
                m = await consumer.get(timeout=30)
                got.append(m.value)
                await m.ack()
            assert got == list(range(10))
        await q.join(timeout=30)
        # The loop's channel is per loop: a second asyncio.run makes its own.
    asyncio.run(main())
    asyncio.run(main())


def test_aio_pubsub_edges(broker: Any) -> None:
    isolated(_aio_pubsub_edges, broker.address)


def _aio_pubsub_edges(address: str) -> None:
    async def main() -> None:
        topic, other = unique("aio-t"), unique("aio-t")
        p = basin.aio.PubSub(address, buffer_messages=3)
        await p.subscribe(topic)
        # The default timeout (0) returns what is already here.
        assert (await p.get_message())["type"] == "subscribe"  # type: ignore[index]
        for i in range(10):
            await basin.aio.publish(topic, str(i), address=address)
        # The unread items fill up (3); subscribing more must not wait for room.
        await asyncio.wait_for(p.subscribe(other), 30)
        await asyncio.wait_for(p.unsubscribe(topic), 30)
        kinds = []
        while True:
            item = await p.get_message(timeout=0.5)
            if item is None:
                break
            kinds.append((item["type"], item["channel"]))
        assert ("subscribe", other.encode()) in kinds
        after = kinds[kinds.index(("unsubscribe", topic.encode())):]
        assert ("message", topic.encode()) not in after
        # close() from another task ends a listen() that waits.
        seen: List[Any] = []

        async def listen() -> None:
            async for item in p.listen():
                seen.append(item)

        listener = asyncio.ensure_future(listen())
        await asyncio.sleep(0)  # let it start waiting
        await p.close()
        await asyncio.wait_for(listener, 30)
    asyncio.run(main())


def test_aio_channels_of_finished_loops_are_freed(broker: Any) -> None:
    isolated(_aio_channels_of_finished_loops_are_freed, broker.address)


def _aio_channels_of_finished_loops_are_freed(address: str) -> None:
    import gc

    import grpc

    name = unique("aio-loops")

    async def main() -> None:
        q = basin.aio.Queue(name, address=address)
        await q.put(1)
        assert await q.get() == 1
    for _ in range(5):
        asyncio.run(main())
    gc.collect()
    assert sum(isinstance(o, grpc.aio.Channel) for o in gc.get_objects()) <= 1


def test_aio_consumer_start_cancelled_then_used(broker: Any) -> None:
    isolated(_aio_consumer_start_cancelled_then_used, broker.address)


def _aio_consumer_start_cancelled_then_used(address: str) -> None:
    async def main() -> None:
        name = unique("aio-cancel")
        q = basin.aio.JoinableQueue(name, address=address)
        await q.attach()
        consumer = basin.aio.Consumer(name, address=address)
        first = asyncio.ensure_future(consumer.get())
        await asyncio.sleep(0)  # the get is under way (attaching, or waiting)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await q.put("x")
        try:  # either the stream lived on, or its end is reported: never a hang
            m = await asyncio.wait_for(consumer.get(timeout=30), 60)
            assert m.value == "x"
            await m.ack()
        except basin.Error:
            pass
        await asyncio.wait_for(consumer.close(), 60)
        with pytest.raises(basin.Closed):
            await consumer.get(timeout=0)
    asyncio.run(main())
