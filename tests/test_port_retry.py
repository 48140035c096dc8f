"""`start_with_port_retry`, the one retry of the embedded broker, PostgreSQL and the
tests' TLS broker when the port picked was taken first: how many starts, what is stopped
and re-picked, and the error after the last attempt. (The servers themselves, with a real
stranger on the port: tests/test_embedded_ports.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveillance.embedded import EmbeddedError
from surveillance.embedded.ports import START_ATTEMPTS, PortTaken, start_with_port_retry


class Server:
    """Taken `losses` times, then up; records what the retry did to it."""

    def __init__(self, losses: int) -> None:
        self.losses, self.port = losses, 1000
        self.calls: list[str] = []

    def start(self) -> str:
        self.calls.append(f"start {self.port}")
        if self.losses:
            self.losses -= 1
            raise PortTaken
        return f"up on {self.port}"

    def stop(self) -> None:
        self.calls.append("stop")

    def repick(self) -> None:
        self.port += 1

    def retry(self, attempts: int, movable: bool = True) -> str:
        return start_with_port_retry("the server", self.start, self.stop,
                                     lambda: f"port {self.port}",
                                     self.repick if movable else None, attempts)


@given(losses=st.integers(0, 8), attempts=st.integers(1, 8))
def test_a_server_starts_on_a_fresh_port_after_each_loss_until_the_attempts_run_out(
        losses: int, attempts: int) -> None:
    server = Server(losses)
    if losses < attempts:
        assert server.retry(attempts) == f"up on {1000 + losses}"
    else:
        with pytest.raises(EmbeddedError) as raised:
            server.retry(attempts)
        assert str(raised.value) == (
            f"the server could not listen: another process took the port picked {attempts} "
            f"times in a row (last port {999 + attempts}); look for a process binding every "
            "free loopback port, then start again")
    # Each loss is stopped (the half-started process) before the next pick.
    expected = []
    for n in range(min(losses + 1, attempts)):
        expected += [f"start {1000 + n}"] + (["stop"] if n < losses else [])
    assert server.calls == expected


def test_a_given_port_that_is_taken_is_final_and_says_which() -> None:
    server = Server(1)
    with pytest.raises(EmbeddedError, match=r"^port 1000 is taken by another process; "
                       "the server cannot listen there: stop that process or choose another"):
        server.retry(START_ATTEMPTS, movable=False)
    assert server.calls == ["start 1000", "stop"]


def test_other_start_errors_are_not_retried() -> None:
    calls: list[str] = []

    def start() -> None:
        calls.append("start")
        raise EmbeddedError("the server exited at start (code 1)")

    with pytest.raises(EmbeddedError, match="exited at start"):
        start_with_port_retry("the server", start, lambda: None, lambda: "port 1",
                              lambda: None)
    assert calls == ["start"]


def test_no_attempt_is_an_error() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        Server(0).retry(0)
