"""Fixtures for the Python SDK's tests: the real basind on an ephemeral port.

Run through ctest (tests/CMakeLists.txt), which sets BASIN_BASIND to the
built broker and PYTHONPATH to the build tree's copy of the package; by hand:

    PYTHONPATH=build/client/python BASIN_BASIND=build/broker/basind \\
        /usr/bin/python3 -m pytest tests/python
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Iterator, List, Optional

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BASIND = os.environ.get("BASIN_BASIND", os.path.join(ROOT, "build", "broker", "basind"))
PREFIX = "basind listening on "


class Broker:
    """One basind process; ``restart()`` keeps its port and data directory."""

    def __init__(self, *flags: str, durable: bool = False) -> None:
        self.flags = list(flags)
        self.data_dir: Optional[str] = tempfile.mkdtemp(prefix="basin-py-") if durable else None
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.address = ""
        self.start()

    def start(self) -> None:
        args = [BASIND, "--listen", f"127.0.0.1:{self.port}", "--log-level", "warn", *self.flags]
        if self.data_dir:
            args += ["--data-dir", self.data_dir]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(PREFIX.encode()):
                    self.address = line.decode().strip()[len(PREFIX):]
                    self.port = int(self.address.rsplit(":", 1)[1])
                    return
                if not line:
                    break
        raise RuntimeError(f"basind did not start: {line!r}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def close(self) -> None:
        self.stop()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A broker shared by one test module (tests use distinct queue names)."""
    b = Broker()
    yield b
    b.close()


@pytest.fixture
def fresh_broker() -> Iterator[Broker]:
    """A broker of the test's own."""
    b = Broker()
    yield b
    b.close()


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    """A broker with a data directory, for restarts."""
    b = Broker(durable=True)
    yield b
    b.close()


def unique(prefix: str) -> str:
    """A queue name no other test uses."""
    unique.n += 1  # type: ignore[attr-defined]
    return f"{prefix}-{os.getpid()}-{unique.n}"  # type: ignore[attr-defined]


unique.n = 0  # type: ignore[attr-defined]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.01) -> bool:  # type: ignore[no-untyped-def]
    """Polls a condition on the broker (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def no_basin_threads() -> bool:
    """True once no Producer, Consumer or PubSub thread of an earlier test is
    alive: gRPC skips its fork handlers while threads call into it, and a
    child forked then cannot use gRPC. Tests that fork wait for this."""
    import threading
    return wait_until(lambda: not any(t.name.startswith("basin-")
                                      for t in threading.enumerate()))


def run_python(args: List[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def, type-arg]
    """Runs a Python program with the same interpreter and PYTHONPATH."""
    import sys
    return subprocess.run([sys.executable, *args], **kwargs)
