# Rendering through the mount: frames, video, status files, and the ways a
# drop can arrive in queue/ (cp, rsync-style temp+rename, editors, file
# managers), per product.md "queue/", "out/JOB/" and "status files".

import os
import re
import time

import pytest

import rfslib as R
from rfslib import get, put, wait_for

pytestmark = pytest.mark.deadline(90)

W, H = 32, 24                     # the plain scene's size
ZERO_MONEY = re.compile(r"^\$0\.00(00)?$")
ZERO_RATE = re.compile(r"^\$0\.00(00)?/h$")


def frame_names(numbers, ext="png"):
    return ["frame_%04d.%s" % (n, ext) for n in numbers]


def no_video(mnt, job):
    return [n for n in os.listdir(mnt.job_dir(job)) if n.endswith(".mp4")] == []


def queue_names(mnt):
    return sorted(os.listdir(mnt.queue))


def test_happy_path(mnt, scenes, blender_version):
    mnt.drop("shot", scenes.plain, "1-9x2,12\nsamples = 2\nresolution = 50%\n")
    s = mnt.wait_done("shot")
    jd = mnt.job_dir("shot")
    expected = frame_names([1, 3, 5, 7, 9, 12])

    # Exactly the requested frames, at half size, each a different picture.
    assert mnt.frames("shot") == expected
    hashes = set()
    for n in expected:
        p = jd / n
        assert R.image_kind(p) == "png", n
        assert R.image_size(p) == (16, 12), n
        st = os.stat(p)
        data = get(p)
        assert st.st_size == len(data) > 0, "%s: stat size %d, read %d" % (n, st.st_size, len(data))
        assert abs(st.st_mtime - time.time()) < 600, "%s: mtime is not real: %s" % (n, st.st_mtime)
        hashes.add(R.sha(data))
    assert len(hashes) == 6, "frames of an animated scene should all differ"

    v = R.ffprobe(jd / "shot.mp4")
    assert v == {"codec_name": "h264", "pix_fmt": "yuv420p", "nb_read_frames": 6}
    listing = set(os.listdir(jd))
    assert {"status", "status.json", "control", "logs", "shot.mp4"} <= listing, listing

    # A log per rendered frame, none for frames not in the job.
    logs = sorted(os.listdir(jd / "logs"))
    assert logs == frame_names([1, 3, 5, 7, 9, 12], "log")
    for n in logs:
        assert os.stat(jd / "logs" / n).st_size > 0, "empty log %s" % n
        assert len(get(jd / "logs" / n)) > 0

    # Text status: every key of the product.md example, except missing/error.
    for k in R.JOB_KEYS:
        assert k in s, "status lacks %r:\n%s" % (k, mnt.status_text("shot"))
    assert "missing" not in s
    assert s["job"] == "shot"
    assert s["state"] == "done"
    assert int(s["frames"]) == 6
    assert int(s["done"]) == 6
    assert int(s["rendering"]) == 0
    assert int(s["queued"]) == 0
    assert int(s["failed"]) == 0
    assert R.leading_number(s["progress"]) == 100
    assert ZERO_MONEY.match(s["spent"]), s["spent"]
    assert ZERO_MONEY.match(s["estimate"]), s["estimate"]
    assert ZERO_RATE.match(s["rate"]), s["rate"]

    # JSON twin: same keys, numbers as numbers, agreeing with the text.
    j = mnt.status_json("shot")
    for k in R.JOB_KEYS:
        assert k in j, "status.json lacks %r: %s" % (k, j)
    assert j["job"] == "shot" and j["state"] == "done"
    for k in ("frames", "done", "rendering", "queued", "failed"):
        assert isinstance(j[k], int) and not isinstance(j[k], bool), (k, j[k])
        assert j[k] == int(s[k]), (k, j[k], s[k])
    for k in ("progress", "spent", "rate", "estimate", "elapsed", "avg_frame"):
        assert isinstance(j[k], (int, float)) and not isinstance(j[k], bool), (k, j[k])
    assert j["eta"] is None or isinstance(j["eta"], (int, float)), j["eta"]
    assert j["progress"] == pytest.approx(100)
    assert j["spent"] == 0 and j["rate"] == 0 and j["estimate"] == 0
    assert j["elapsed"] >= 0 and j["avg_frame"] > 0
    assert j.get("missing") in (None, []), j.get("missing")

    # The job ended, so its inputs leave queue/.
    wait_for(lambda: [n for n in queue_names(mnt) if n.startswith("shot.")] == [], 10,
             "shot.blend/shot.range to leave queue/ after the job ended")

    # The farm's status and the local node's.
    top = mnt.status_text()
    assert "shot" in top, top
    ts = R.parse_status(top)
    for k in ("nodes", "rate", "spent"):
        assert k in ts, "MOUNT/status lacks %r:\n%s" % (k, top)
    topj = mnt.status_json()
    assert "shot" in repr(topj), topj
    assert os.listdir(mnt.mnt / "nodes") == ["local"]
    ntext = get(mnt.mnt / "nodes" / "local" / "status").decode()
    ns = R.parse_status(ntext)
    for k in R.NODE_KEYS:
        assert k in ns, "nodes/local/status lacks %r:\n%s" % (k, ntext)
    assert "local" in ns["provider"].lower(), ntext
    assert re.search(r"(?i)\bcpu\b", ns["device"]), ntext
    why = re.sub(r"(?i)\bcpu\b", "", ns["device"]).strip(" ()[]-:,;")
    assert why, "device must say why it is the CPU (no GPU found...): %r" % ns["device"]
    assert blender_version in ns["blender"], ntext
    assert ZERO_MONEY.match(ns["price"]) or ZERO_RATE.match(ns["price"]), ntext
    assert int(ns["done"]) == 6, ntext
    assert int(ns["failed"]) == 0, ntext
    assert ns["state"], ntext


def test_formats(mnt, scenes):
    jobs = {"fexr": ("exr", "exr"), "fjpg": ("jpeg", "jpg"), "ftif": ("tiff", "tif")}
    for job, (fmt, _) in jobs.items():
        mnt.drop(job, scenes.plain, "1-2\nformat = %s\n" % fmt)
    for job, (fmt, ext) in jobs.items():
        mnt.wait_done(job)
        assert mnt.frames(job) == frame_names([1, 2], ext), job
        for n in mnt.frames(job):
            p = mnt.job_dir(job) / n
            assert R.image_kind(p) == fmt, (job, n)
            assert R.image_size(p) == (W, H), (job, n)
        v = R.ffprobe(mnt.job_dir(job) / (job + ".mp4"))
        assert v == {"codec_name": "h264", "pix_fmt": "yuv420p", "nb_read_frames": 2}, job


def test_resolution_wxh(mnt, scenes):
    mnt.drop("wxh", scenes.plain, "1-2\nresolution = 20x10\n")
    mnt.wait_done("wxh")
    assert mnt.frames("wxh") == frame_names([1, 2])
    for n in mnt.frames("wxh"):
        assert R.image_size(mnt.job_dir("wxh") / n) == (20, 10)


def test_compressed_blend(mnt, scenes):
    assert scenes.bytes("compressed")[:4] == b"\x28\xb5\x2f\xfd"   # zstd
    mnt.drop("zst", scenes.bytes("compressed"), "2-4\n")
    mnt.wait_done("zst")
    assert mnt.frames("zst") == frame_names([2, 3, 4])
    assert R.ffprobe(mnt.job_dir("zst") / "zst.mp4")["nb_read_frames"] == 3


def test_gzip_blend(mnt, scenes):
    mnt.drop("gz", scenes.bytes("gzip"), "3\n")
    mnt.wait_done("gz")
    assert mnt.frames("gz") == frame_names([3])
    assert R.image_size(mnt.job_dir("gz") / "frame_0003.png") == (W, H)


def test_single_frame_has_no_video(mnt, scenes):
    mnt.drop("one", scenes.plain, "5\n")
    s = mnt.wait_done("one")
    assert mnt.frames("one") == frame_names([5])
    assert int(s["frames"]) == 1 and int(s["done"]) == 1
    assert no_video(mnt, "one"), os.listdir(mnt.job_dir("one"))


def test_video_no(mnt, scenes):
    mnt.drop("nov", scenes.plain, "1-3\nvideo = no\n")
    mnt.wait_done("nov")
    assert mnt.frames("nov") == frame_names([1, 2, 3])
    assert no_video(mnt, "nov"), os.listdir(mnt.job_dir("nov"))


def test_frame_numbers_at_the_limits(mnt, scenes):
    # 0 is allowed, 1048574 is Blender's maximum; padding is "at least 4".
    mnt.drop("edge", scenes.plain, "frames = 1048574,0\nvideo = no\n")
    s = mnt.wait_done("edge")
    assert mnt.frames("edge") == ["frame_0000.png", "frame_1048574.png"]
    assert int(s["frames"]) == 2


def test_duplicate_frames_render_once(mnt, scenes):
    mnt.drop("dup", scenes.plain, "1-3,2,3,1-2\n")
    s = mnt.wait_done("dup")
    assert mnt.frames("dup") == frame_names([1, 2, 3])
    assert int(s["frames"]) == 3
    assert R.ffprobe(mnt.job_dir("dup") / "dup.mp4")["nb_read_frames"] == 3


def test_blend_without_sidecar_waits(mnt, scenes):
    t0 = time.monotonic()
    put(mnt.queue / "lone.blend", scenes.plain)
    mnt.settle(scenes.plain, t0)
    assert not (mnt.queue / "lone.error").exists(), get(mnt.queue / "lone.error")
    assert not (mnt.out / "lone").exists()
    assert get(mnt.queue / "lone.blend") == scenes.plain
    put(mnt.queue / "lone.range", "1-2\n")
    mnt.wait_done("lone")
    assert mnt.frames("lone") == frame_names([1, 2])


def test_sidecar_before_blend(mnt, scenes):
    t0 = time.monotonic()
    put(mnt.queue / "early.range", "1-2\n")
    mnt.settle(scenes.plain, t0)
    assert not (mnt.queue / "early.error").exists(), get(mnt.queue / "early.error")
    assert not (mnt.out / "early").exists()
    assert get(mnt.queue / "early.range") == b"1-2\n"
    put(mnt.queue / "early.blend", scenes.plain)
    mnt.wait_done("early")
    assert mnt.frames("early") == frame_names([1, 2])


def test_temp_file_then_rename(mnt, scenes):
    # rsync and cp --backup style: write a hidden temp name, rename into place.
    tb = mnt.queue / ".shot.blend.Xa8f2q"
    put(tb, scenes.plain)
    tr = mnt.queue / ".shot.range.Yb7e1c"
    put(tr, "1-2\n")
    assert get(tb) == scenes.plain
    os.rename(tb, mnt.queue / "shot.blend")
    os.rename(tr, mnt.queue / "shot.range")
    mnt.wait_done("shot")
    assert mnt.frames("shot") == frame_names([1, 2])
    assert sorted(os.listdir(mnt.out)) == ["shot"]
    assert [n for n in queue_names(mnt) if n.endswith(".error")] == []
    assert not tb.exists() and not tr.exists()


def test_rename_over_existing_queue_file(mnt, scenes):
    put(mnt.queue / "shot.blend", b"not a blender file\n")
    put(mnt.queue / "shot.range", "1-2\n")
    wait_for(lambda: (mnt.queue / "shot.error").exists(), 15, "shot.error for a text .blend")
    # Save the real scene the way Blender and editors do: temp, rename over.
    tmp = mnt.queue / "shot.blend@"
    put(tmp, scenes.plain)
    os.rename(tmp, mnt.queue / "shot.blend")
    assert not tmp.exists()
    mnt.wait_done("shot", timeout=60)
    assert not (mnt.queue / "shot.error").exists()
    assert mnt.frames("shot") == frame_names([1, 2])


def test_queue_is_an_ordinary_directory(mnt):
    q = mnt.queue
    put(q / "a.txt", b"AAAA")
    put(q / "b.txt", b"BB")
    with open(q / "a.txt", "ab") as f:
        f.write(b"aa")
    assert get(q / "a.txt") == b"AAAAaa"
    assert os.stat(q / "a.txt").st_size == 6
    os.rename(q / "a.txt", q / "b.txt")              # rename over
    assert sorted(os.listdir(q)) == ["b.txt"]
    assert get(q / "b.txt") == b"AAAAaa"
    os.truncate(q / "b.txt", 2)
    assert get(q / "b.txt") == b"AA" and os.stat(q / "b.txt").st_size == 2
    with open(q / "b.txt", "r+b") as f:
        f.seek(10)
        f.write(b"Z")                                 # sparse extension
        f.truncate(12)
    assert get(q / "b.txt") == b"AA" + b"\0" * 8 + b"Z\0"
    with open(q / "b.txt", "wb") as f:                # O_TRUNC
        f.write(b"new")
    assert get(q / "b.txt") == b"new"
    name = "weird name ü.txt"
    os.rename(q / "b.txt", q / name)
    assert get(q / name) == b"new"
    os.unlink(q / name)
    assert os.listdir(q) == []


def test_truncate_and_rewrite_during_a_drop(mnt, scenes):
    b = mnt.queue / "tr.blend"
    r = mnt.queue / "tr.range"
    with open(b, "wb") as f:                          # held open: drop not complete
        f.write(scenes.plain[:5000])
        f.flush()
        f.truncate(10)
        f.flush()
        assert os.stat(b).st_size == 10
        f.truncate(0)
        f.seek(0)
        f.write(scenes.plain)
        f.flush()
        put(r, "garbage that is not a frame list\n" * 3)
        os.truncate(r, 0)
        assert os.stat(r).st_size == 0
        put(r, "1-2\n", mode="ab")
    mnt.wait_done("tr")
    assert mnt.frames("tr") == frame_names([1, 2])


def test_unlink_pending_files(mnt, scenes):
    q = mnt.queue
    t0 = time.monotonic()
    put(q / "p.blend", scenes.plain)
    os.unlink(q / "p.blend")
    put(q / "r.range", "1-2\n")
    os.unlink(q / "r.range")
    with open(q / "u.blend", "wb") as f:             # removed while still open
        f.write(scenes.plain)
        put(q / "u.range", "1-2\n")
        os.unlink(q / "u.blend")
    mnt.settle(scenes.plain, t0)
    left = [n for n in queue_names(mnt) if not n.startswith("sentinel")]
    assert left == ["u.range"], left
    assert [n for n in os.listdir(mnt.out) if not n.startswith("sentinel")] == []


def test_ignored_names_never_become_jobs(mnt, scenes):
    q = mnt.queue
    t0 = time.monotonic()
    files = {
        ".hidden.blend": scenes.plain, ".hidden.range": b"1-2\n",
        "._x.blend": scenes.plain, "._x.range": b"1-2\n",
        "backup.blend1": scenes.plain, "backup.range": b"1-2\n",
        "edit.blend@": scenes.plain,
        "shot.blend~": scenes.plain, "shot.range~": b"1-2\n",
        ".shot.range.swp": b"1-2\n", "#shot.range#": b"1-2\n",
        ".DS_Store": b"\0\0\0\1Bud1" + b"\0" * 100,
        "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100,
    }
    for n, data in files.items():
        put(q / n, data)
    mnt.drop("real", scenes.plain, "1\nvideo = no\n")
    mnt.wait_done("real")
    mnt.settle(scenes.plain, t0)
    jobs = [n for n in os.listdir(mnt.out) if not n.startswith("sentinel")]
    assert jobs == ["real"], jobs
    errors = [n for n in queue_names(mnt) if n.endswith(".error")]
    assert errors == [], errors
    for n, data in files.items():
        assert get(q / n) == data, n


def test_same_name_again_gets_a_new_job(mnt, scenes):
    mnt.drop("shot", scenes.plain, "1-2\nvideo = no\n")
    mnt.wait_done("shot")
    snap = mnt.snapshot("shot")
    wait_for(lambda: [n for n in queue_names(mnt) if n.startswith("shot.")] == [], 10,
             "shot.* to leave queue/")
    mnt.drop("shot", scenes.plain, "3\n")
    s2 = mnt.wait_done("shot-2")
    assert s2["job"] == "shot-2"
    assert mnt.frames("shot-2") == frame_names([3])
    wait_for(lambda: [n for n in queue_names(mnt) if n.startswith("shot.")] == [], 10,
             "shot.* to leave queue/")
    mnt.drop("shot", scenes.plain, "4\n")
    mnt.wait_done("shot-3")
    assert mnt.frames("shot-3") == frame_names([4])
    assert mnt.snapshot("shot") == snap, "finished frames of out/shot were touched"


def test_denoise_scene_fails_with_blenders_message(mnt, scenes):
    mnt.drop("dn", scenes.bytes("denoise"), "1-2\nretries = 0\n")
    s = mnt.wait_state("dn")
    text = mnt.status_text("dn")
    assert s["state"] == "failed", text
    assert int(s["failed"]) == 2 and int(s["done"]) == 0, text
    assert "missing" in s, text
    assert R.parse_frame_list(s["missing"]) == {1, 2}, text
    assert "openimagedenoise" in text.lower(), "Blender's message not in status:\n" + text
    assert mnt.frames("dn") == []
    for n in ("frame_0001.log", "frame_0002.log"):
        log = get(mnt.job_dir("dn") / "logs" / n).decode("utf-8", "replace")
        assert "openimagedenoise" in log.lower(), "Blender's message not in %s:\n%s" % (n, log)
    j = mnt.status_json("dn")
    assert j["state"] == "failed" and j["failed"] == 2
    assert sorted(j["missing"]) == [1, 2]
    assert "openimagedenoise" in str(j.get("error", "")).lower(), j
    wait_for(lambda: [n for n in queue_names(mnt) if n.startswith("dn.")] == [], 10,
             "dn.* to leave queue/ after the job failed")
