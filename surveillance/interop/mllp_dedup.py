"""Which MLLP messages were already taken: one write per sending facility + MSH-10.

A duplicate of a message already ACKed AA is answered AA with nothing written; a
duplicate of one still being written waits for it and gets its answer (AA, or AE if the
broker did not confirm: then both are resent and handled anew). `Dedup` keeps that in
the listener's process; `mllp_shared.SharedDedup` asks the one coordinator that several
listener processes on the same port share.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from surveillance.interop.hl7_ack import AckCode

#: Called by the store when the caller is the one to write: write, then `settle(code)`.
Deliver = Callable[[Callable[[AckCode], None]], None]
#: Called once per message with the final code and whether the message was a duplicate.
Answered = Callable[[AckCode, bool], None]


class DedupStore(Protocol):
    def once(self, key: str, deliver: Deliver, answered: Answered) -> None: ...


class Dedup:
    """In one process: the last `remembered` keys ACKed AA, and the keys being written."""

    def __init__(self, remembered: int = 200_000) -> None:
        self._remembered = remembered
        self._done: OrderedDict[str, None] = OrderedDict()
        self._writing: dict[str, list[Callable[[AckCode], None]]] = {}

    def once(self, key: str, deliver: Deliver, answered: Answered) -> None:
        if key in self._done:
            self._done.move_to_end(key)
            answered("AA", True)
            return
        waiting = self._writing.get(key)
        if waiting is not None:
            waiting.append(lambda code: answered(code, True))
            return
        self._writing[key] = []

        def settle(code: AckCode) -> None:
            waiters = self._writing.pop(key)
            if code == "AA":
                self.remember(key)
            answered(code, False)
            for waiter in waiters:
                waiter(code)

        try:
            deliver(settle)
        except BaseException:
            settle("AE")  # else the key would stay "being written" and its resends wait
            raise

    def remember(self, key: str) -> None:
        self._done[key] = None
        if len(self._done) > self._remembered:
            self._done.popitem(last=False)

    def claim(self, key: str) -> AckCode | None:
        """For a coordinator: "AA" if the key is done, None if it is free (and now
        claimed). A key being written must be checked with `writing` first."""
        if key in self._done:
            self._done.move_to_end(key)
            return "AA"
        self._writing[key] = []
        return None

    def writing(self, key: str) -> list[Callable[[AckCode], None]] | None:
        return self._writing.get(key)

    def settle(self, key: str, code: AckCode) -> list[Callable[[AckCode], None]]:
        """For a coordinator: the key's write ended; its waiters, to be told the code."""
        waiters = self._writing.pop(key, [])
        if code == "AA":
            self.remember(key)
        return waiters
