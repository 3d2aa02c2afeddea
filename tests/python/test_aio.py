"""basin.aio against the real broker."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

import basin
import basin.aio
from conftest import unique


def test_aio_joinable_queue(broker: Any) -> None:
    async def main() -> None:
        q = basin.aio.JoinableQueue(unique("aio"), 2, address=broker.address)
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
            await basin.aio.JoinableQueue(q.name, 5, address=broker.address).attach()
    asyncio.run(main())


def test_aio_consumer_and_gathered_puts(broker: Any) -> None:
    async def main() -> None:
        name = unique("aio-consumer")
        q = basin.aio.JoinableQueue(name, address=broker.address)
        await asyncio.gather(*(q.put(i) for i in range(500)))
        seen: List[int] = []
        async with basin.aio.Consumer(name, address=broker.address, prefetch=50) as consumer:
            async for msg in consumer:
                seen.append(msg.value)
                await msg.ack()
                if len(seen) == 500:
                    break
        assert sorted(seen) == list(range(500))
        await q.join(timeout=10)
        with pytest.raises(basin.NotFound):
            await basin.aio.Consumer(unique("nowhere"), address=broker.address).start()
    asyncio.run(main())


def test_aio_pubsub(broker: Any) -> None:
    async def main() -> None:
        base = unique("aio_news").replace("-", "_")
        p = basin.aio.PubSub(broker.address, decode_responses=True)
        await p.subscribe(f"{base}.eu")
        await p.psubscribe(f"{base}.#")
        assert await basin.aio.publish(f"{base}.eu", "hi", address=broker.address) == 2
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
