"""When a put's message becomes ready: ``delay=`` (seconds or a timedelta
from the broker's receipt) or ``deliver_at=`` (a datetime, or seconds since
the epoch, on the broker's clock). The broker keeps at most 30 days ahead
(InvalidArgument beyond)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Dict, Optional, Union

from google.protobuf import duration_pb2, timestamp_pb2

Delay = Union[float, timedelta]
When = Union[float, datetime]


def schedule(delay: Optional[Delay] = None, deliver_at: Optional[When] = None) -> Dict[str, Any]:
    """The PutRequest / PutMessage fields for a schedule; {} for none.
    ValueError for both at once, a negative or non-finite delay."""
    if delay is not None and deliver_at is not None:
        raise ValueError("give delay or deliver_at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        if seconds == 0:
            return {}
        after = duration_pb2.Duration()
        after.FromNanoseconds(int(seconds * 1e9))
        return {"deliver_after": after}
    if deliver_at is not None:
        # A naive datetime is local time, as datetime.timestamp() reads it.
        epoch = deliver_at.timestamp() if isinstance(deliver_at, datetime) else float(deliver_at)
        if not math.isfinite(epoch):
            raise ValueError(f"deliver_at must be a finite time, not {deliver_at!r}")
        at = timestamp_pb2.Timestamp()
        at.FromNanoseconds(int(epoch * 1e9))
        return {"deliver_at": at}
    return {}
