"""An ASGI app served by uvicorn on a thread of the test process, on a port of its own.

The socket is bound to port 0 here and handed to uvicorn, so the kernel picks a port no
one holds and no other process can take it between the pick and the bind (picking a free
port first and letting uvicorn bind it later leaves that window open).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn


@contextmanager
def served(config: uvicorn.Config, what: str = "the app") -> Iterator[int]:
    """Serve `config`'s app (its host and port are ignored: loopback, port 0) until the
    block ends; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60  # bounds a hang only (a loaded machine starts slowly)
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail(f"uvicorn did not start {what} within 60 s")
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
