"""Pub/sub shaped like redis-py's ``PubSub``.

    p = basin.PubSub("127.0.0.1:7878")        # was: r.pubsub()
    p.subscribe("spub", "cctv1")
    p.psubscribe("news.*")                     # Basin's pattern syntax, below
    for item in p.listen():
        if item["type"] in ("message", "pmessage"):
            print(item["channel"], item["data"])

    basin.publish("spub", "hello")             # was: r.publish(...); returns receivers

Items are dicts like redis-py's: ``type`` ("subscribe", "psubscribe",
"unsubscribe", "punsubscribe", "message", "pmessage"), ``channel``,
``pattern`` (None unless a pattern matched), ``data`` (the payload; for
(un)subscribe items the number of live subscriptions), plus
``dropped_before``: messages this subscription lost to its overflow policy
just before this one (the gap notice; 0 when none). ``channel``,
``pattern`` and ``data`` are bytes, or str with ``decode_responses=True``.

Patterns are not Redis globs: topic names are dot-separated words, ``*``
matches exactly one word and ``#`` zero or more (``news.*`` matches
``news.eu``, not ``news.eu.fr``; ``news.#`` matches both and ``news``).
Redis's ``news*`` is Basin's ``news.#`` when the names are dotted.

``unsubscribe()`` ends the subscription at once for this PubSub: nothing
of it is delivered afterwards (items received before stay in order). The
broker learns of it a moment later, so a publish right after may still
count it as a receiver.

As in Redis, each subscribe is its own subscription: a message published
to a topic that is both subscribed and matched by a pattern arrives twice
(``message`` and ``pmessage``). ``subscribe()`` returns once the broker has
confirmed the subscription, so anything published afterwards reaches it.
Messages of one subscription arrive in publish order; two subscriptions'
messages interleave in the order they arrive. Pub/sub is at most once:
while the connection is down, messages are lost, and ``listen()`` raises
:class:`basin.Unavailable`.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Deque, Dict, Iterator, Optional, Tuple, Union

import grpc

from . import errors
from ._connection import (DEFAULT_ADDRESS, ANSWER_SLACK, Connection, clamp_timeout,
                          default_connection)
from .v1 import topic_pb2 as pb

__all__ = ["PubSub", "encode_data"]

_POLICIES = {"drop_oldest": pb.OVERFLOW_POLICY_DROP_OLDEST,
             "disconnect": pb.OVERFLOW_POLICY_DISCONNECT}

Data = Union[bytes, str, int, float, bytearray, memoryview]


def encode_data(data: Data) -> bytes:
    """Redis's rule for a value: bytes as they are, str as UTF-8, numbers as text."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return repr(data).encode()
    raise TypeError(f"invalid data type {type(data).__name__}: use bytes, str, int or float")


def control_item(kind: str, term: str, count: int, decode: bool) -> Dict[str, Any]:
    """A (p)(un)subscribe item as redis-py's dict: ``data`` is the number of
    live subscriptions."""
    return {"type": kind, "pattern": None, "channel": term if decode else term.encode(),
            "data": count, "dropped_before": 0}


def message_item(kind: str, m: Any, is_pattern: bool, decode: bool) -> Any:
    """A received message as redis-py's dict; with ``decode``, a payload
    that is not UTF-8 gives a UnicodeDecodeError item instead (raised by
    the get_message that reaches it; the subscription goes on)."""
    try:
        return {
            "type": kind,
            "pattern": (m.pattern if decode else m.pattern.encode()) if is_pattern else None,
            "channel": m.topic if decode else m.topic.encode(),
            "data": m.payload.decode() if decode else m.payload,
            "dropped_before": int(m.dropped_before),
        }
    except UnicodeDecodeError as e:
        return e


class _Subscription:
    """One Subscribe stream (one topic or one pattern) and its reading thread."""

    def __init__(self, owner: "PubSub", term: str, is_pattern: bool) -> None:
        self.term = term
        self.is_pattern = is_pattern
        self.confirmed = threading.Event()  # the broker answered (or the stream failed)
        self.live = False  # the broker confirmed the subscription
        # The "subscribe" item is in the PubSub's items: messages may follow it.
        self.announced = threading.Event()
        self.error: Optional[errors.Error] = None
        self.cancelled = False
        self.dead = False  # ended by the broker or the network (under PubSub._lock)
        request = pb.SubscribeRequest(buffer_messages=owner._buffer_messages,
                                      buffer_bytes=owner._buffer_bytes,
                                      overflow_policy=owner._policy)
        (request.patterns if is_pattern else request.topics).append(term)
        self.call = owner._conn.topics.Subscribe(request)
        self.thread = threading.Thread(target=self._read, args=(owner,), daemon=True,
                                       name=f"basin-subscribe-{term}")
        self.thread.start()

    def _read(self, owner: "PubSub") -> None:
        kind = "pmessage" if self.is_pattern else "message"
        try:
            for response in self.call:
                if response.HasField("subscribed"):
                    self.live = True
                    self.confirmed.set()
                if response.messages:
                    self.announced.wait()
                for m in response.messages:
                    if not owner._push(self, message_item(kind, m, self.is_pattern,
                                                          owner._decode_responses)):
                        return  # unsubscribed: nothing of it is delivered afterwards
            self.error = errors.Unavailable(f"the subscription to {self.term!r} ended")
        except grpc.RpcError as e:
            self.error = errors.from_rpc_error(e)
        except Exception as e:  # noqa: BLE001 (a bug must not end it silently)
            self.error = errors.Error(f"the subscription to {self.term!r} failed: {e!r}")
        finally:
            self.confirmed.set()  # wakes a subscribe() waiting on a failed stream
        if self.live and not self.cancelled:
            # Dead: out of the table (so subscribing again opens a new
            # one), and the reader learns why, in one step: a listen()
            # between the two would end as if unsubscribed.
            with owner._cond:
                owner._drop(self)
                owner._items.append(self.error)
                owner._cond.notify_all()

    def cancel(self, owner: "PubSub") -> None:
        with owner._cond:
            self.cancelled = True
            owner._cond.notify_all()  # a reader waiting for room gives up
        self.announced.set()
        self.call.cancel()


class PubSub:
    """Subscriptions to topics and patterns, read like redis-py's PubSub.

    ``buffer_messages`` / ``buffer_bytes`` (0: the broker's defaults, 10,000
    and 16 MiB) bound what the broker buffers for each subscription, and
    ``buffer_messages`` also what this PubSub holds unread (beyond it the
    subscriptions stop reading, so the broker's buffers fill);
    ``overflow`` says what happens beyond: "drop_oldest" (the default; the
    next message carries ``dropped_before``) or "disconnect" (``listen()``
    raises :class:`basin.SlowSubscriber`).
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, *, client: Any = None,
                 decode_responses: bool = False, buffer_messages: int = 0,
                 buffer_bytes: int = 0, overflow: str = "drop_oldest") -> None:
        if overflow not in _POLICIES:
            raise ValueError("overflow must be 'drop_oldest' or 'disconnect'")
        self._conn: Connection = client._conn if client is not None else default_connection(
            address)
        self._decode_responses = decode_responses
        self._buffer_messages = buffer_messages
        self._buffer_bytes = buffer_bytes
        self._policy = _POLICIES[overflow]
        self._lock = threading.Lock()
        # Items received and not yet read. Bounded like the broker's buffer:
        # a reader finding it full stops reading its stream, so a slow
        # program makes the broker apply the overflow policy instead of
        # this process's memory growing.
        self._cond = threading.Condition()
        self._items: Deque[Any] = collections.deque()
        self._max_items = buffer_messages or 10_000
        self._channels: Dict[str, _Subscription] = {}
        self._patterns: Dict[str, _Subscription] = {}
        self._generation = 0  # closes so far
        self._pid = os.getpid()

    def _push(self, sub: Optional[_Subscription], item: Any) -> bool:
        """Adds an item; a subscription's message waits for room first, and
        is dropped (False) once the subscription is cancelled: cancel()
        sets the flag before the "unsubscribe" item is pushed, so nothing
        of it follows that item."""
        with self._cond:
            if sub is not None:
                while len(self._items) >= self._max_items and not sub.cancelled:
                    self._cond.wait()
                if sub.cancelled:
                    return False
            self._items.append(item)
            self._cond.notify_all()
        return True

    def _drop(self, sub: _Subscription) -> None:
        table = self._patterns if sub.is_pattern else self._channels
        with self._lock:
            sub.dead = True
            if table.get(sub.term) is sub:
                del table[sub.term]

    def _decode(self, value: bytes) -> Any:
        return value.decode() if self._decode_responses else value

    @property
    def subscribed(self) -> bool:
        """True while any topic or pattern is subscribed (redis-py's meaning)."""
        return bool(self._channels or self._patterns)

    @property
    def channels(self) -> Dict[Any, None]:
        return {self._decode(t.encode()): None for t in self._channels}

    @property
    def patterns(self) -> Dict[Any, None]:
        return {self._decode(t.encode()): None for t in self._patterns}

    def _count(self) -> int:
        return len(self._channels) + len(self._patterns)

    def _add(self, terms: Tuple[Any, ...], is_pattern: bool) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError("a basin.PubSub cannot be used in a forked child: make one there")
        table = self._patterns if is_pattern else self._channels
        kind = "psubscribe" if is_pattern else "subscribe"
        for raw in terms:
            term = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            with self._lock:
                if term in table:
                    continue
                generation = self._generation
            sub = _Subscription(self, term, is_pattern)
            sub.confirmed.wait()
            if not sub.live:
                sub.cancel(self)
                raise sub.error or errors.Unavailable(
                    f"the subscription to {term!r} ended before the broker confirmed it")
            with self._lock:
                # Another thread subscribed the same meanwhile, or close()
                # ran: this one is not wanted.
                unwanted = term in table or generation != self._generation
                if not unwanted and not sub.dead:  # (dead: its error is in the items)
                    table[term] = sub
                count = self._count()
            if unwanted:
                sub.cancel(self)
                continue
            if sub.dead:
                continue
            self._push(None, control_item(kind, term, count, self._decode_responses))
            sub.announced.set()

    def _remove(self, terms: Tuple[Any, ...], is_pattern: bool) -> None:
        table = self._patterns if is_pattern else self._channels
        kind = "punsubscribe" if is_pattern else "unsubscribe"
        with self._lock:
            names = [t.decode() if isinstance(t, (bytes, bytearray)) else str(t)
                     for t in terms] or list(table)
            removed = [(n, table.pop(n)) for n in names if n in table]
        for name, sub in removed:
            sub.cancel(self)
            with self._lock:
                count = self._count()
            self._push(None, control_item(kind, name, count, self._decode_responses))

    def subscribe(self, *topics: Union[str, bytes]) -> None:
        """Subscribes to exact topic names; returns once each is live."""
        self._add(topics, False)

    def psubscribe(self, *patterns: Union[str, bytes]) -> None:
        """Subscribes to patterns (``*`` one word, ``#`` any words)."""
        self._add(patterns, True)

    def unsubscribe(self, *topics: Union[str, bytes]) -> None:
        """Ends the given topic subscriptions, or all of them."""
        self._remove(topics, False)

    def punsubscribe(self, *patterns: Union[str, bytes]) -> None:
        """Ends the given pattern subscriptions, or all of them."""
        self._remove(patterns, True)

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: Optional[float] = 0.0) -> Optional[Dict[str, Any]]:
        """The next item, or None if none comes within ``timeout`` seconds
        (None: wait as long as it takes)."""
        timeout = clamp_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while not self._items:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0 or not self.subscribed:
                        return None  # (nothing subscribed: nothing can come)
                    self._cond.wait(left)
                item = self._items.popleft()
                self._cond.notify_all()
            if isinstance(item, BaseException):
                raise item
            if ignore_subscribe_messages and item["type"] not in ("message", "pmessage"):
                continue
            return item  # type: ignore[no-any-return]

    def listen(self) -> Iterator[Dict[str, Any]]:
        """Yields items while anything is subscribed (and what is already
        received after the last unsubscribe)."""
        while self.subscribed or self._items:
            item = self.get_message(timeout=None if self.subscribed else 0)
            if item is not None:
                yield item

    def close(self) -> None:
        """Ends every subscription and drops what was received and not read;
        a ``listen()`` or ``get_message()`` waiting in another thread
        returns. The object may subscribe again afterwards."""
        with self._lock:
            subs = list(self._channels.values()) + list(self._patterns.values())
            self._channels.clear()
            self._patterns.clear()
            self._generation += 1  # a subscribe under way keeps nothing
        for sub in subs:
            sub.cancel(self)
        with self._cond:
            self._items.clear()
            self._cond.notify_all()
        for sub in subs:
            sub.thread.join(ANSWER_SLACK)

    reset = close

    def __enter__(self) -> "PubSub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
