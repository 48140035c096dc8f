"""The CLI's help and argument parsing import none of the heavy libraries: river's drift
package alone pulls in pandas and scikit-learn (~0.5 s of CPU and ~78 MiB of memory,
measured), and the engine numpy and scipy. Only a command that runs the engine (`worker`,
`backfill`) loads them, once, in its parent process: the backfill's forked processes share
them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("river", "sklearn", "pandas", "scipy", "numpy", "faust", "onnxruntime", "evidently")

PROBE = """
import json, sys
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
from surveillance.cli import main
sys.argv = ["surveillance", *args]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["backfill", "--help"], ["worker", "--help"],
                                  ["hl7", "listen", "--help"], ["dicom", "listen", "--help"]])
def test_help_loads_no_heavy_library(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "Usage" in done.stdout
    assert loaded == [], f"`surveillance {' '.join(args)}` imported {loaded}"
