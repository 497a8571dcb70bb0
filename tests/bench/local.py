# Benchmark 1: local end to end.  renderfs (local backend, workers 1 and 2)
# against one `blender -b FILE -s A -e B -a` over the same frames and
# against one Blender launch per frame (the original recipe), on the same
# scene, interleaved, best of ROUNDS.  renderfs is timed from the start of
# the drop to `state: done` in out/NAME/status (video = no).
import os
import shutil
import subprocess
import sqlite3
import sys
import time
import tempfile
from pathlib import Path

import benchlib as B

FRAMES = int(os.environ.get("BENCH_LOCAL_FRAMES", "24"))
# The scene's size and samples: tiny frames (the default) measure renderfs's
# fixed costs; larger ones (e.g. 320x240 and 24) how they amortise.
SIZE = os.environ.get("BENCH_LOCAL_SIZE", "64x48")
SAMPLES = int(os.environ.get("BENCH_LOCAL_SAMPLES", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def main():
    tmp = Path(tempfile.mkdtemp(prefix="rfs-bench-local-"))
    B.R.set_child_subreaper()
    mounts = []
    try:
        scene = tmp / "scene.blend"
        B.make_scene(scene, FRAMES, SIZE, SAMPLES)
        blend = B.R.get(scene)
        m1 = B.mount(tmp / "w1", workers=1)
        mounts.append(m1)
        m2 = B.mount(tmp / "w2", workers=2)
        mounts.append(m2)
        parts = {}
        best = {"rfs1": 1e9, "rfs2": 1e9, "single": 1e9, "perframe": 1e9}
        for rnd in range(ROUNDS):
            for key, m in (("rfs1", m1), ("rfs2", m2)):
                name = "r%d" % rnd
                w0 = time.time()
                t0 = B.now()
                m.drop(name, blend, "1-%d\nvideo = no\n" % FRAMES)
                m.wait_done(name, timeout=600)
                el = B.now() - t0
                mt = sorted(os.stat(m.job_dir(name) / f).st_mtime for f in m.frames(name))
                if key == "rfs1":
                    db = sqlite3.connect(str(m.state / "renderfs.db"))
                    try:
                        c, st, en = db.execute("SELECT created, started, ended FROM jobs WHERE name = ?",
                                               (name,)).fetchone()
                        (f0,) = db.execute("SELECT min(f.started) FROM frames f JOIN jobs j ON j.id = f.job"
                                           " WHERE j.name = ?", (name,)).fetchone()
                        timeline = ("drop->job accepted %.2fs, ->first lease %.2fs, ->first frame started "
                                    "(worker loaded) %.2fs, ->job done %.2fs"
                                    % (c / 1e3 - w0, st / 1e3 - c / 1e3, f0 / 1e3 - st / 1e3, en / 1e3 - f0 / 1e3))
                    finally:
                        db.close()
                if el < best[key]:
                    best[key] = el
                    parts[key] = (mt[0] - w0, (mt[-1] - mt[0]) / max(1, len(mt) - 1), w0 + el - mt[-1])
            out = tmp / ("single%d" % rnd)
            out.mkdir()
            t0 = B.now()
            subprocess.run(["blender", "-b", str(scene), "-o", str(out / "frame_####"), "-F", "PNG",
                            "-s", "1", "-e", str(FRAMES), "-a"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best["single"] = min(best["single"], B.now() - t0)
            out = tmp / ("perframe%d" % rnd)
            out.mkdir()
            t0 = B.now()
            for f in range(1, FRAMES + 1):
                subprocess.run(["blender", "-b", str(scene), "-o", str(out / "frame_####"), "-F", "PNG",
                                "-f", str(f)], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best["perframe"] = min(best["perframe"], B.now() - t0)
            n = len(os.listdir(out))
            assert n == FRAMES, "per-frame run made %d files" % n
            print("  round %d: renderfs w1 %.2fs, w2 %.2fs, blender -a %.2fs, per frame %.2fs (best so far)"
                  % (rnd + 1, best["rfs1"], best["rfs2"], best["single"], best["perframe"]), flush=True)
        print("  %d frames %s %d samples, best of %d: renderfs workers=1 %.2fs, workers=2 %.2fs, "
              "one blender -a %.2fs, one launch per frame %.2fs"
              % (FRAMES, SIZE, SAMPLES, ROUNDS, best["rfs1"], best["rfs2"], best["single"], best["perframe"]))
        print("  renderfs workers=1 timeline (last round, from the state database): " + timeline)
        for w in ("1", "2"):
            a, b, c = parts["rfs" + w]
            print("  renderfs workers=%s breakdown: drop to first frame file %.2fs, then %.0f ms per frame,"
                  " last frame to state done %.2fs" % (w, a, b * 1000, c))
        for w in ("1", "2"):
            v = best["rfs" + w]
            B.ratio_line("renderfs workers=%s / one blender -a" % w, v / best["single"], 1.05)
            B.ratio_line("renderfs workers=%s / one launch per frame" % w, v / best["perframe"], 0.7)
    finally:
        for m in mounts:
            try:
                m.stop()
            except AssertionError as e:
                print("  (unmount: %s)" % str(e).splitlines()[0])
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
