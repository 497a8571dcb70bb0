# Benchmark: frames fetched through a Samba share of the mount against the
# same files through a share of a plain directory (same smbd, same share
# settings from contrib/samba-renderfs.conf, loopback, smbclient).  A tiny
# job is rendered for real; with renderfs unmounted its frame 1 becomes a
# 200 MB file, and a second job gets NFILES small frames (copies of a real
# one, with `done` rows), as tests/bench/fs.py does.  Measured, interleaved
# in each round: `get` of the 200 MB frame, and `mget` of the NFILES-frame
# directory, each cold (drop_caches first) and warm.  Printed: the ratio
# of the best times (share of a plain directory / share of the mount: 1.0
# is as fast), with its range over the rounds.
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as B

sys.path.insert(0, str(B.REPO / "tests" / "integration"))
import sharelib as S  # noqa: E402

NFILES = int(os.environ.get("BENCH_SAMBA_FILES", "10000"))
BIG = 200 * 1024 * 1024
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
USER = "rfs_smb_bench"


def add_frames(state, job, frames, small):
    """Frames 2..frames of job become copies of its frame 2 (rows too)."""
    db = sqlite3.connect(str(state / "renderfs.db"))
    (jid,) = db.execute("SELECT id FROM jobs WHERE name = ?", (job,)).fetchone()
    d = state / "jobs" / str(jid) / "frames"
    size2, mtime2 = db.execute("SELECT size, mtime FROM frames WHERE job = ? AND frame = 2",
                               (jid,)).fetchone()
    for i in range(3, frames + 1):
        (d / ("frame_%04d.png" % i)).write_bytes(small)
    with db:
        db.executemany("INSERT INTO frames(job, frame, state, size, mtime, secs, attempts)"
                       " VALUES (?, ?, 'done', ?, ?, 0.1, 1)",
                       [(jid, i, size2, mtime2) for i in range(3, frames + 1)])
        db.execute("UPDATE jobs SET nframes = ?, sidecar = ? WHERE id = ?",
                   (frames, "1-%d\nvideo = no\n" % frames, jid))
    db.close()
    return d


def main():
    if os.geteuid() != 0:
        print("  samba: needs root (drop_caches, smbd, useradd); skipped")
        return 0
    if not S.have("smbd", "smbclient", "smbpasswd"):
        print("  samba: smbd or smbclient is not installed; skipped")
        return 0
    base = Path(tempfile.mkdtemp(prefix="rfs-bench-smb-", dir="/var/tmp"))
    B.R.set_child_subreaper()
    m = smb = None
    try:
        scene = base / "scene.blend"
        B.make_scene(scene, 2, "32x24", 2)
        m = B.mount(base / "m", workers=2)
        for job in ("big", "many"):
            m.drop(job, B.R.get(scene), "1-2\nvideo = no\n")
        for job in ("big", "many"):
            m.wait_done(job, timeout=120)
        m.stop()
        db = sqlite3.connect(str(m.state / "renderfs.db"))
        (bid,) = db.execute("SELECT id FROM jobs WHERE name = 'big'").fetchone()
        with db:
            db.execute("UPDATE frames SET size = ? WHERE job = ? AND frame = 1", (BIG, bid))
        db.close()
        big = m.state / "jobs" / str(bid) / "frames" / "frame_0001.png"
        chunk = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(BIG >> 20):
                f.write(chunk)
        small = (big.parent / "frame_0002.png").read_bytes()
        add_frames(m.state, "many", NFILES, small)
        # The plain directory: the same files, on the same file system.
        plain = base / "plain"
        (plain / "big").mkdir(parents=True)
        (plain / "many").mkdir()
        shutil.copyfile(big, plain / "big" / "frame_0001.png")
        for i in range(1, NFILES + 1):
            (plain / "many" / ("frame_%04d.png" % i)).write_bytes(small)
        m.start(opts=["allow_other"])
        assert os.stat(m.job_dir("big") / "frame_0001.png").st_size == BIG
        assert len(m.frames("many")) == NFILES, "the mount does not list %d frames" % NFILES

        glob, share = S.snippet_sections(S.SAMBA_SNIPPET, m.mnt, "farm")
        _, pshare = S.snippet_sections(S.SAMBA_SNIPPET, plain, "plain")
        force = "   force user = root\n"
        smb = S.Samba(base / "smb", {"farm": (m.mnt, share + force),
                                     "plain": (plain, pshare + force)},
                      users=[USER], global_extra=glob).start()
        paths = {"farm": "out", "plain": ""}
        dest = base / "got"
        runs = {}

        def fetch(share, what, cold):
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir()
            top = paths[share]
            if what == "big":
                cmds = ['get "%s/big/frame_0001.png" got/big.png' % top if top else
                        'get "big/frame_0001.png" got/big.png']
            else:
                cmds = ['cd "%s/many"' % top if top else 'cd many', "lcd got", "prompt off",
                        "mget frame_*"]
            if cold:
                B.drop_caches()
            t0 = B.now()
            smb.client(share, USER, cmds, timeout=900, cwd=str(base))
            t = B.now() - t0
            if what == "big":
                assert os.path.getsize(dest / "big.png") == BIG
            else:
                assert len(os.listdir(dest)) == NFILES
            return t

        for _ in range(ROUNDS):
            for what in ("big", "many"):
                for cold in (True, False):
                    key = (what, cold)
                    if not cold:
                        for share in ("farm", "plain"):
                            fetch(share, what, False)   # warm both caches
                    t_farm = fetch("farm", what, cold)
                    t_plain = fetch("plain", what, cold)
                    runs.setdefault(key, []).append((t_farm, t_plain))
        mb = BIG / 1e6
        for what, label in (("big", "get 200 MB frame"), ("many", "mget %d frames" % NFILES)):
            for cold in (True, False):
                r = runs[(what, cold)]
                best_f = min(t for t, _ in r)
                best_p = min(t for _, t in r)
                ratios = [p / f for f, p in r]
                speed = (" %.0f vs %.0f MB/s" % (mb / best_f, mb / best_p)) if what == "big" else \
                        (" %.2fs vs %.2fs" % (best_f, best_p))
                B.ratio_line("samba %s, %s: mount / plain speed" % (label, "cold" if cold else "warm"),
                             best_p / best_f, 0.9, le=False,
                             detail="range %.2f-%.2f over %d runs;%s" % (min(ratios), max(ratios),
                                                                        len(r), speed))
    finally:
        if smb is not None:
            smb.stop()
        if m is not None and m.daemon is not None:
            try:
                m.stop()
            except AssertionError as e:
                print("  (unmount: %s)" % str(e).splitlines()[0])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
