# Controlling jobs, per product.md "queue/" and "out/JOB/": cancel by removing
# the .blend, the control file's commands and their EBUSY/EINVAL answers,
# removal rules under out/ (EBUSY while the job lives) and out/ being
# read-only otherwise (EROFS or EACCES).
#
# Jobs that must still be running when the test acts use the "slow" scene
# (320x240, 24 samples: about half a second a frame on 2 cores).

import errno
import os
import subprocess
import time

import pytest

import rfslib as R
from rfslib import get, put, wait_for

pytestmark = pytest.mark.deadline(120)

READONLY = (errno.EROFS, errno.EACCES)
E = errno.errorcode


def expect_errno(fn, allowed, what):
    try:
        fn()
    except OSError as e:
        assert e.errno in allowed, "%s: got %s, want %s" % (
            what, E.get(e.errno, e.errno), "/".join(E[a] for a in allowed))
        return
    raise AssertionError("%s: succeeded, want %s" % (what, "/".join(E[a] for a in allowed)))


def ctl(mnt, job, cmd, want):
    got = mnt.control(job, cmd)
    assert got == want, "control %r on a %s job: got %s, want %s" % (
        cmd, mnt.status(job).get("state"), E.get(got, got) if got else "success",
        E.get(want, want) if want else "success")


def start_slow(mnt, scenes, name="long", frames="1-60", extra=""):
    mnt.drop(name, scenes.bytes("slow"), "%s\nvideo = no\n%s" % (frames, extra))
    return mnt.wait_count(name, 1, timeout=60)


def test_cancel_by_removing_the_blend(mnt, scenes):
    start_slow(mnt, scenes)
    mnt.wait_count("long", 2)
    before = mnt.snapshot("long")
    os.unlink(mnt.queue / "long.blend")
    s = mnt.wait_state("long", R.TERMINAL, timeout=20)
    assert s["state"] == "cancelled", mnt.status_text("long")
    assert int(s["done"]) < 60
    after = mnt.snapshot("long")
    for n, v in before.items():
        assert after.get(n) == v, "frame %s changed or vanished after cancel" % n
    # Frames in flight are stopped: nothing lands after the state says cancelled.
    time.sleep(2.5)
    assert mnt.snapshot("long") == after, "frames kept landing after the job was cancelled"
    s = mnt.status("long")
    assert s["state"] == "cancelled" and int(s["rendering"]) == 0, s
    wait_for(lambda: [n for n in os.listdir(mnt.queue) if n.startswith("long.")] == [], 10,
             "long.range to leave queue/ after cancel")
    wait_for(lambda: mnt.blender_children() == [], 10,
             "Blender rendering the cancelled job to stop")


def test_pause_resume_cancel(mnt, scenes):
    start_slow(mnt, scenes)
    ctl(mnt, "long", "resume", errno.EBUSY)           # not paused
    ctl(mnt, "long", "retry-failed", errno.EBUSY)     # not ended
    ctl(mnt, "long", "explode", errno.EINVAL)
    ctl(mnt, "long", "pause", 0)
    mnt.wait_state("long", "paused", timeout=10)
    ctl(mnt, "long", "pause", errno.EBUSY)            # already paused
    # In-flight frames finish, then nothing new starts.
    s = wait_for(lambda: (lambda s: s if int(s["rendering"]) == 0 else None)(mnt.status("long")),
                 30, "in-flight frames to finish after pause")
    assert s["state"] == "paused", s
    done, frames = int(s["done"]), mnt.frames("long")
    time.sleep(3)                                     # about 6 frames' time
    s = mnt.status("long")
    assert s["state"] == "paused", s
    assert int(s["done"]) == done and mnt.frames("long") == frames, \
        "frames kept rendering while paused: %d -> %s" % (done, s["done"])
    ctl(mnt, "long", "resume", 0)
    mnt.wait_count("long", done + 1, timeout=30)
    assert mnt.status("long")["state"] in ("rendering", "provisioning", "waiting")
    ctl(mnt, "long", "cancel", 0)
    s = mnt.wait_state("long", R.TERMINAL, timeout=20)
    assert s["state"] == "cancelled", s
    for cmd in ("cancel", "pause", "resume", "retry-failed"):
        ctl(mnt, "long", cmd, errno.EBUSY)
    ctl(mnt, "long", "explode", errno.EINVAL)


def test_commands_on_a_done_job(mnt, scenes):
    mnt.drop("quick", scenes.plain, "1-2\nvideo = no\n")
    mnt.wait_done("quick")
    for cmd in ("cancel", "pause", "resume", "retry-failed"):
        ctl(mnt, "quick", cmd, errno.EBUSY)
    for cmd in ("explode", "cancel now", "pause;rm -rf /"):
        ctl(mnt, "quick", cmd, errno.EINVAL)
    assert mnt.status("quick")["state"] == "done"


FAKE_BLENDER = r"""#!/bin/sh
# Real Blender, but while %(flag)s exists every render fails the way a scene
# with denoising does on this Blender (a real per-frame failure).
exec %(blender)s --python-expr "import bpy, os
@bpy.app.handlers.persistent
def _rfs_test_break(*a):
    on = os.path.exists('%(flag)s')
    for s in bpy.data.scenes:
        s.cycles.use_denoising = on
bpy.app.handlers.load_post.append(_rfs_test_break)
bpy.app.handlers.render_pre.append(_rfs_test_break)" "$@"
"""


def test_retry_failed(rfs, scenes, tmp_path):
    import shutil
    flag = tmp_path / "FAIL"
    fake = tmp_path / "fake-blender"
    put(fake, FAKE_BLENDER % {"flag": flag, "blender": shutil.which("blender")})
    os.chmod(fake, 0o755)
    put(flag, "")
    mnt = rfs(opts=["local.blender=%s" % fake])
    mnt.drop("rf", scenes.plain, "1-3\nretries = 0\n")
    s = mnt.wait_state("rf", R.TERMINAL, timeout=60)
    assert s["state"] == "failed", mnt.status_text("rf")
    assert R.parse_frame_list(s["missing"]) == {1, 2, 3}
    wait_for(lambda: [n for n in os.listdir(mnt.queue) if n.startswith("rf.")] == [], 10,
             "rf.* to leave queue/ after the job failed")
    ctl(mnt, "rf", "pause", errno.EBUSY)
    ctl(mnt, "rf", "resume", errno.EBUSY)
    os.unlink(flag)                                   # the cause is fixed
    ctl(mnt, "rf", "retry-failed", 0)
    wait_for(lambda: (lambda s: s["state"] != "failed" or int(s["done"]) > 0)(mnt.status("rf")),
             10, "the job to run again after retry-failed")
    s = mnt.wait_done("rf")
    assert mnt.frames("rf") == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert int(s["done"]) == 3 and int(s["failed"]) == 0, s
    assert "missing" not in s, s
    assert R.ffprobe(mnt.job_dir("rf") / "rf.mp4")["nb_read_frames"] == 3
    ctl(mnt, "rf", "retry-failed", errno.EBUSY)      # nothing failed any more


def test_retry_failed_runs_the_frames_again(mnt, scenes):
    mnt.drop("dn", scenes.bytes("denoise"), "1-2\nretries = 0\nvideo = no\n")
    s = mnt.wait_state("dn", R.TERMINAL, timeout=60)
    assert s["state"] == "failed", s
    log = mnt.job_dir("dn") / "logs" / "frame_0001.log"
    before = os.stat(log).st_mtime_ns
    time.sleep(0.05)
    ctl(mnt, "dn", "retry-failed", 0)
    wait_for(lambda: os.stat(log).st_mtime_ns != before, 30, "frame 1 to be attempted again")
    s = mnt.wait_state("dn", R.TERMINAL, timeout=60)
    assert s["state"] == "failed" and R.parse_frame_list(s["missing"]) == {1, 2}, s


def test_remove_job_dir_busy_while_running(mnt, scenes):
    start_slow(mnt, scenes)
    jd = mnt.job_dir("long")
    before = mnt.snapshot("long")
    first = sorted(before)[0]
    r = subprocess.run(["rm", "-rf", str(jd)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "rm -r of a running job's dir succeeded"
    expect_errno(lambda: os.unlink(jd / first), (errno.EBUSY,), "unlink a running job's frame")
    expect_errno(lambda: os.rmdir(jd), (errno.EBUSY,), "rmdir a running job's dir")
    after = mnt.snapshot("long")
    for n, v in before.items():
        assert after.get(n) == v, "%s removed or changed by a refused rm -r" % n
    for n in ("status", "status.json", "control", "logs"):
        assert (jd / n).exists(), "%s removed by a refused rm -r" % n
    assert sorted(os.listdir(jd / "logs"))
    ctl(mnt, "long", "cancel", 0)
    mnt.wait_state("long", "cancelled", timeout=20)
    r = subprocess.run(["rm", "-r", str(jd)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "rm -r of a cancelled job failed: %s" % r.stderr
    assert not jd.exists() and "long" not in os.listdir(mnt.out)

    # An ended (done) job: single frames, then the whole directory.
    mnt.drop("quick", scenes.plain, "1-2\n")
    mnt.wait_done("quick")
    qd = mnt.job_dir("quick")
    os.unlink(qd / "frame_0001.png")
    assert mnt.frames("quick") == ["frame_0002.png"]
    r = subprocess.run(["rm", "-r", str(qd)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "rm -r of a done job failed: %s" % r.stderr
    assert os.listdir(mnt.out) == []


def test_out_is_read_only(mnt, scenes):
    mnt.drop("ro", scenes.plain, "1-2\nvideo = no\n")
    mnt.wait_done("ro")
    jd = mnt.job_dir("ro")
    frame = jd / "frame_0001.png"
    snap = mnt.snapshot("ro")
    put(mnt.queue / "note.txt", "x")

    def create(p):
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

    def write_existing(p):
        fd = os.open(p, os.O_WRONLY)
        try:
            os.write(fd, b"overwritten")
        finally:
            os.close(fd)

    checks = [
        ("create out/new", lambda: create(mnt.out / "new")),
        ("mkdir out/newjob", lambda: os.mkdir(mnt.out / "newjob")),
        ("create out/JOB/frame_0003.png", lambda: create(jd / "frame_0003.png")),
        ("mkdir out/JOB/logs/x", lambda: os.mkdir(jd / "logs" / "x")),
        ("write a frame", lambda: write_existing(frame)),
        ("truncate a frame", lambda: os.truncate(frame, 0)),
        ("write status", lambda: write_existing(jd / "status")),
        ("rename a frame", lambda: os.rename(frame, jd / "frame_0009.png")),
        ("rename a job dir", lambda: os.rename(jd, mnt.out / "other")),
        ("rename queue file into out", lambda: os.rename(mnt.queue / "note.txt", jd / "note.txt")),
        ("symlink in out/JOB", lambda: os.symlink("frame_0001.png", jd / "link.png")),
    ]
    wrong = []
    for what, fn in checks:
        try:
            expect_errno(fn, READONLY, what)
        except AssertionError as e:
            wrong.append(str(e))
    assert not wrong, "\n".join(wrong)
    assert mnt.snapshot("ro") == snap
    assert sorted(os.listdir(mnt.out)) == ["ro"]
    assert get(mnt.queue / "note.txt") == b"x"
