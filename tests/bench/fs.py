# Benchmark 3: the filesystem side.  A tiny job is rendered for real; then,
# with renderfs unmounted, its stored frame 1 is replaced by a 200 MB file
# and frames 3..10000 are added (a copy of frame 2 each, and a `done` row in
# the frames table with the file's size), the job's nframes set to 10000;
# renderfs is mounted again and serves that job.  Measured, interleaved
# with the native equivalent on the same file system:
#   - sequential read of the 200 MB frame (1 MiB reads) through the mount vs
#     the stored file directly, cold (echo 3 > drop_caches) and warm;
#   - `ls -l` of out/JOB (10,000 frames) vs a native directory of 10,000
#     files of the same size, cold and warm;
#   - reading out/JOB/status (open, read, close): median latency.
import os
import shutil
import sqlite3
import statistics
import time
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as B

NFILES = 10000
BIG = 200 * 1024 * 1024
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def read_all(path):
    buf = bytearray(1 << 20)
    n = 0
    t0 = B.now()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            k = os.readv(fd, [buf])
            if not k:
                break
            n += k
    finally:
        os.close(fd)
    return B.now() - t0, n


def ls(path):
    t0 = B.now()
    subprocess.run(["ls", "-l", str(path)], check=True, stdout=subprocess.DEVNULL)
    return B.now() - t0


def main():
    if os.geteuid() != 0:
        print("  fs: needs root (drop_caches); skipped")
        return 0
    base = Path(tempfile.mkdtemp(prefix="rfs-bench-fs-", dir="/var/tmp"))
    B.R.set_child_subreaper()
    m = None
    try:
        scene = base / "scene.blend"
        B.make_scene(scene, 2, "32x24", 2)
        m = B.mount(base / "m", workers=1)
        m.drop("big", B.R.get(scene), "1-2\nvideo = no\n")
        m.wait_done("big", timeout=120)
        m.stop()
        m_state = m.state
        db = sqlite3.connect(str(m_state / "renderfs.db"))
        (jid,) = db.execute("SELECT id FROM jobs WHERE name = 'big'").fetchone()
        frames = m_state / "jobs" / str(jid) / "frames"
        f1, f2 = frames / "frame_0001.png", frames / "frame_0002.png"
        with open(f1, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(BIG >> 20):
                f.write(chunk)
        small = f2.read_bytes()
        size2, mtime2 = db.execute("SELECT size, mtime FROM frames WHERE job = ? AND frame = 2",
                                   (jid,)).fetchone()
        native = base / "native"
        native.mkdir()
        for i in range(3, NFILES + 1):
            (frames / ("frame_%04d.png" % i)).write_bytes(small)
        for i in range(1, NFILES + 1):
            (native / ("frame_%04d.png" % i)).write_bytes(small)
        with db:
            db.execute("UPDATE frames SET size = ? WHERE job = ? AND frame = 1", (BIG, jid))
            db.executemany("INSERT INTO frames(job, frame, state, size, mtime, secs, attempts)"
                           " VALUES (?, ?, 'done', ?, ?, 0.1, 1)",
                           [(jid, i, size2, mtime2) for i in range(3, NFILES + 1)])
            db.execute("UPDATE jobs SET nframes = ?, sidecar = ? WHERE id = ?",
                       (NFILES, "1-%d\nvideo = no\n" % NFILES, jid))
        db.close()
        m.start()
        mf1 = m.job_dir("big") / "frame_0001.png"
        n = len(os.listdir(m.job_dir("big")))
        assert os.stat(mf1).st_size == BIG, "the mount does not show the 200 MB frame"
        print("  out/big lists %d entries; frame_0001.png is %d MB" % (n, BIG >> 20), flush=True)

        best = {}

        def keep(k, v):
            best[k] = min(best.get(k, 1e9), v)

        for _ in range(ROUNDS):
            for key, path in (("mnt", mf1), ("dir", f1)):
                B.drop_caches()
                t, got = read_all(path)
                assert got == BIG, "%s: read %d bytes" % (path, got)
                keep("read_cold_" + key, t)
                # Warm means every page cached: the first read after a cold
                # one may still miss pages through FUSE (readahead), so the
                # best of two reads counts, for both sides alike.
                for _ in range(2):
                    t, _ = read_all(path)
                    keep("read_warm_" + key, t)
            for key, path in (("mnt", m.job_dir("big")), ("dir", native)):
                B.drop_caches()
                keep("ls_cold_" + key, ls(path))
                for _ in range(3):
                    keep("ls_warm_" + key, ls(path))
        lat = []
        st = m.job_dir("big") / "status"
        for _ in range(300):
            t0 = B.now()
            with open(st, "rb") as f:
                f.read()
            lat.append(B.now() - t0)
        med = statistics.median(lat) * 1000
        # A status read after the 250 ms status cache has expired renders
        # afresh: that is what a first `cat` or a slow `watch` costs.
        fresh = []
        for _ in range(20):
            time.sleep(0.3)
            t0 = B.now()
            with open(st, "rb") as f:
                f.read()
            fresh.append(B.now() - t0)
        print("  status: first read after the cache expired, median %.2f ms"
              % (statistics.median(fresh) * 1000))
        slat = []
        for _ in range(300):
            t0 = B.now()
            os.stat(st)
            slat.append(B.now() - t0)
        print("  status: open+read+close median %.2f ms; stat() alone median %.2f ms"
              % (med, statistics.median(slat) * 1000))
        mb = BIG / 1e6
        print("  read 200 MB: cold %.0f MB/s mount vs %.0f MB/s direct; warm %.0f vs %.0f MB/s"
              % (mb / best["read_cold_mnt"], mb / best["read_cold_dir"], mb / best["read_warm_mnt"],
                 mb / best["read_warm_dir"]))
        print("  ls -l of 10,000 frames: cold %.3fs mount vs %.3fs native; warm %.3fs vs %.3fs"
              % (best["ls_cold_mnt"], best["ls_cold_dir"], best["ls_warm_mnt"], best["ls_warm_dir"]))
        B.ratio_line("read 200 MB, cold: mount / direct speed", best["read_cold_dir"] / best["read_cold_mnt"],
                     0.9, le=False)
        B.ratio_line("read 200 MB, warm: mount / direct speed", best["read_warm_dir"] / best["read_warm_mnt"],
                     0.9, le=False)
        B.ratio_line("ls -l 10,000 frames, cold: mount / native", best["ls_cold_mnt"] / best["ls_cold_dir"], 3)
        B.ratio_line("ls -l 10,000 frames, warm: mount / native", best["ls_warm_mnt"] / best["ls_warm_dir"], 1.5)
        B.ratio_line("cat status (10,000 frames), median ms", med, 5,
                     detail="p90 %.2f ms" % (sorted(lat)[int(len(lat) * 0.9)] * 1000))
        B.ratio_line("cat status (10,000 frames), fresh render, median ms", statistics.median(fresh) * 1000, 5)
    finally:
        if m is not None and m.daemon is not None:
            try:
                m.stop()
            except AssertionError as e:
                print("  (unmount: %s)" % str(e).splitlines()[0])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
