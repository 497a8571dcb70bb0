# State survives crashes and unmounts (product.md "Command line" and "Bad
# input and failures"): killing renderfs at any moment and mounting the same
# state again loses no finished frame and renders no finished frame twice.

import os

import pytest

import rfslib as R
from rfslib import get

pytestmark = pytest.mark.deadline(150)

N = 16


def frames(n):
    return ["frame_%04d.png" % i for i in range(1, n + 1)]


def log_mtimes(mnt, job, names):
    out = {}
    for n in names:
        p = mnt.job_dir(job) / "logs" / (n.rsplit(".", 1)[0] + ".log")
        out[n] = os.stat(p).st_mtime_ns
    return out


def check_resumed(mnt, before, logs_before):
    s = mnt.wait_done("long", timeout=90)
    assert mnt.frames("long") == frames(N)
    after = mnt.snapshot("long")
    for n, v in before.items():
        assert after[n] == v, "%s changed across the restart (bytes or mtime): %s -> %s" % (
            n, v, after[n])
    logs_after = log_mtimes(mnt, "long", before)
    for n, t in logs_before.items():
        assert logs_after[n] == t, "%s was rendered again after the restart" % n
    assert int(s["frames"]) == N and int(s["done"]) == N and int(s["failed"]) == 0, s
    v = R.ffprobe(mnt.job_dir("long") / "long.mp4")
    assert v == {"codec_name": "h264", "pix_fmt": "yuv420p", "nb_read_frames": N}
    return s


def test_sigkill_mid_render_then_remount(mnt, scenes):
    mnt.drop("long", scenes.bytes("slow"), "1-%d\n" % N)
    mnt.wait_count("long", 3, timeout=60)
    before = mnt.snapshot("long")
    logs_before = log_mtimes(mnt, "long", before)
    assert len(before) >= 3 and len(before) < N, "job finished too early to test a crash"
    mnt.crash()                                   # SIGKILL + fusermount3 -uz
    assert not R.mounted(mnt.mnt)
    mnt.start()
    # The finished frames are there straight away, untouched.
    now = mnt.snapshot("long")
    for n, v in before.items():
        assert now.get(n) == v, "%s lost or changed by the crash" % n
    check_resumed(mnt, before, logs_before)


def test_clean_unmount_mid_job_then_remount(mnt, scenes):
    mnt.drop("long", scenes.bytes("slow"), "1-%d\n" % N)
    mnt.wait_count("long", 2, timeout=60)
    mnt.stop()                                    # must exit 0, leave no Blender
    mnt.start()
    before = mnt.snapshot("long")
    logs_before = log_mtimes(mnt, "long", before)
    assert len(before) >= 2
    check_resumed(mnt, before, logs_before)
    snap = mnt.snapshot("long")
    video = get(mnt.job_dir("long") / "long.mp4")

    # A finished job is still there, unchanged, after another remount.
    mnt.stop()
    mnt.start()
    s = mnt.status("long")
    assert s["state"] == "done" and int(s["done"]) == N, s
    assert mnt.snapshot("long") == snap
    assert get(mnt.job_dir("long") / "long.mp4") == video
    assert "long" in mnt.status_text()
