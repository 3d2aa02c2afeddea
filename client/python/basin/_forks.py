"""How many times this process's line has forked: objects that hold threads
(Producer, Consumer, PubSub) compare it with the count when they were made,
which is cheaper per call than os.getpid()."""

import os

count = 0


def _after_fork_in_child() -> None:
    global count
    count += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
