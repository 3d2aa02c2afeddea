"""Basin: multiprocessing's queues and redis-py's pub/sub, across machines.

    import basin
    q = basin.JoinableQueue("work", 3)     # was: multiprocessing.JoinableQueue(3)
    q.put(item); item = q.get(); q.task_done(); q.join()
    q.close_queue()                        # drained gets raise basin.Closed

    basin.publish("news.eu", "hello")      # was: redis.publish(...)
    p = basin.PubSub(); p.subscribe("news.eu")

See client/python/README.md for the whole mapping.

Fork safety: importing basin turns on gRPC's fork support
(GRPC_ENABLE_FORK_SUPPORT=1, unless already set) so that a queue made before
``fork()`` works in the children, which open their own connection. Import
basin before grpc for this to take effect.
"""

import os as _os

_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "1")

from ._connection import DEFAULT_ADDRESS, default_connection  # noqa: E402
from .client import Client, PublishResult  # noqa: E402
from .consumer import Consumer, MessageBatch  # noqa: E402
from .errors import (  # noqa: E402
    AlreadyDone, AlreadyExists, BrokerMemory, Closed, DeliveryError, Empty, Error, Full,
    InvalidArgument, JoinTimeout, LeaseExpired, MessageTooLarge, NotFound, PermissionDenied,
    RateLimited, SlowSubscriber, TooManyWaiters, Unauthenticated, Unavailable, UnknownDelivery)
from .message import Message  # noqa: E402
from .producer import Producer  # noqa: E402
from .pubsub import Data, PubSub  # noqa: E402
from .publisher import PublishFailure, Publisher, PublishSummary  # noqa: E402
from .queues import JoinableQueue, Queue  # noqa: E402
from ._security import TLS  # noqa: E402
from .serializers import Serializer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDRESS", "TLS", "Client", "Queue", "JoinableQueue", "Message", "MessageBatch", "Producer",
    "Consumer",
    "PubSub", "PublishResult", "Publisher", "PublishSummary", "PublishFailure", "Serializer", "publish", "bind_queue", "unbind_queue",
    "Error", "Full", "BrokerMemory", "Empty", "Closed", "JoinTimeout", "NotFound",
    "AlreadyExists", "DeliveryError", "LeaseExpired", "UnknownDelivery", "AlreadyDone",
    "InvalidArgument", "MessageTooLarge", "TooManyWaiters", "SlowSubscriber", "Unavailable",
    "Unauthenticated", "PermissionDenied", "RateLimited",
]


def _client(address: str) -> Client:
    c = Client.__new__(Client)
    c._conn = default_connection(address)
    return c


def publish(topic: str, data: Data, *, address: str = DEFAULT_ADDRESS) -> int:
    """Publishes ``data`` to ``topic``; returns the live subscriptions reached."""
    return _client(address).publish(topic, data)


def bind_queue(topic_pattern: str, queue: str, *, address: str = DEFAULT_ADDRESS) -> bool:
    """Routes every message published to a matching topic into ``queue`` too."""
    return _client(address).bind_queue(topic_pattern, queue)


def unbind_queue(topic_pattern: str, queue: str, *, address: str = DEFAULT_ADDRESS) -> None:
    """Removes a binding."""
    _client(address).unbind_queue(topic_pattern, queue)
