"""The pre-seed's reading and SST writing spread over several processes.

Each table partition's database is independent, and a pre-seed is CPU-bound (decoding
the fetched records, keeping each key's last value, sorting and writing the SST file:
~16 us a record on this project's 2-core host, one core). So `store_preseed.preseed`
with `processes` above 1 deals the partitions to read round-robin (by topic, then
number: a topic's partitions are about equally large) over that many processes, started
fresh (`python -m surveillance.stream.preseed_processes`: the worker that needs them
already runs an event loop and threads, which a fork would copy half-way). Each reads
its partitions with its own consumer (`store_preseed.read`) and writes each run into an
SST file of its own (`<scratch>.<n>`, beside the database), then says so on its
standard output; this process, which holds the databases open (RocksDB allows one
writer), ingests each file it is told of, in the order written, with the run's offset
inside it.

Only a file whose process said it was finished is ingested, so a process killed
mid-write leaves a file nobody trusts: this process deletes every scratch file of its
partitions when the pre-seed ends however it ends, and the next start deletes any left
(`sst_runs.partition`). Every process dies with this one (`child_process`); one that
fails or dies makes the pre-seed fail (the others killed), each partition left as of its
last ingestion with that ingestion's offset, which is where Faust's recovery starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from surveillance.errors import SurveillanceError
from surveillance.stream import sst_runs, store_preseed
from surveillance.stream.sst_runs import Partition, Run


class PreseedProcessError(SurveillanceError):
    """A pre-seed process failed or died: the partitions it had left are Faust's."""


def deal(partitions: list[TopicPartition], processes: int) -> list[list[TopicPartition]]:
    """`partitions` round-robin over at most `processes` groups, none empty."""
    ordered = sorted(partitions)
    groups = min(processes, len(ordered))
    return [ordered[i::groups] for i in range(groups)]


async def read(targets: Mapping[TopicPartition, Partition], starts: Mapping[TopicPartition, int],
               ends: Mapping[TopicPartition, int], consumer_options: dict[str, Any],
               deadline: float | None, processes: int, done: store_preseed.Preseeded) -> None:
    """The partitions of `starts` read after those offsets by `processes` processes, their
    files ingested into `targets` as they come; said in `done`."""
    groups = deal(list(starts), processes)
    options = {k: v for k, v in consumer_options.items() if k != "ssl_context"}
    procs: list[asyncio.subprocess.Process] = []
    try:
        for group in groups:
            job = {"partitions": [[tp.topic, tp.partition, starts[tp], ends.get(tp),
                                   targets[tp].empty, str(targets[tp].scratch),
                                   targets[tp].offset_key.hex(), targets[tp].file_options]
                                  for tp in group],
                   "consumer_options": options, "tls": "ssl_context" in consumer_options,
                   "deadline": deadline, "batch_records": store_preseed.BATCH_RECORDS,
                   "run_bytes": sst_runs.RUN_BYTES}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, str(os.getpid()),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            procs.append(proc)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
        done.processes += len(procs)
        async with asyncio.TaskGroup() as group_tasks:
            for proc in procs:
                group_tasks.create_task(_follow(proc, targets, done))
    except BaseExceptionGroup as failed:  # the first failure, said plainly
        raise failed.exceptions[0] from None
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for target in targets.values():  # finished or not, none is trusted any more
            for left in sst_runs.scratch_files(target.scratch):
                left.unlink(missing_ok=True)


async def _follow(proc: asyncio.subprocess.Process, targets: Mapping[TopicPartition, Partition],
                  done: store_preseed.Preseeded) -> None:
    """Ingest each file `proc` finishes, in order, until it ends."""
    assert proc.stdout is not None
    ended = False
    async for line in proc.stdout:
        said = json.loads(line)
        if "file" in said:
            tp = TopicPartition(said["topic"], said["partition"])
            path = Path(said["file"])
            try:
                sst_runs.ingest(targets[tp], path)
            finally:
                path.unlink(missing_ok=True)
            key = tp.topic, tp.partition
            done.records[key] = done.records.get(key, 0) + said["records"]
            done.offsets[key] = said["offset"]
        else:
            ended = True
            done.unfinished |= {(t, p) for t, p in said["unfinished"]}
            done.cpu += said["cpu"]
            done.process_peak_rss = max(done.process_peak_rss, said["peak_rss"])
    code = await proc.wait()
    if code != 0 or not ended:
        raise PreseedProcessError(f"a pre-seed process (pid {proc.pid}) ended with exit "
                                  f"code {code} before it finished its partitions")


def _main(parent: int) -> None:
    """A pre-seed process: its job from standard input, what it wrote on the output."""
    from surveillance.child_process import die_with_parent

    die_with_parent(parent, 1)
    job = json.loads(sys.stdin.readline())
    store_preseed.BATCH_RECORDS = job["batch_records"]
    sst_runs.RUN_BYTES = job["run_bytes"]
    options = job["consumer_options"]
    if job["tls"]:
        from surveillance.kafka_clients import ssl_context
        from surveillance.settings import get_settings

        options["ssl_context"] = ssl_context(get_settings().kafka)
    starts, ends, files = {}, {}, {}
    for topic, number, start, end, empty, scratch, offset_key, store_options in job[
            "partitions"]:
        tp = TopicPartition(topic, number)
        starts[tp] = start
        if end is not None:
            ends[tp] = end
        files[tp] = _Files(Path(scratch), bytes.fromhex(offset_key),
                           sst_runs.file_options(store_options), empty)
    unfinished = asyncio.run(store_preseed.read(
        starts, options, ends, job["deadline"], lambda tp, run: files[tp].write(tp, run)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Not `ru_maxrss`: Linux carries the forking worker's over the exec.
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines() if ":" in line)
    _say({"unfinished": [[tp.topic, tp.partition] for tp in unfinished],
          "cpu": usage.ru_utime + usage.ru_stime,
          "peak_rss": int(status.get("VmHWM", "0 kB").split()[0]) * 1024})


class _Files:
    """A partition's runs, each written into the next scratch file and said."""

    def __init__(self, scratch: Path, offset_key: bytes, options: Any, empty: bool) -> None:
        self.scratch, self.offset_key, self.options, self.empty = (
            scratch, offset_key, options, empty)
        self.written = 0

    def write(self, tp: TopicPartition, run: Run) -> None:
        self.written += 1
        path = self.scratch.with_name(f"{self.scratch.name}.{self.written}")
        sst_runs.write_file(self.options, path, self.offset_key, run, self.empty)
        self.empty = False  # the next file goes above this one: its deletions count
        _say({"file": str(path), "topic": tp.topic, "partition": tp.partition,
              "offset": run.offset, "records": run.records})


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _main(int(sys.argv[1]))
