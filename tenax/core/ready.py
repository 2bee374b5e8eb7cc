"""``readable()``: which of some sockets or descriptors have something to read, with poll(2).

select(2) takes no descriptor numbered 1024 or more (``ValueError: filedescriptor out of range``),
and a long process can hold that many: every docker exec of a goal then failed. poll has no such
limit."""

from __future__ import annotations

import math
import select
from typing import Any, Iterable

_READ = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def readable(items: Iterable[Any], timeout: float | None) -> list[Any]:
    """The ``items`` (objects with ``fileno()``, or descriptors) ready to read (or at EOF, or in
    error) within ``timeout`` seconds (None: wait until one is)."""
    poller, by_fd = select.poll(), {}
    for item in items:
        fd = item if isinstance(item, int) else item.fileno()
        by_fd[fd] = item
        poller.register(fd, _READ)
    ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [by_fd[fd] for fd, _ in poller.poll(ms)]
