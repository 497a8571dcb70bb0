# Shared helpers for the benchmarks in tests/bench (see docs/benchmarks.md).
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import rfslib as R  # noqa: E402

RESULTS = []


def ratio_line(name, value, target, le=True, detail=""):
    """Print one measured ratio with its target and PASS/MISS."""
    ok = value <= target if le else value >= target
    verdict = "PASS" if ok else "MISS"
    cmp = "<=" if le else ">="
    line = "  %-44s %8.3f   target %s %-6g %s" % (name, value, cmp, target, verdict)
    if detail:
        line += "   (%s)" % detail
    print(line, flush=True)
    RESULTS.append((name, value, ok))
    return ok


def make_scene(out, frames, size, samples):
    subprocess.run(["blender", "-b", "--factory-startup", "-Y", "--python",
                    str(REPO / "contrib" / "make_scene.py"), "--", str(out),
                    "--frames", str(frames), "--size", size, "--samples", str(samples)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def mount(base, workers=2, extra=""):
    conf = ("[renderfs]\nbackend = local\nquiet = %s\n%s"
            "[local]\nblender = blender\nworkers = %d\n" % (R.QUIET_OPT, extra, workers))
    m = R.Mount(base, R.renderfs_bin(), conf)
    m.start()
    return m


def now():
    return time.monotonic()
