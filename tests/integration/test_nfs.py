# An NFS export of the mount, per product.md "Shared mounts": a private
# nfs-ganesha (FSAL_VFS, NFSv4 on a free port of 127.0.0.1, its config made
# from contrib/ganesha-renderfs.conf) exports a renderfs mount made with
# -o allow_other, and libnfs's userspace client drops a job (a temp name
# renamed into place), waits for it by reading status over NFS, and reads
# frames byte-identical to the mount's.  No kernel NFS server or client is
# needed.  Writes go through tests/tools/nfs_put.c (libnfs 4.0's nfs-cp
# cannot write more than about 1 KB per NFSv4 WRITE).
#
# FSAL_VFS reaches files by handle (name_to_handle_at, open_by_handle_at);
# the last test checks on the mount itself that file and directory
# handles still open after renderfs was mounted again, which is what FUSE
# export support, lookup of "." and "..", and stable inode numbers give.

import ctypes
import errno
import hashlib
import json
import os

import pytest

import rfslib as R
import sharelib as S
from rfslib import get, put, wait_for

pytestmark = pytest.mark.deadline(150)

need_ganesha = pytest.mark.skipif(
    not S.have("ganesha.nfsd", "nfs-ls", "nfs-cat")
    or not os.path.exists("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"),
    reason="nfs-ganesha, nfs-ganesha-vfs or libnfs-utils is not installed")


@pytest.fixture
def exported(rfs, tmp_path):
    mnt = rfs(opts=("allow_other",))
    g = S.Ganesha(tmp_path / "ganesha", mnt.mnt)
    if not g.put_tool():
        pytest.fail("build/tests/nfs_put is missing (libnfs-dev not installed at meson setup?)")
    g.start()
    yield mnt, g
    # Ganesha holds the mount: it must go before renderfs is unmounted.
    g.stop()


def nfs_cat(g, path, check=True):
    r = g.tool(["nfs-cat", g.url(path)], check=check)
    return r.stdout if r.returncode == 0 else None


def nfs_ls(g, path):
    """name -> (mode string, size) of an NFS directory listing."""
    out = g.tool(["nfs-ls", g.url(path)]).stdout.decode("utf-8", "replace")
    names = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6:
            names[parts[-1]] = (parts[0], int(parts[4]))
    return names


def nfs_status(g, job):
    data = nfs_cat(g, "out/%s/status" % job, check=False)
    if data is None:
        raise ValueError("out/%s/status not readable over NFS yet" % job)
    return R.parse_status(data.decode("utf-8"))


@need_ganesha
def test_nfs_drop_render_and_read_frames(exported, scenes, tmp_path):
    mnt, g = exported
    local = tmp_path / "client"
    local.mkdir()
    put(local / "shot.range", "1-5\nvideo = no\n")
    put(local / "shot.blend", scenes.plain)
    for name in ("shot.range", "shot.blend"):
        g.tool([g.put_tool(), g.url("queue/.%s.nfs-tmp" % name), str(local / name), name])
    q = nfs_ls(g, "queue")
    assert not any(n.startswith(".shot") for n in q), "temp names left: %s" % q
    if "shot.blend" in q:         # unless the job was taken and ended already
        assert q["shot.blend"][1] == len(scenes.plain), q
    # Ganesha keeps descriptors of closed files until its reaper closes
    # them; with the snippet's MDCACHE settings the drop is taken anyway.
    s = wait_for(lambda: (lambda s: s if s.get("state") in R.TERMINAL else None)(
        nfs_status(g, "shot")), 60, "shot to end, read over NFS", interval=0.2)
    assert s["state"] == "done", mnt.status_text("shot")
    assert s["done"] == "5"
    listed = nfs_ls(g, "out/shot")
    frames = mnt.frames("shot")
    assert len(frames) == 5
    assert sorted(n for n in listed if R.FRAME_RE.match(n)) == frames
    for n in frames:
        over_nfs = nfs_cat(g, "out/shot/" + n)
        assert hashlib.sha256(over_nfs).digest() == \
            hashlib.sha256(get(mnt.job_dir("shot") / n)).digest(), n
        assert listed[n][1] == len(over_nfs)
    js = json.loads(nfs_cat(g, "out/shot/status.json"))
    assert js["state"] == "done" and js["done"] == 5


@need_ganesha
def test_nfs_status_follows_a_running_job(exported, scenes, tmp_path):
    """Status read over NFS moves on while the job renders: Ganesha shares
    one descriptor between reads, and each read from the start gets the
    text of now (not of that descriptor's open)."""
    mnt, g = exported
    local = tmp_path / "client"
    local.mkdir()
    put(local / "long.range", "1-60\nvideo = no\n")
    put(local / "long.blend", scenes.bytes("slow"))
    for name in ("long.range", "long.blend"):
        g.tool([g.put_tool(), g.url("queue/" + name), str(local / name)])
    first = wait_for(lambda: (lambda s: s if int(s.get("done", 0)) >= 1 else None)(
        nfs_status(g, "long")), 60, "a first frame, read over NFS", interval=0.2)
    later = wait_for(lambda: (lambda s: s if int(s["done"]) >= int(first["done"]) + 3 else None)(
        nfs_status(g, "long")), 60, "three more frames, read over NFS", interval=0.2)
    assert int(later["done"]) > int(first["done"])
    assert mnt.control("long", "cancel") == 0
    wait_for(lambda: nfs_status(g, "long")["state"] == "cancelled", 20,
             "cancelled, read over NFS", interval=0.2)


# ---- export by handle, on the mount itself ----

class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


LIBC = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100


def handle_of(path):
    fh = FileHandle(handle_bytes=128)
    mount_id = ctypes.c_int()
    if LIBC.name_to_handle_at(AT_FDCWD, os.fsencode(str(path)), ctypes.byref(fh),
                              ctypes.byref(mount_id), 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))
    return fh


def open_by_handle(mount_fd, fh, flags):
    fd = LIBC.open_by_handle_at(mount_fd, ctypes.byref(fh), flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def test_handles_open_after_a_remount(mnt, scenes):
    mnt.drop("h", scenes.plain, "1-2\nvideo = no\n")
    mnt.wait_done("h")
    job = mnt.job_dir("h")
    frame = get(job / "frame_0001.png")
    status_ino = os.stat(job / "status").st_ino
    handles = {n: handle_of(p) for n, p in (("frame", job / "frame_0001.png"),
                                             ("logs", job / "logs"), ("job", job),
                                             ("status", job / "status"))}
    mnt.stop()
    mnt.start()
    mfd = os.open(mnt.mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = open_by_handle(mfd, handles["frame"], os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            assert f.read() == frame
        fd = open_by_handle(mfd, handles["status"], os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            assert b"state: done" in f.read()
            assert os.fstat(f.fileno()).st_ino == status_ino
        # A directory's handle is reconnected to the tree through "..".
        for name in ("logs", "job"):
            fd = open_by_handle(mfd, handles[name], os.O_RDONLY | os.O_DIRECTORY)
            try:
                listed = os.listdir(fd)
            finally:
                os.close(fd)
            assert listed, name
        assert "frame_0001.png" in os.listdir(job)
        # A handle of something removed is stale, not some other file.
        os.unlink(job / "frame_0001.png")
        with pytest.raises(OSError) as e:
            os.close(open_by_handle(mfd, handles["frame"], os.O_RDONLY))
        assert e.value.errno in (errno.ESTALE, errno.ENOENT), e.value
    finally:
        os.close(mfd)
