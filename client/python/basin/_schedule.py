"""What a put asks beyond its payload: when its message becomes ready
(``delay=``, seconds or a timedelta from the broker's receipt, or
``deliver_at=``, a datetime or seconds since the epoch on the broker's clock;
at most 30 days ahead), its ``priority=`` (0 to 10) and its ``ttl=`` (seconds
or a timedelta; the queue's message_ttl otherwise) and its ordering ``group=``
(one message of a group handed out at a time, in put order). The broker answers
InvalidArgument beyond its limits."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Dict, Optional, Union

from google.protobuf import duration_pb2, timestamp_pb2

Delay = Union[float, timedelta]
When = Union[float, datetime]


def seconds_of(delay: Delay, what: str = "delay") -> float:
    """``delay`` (seconds or a timedelta) as seconds; ValueError when
    negative or not finite."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {delay!r}")
    return seconds


def duration_of(delay: Delay, what: str = "delay") -> duration_pb2.Duration:
    """``delay`` as a google.protobuf.Duration (checked as seconds_of)."""
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(seconds_of(delay, what) * 1e9))
    return out


def release_fields(delay: Optional[Delay], field: str = "delay") -> Dict[str, Any]:
    """The delay for ``release(delay=...)`` as ``field`` (ReleaseRequest's
    ``delay``, ConsumeRequest's ``release_delay``); {} for None (the queue's
    retry_backoff)."""
    return {} if delay is None else {field: duration_of(delay)}


def schedule(delay: Optional[Delay] = None, deliver_at: Optional[When] = None,
             priority: int = 0, ttl: Optional[Delay] = None, group: str = "") -> Dict[str, Any]:
    """The PutRequest / PutMessage fields for what a put asks beyond its
    payload; {} for nothing. ValueError for a delay and a deliver_at at once,
    a negative or non-finite delay or ttl, or a negative priority (the
    broker checks the upper bounds)."""
    fields: Dict[str, Any] = {}
    if delay is not None and deliver_at is not None and seconds_of(delay) > 0:
        raise ValueError("give delay or deliver_at, not both")
    if delay is not None and seconds_of(delay) > 0:
        fields["deliver_after"] = duration_of(delay)
    if deliver_at is not None:
        # A naive datetime is local time, as datetime.timestamp() reads it.
        epoch = deliver_at.timestamp() if isinstance(deliver_at, datetime) else float(deliver_at)
        if not math.isfinite(epoch):
            raise ValueError(f"deliver_at must be a finite time, not {deliver_at!r}")
        at = timestamp_pb2.Timestamp()
        at.FromNanoseconds(int(epoch * 1e9))
        fields["deliver_at"] = at
    if priority:
        if int(priority) < 0:
            raise ValueError(f"priority must be 0 to 10, not {priority!r}")
        fields["priority"] = int(priority)
    if ttl is not None:
        if seconds_of(ttl, "ttl") == 0:
            raise ValueError("ttl must be positive (None: the queue's message_ttl)")
        fields["expires_after"] = duration_of(ttl, "ttl")
    if group:
        fields["group"] = str(group)
    return fields
