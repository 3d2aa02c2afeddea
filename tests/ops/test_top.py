"""`basinctl top` through a pseudo-terminal: frames redrawn in place with
ANSI escapes, rows that follow the broker, rates, a view cut to the
terminal's height, and Ctrl-C leaving the cursor visible."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
from typing import List

import basin
from conftest import BASIND, Broker, wait_until

BASINCTL = os.environ.get("BASIN_BASINCTL",
                          os.path.join(os.path.dirname(BASIND), "..", "client", "basinctl"))


class Top:
    """basinctl top on a pty of `rows` lines; collects what it draws."""

    def __init__(self, address: str, *args: str, rows: int = 40) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 160, 0, 0))
        self.proc = subprocess.Popen([BASINCTL, "--addr", address, "top", *args],
                                     stdout=slave, stderr=slave, stdin=slave)
        os.close(slave)
        self.output = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not data:
                return
            with self.lock:
                self.output += data

    def frames(self) -> List[str]:
        with self.lock:
            text = self.output.decode(errors="replace")
        return text.split("\x1b[H")[1:]

    def wait(self) -> int:
        code = self.proc.wait(60)
        self.reader.join(30)
        os.close(self.master)
        return code


def row(frame: str, name: str) -> List[str]:
    for line in frame.replace("\x1b[K", "").splitlines():
        if line.startswith(name + " "):
            return line.split()
    return []


def test_top_redraws_and_follows_the_broker() -> None:
    b = Broker()
    try:
        q = basin.JoinableQueue("top-jobs", address=b.address)
        q.put_many(range(7))
        basin.publish("top.events", "x", address=b.address)
        top = Top(b.address, "--interval", "200ms")
        assert wait_until(lambda: any(row(f, "top-jobs")[1:2] == ["7"] for f in top.frames()))
        q.put_many(range(50))
        assert wait_until(lambda: any(row(f, "top-jobs")[1:2] == ["57"] for f in top.frames()))
        # A frame after the put shows its rate, per second.
        assert any(float(row(f, "top-jobs")[4]) > 0 for f in top.frames()
                   if row(f, "top-jobs") and row(f, "top-jobs")[4] != "-")
        assert any(row(f, "top.events") for f in top.frames())
        assert top.proc.poll() is None
        top.proc.send_signal(signal.SIGINT)
        assert top.wait() == 0
        text = top.output.decode()
        assert text.startswith("\x1b[?25l") and text.endswith("\x1b[?25h")  # cursor hidden, then back
        assert "\x1b[H" in text and "\x1b[J" in text  # redrawn in place
    finally:
        b.close()


def test_top_fits_the_terminal() -> None:
    b = Broker()
    try:
        for i in range(30):
            basin.JoinableQueue(f"many-{i:02d}", address=b.address)
        top = Top(b.address, "--interval", "100ms", "--iterations", "2", rows=15)
        assert top.wait() == 0
        last = top.frames()[-1].replace("\x1b[K", "").replace("\x1b[J", "")
        lines = [line for line in last.splitlines() if line.strip()]
        assert len(lines) <= 15
        assert re.search(r"\.\.\. \d+ more queues", last), last
    finally:
        b.close()


def test_top_without_a_terminal_prints_plain_frames() -> None:
    b = Broker()
    try:
        basin.JoinableQueue("plain", address=b.address).put(1)
        r = subprocess.run([BASINCTL, "--addr", b.address, "top", "--iterations", "2",
                            "--interval", "100ms"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "\x1b" not in r.stdout
        assert r.stdout.count("QUEUE") == 2 and "plain" in r.stdout
    finally:
        b.close()


def test_top_says_when_the_broker_is_gone() -> None:
    b = Broker()
    address = b.address
    b.close()
    r = subprocess.run([BASINCTL, "--addr", address, "top", "--iterations", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "basinctl top:" in r.stderr
