"""TLS and bearer tokens: how a channel to the broker is opened.

Settings not given in code come from the same environment variables that
basinctl reads, so a program written for a plaintext broker on loopback runs
unchanged against a secured one::

    BASIN_TLS=1            TLS, trusting the system's CAs (implied by the next ones)
    BASIN_CA=FILE          PEM CAs for the broker's certificate
    BASIN_CERT=FILE        client certificate, for mutual TLS (with BASIN_KEY)
    BASIN_KEY=FILE         its private key
    BASIN_SERVER_NAME=N    the name the broker's certificate carries, when the
                           address names the broker otherwise (e.g. by IP)
    BASIN_TOKEN=TOKEN      sent as ``authorization: Bearer TOKEN`` on every call
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import grpc

__all__ = ["TLS", "Security", "security_from", "open_channel", "open_aio_channel"]


class TLS:
    """TLS settings of a connection; files are PEM, read when the channel opens."""

    __slots__ = ("ca", "cert", "key", "server_name")

    def __init__(self, ca: Optional[str] = None, cert: Optional[str] = None,
                 key: Optional[str] = None, server_name: Optional[str] = None) -> None:
        if (cert is None) != (key is None):
            raise ValueError("a TLS client certificate needs its key, and a key its certificate")
        self.ca = ca  #: CAs to trust for the broker; None: the system's
        self.cert = cert  #: client certificate for mutual TLS
        self.key = key  #: its private key
        self.server_name = server_name  #: expected name in the broker's certificate

    def __repr__(self) -> str:
        return (f"TLS(ca={self.ca!r}, cert={self.cert!r}, key={self.key!r}, "
                f"server_name={self.server_name!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLS) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, s) for s in self.__slots__))


# (tls or None, token or None): what a connection is opened with.
Security = Tuple[Optional[TLS], Optional[str]]


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def security_from(tls: Union[TLS, bool, None] = None, token: Optional[str] = None) -> Security:
    """The settings given, each one not given taken from the environment."""
    if tls is None:
        ca, cert, key = _env("BASIN_CA"), _env("BASIN_CERT"), _env("BASIN_KEY")
        name = _env("BASIN_SERVER_NAME")
        flag = (_env("BASIN_TLS") or "0").lower() not in ("0", "false", "no")
        if flag or ca or cert or key or name:
            tls = TLS(ca, cert, key, name)
    elif tls is True:
        tls = TLS()
    elif tls is False:
        tls = None
    if token is None:
        token = _env("BASIN_TOKEN")
    if token is not None and (not token or any(not 0x21 <= ord(c) <= 0x7E for c in token)):
        # An HTTP/2 header value: anything else fails every call, later and vaguely.
        raise ValueError("a token is printable ASCII without spaces")
    return (tls if isinstance(tls, TLS) else None), token


def _read(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _credentials(tls: TLS, token: Optional[str]) -> Any:
    creds = grpc.ssl_channel_credentials(_read(tls.ca), _read(tls.key), _read(tls.cert))
    if token is not None:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(token))
    return creds


def _options(tls: Optional[TLS], options: Sequence[Tuple[str, Any]]) -> List[Tuple[str, Any]]:
    out = list(options)
    if tls is not None and tls.server_name:
        out.append(("grpc.ssl_target_name_override", tls.server_name))
    return out


# grpc ships no type hints: its base classes are Any to mypy.
class _Token(grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
             grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
             grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
             grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds the token on a plaintext channel, where gRPC's call credentials
    are never sent (a loopback broker, or one started with --allow-insecure)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", "Bearer " + token)

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ()) + [self._header]
        return _CallDetails(details, metadata)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any,
                               request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                               requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: Any) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def open_channel(address: str, security: Security,
                 options: Sequence[Tuple[str, Any]]) -> grpc.Channel:
    """A blocking-API channel to ``address`` with ``security``."""
    tls, token = security
    if tls is not None:
        return grpc.secure_channel(address, _credentials(tls, token), options=_options(tls, options))
    channel = grpc.insecure_channel(address, options=list(options))
    return channel if token is None else grpc.intercept_channel(channel, _Token(token))


class _AioToken(grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
                grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
                grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[misc]
                grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    """_Token for grpc.aio channels."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", "Bearer " + token)

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())), self._header)
        return details._replace(metadata=metadata)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation: Any, details: Any,
                                     request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(self, continuation: Any, details: Any,
                                      request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)


def open_aio_channel(address: str, security: Security,
                     options: Sequence[Tuple[str, Any]]) -> Any:
    """A grpc.aio channel to ``address`` with ``security``."""
    tls, token = security
    if tls is not None:
        return grpc.aio.secure_channel(address, _credentials(tls, token),
                                       options=_options(tls, options))
    interceptors = None if token is None else [_AioToken(token)]
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)
