"""The CLI's help and argument parsing import none of the heavy libraries: river's drift
package alone pulls in pandas and scikit-learn (~0.5 s of CPU and ~78 MiB of memory,
measured), and the engine numpy and scipy. Only a command that runs the engine (`worker`,
`backfill`) loads them, once, in its parent process: the backfill's forked processes share
them. The engine itself takes river's detectors without the `river.drift` package (whose
sample datasets pull in scikit-learn and pandas): `stats.numeric_drift`.
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


ENGINE_PROBE = """
import json, sys
import surveillance.bulk.runner, surveillance.stream.app
loaded = sorted(m for m in ("sklearn", "pandas", "river.datasets", "river.drift")
                if m in sys.modules)
from river import drift
from surveillance.stats.numeric_drift import drift as ours
print(json.dumps([loaded, [getattr(ours, n) is getattr(drift, n)
                           for n in ("ADWIN", "KSWIN", "PageHinkley")]]))
"""


def test_the_engine_loads_rivers_detectors_without_scikit_learn_or_pandas() -> None:
    """The worker's and the backfill's modules leave river's datasets, scikit-learn and
    pandas unloaded; a later `from river import drift` (a test, another library) gives the
    very classes the engine uses."""
    done = subprocess.run([sys.executable, "-c", ENGINE_PROBE], capture_output=True,
                          text=True, timeout=120, check=True)
    loaded, same = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the engine's modules imported {loaded}"
    assert same == [True, True, True]


FALLBACK_PROBE = """
import json, sys
from surveillance.stats.numeric_drift import _river_drift_module
before = "river.drift.binary" in sys.modules
binary = _river_drift_module("binary")
print(json.dumps([before, binary is sys.modules["river.drift.binary"],
                  "river.drift" in sys.modules, hasattr(binary, "DDM")]))
"""


def test_a_detector_module_not_where_river_used_to_keep_it_is_imported_as_usual() -> None:
    """`river.drift.binary` is a package, not a file beside the detectors: the loader
    falls back to the ordinary import, the package's `__init__` with it (river's layout
    may change between releases). In a fresh interpreter: in this one, another test's
    `from river import drift` may have imported it already."""
    done = subprocess.run([sys.executable, "-c", FALLBACK_PROBE], capture_output=True,
                          text=True, timeout=120, check=True)
    before, registered, package, has_ddm = json.loads(done.stdout.strip().splitlines()[-1])
    assert not before
    assert registered and package and has_ddm
