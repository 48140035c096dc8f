"""The backfill's wall time ends at its last output, the drift alerts of tools a
calibration held included (`bulk.runner`, `bulk.command`).

With the calibration processes (on with 2+ processes), a tool whose 30-day reference is
complete is held until its thresholds come back, and its drift calls are replayed then.
On a backlog that ends a few days after the references, the last input batch is committed
seconds before the calibration processes finish; the held tools' outputs come after
that. The `backfill done` line's events/s (what `benchmarks/throughput.py` reports as the
bulk rate) used to end at the last input batch, leaving those seconds out: its
"last job done X s after" read several seconds. It must read 0.0: the calibration
finished within the interval the rate covers. About 30-60 s of wall time on 2 cores.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import Scenario, simulate
from surveillance.stream import topics
from surveillance.stream.runner import WorkerProcess
from tests.test_pipeline_integration import PARTITIONS, send

pytestmark = pytest.mark.integration


def test_the_backfill_rate_covers_the_held_tools_outputs(tmp_path: Path) -> None:
    events, _ = simulate(days=36, seed=11, scenario=Scenario())
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        topics.create_topics(broker.bootstrap, topics.all_topics("surveillance", PARTITIONS))
        send(broker, events)
        runner = WorkerProcess(broker.bootstrap, tmp_path, command="backfill",
                               args=("--idle-seconds", "2", "--processes", "2")).start()
        assert runner.proc is not None and runner.proc.wait(timeout=600) == 0, (
            runner.log_tail())
        done = [ln for ln in runner.log_tail().splitlines() if ln.startswith("backfill done")]
    assert done, runner.log_tail()
    print(done[-1])
    # Not vacuous: the calibration processes had work (the references were complete).
    cpu = re.findall(r"the calibration process: ([\d.]+) s CPU in all", done[-1])
    assert cpu and sum(map(float, cpu)) > 0.1, done[-1]
    after = re.findall(r"its last job done ([\d.]+) s after the last output", done[-1])
    assert len(after) == len(cpu), done[-1]
    assert all(float(a) == 0.0 for a in after), done[-1]
