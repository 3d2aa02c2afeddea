"""``basin.Client``: one connection to a broker, and the calls that are not a queue's."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from ._connection import DEFAULT_ADDRESS, Connection
from ._security import TLS, security_from
from .pubsub import Data, PubSub, encode_data
from .queues import JoinableQueue
from .v1 import queue_pb2, server_pb2, topic_pb2

__all__ = ["Client", "PublishResult"]


class PublishResult:
    """Where a published message went."""

    __slots__ = ("receivers", "queues", "undelivered_queues")

    def __init__(self, response: Any) -> None:
        self.receivers = int(response.receivers)  #: live subscriptions reached
        self.queues = int(response.queues)  #: bound queues it was put into
        #: bound queues that refused it (full, closed, over memory)
        self.undelivered_queues: List[str] = list(response.undelivered_queues)

    def __repr__(self) -> str:
        return (f"PublishResult(receivers={self.receivers}, queues={self.queues}, "
                f"undelivered_queues={self.undelivered_queues!r})")


class Client:
    """A connection of its own to one broker (``host:port``).

    Queues, producers, consumers and PubSubs made without ``client=`` share
    one connection per address and process; a Client gives them a separate
    one (and is closed with ``close()``).

    ``tls`` (a :class:`basin.TLS`, or True for TLS trusting the system's CAs)
    and ``token`` (sent as ``authorization: Bearer TOKEN``) default to the
    BASIN_TLS, BASIN_CA, BASIN_CERT, BASIN_KEY, BASIN_SERVER_NAME and
    BASIN_TOKEN environment variables (docs/security.md); ``tls=False``
    forces plaintext.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, *, tls: Union[TLS, bool, None] = None,
                 token: Optional[str] = None) -> None:
        self._conn = Connection(address, security_from(tls, token))

    @property
    def address(self) -> str:
        return self._conn.address

    def queue(self, name: str, maxsize: int = 0, **settings: Any) -> JoinableQueue:
        """``basin.JoinableQueue(name, maxsize, client=self, **settings)``."""
        return JoinableQueue(name, maxsize, client=self, **settings)

    def pubsub(self, **options: Any) -> PubSub:
        """``basin.PubSub(client=self, **options)``."""
        return PubSub(client=self, **options)

    def publish(self, topic: str, data: Data, headers: Optional[Dict[str, str]] = None) -> int:
        """Publishes; returns the live subscriptions reached (as Redis PUBLISH)."""
        return self.publish_ex(topic, data, headers).receivers

    def publish_ex(self, topic: str, data: Data,
                   headers: Optional[Dict[str, str]] = None) -> PublishResult:
        """Publishes; returns subscribers reached and bound queues filled or not."""
        request = topic_pb2.PublishRequest(topic=topic, payload=encode_data(data),
                                           headers=headers or {})
        return PublishResult(self._conn.call(self._conn.topics.Publish, request))

    def bind_queue(self, topic_pattern: str, queue: str) -> bool:
        """Every message published to a matching topic also goes into ``queue``
        (header ``basin-topic``). Returns False if the binding existed."""
        request = topic_pb2.BindQueueRequest(topic_pattern=topic_pattern, queue=queue)
        return bool(self._conn.call(self._conn.topics.BindQueue, request).created)

    def unbind_queue(self, topic_pattern: str, queue: str) -> None:
        """Removes a binding (:class:`basin.NotFound` if absent)."""
        request = topic_pb2.UnbindQueueRequest(topic_pattern=topic_pattern, queue=queue)
        self._conn.call(self._conn.topics.UnbindQueue, request)

    def list_queues(self) -> List[queue_pb2.QueueInfo]:
        """Every queue's settings and counters, by name."""
        return list(self._conn.call(self._conn.queues.ListQueues,
                                    queue_pb2.ListQueuesRequest()).queues)

    def delete_queue(self, name: str) -> int:
        """Deletes a queue; returns the messages dropped."""
        return int(self._conn.call(self._conn.queues.DeleteQueue,
                                   queue_pb2.DeleteQueueRequest(name=name)).dropped_messages)

    def server_info(self) -> server_pb2.GetServerInfoResponse:
        """The broker's version, uptime, limits and every setting with its source."""
        info: server_pb2.GetServerInfoResponse = self._conn.call(
            self._conn.server.GetServerInfo, server_pb2.GetServerInfoRequest())
        return info

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
