# Benchmark 5: the store and the policy with 1,000,000 queued frames and
# 500 slots (tests/bench/scale.c): decisions made by the runner's own
# functions (runner_pick_job, runner_lease_frame).
import os
import subprocess
import sys

import benchlib as B

EXE = B.REPO / "build" / "tests" / "bench_scale"


def run(env):
    out = subprocess.run([str(EXE)], env=env, check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            _, k, v = line.split()
            res[k] = float(v)
        else:
            print("  " + line)
    return res


def main():
    real = run(dict(os.environ))
    B.ratio_line("scale: decisions per second (renderfs's path)", real["decisions_per_s"], 10000, le=False)
    B.ratio_line("scale: peak memory, MB", real["maxrss_mb"], 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
