# Intake under load, per product.md "queue/" and issue 10 (items 4, 5):
#
# - a large drop is read, hashed and copied on intake's own threads, so a
#   normal drop made after it starts rendering while the large one is still
#   being checked (the order of events is asserted, never a duration);
# - the blob is named by the SHA-256 of the bytes copied: rewriting the
#   file in queue/ while its copy is being made cannot put other bytes
#   under a hash, so every STATE/blobs/SHA.blend holds what SHA names.
#
# The large scenes are the suite's plain scene with one big block of a
# kind Blender skips ("RFSX") before its ENDB: a valid .blend of any size,
# made without Blender.  The copy in progress is seen from outside as the
# STATE/blobs/*.part file it is written to.

import hashlib
import os
import struct

import pytest

from rfslib import get, leading_number, put, wait_for

pytestmark = pytest.mark.deadline(150)

BIG = 1 << 30          # bytes of the big block: a copy that takes a while
CHUNK = 8 << 20


def write_big(path, plain, fill=b"\0", truncated=False):
    """Write plain's blocks, a BIG-byte RFSX block, then ENDB (unless
    truncated: the block then runs one byte past the end of the file).
    Returns the SHA-256 of what was written."""
    assert plain[:9] == b"BLENDER-v", "the suite's scenes are 64-bit little-endian"
    assert plain[-24:-20] == b"ENDB", "the plain scene should end with ENDB"
    h = hashlib.sha256()
    with open(path, "wb") as f:
        def w(b):
            f.write(b)
            h.update(b)
        w(plain[:-24])
        w(struct.pack("<4siQii", b"RFSX", BIG, 0x52465358, 0, 1))
        left = BIG - 1 if truncated else BIG
        chunk = fill * CHUNK
        while left:
            n = min(left, CHUNK)
            w(chunk[:n])
            left -= n
        if not truncated:
            w(plain[-24:])
    return h.hexdigest()


def parts(mnt):
    d = mnt.state / "blobs"
    return [d / n for n in os.listdir(d) if n.endswith(".part")]


def wait_copy_started(mnt, what):
    return wait_for(lambda: parts(mnt), 60, "intake to start copying " + what)[0]


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return h.hexdigest()
            h.update(b)


def check_blobs(mnt):
    """Every stored blob holds the bytes its name says.  Returns the names."""
    d = mnt.state / "blobs"
    names = []
    for n in sorted(os.listdir(d)):
        if not n.endswith(".blend") or n.startswith("."):
            continue
        sha = n[:-len(".blend")]
        assert file_sha(d / n) == sha, "blobs/%s holds other bytes than its name says" % n
        names.append(sha)
    return names


def test_big_drop_does_not_delay_others(mnt, scenes):
    write_big(mnt.queue / "big.blend", scenes.plain)
    put(mnt.queue / "big.range", "1\nvideo = no\n")
    wait_copy_started(mnt, "big.blend")

    mnt.drop("small", scenes.plain, "1-2\nvideo = no\n")

    def small_started():
        s = mnt.status("small")
        return int(leading_number(s["rendering"])) + int(s["done"]) > 0
    wait_for(small_started, 60, "small to start rendering")
    # Events so far: big's copy began, small was dropped, small renders.
    # Big's check must not have ended in between (its job would exist).
    assert "big" not in os.listdir(mnt.out), \
        "big.blend was accepted before small started: intake delayed small"

    wait_for(lambda: "big" in os.listdir(mnt.out), 90, "big to be accepted")
    os.unlink(mnt.queue / "big.blend")              # cancels it
    assert mnt.wait_state("big", timeout=60)["state"] == "cancelled"
    mnt.wait_done("small")
    assert mnt.frames("small") == ["frame_0001.png", "frame_0002.png"]
    # Nothing half-written is left, and the blob is what its name says.
    assert parts(mnt) == []
    assert not [n for n in os.listdir(mnt.state / "blobs") if n.startswith(".")]
    check_blobs(mnt)


def test_refused_copy_is_not_kept(mnt, scenes):
    # The check reads the copy; a copy that fails it is removed.
    mnt.drop("cut", scenes.plain[:-30], "1\n")
    text = wait_for(lambda: get(mnt.queue / "cut.error").decode(), 30, "cut.error")
    assert "cut.blend" in text and "truncated" in text, text
    assert os.listdir(mnt.state / "blobs") == []


def test_rewrite_during_copy_keeps_blobs_honest(mnt, scenes):
    # A valid big scene; while intake copies it, its last 16 MiB (inside
    # the RFSX block, before the copy gets there) are rewritten in place.
    path = mnt.queue / "big.blend"
    sha_a = write_big(path, scenes.plain)
    put(mnt.queue / "big.range", "1\nvideo = no\n")
    part = wait_copy_started(mnt, "big.blend")

    size = os.path.getsize(path)
    tail = 16 << 20
    at = size - 24 - tail
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"\x01" * tail)
    # The race is real only if the copy had not read the tail yet when the
    # rewrite landed.
    try:
        copied = os.path.getsize(part)
    except FileNotFoundError:
        copied = size
    assert copied < at, \
        "the copy (%d bytes) passed the rewritten region (%d) first: grow BIG" % (copied, at)

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    sha_b = h.hexdigest()
    assert sha_b != sha_a

    mnt.wait_done("big", timeout=120)
    assert mnt.frames("big") == ["frame_0001.png"]
    names = check_blobs(mnt)
    # The job renders what queue/big.blend holds now.
    assert sha_b in names, names
    # And the genuine first version, dropped again, is stored as itself.
    if path.exists():
        os.unlink(path)
    write_big(mnt.queue / "again.blend", scenes.plain)
    put(mnt.queue / "again.range", "1\nvideo = no\n")
    mnt.wait_done("again", timeout=120)
    names = check_blobs(mnt)
    assert sha_a in names, names
