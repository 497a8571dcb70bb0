# Refused drops, per product.md "queue/" and "The sidecar": a NAME.error
# naming the file and line of each problem, the inputs kept byte for byte,
# no job; fixing either file retries the drop and the .error goes away.
#
# Messages are checked for the file name, line number and the key or value
# they are about, never for exact wording.

import gzip
import io
import os
import re
import time
import zipfile

import pytest

from rfslib import get, put, wait_for

pytestmark = pytest.mark.deadline(60)


def wait_error(mnt, name, timeout=15):
    p = mnt.queue / (name + ".error")

    def ready():
        data = get(p)
        return data.decode("utf-8", "replace") if data.strip() else None
    try:
        return wait_for(ready, timeout, "queue/%s.error" % name)
    except AssertionError as e:
        raise AssertionError("%s\nqueue: %s\n%s" % (e, sorted(os.listdir(mnt.queue)),
                                                    mnt.log_tail(30)))


def names_line(text, fname, line):
    return re.search(re.escape(fname) + r":%d(?!\d)" % line, text)


def check_refused(mnt, name, blend, rng, culprit, line, mentions):
    rng = rng.encode() if isinstance(rng, str) else rng
    mnt.drop(name, blend, rng)
    text = wait_error(mnt, name)
    fname = "%s.%s" % (name, culprit)
    if line is not None:
        assert names_line(text, fname, line), \
            "error should name %s:%d:\n%s" % (fname, line, text)
    else:
        assert fname in text, "error should name %s:\n%s" % (fname, text)
    if mentions:
        assert any(m in text for m in mentions), \
            "error should name one of %s:\n%s" % (mentions, text)
    # The refused inputs stay, unchanged, and no job exists.
    assert get(mnt.queue / (name + ".blend")) == blend, "%s.blend changed" % name
    assert get(mnt.queue / (name + ".range")) == rng, "%s.range changed" % name
    assert os.listdir(mnt.out) == [], os.listdir(mnt.out)
    return text


RANGE_CASES = [
    # id, sidecar, line, the message names one of these
    ("frames_1-x", "1-x\n", 1, ["1-x"]),
    ("frames_10-5", "10-5\n", 1, ["10-5"]),
    ("frames_step_0", "1-10x0\n", 1, ["1-10x0"]),
    ("frames_abc", "abc\n", 1, ["abc"]),
    ("frames_key_bad", "samples = 2\nframes = 1-x\n", 2, ["1-x"]),
    ("frame_over_max", "1,1048575\n", 1, ["1048575"]),
    ("too_many_frames", "0-1000000\n", 1, []),
    ("unknown_key", "1-2\nsampels = 2\n", 2, ["sampels"]),
    ("duplicate_key", "1-2\nsamples = 2\nsamples = 3\n", 3, ["samples"]),
    ("bare_list_and_frames_key", "1-2\nframes = 3\n", 2, ["frames"]),
    ("samples_0", "# comment\n1-2\n\nsamples = 0\n", 4, ["samples"]),
    ("resolution_0x5", "1-2\nresolution = 0x5\n", 2, ["resolution", "0x5"]),
    ("format_gif", "1-2\nformat = gif\n", 2, ["format", "gif"]),
    ("device_quantum", "1-2\ndevice = quantum\n", 2, ["device", "quantum"]),
    ("fps_negative", "1-2\nfps = -1\n", 2, ["fps", "-1"]),
    ("timeout_soon", "1-2\ntimeout = soon\n", 2, ["timeout", "soon"]),
    ("video_maybe", "1-2\nvideo = maybe\n", 2, ["video", "maybe"]),
    # (no frame list is not a problem: the scene's own range is rendered,
    # test_scene_files.py)
]


@pytest.mark.parametrize("sidecar,line,mentions",
                         [c[1:] for c in RANGE_CASES], ids=[c[0] for c in RANGE_CASES])
def test_bad_sidecar(mnt, scenes, sidecar, line, mentions):
    check_refused(mnt, "bad", scenes.plain, sidecar, "range", line, mentions)


def _zip_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("scene.txt", "not a scene\n" * 20)
    return buf.getvalue()


BLEND_CASES = {
    "zip": lambda plain: _zip_bytes(),
    "text": lambda plain: b"this is a text file, not a scene\n",
    "gzip_text": lambda plain: gzip.compress(b"hello, not a blend file\n" * 10),
    "truncated_half": lambda plain: plain[:len(plain) // 2],
    "header_only": lambda plain: plain[:12],
    "empty": lambda plain: b"",
}


@pytest.mark.parametrize("kind", list(BLEND_CASES))
def test_bad_blend(mnt, scenes, kind):
    blend = BLEND_CASES[kind](scenes.plain)
    check_refused(mnt, "bad", blend, "1-2\n", "blend", None, [])


def test_sidecar_over_64k(mnt, scenes):
    rng = "1-2\n" + ("#" + "x" * 999 + "\n") * 70
    assert len(rng) > 65536
    check_refused(mnt, "bad", scenes.plain, rng, "range", None, [])


def test_sidecar_of_exactly_64k_is_accepted(mnt, scenes):
    head = "1\nvideo = no\n#"
    rng = head + "x" * (65536 - len(head) - 1) + "\n"
    assert len(rng.encode()) == 65536
    mnt.drop("big", scenes.plain, rng)
    mnt.wait_done("big")
    assert mnt.frames("big") == ["frame_0001.png"]
    assert not (mnt.queue / "big.error").exists()


def test_every_problem_gets_a_line(mnt, scenes):
    rng = "1-x\nsampels = 2\nformat = gif\n"
    text = check_refused(mnt, "bad", scenes.plain, rng, "range", 1, ["1-x"])
    assert names_line(text, "bad.range", 2) and "sampels" in text, text
    assert names_line(text, "bad.range", 3), text
    lines = [l for l in text.splitlines() if l.strip()]
    assert len(lines) >= 3, text


def test_fixing_the_sidecar_retries(mnt, scenes):
    check_refused(mnt, "fix", scenes.plain, "1-2\nsampels = 2\n", "range", 2, ["sampels"])
    put(mnt.queue / "fix.range", "1-2\nsamples = 2\n")          # re-save in place
    mnt.wait_done("fix")
    assert not (mnt.queue / "fix.error").exists()
    assert mnt.frames("fix") == ["frame_0001.png", "frame_0002.png"]


def test_fixing_the_blend_retries(mnt, scenes):
    check_refused(mnt, "fix", b"", "1-2\n", "blend", None, [])
    put(mnt.queue / "fix.blend", scenes.plain)
    mnt.wait_done("fix")
    assert not (mnt.queue / "fix.error").exists()
    assert mnt.frames("fix") == ["frame_0001.png", "frame_0002.png"]


def test_refused_files_can_be_removed(mnt, scenes):
    # "Any file name may be ... removed in queue/": the user cleans up a
    # refused drop with `rm bad.*`.
    check_refused(mnt, "bad", b"junk", "1-2\n", "blend", None, [])
    t0 = time.monotonic()
    os.unlink(mnt.queue / "bad.blend")
    os.unlink(mnt.queue / "bad.range")
    if (mnt.queue / "bad.error").exists():
        os.unlink(mnt.queue / "bad.error")
    assert [n for n in os.listdir(mnt.queue) if n.startswith("bad.")] == []
    mnt.settle(scenes.plain, t0)
    assert [n for n in os.listdir(mnt.queue) if n.startswith("bad.")] == []
    assert [n for n in os.listdir(mnt.out) if not n.startswith("sentinel")] == []


def test_a_newline_in_a_name_forges_no_line(mnt, scenes):
    # A drop named with a newline and a would-be status key: its refusal
    # names it on one line, escaped, and adds no line of its own.
    name = "bad\nstate: done"
    mnt.drop(name, b"not a scene at all\n", b"1-2\n")
    text = wait_error(mnt, name)
    lines = text.splitlines()
    assert not any(l.startswith("state:") for l in lines), text
    assert any("bad\\nstate: done.blend" in l for l in lines), text
