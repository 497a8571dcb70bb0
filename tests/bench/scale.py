# Benchmark 5: the store and the policy with 1,000,000 queued frames and
# 500 slots (tests/bench/scale.c), renderfs's own path, then the same
# decisions with a statement cache (the proposed fix) for comparison.
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
    env = dict(os.environ)
    env.pop("SCALE_CACHED", None)
    real = run(env)
    B.ratio_line("scale: decisions per second (renderfs's path)", real["decisions_per_s"], 10000, le=False)
    B.ratio_line("scale: peak memory, MB", real["maxrss_mb"], 200)
    env["SCALE_CACHED"] = "1"
    prop = run(env)
    print("  proposed (cached statements + RETURNING): %.0f decisions/s, %.2fx renderfs's path"
          % (prop["decisions_per_s"], prop["decisions_per_s"] / real["decisions_per_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
