# Owners on a shared mount, per product.md "Shared mounts: many users, one
# farm": with -o allow_other, two real local users (made here with useradd,
# acting through setpriv) share one mount.  queue/ behaves as /tmp does
# (sticky, world-writable: EPERM to remove or rename another's file, EACCES
# to overwrite it); a job belongs to its .blend's dropper, whose uid and gid
# out/JOB and its files show and whose name status gives as `owner:`; only
# that user or root writes control or removes frames or the job (EACCES;
# the job's directory in sticky out/ is EPERM, as the kernel answers); all
# read.  Owners survive a remount.  Run with and without
# -o default_permissions: the kernel's checks and the daemon's must agree.
#
# Directories show real times (not 1970): queue/, out/, out/JOB, nodes/.

import errno
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import rfslib as R
from rfslib import get, wait_for

pytestmark = pytest.mark.deadline(150)

USERS = ("rfsowna", "rfsownb")

# One file operation, run as a user: prints {"rc": "OK" or an errno name,
# "data": what was read (latin-1)}.  Data to write comes on stdin.
USER_OP = r'''
import errno, json, os, sys
op, args = sys.argv[1], sys.argv[2:]
data = sys.stdin.buffer.read()
out = b""
try:
    if op == "write":                 # like cp or echo >: O_CREAT|O_TRUNC
        with open(args[0], "wb") as f:
            f.write(data)
    elif op == "create_mode":         # open(O_CREAT) of a new file opens it whatever its mode
        fd = os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(args[1], 8))
        os.write(fd, data)
        os.close(fd)
    elif op == "append":
        fd = os.open(args[0], os.O_WRONLY | os.O_APPEND)
        os.write(fd, data)
        os.close(fd)
    elif op == "control":             # echo CMD > control
        fd = os.open(args[0], os.O_WRONLY | os.O_TRUNC)
        os.write(fd, data)
        os.close(fd)
    elif op == "read":
        with open(args[0], "rb") as f:
            out = f.read()
    elif op == "list":
        out = "\n".join(sorted(os.listdir(args[0]))).encode()
    elif op == "unlink":
        os.unlink(args[0])
    elif op == "rmdir":
        os.rmdir(args[0])
    elif op == "rename":
        os.rename(args[0], args[1])
    elif op == "chmod":
        os.chmod(args[0], int(args[1], 8))
    elif op == "truncate":
        os.truncate(args[0], 0)
    rc = "OK"
except OSError as e:
    rc = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({"rc": rc, "data": out.decode("latin-1")}))
'''


class User:
    def __init__(self, name):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid

    def run(self, op, *args, data=b""):
        r = subprocess.run(["setpriv", "--reuid=%d" % self.uid, "--regid=%d" % self.gid,
                            "--init-groups", "--", sys.executable, "-c", USER_OP, op]
                           + [str(a) for a in args],
                           input=data, capture_output=True, timeout=60)
        assert r.returncode == 0, "%s as %s failed to run: %s" % (op, self.name, r.stderr)
        return json.loads(r.stdout)

    def do(self, op, *args, data=b""):
        return self.run(op, *args, data=data)["rc"]

    def read(self, path):
        r = self.run("read", path)
        assert r["rc"] == "OK", "%s cannot read %s: %s" % (self.name, path, r["rc"])
        return r["data"].encode("latin-1")


@pytest.fixture(scope="module")
def users():
    if os.geteuid() != 0:
        pytest.skip("needs root: makes two local users and mounts with allow_other")
    if not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("useradd or setpriv is missing")
    made = []
    for name in USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name], check=True,
                           capture_output=True, timeout=60)
            made.append(name)
    yield [User(n) for n in USERS]
    for name in made:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)


@pytest.fixture
def shared(tmp_path):
    """Factory: a Mount in a directory every user can reach (pytest's own
    temporary directories are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="rfs-owners-", dir="/tmp"))
    os.chmod(base, 0o755)
    made = []

    def make(opts):
        m = R.Mount(base / ("m%d" % len(made)), R.renderfs_bin(), None, opts)
        os.chmod(m.base, 0o755)
        os.chmod(m.mnt, 0o755)
        made.append(m)
        m.start()
        return m

    yield make
    R.Watchdog.armed = False
    problems = []
    for m in made:
        problems += m.teardown()
        print(m.log_tail(80))
    shutil.rmtree(base, ignore_errors=True)
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)


def owner_of(path):
    st = os.stat(path)
    return (st.st_uid, st.st_gid)


def check_dir_time(path, since, what):
    st = os.stat(path)
    assert st.st_mtime >= since - 2 and st.st_ctime >= since - 2, \
        "%s: mtime %s ctime %s, want a real time after %s" % (what, time.ctime(st.st_mtime),
                                                              time.ctime(st.st_ctime),
                                                              time.ctime(since))
    assert st.st_mtime <= time.time() + 2, "%s: mtime in the future" % what


@pytest.mark.parametrize("perm", ["daemon-checks", "default_permissions"])
def test_owners(shared, users, scenes, perm):
    alice, bob = users
    t0 = time.time()
    opts = ["allow_other"] + (["default_permissions"] if perm == "default_permissions" else [])
    m = shared(opts)
    q, out = m.queue, m.out

    st = os.stat(q)
    assert st.st_mode & 0o7777 == 0o1777, "queue/ mode %o, want 1777" % (st.st_mode & 0o7777)

    # ---- queue/: anyone creates, only the owner (or root) changes or removes
    assert alice.do("write", q / "a.txt", data=b"alice's") == "OK"
    assert owner_of(q / "a.txt") == (alice.uid, alice.gid), "queue/a.txt shows its creator"
    assert bob.do("write", q / "b.txt", data=b"bob's") == "OK"
    assert owner_of(q / "b.txt") == (bob.uid, bob.gid)
    assert bob.read(q / "a.txt") == b"alice's", "reads are open to all"
    assert bob.do("unlink", q / "a.txt") == "EPERM", "another's file in sticky queue/"
    assert bob.do("rename", q / "a.txt", q / "c.txt") == "EPERM"
    assert bob.do("rename", q / "b.txt", q / "a.txt") == "EPERM", "renaming onto another's file"
    assert bob.do("write", q / "a.txt", data=b"x") == "EACCES", "overwriting another's file"
    assert bob.do("append", q / "a.txt", data=b"x") == "EACCES"
    assert bob.do("truncate", q / "a.txt") == "EACCES"
    assert bob.do("chmod", q / "a.txt", "666") == "EPERM"
    assert alice.do("chmod", q / "a.txt", "666") == "OK"
    assert os.stat(q / "a.txt").st_mode & 0o777 == 0o644, \
        "group and others never get write permission on a queue file"
    assert bob.do("write", q / "a.txt", data=b"x") == "EACCES"
    assert get(q / "a.txt") == b"alice's", "the refused writes changed nothing"
    assert alice.do("create_mode", q / "ro.txt", "444", data=b"ro") == "OK", \
        "creating a file with mode 0444 still opens it for writing"
    assert get(q / "ro.txt") == b"ro" and os.stat(q / "ro.txt").st_mode & 0o777 == 0o444
    assert alice.do("write", q / "ro.txt", data=b"x") == "EACCES", "but it is read-only after"
    assert alice.do("unlink", q / "ro.txt") == "OK"
    assert alice.do("unlink", q / "b.txt") == "EPERM"
    assert alice.do("rename", q / "a.txt", q / "a2.txt") == "OK", "the owner renames"
    assert owner_of(q / "a2.txt") == (alice.uid, alice.gid), "a renamed file keeps its owner"
    os.unlink(q / "b.txt")                                  # root may
    assert bob.do("unlink", q / "b.txt") == "ENOENT"
    assert alice.do("unlink", q / "a2.txt") == "OK"
    check_dir_time(q, t0, "queue/")

    # ---- a job: alice's, read by all, changed by alice or root only
    assert alice.do("write", q / "job.blend", data=scenes.bytes("slow")) == "OK"
    assert alice.do("write", q / "job.range", data=b"1-60\nvideo = no\n") == "OK"
    s = m.wait_count("job", 2, timeout=90)   # one for alice to remove, one for after
    jd = m.job_dir("job")
    assert s["owner"] == alice.name, "status owner: %r, want %r" % (s.get("owner"), alice.name)
    sj = json.loads(bob.read(jd / "status.json"))
    assert sj["owner"] == alice.name and sj["uid"] == alice.uid, sj
    assert "owner: %s" % alice.name in bob.read(jd / "status").decode()
    for p in (jd, jd / "status", jd / "status.json", jd / "control", jd / "logs"):
        assert owner_of(p) == (alice.uid, alice.gid), "%s shows alice's uid/gid: %s" % (
            p, owner_of(p))
    frame = m.frames("job")[0]
    assert owner_of(jd / frame) == (alice.uid, alice.gid)
    listed = {e.name: e.stat() for e in os.scandir(jd)}     # readdirplus attributes
    assert (listed[frame].st_uid, listed[frame].st_gid) == (alice.uid, alice.gid)
    assert bob.read(jd / frame) == get(jd / frame), "bob reads alice's frames"
    for p in (out, jd, jd / "logs", m.mnt / "nodes"):
        check_dir_time(p, t0, str(p.relative_to(m.mnt)))

    assert bob.do("control", jd / "control", data=b"cancel\n") == "EACCES", \
        "bob cancels alice's job"
    assert m.status("job")["state"] in ("rendering", "waiting"), "the job still runs"
    assert alice.do("control", jd / "control", data=b"cancel\n") == "OK"
    m.wait_state("job", "cancelled", timeout=30)
    frame = m.frames("job")[0]
    assert bob.do("unlink", jd / frame) == "EACCES", "bob removes alice's frame"
    assert bob.do("unlink", jd / "status") == "EACCES"
    assert bob.do("rmdir", jd / "logs") == "EACCES"
    assert bob.do("rmdir", jd) == "EPERM", "bob removes alice's job (sticky out/)"
    assert (jd / frame).exists() and jd.exists(), "nothing was removed"
    assert alice.do("unlink", jd / frame) == "OK", "alice removes her frame"
    assert not (jd / frame).exists()

    # ---- owners are in the store: a remount shows the same
    m.stop()
    m.start()
    assert owner_of(jd) == (alice.uid, alice.gid), "out/job after remount: %s" % (owner_of(jd),)
    assert m.status("job")["owner"] == alice.name
    assert bob.do("unlink", jd / m.frames("job")[0]) == "EACCES", "after remount too"
    shutil.rmtree(jd)                                       # root may
    assert not jd.exists()

    # ---- alice removes her own ended job, all of it
    assert bob.do("write", q / "bobs.blend", data=scenes.plain) == "OK"
    assert bob.do("write", q / "bobs.range", data=b"1\nvideo = no\n") == "OK"
    m.wait_done("bobs")
    assert m.status("bobs")["owner"] == bob.name
    bd = m.job_dir("bobs")
    assert alice.do("unlink", bd / "status") == "EACCES"
    for name in sorted(os.listdir(bd)):
        if name == "logs":
            for log in os.listdir(bd / "logs"):
                assert bob.do("unlink", bd / "logs" / log) == "OK"
            assert bob.do("rmdir", bd / "logs") == "OK"
        else:
            assert bob.do("unlink", bd / name) == "OK", name
    assert bob.do("rmdir", bd) == "OK", "bob removes his own job"
    assert not bd.exists()
