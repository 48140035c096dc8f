"""Loopback ports for servers started as subprocesses, and the one retry when the port
picked is taken before the server binds it.

A server that cannot bind port 0 and report its port (Tansu advertises its port to
clients; PostgreSQL's port is in its URL) gets a port picked first; another process may
bind it in between. The server's start then raises `PortTaken` (its process exited on
the bind error, or a stranger of the same kind answers on the port), and
`start_with_port_retry` starts it again on fresh ports, a bounded number of times.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TypeVar

from surveillance.embedded.errors import EmbeddedError

log = logging.getLogger(__name__)

#: Starts in all, the first included: five losses of a fresh port in a row mean something
#: on the machine takes every port picked, not a race.
START_ATTEMPTS = 5

T = TypeVar("T")


class PortTaken(Exception):
    """The port picked was bound by another process before the server could bind it."""


def free_port() -> int:
    """A loopback port free now. Another process may take it before the caller binds it:
    a server that can bind port 0 itself should (and report its port); else its start
    must notice the port taken (`start_with_port_retry`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_with_port_retry(
    what: str,
    start: Callable[[], T],
    stop: Callable[[], None],
    ports: Callable[[], str],
    repick: Callable[[], None] | None,
    attempts: int = START_ATTEMPTS,
) -> T:
    """`start()` until it does not raise `PortTaken`, at most `attempts` times; after each
    `PortTaken`, `stop()` what it started and `repick()` its ports. `repick` None: the
    ports were given (or already served on), so the first `PortTaken` is final.

    The `EmbeddedError` after the last attempt names `what` and `ports()` (the ports tried
    last) and says what to do.
    """
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except PortTaken:
            stop()
            if repick is None:
                raise EmbeddedError(
                    f"{ports()} is taken by another process; {what} cannot listen there: "
                    "stop that process or choose another port") from None
            if attempt == attempts:
                raise EmbeddedError(
                    f"{what} could not listen: another process took the port picked "
                    f"{attempts} times in a row (last {ports()}); look for a process "
                    "binding every free loopback port, then start again") from None
            log.info("%s was taken before %s bound it; trying another", ports(), what)
            repick()
    raise ValueError(f"attempts must be at least 1, got {attempts}")
