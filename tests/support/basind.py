"""The real basind as a child process, for the Python test suites
(tests/python, tests/ops): started on ephemeral ports, its addresses read from
the lines it prints."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Optional

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BASIND = os.environ.get("BASIN_BASIND", os.path.join(ROOT, "build", "broker", "basind"))
PREFIX = "basind listening on "
HTTP_PREFIX = "basind http on "


class Broker:
    """One basind process; ``restart()`` keeps its port and data directory."""

    def __init__(self, *flags: str, durable: bool = False) -> None:
        self.flags = list(flags)
        self.data_dir: Optional[str] = tempfile.mkdtemp(prefix="basin-py-") if durable else None
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.address = ""
        self.http_address = ""  # with --http-listen
        self.start()

    def start(self) -> None:
        quiet = [] if "--log-level" in self.flags else ["--log-level", "warn"]
        listen = [] if "--listen" in self.flags else ["--listen", f"127.0.0.1:{self.port}"]
        args = [BASIND, *listen, *quiet, *self.flags]
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
                    if any(f.startswith("--http-listen") for f in self.flags):
                        # Printed with the first in one write: already in the
                        # reader's buffer, where select() cannot see it.
                        line = self.proc.stdout.readline()
                        assert line.startswith(HTTP_PREFIX.encode()), line
                        self.http_address = line.decode().strip()[len(HTTP_PREFIX):]
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


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.01) -> bool:  # type: ignore[no-untyped-def]
    """Polls a condition on the broker (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
