"""A delivered message: its value, its bytes, and the delivery to finish."""

from __future__ import annotations

from itertools import count, repeat
from typing import Any, Dict, List, Optional, Type, TypeVar

from ._schedule import Delay
from .serializers import Serializer

__all__ = ["Message", "ColumnMessage", "Shared", "from_columns"]

_UNSET: Any = object()


class Message:
    """One delivery of a message.

    ``value`` is the payload decoded by the queue's serializer (decoded on
    first access); ``payload`` the raw bytes. ``task_done()`` (alias
    ``ack()``) finishes it, ``release()`` gives it back to the head of the
    queue at once, ``extend()`` says it is still being worked on.
    """

    # _source is what handed the message out and finishes it: a queue
    # (_finish/_release/_extend) or a Consumer.
    __slots__ = ("queue", "_pb", "_tag", "_source", "_serializer", "_value", "_stream")

    def __init__(self, queue: str, pb: Any, tag: Any, source: Any,
                 serializer: Serializer, stream: int = 0) -> None:
        self.queue = queue
        self._pb = pb
        self._tag = tag
        self._source = source
        self._serializer = serializer
        self._value = _UNSET
        self._stream = stream

    @property
    def value(self) -> Any:
        """The payload decoded by the serializer."""
        if self._value is _UNSET:
            self._value = self._serializer.loads(self._pb.payload)
        return self._value

    @property
    def payload(self) -> bytes:
        """The message's bytes as put."""
        return bytes(self._pb.payload)

    @property
    def id(self) -> int:
        """Per-queue id, rising in put order."""
        return int(self._pb.message_id)

    @property
    def headers(self) -> Dict[str, str]:
        """Application headers, plus ``basin-`` headers set by the broker."""
        return dict(self._pb.headers)

    @property
    def delivery_count(self) -> int:
        """Hand-outs of this message, this one included (1 the first time)."""
        return int(self._pb.delivery_count)

    @property
    def delivery_tag(self) -> str:
        """Names this delivery (opaque)."""
        return str(self._tag)

    def task_done(self) -> None:
        """Finishes the message (TaskDone / ack)."""
        self._source._finish(self)

    def ack(self) -> None:
        """Finishes the message (TaskDone / ack)."""
        self._source._finish(self)

    def release(self, delay: Optional[Delay] = None) -> None:
        """Gives the message back to the head of the queue (a nack): after the
        queue's ``retry_backoff`` (at once without one), or after ``delay``
        (seconds or a timedelta; 0: at once)."""
        self._source._release(self, delay)

    def reject(self) -> None:
        """Sends the message to the dead-letter queue now (dropped without
        one): a poison message. Its ``basin-death-reason`` is "rejected"."""
        self._source._reject(self)

    def extend(self, seconds: Optional[float] = None) -> None:
        """Still working on it: the lease (or ack_timeout) starts again."""
        self._source._extend(self, seconds)

    def __repr__(self) -> str:
        return (f"<basin.Message queue={self.queue!r} id={self.id} "
                f"delivery_count={self.delivery_count}>")


class Shared:
    """What the messages of one Consume response have in common, and their
    ids, delivery counts and headers as plain Python values: a message kept
    must not keep the whole response (up to 1 MiB of payloads) alive."""

    __slots__ = ("queue", "source", "serializer", "stream", "ids", "counts", "headers")

    def __init__(self, queue: str, source: Any, serializer: Serializer, stream: int,
                 columns: Any) -> None:
        self.queue = queue
        self.source = source
        self.serializer = serializer
        self.stream = stream
        self.ids: List[int] = list(columns.message_ids)
        self.counts: List[int] = list(columns.delivery_counts)
        self.headers: Dict[int, Dict[str, str]] = {
            int(i): dict(h.entries) for i, h in columns.headers.items()}


class ColumnMessage(Message):
    """Delivery ``index`` of a Consume response read as columns: made with
    four fields set (and the decoded value once read), the rest from what
    the response's messages share. Made by the thousand, so as cheap to make
    as a Python object gets."""

    __slots__ = ("_shared", "_index", "_payload")

    def __init__(self, shared: Shared, index: int, payload: bytes,  # noqa: super not called
                 tag: int) -> None:
        self._shared = shared
        self._index = index
        self._payload = payload
        self._tag = tag
        self._value = _UNSET

    @property  # type: ignore[override]
    def queue(self) -> str:
        return self._shared.queue

    @property  # type: ignore[override]
    def _source(self) -> Any:
        return self._shared.source

    @property  # type: ignore[override]
    def _serializer(self) -> Serializer:
        return self._shared.serializer

    @property  # type: ignore[override]
    def _stream(self) -> int:
        return self._shared.stream

    def ack(self) -> None:
        """Finishes the message (TaskDone / ack)."""
        shared = self._shared
        shared.source._finish_tag(shared.stream, self._tag)

    task_done = ack

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            self._value = self._shared.serializer.loads(self._payload)
        return self._value

    @property
    def payload(self) -> bytes:
        return self._payload

    @property
    def id(self) -> int:
        return self._shared.ids[self._index]

    @property
    def headers(self) -> Dict[str, str]:
        return dict(self._shared.headers.get(self._index, {}))

    @property
    def delivery_count(self) -> int:
        return self._shared.counts[self._index]

    def __copy__(self) -> "ColumnMessage":
        twin = type(self)(self._shared, self._index, self._payload, self._tag)
        twin._value = self._value
        return twin

    def __deepcopy__(self, memo: Any) -> "ColumnMessage":
        return self.__copy__()  # a delivery, not a value: its twin finishes the same one


M = TypeVar("M", bound=ColumnMessage)


def from_columns(cls: Type[M], queue: str, columns: Any, source: Any, serializer: Serializer,
                 stream: int = 0) -> List[M]:
    """The deliveries of a ``DeliveryColumns`` as ``cls`` (ColumnMessage or
    a subclass), made by C-level iteration."""
    shared = Shared(queue, source, serializer, stream, columns)
    return list(map(cls, repeat(shared), count(), columns.payloads, columns.delivery_tags))
