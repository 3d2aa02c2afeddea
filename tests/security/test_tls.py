"""TLS and mutual TLS on the gRPC listener: the handshake, refusals, and
certificates replaced under a running broker by SIGHUP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from typing import Any, Dict, Iterator

import grpc
import pytest

import basin
from basin.v1 import queue_pb2, queue_pb2_grpc
from conftest import BASIND, Broker, channel, wait_until


def tls_flags(tls: Dict[str, str], mutual: bool = False, cert: str = "server",
              key: str = "server.key") -> list:
    flags = ["--tls-cert", tls[cert], "--tls-key", tls[key]]
    return flags + (["--tls-client-ca", tls["ca"]] if mutual else [])


def list_queues(ch: grpc.Channel) -> queue_pb2.ListQueuesResponse:
    return queue_pb2_grpc.QueueServiceStub(ch).ListQueues(queue_pb2.ListQueuesRequest(),
                                                           timeout=10)


def served_subject(address: str, tls: Dict[str, str], client: str = "alice") -> str:
    """The common name of the certificate a new connection is served."""
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=tls["ca"])
    ctx.load_cert_chain(tls[client], tls[client + ".key"])
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            cert = s.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="basin-tls-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_tls_handshake_and_the_sdks_speak_it(tls: Dict[str, str]) -> None:
    b = Broker(*tls_flags(tls))
    try:
        assert len(list_queues(channel(b.address, tls)).queues) == 0
        client = basin.Client(b.address, tls=basin.TLS(ca=tls["ca"]))
        q = client.queue("over-tls", 2)
        q.put({"n": 1})
        assert q.get() == {"n": 1}
        q.task_done()
        # The name in the certificate (localhost) rather than the address's.
        named = basin.Client(b.address, tls=basin.TLS(ca=tls["ca"], server_name="localhost"))
        assert named.queue("over-tls").qsize() == 0
    finally:
        b.close()


def test_a_plaintext_client_to_a_tls_port_fails_cleanly(tls: Dict[str, str]) -> None:
    b = Broker(*tls_flags(tls))
    try:
        with pytest.raises(grpc.RpcError) as e:
            list_queues(channel(b.address))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(basin.Unavailable):
            basin.Client(b.address, tls=False).queue("x", 1)
        # ... and the broker goes on serving TLS.
        assert len(list_queues(channel(b.address, tls)).queues) == 0
    finally:
        b.close()


def test_a_client_that_does_not_trust_the_ca_fails(tls: Dict[str, str]) -> None:
    b = Broker(*tls_flags(tls))
    try:
        with pytest.raises(basin.Unavailable):
            basin.Client(b.address, tls=basin.TLS(ca=tls["other-ca"])).queue("x", 1)
    finally:
        b.close()


@pytest.mark.parametrize("client", [None, "expired", "stranger"])
def test_mutual_tls_refuses_a_missing_expired_or_foreign_certificate(
        tls: Dict[str, str], client: str) -> None:
    b = Broker(*tls_flags(tls, mutual=True))
    try:
        with pytest.raises(grpc.RpcError) as e:
            list_queues(channel(b.address, tls, client))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(list_queues(channel(b.address, tls, "alice")).queues) == 0
    finally:
        b.close()


def test_request_mode_takes_clients_with_or_without_a_certificate(tls: Dict[str, str]) -> None:
    b = Broker(*tls_flags(tls, mutual=True), "--tls-client-auth", "request")
    try:
        assert len(list_queues(channel(b.address, tls)).queues) == 0
        assert len(list_queues(channel(b.address, tls, "alice")).queues) == 0
        # A certificate that is sent must still verify.
        with pytest.raises(grpc.RpcError):
            list_queues(channel(b.address, tls, "stranger"))
    finally:
        b.close()


def test_sighup_serves_the_new_certificate_and_keeps_connections(
        tls: Dict[str, str], workdir: str) -> None:
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    shutil.copy(tls["server"], cert)
    shutil.copy(tls["server.key"], key)
    b = Broker("--tls-cert", cert, "--tls-key", key, "--tls-client-ca", tls["ca"])
    try:
        assert served_subject(b.address, tls) == "basin-test-server"
        old = channel(b.address, tls, "alice")
        stub = queue_pb2_grpc.QueueServiceStub(old)
        stub.CreateQueue(queue_pb2.CreateQueueRequest(name="kept"), timeout=10)
        # A blocked call on the old connection lives through the reload.
        waiting = stub.Get.future(queue_pb2.GetRequest(queue="kept"), timeout=30)
        shutil.copy(tls["server2"], cert)
        shutil.copy(tls["server2.key"], key)
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: served_subject(b.address, tls) == "basin-rotated-server")
        stub.Put(queue_pb2.PutRequest(queue="kept", payload=b"after"), timeout=10)
        assert waiting.result().message.payload == b"after"
        # A bad pair on SIGHUP: refused, and the last good one still served.
        shutil.copy(tls["server.key"], key)
        b.proc.send_signal(signal.SIGHUP)
        b.proc.send_signal(signal.SIGHUP)
        assert served_subject(b.address, tls) == "basin-rotated-server"
        assert list_queues(channel(b.address, tls, "alice")).queues[0].name == "kept"
    finally:
        b.close()


def refused(*args: str) -> str:
    p = subprocess.run([BASIND, *args], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0, p.stderr
    return p.stderr


def test_start_up_refuses_what_would_be_insecure_or_incomplete(tls: Dict[str, str]) -> None:
    assert "--allow-insecure" in refused("--listen", "0.0.0.0:0")
    assert "users" in refused("--listen", "0.0.0.0:0", *tls_flags(tls))
    assert "go together" in refused("--tls-cert", tls["server"])
    assert "--http-admin" in refused("--http-listen", "0.0.0.0:0", "--http-admin")
    assert "needs --tls-client-ca" in refused(*tls_flags(tls), "--tls-client-auth", "require")
    assert "not the key" in refused("--listen", "127.0.0.1:0", "--tls-cert", tls["server"],
                                    "--tls-key", tls["alice.key"])
    assert "cannot read" in refused("--tls-cert", "/nonexistent.pem", "--tls-key",
                                    tls["server.key"])


def test_non_loopback_starts_with_tls_and_required_client_certificates(
        tls: Dict[str, str]) -> None:
    b = Broker(*tls_flags(tls, mutual=True), "--listen", "0.0.0.0:0")
    try:
        port = b.address.rsplit(":", 1)[1]
        assert len(list_queues(channel(f"127.0.0.1:{port}", tls, "alice")).queues) == 0
    finally:
        b.close()


def test_the_environment_turns_on_tls_for_every_connection(tls: Dict[str, str],
                                                           monkeypatch: Any) -> None:
    import asyncio
    import basin.aio
    b = Broker(*tls_flags(tls, mutual=True))
    try:
        monkeypatch.setenv("BASIN_CA", tls["ca"])
        monkeypatch.setenv("BASIN_CERT", tls["alice"])
        monkeypatch.setenv("BASIN_KEY", tls["alice.key"])
        q = basin.JoinableQueue("env-tls", address=b.address)
        q.put(1)

        async def get() -> Any:
            return await basin.aio.Queue("env-tls", address=b.address).get()
        assert asyncio.run(get()) == 1
    finally:
        b.close()
