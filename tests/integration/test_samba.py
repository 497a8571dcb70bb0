# A Samba share of the mount, per product.md "Shared mounts": a real smbd on
# 127.0.0.1 (private smb.conf built from contrib/samba-renderfs.conf, its own
# state, lock, pid and log directories, a free high port) serves a renderfs
# mount made with -o allow_other, and real smbclient acts as Samba users
# made with useradd and smbpasswd.  A user drops a job the way Explorer and
# Finder do (temp names renamed into place, `._NAME` and `.DS_Store` side
# files), waits for it by reading status through the share, fetches frames
# byte-identical to the mount's, writes control, and removes the ended job.
#
# The first tests also check what Samba needs of renderfs directly on the
# mount: EOPNOTSUPP for every xattr call, a control file that takes
# pwrite at 0, ftruncate and utimensat, stable inode numbers, and names
# of an ended job that go away when removed.
#
# smbd checks queue/'s mode bits itself: the flow tests work as the Samba
# users because queue/ is sticky and world-writable (1777, job owners);
# a mount without it would need `force user = root`, which the fixture
# adds only then.

import errno
import json
import os
import stat
import subprocess

import pytest

import rfslib as R
import sharelib as S
from rfslib import get, put, wait_for

pytestmark = [
    pytest.mark.deadline(150),
    pytest.mark.skipif(not S.have("smbd", "smbclient", "smbpasswd", "useradd"),
                       reason="samba, smbclient or useradd is not installed"),
]

ALICE, BOB = "rfs_smb_alice", "rfs_smb_bob"


def reachable(mnt):
    """smbd works as the Samba user: every folder above the mount must let
    others through (pytest's own base folder is 0700; pytest sets it
    back at the next session)."""
    d = os.path.dirname(os.path.abspath(str(mnt.mnt)))
    while d not in ("/", ""):
        st = os.stat(d)
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        d = os.path.dirname(d)
    return mnt


def owners_present(mnt):
    """queue/ is a sticky world-writable directory once owners exist."""
    return stat.S_IMODE(os.stat(mnt.queue).st_mode) & 0o1777 == 0o1777


@pytest.fixture
def shared(rfs, tmp_path):
    """(mount, smbd) with share "farm" of the mount for ALICE and BOB."""
    mnt = reachable(rfs(opts=("allow_other",)))
    glob, share = S.snippet_sections(S.SAMBA_SNIPPET, mnt.mnt, "farm")
    if not owners_present(mnt):
        share += "   force user = root\n"
    smb = S.Samba(tmp_path / "smb", {"farm": (mnt.mnt, share)}, users=[ALICE, BOB],
                  global_extra=glob)
    smb.start()
    yield mnt, smb
    smb.stop()


@pytest.fixture
def shared_as_users(rfs, tmp_path):
    """As shared, but always without force user: files are made as the
    Samba user (what the owner tests need)."""
    mnt = reachable(rfs(opts=("allow_other",)))
    glob, share = S.snippet_sections(S.SAMBA_SNIPPET, mnt.mnt, "farm")
    smb = S.Samba(tmp_path / "smb", {"farm": (mnt.mnt, share)}, users=[ALICE, BOB],
                  global_extra=glob)
    smb.start()
    yield mnt, smb
    smb.stop()


def smb_drop(smb, user, local, name, blend, rng):
    """Drop NAME as Explorer/Finder do: side files first, each file written
    under a temp name and renamed into place."""
    put(local / (name + ".blend"), blend)
    put(local / (name + ".range"), rng)
    put(local / "side", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    smb.client("farm", user, [
        "cd queue",
        "put side ._%s.blend" % name,
        "put side .DS_Store",
        "put %s.range ~$%s.range.tmp" % (name, name),
        "rename ~$%s.range.tmp %s.range" % (name, name),
        "put %s.blend %s.blend.sb-1a2b3c" % (name, name),
        "rename %s.blend.sb-1a2b3c %s.blend" % (name, name),
    ], cwd=str(local))


def smb_get(smb, user, local, remote, check=True):
    """Fetch one file through the share; its bytes (None when refused and
    check is off)."""
    dest = local / "got"
    if dest.exists():
        dest.unlink()
    r = smb.client("farm", user, ['get "%s" got' % remote], cwd=str(local), check=check)
    return get(dest) if S.smb_error(r) is None and dest.exists() else None


def smb_status(smb, user, local, job):
    """out/JOB/status read through the share; ValueError (which wait_for
    takes as "not yet") while the share does not show it."""
    data = smb_get(smb, user, local, "out/%s/status" % job, check=False)
    if data is None:
        raise ValueError("out/%s/status not readable through the share" % job)
    return R.parse_status(data.decode("utf-8"))


def smb_wait_state(smb, user, local, job, states, timeout=90):
    seen = []

    def check():
        s = smb_status(smb, user, local, job)
        if not seen or seen[-1] != s.get("state"):
            seen.append(s.get("state"))
        return s if s.get("state") in states else None
    try:
        return wait_for(check, timeout, "%s to be %s through the share" % (job, "/".join(states)),
                        interval=0.2)
    except AssertionError as e:
        raise AssertionError("%s; states seen through the share: %s" % (e, seen))


def smb_control(smb, user, local, job, cmd):
    """Write cmd to out/JOB/control through the share: None on success, else
    the NT_STATUS code."""
    put(local / "cmd", cmd + "\n")
    r = smb.client("farm", user, ["put cmd out/%s/control" % job], cwd=str(local), check=False)
    return S.smb_error(r)


def smb_names(smb, user, path):
    r = smb.client("farm", user, ['ls "%s/*"' % path])
    names = []
    for line in r.stdout.splitlines():
        parts = line.split()
        # "  name   A   123  Fri Dec  4 ...": the name is what comes before
        # the attribute column; test names have no spaces.
        if len(parts) >= 3 and not line.startswith("\t") and parts[0] not in (".", ".."):
            names.append(parts[0])
    return names


# ---- what Samba needs of the mount itself ----

def test_mount_answers_what_smbd_asks(mnt, scenes):
    mnt.drop("x", scenes.plain, "1-2\nvideo = no\n")
    mnt.wait_done("x")
    job = mnt.job_dir("x")
    # Every xattr call is "not supported" (never ENOSYS, never a fake
    # success): smbd and rsync -X then leave xattrs alone.
    for p in (mnt.mnt, mnt.queue, job, job / "status", job / "frame_0001.png"):
        for call in (lambda: os.listxattr(p), lambda: os.getxattr(p, "user.DOSATTRIB"),
                     lambda: os.setxattr(p, "user.DOSATTRIB", b"0x20")):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EOPNOTSUPP, "%s: %s" % (p, e.value)
    # A queue file is fsynced for real (strict sync).
    fd = os.open(mnt.queue / "note.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"hello")
    os.fsync(fd)
    os.close(fd)
    assert get(mnt.queue / "note.txt") == b"hello"
    # Inode numbers do not change between lookups, listings and mounts.
    inos = {n: os.stat(job / n).st_ino for n in ("status", "control", "logs", "frame_0001.png")}
    listed = {e.name: e.inode() for e in os.scandir(job)}
    for n, i in inos.items():
        assert listed[n] == i, "%s: st_ino %d, listed as %d" % (n, i, listed[n])
    frame = get(job / "frame_0001.png")
    mnt.stop()
    mnt.start()
    for n, i in inos.items():
        assert os.stat(job / n).st_ino == i, "%s has another inode number after a remount" % n
    assert get(job / "frame_0001.png") == frame


def test_control_takes_what_smbd_does(mnt, scenes):
    mnt.drop("long", scenes.bytes("slow"), "1-60\nvideo = no\n")
    mnt.wait_count("long", 1)
    ctl = mnt.job_dir("long") / "control"
    # smbd: open, pwrite at 0, ftruncate(0), set times, close.
    fd = os.open(ctl, os.O_WRONLY)
    try:
        assert os.pwrite(fd, b"pause\n", 0) == 6
        os.ftruncate(fd, 0)
        os.utime(fd, None)
    finally:
        os.close(fd)
    assert mnt.wait_state("long", "paused", timeout=20)["state"] == "paused"
    fd = os.open(ctl, os.O_WRONLY)
    try:
        assert os.pwrite(fd, b"resume\n", 0) == 7
        with pytest.raises(OSError) as e:
            os.ftruncate(fd, 10)          # only emptying it means nothing
        assert e.value.errno == errno.EROFS
    finally:
        os.close(fd)
    mnt.wait_state("long", ("rendering", "waiting"), timeout=20)
    with pytest.raises(OSError) as e:
        os.chmod(ctl, 0o666)
    assert e.value.errno == errno.EROFS
    assert mnt.control("long", "cancel") == 0
    mnt.wait_state("long", "cancelled", timeout=20)


def test_removed_names_of_an_ended_job_go(mnt, scenes):
    mnt.drop("gone", scenes.plain, "1-3\nvideo = no\n")
    mnt.wait_done("gone")
    job = mnt.job_dir("gone")
    logs = sorted(os.listdir(job / "logs"))
    assert logs, "no logs listed"
    os.unlink(job / "status")
    os.unlink(job / "logs" / logs[0])
    assert "status" not in os.listdir(job)
    assert logs[0] not in os.listdir(job / "logs")
    assert not os.path.exists(job / "status")
    assert "status.json" in os.listdir(job), "only the removed name may go"
    # What Samba checks before it removes a directory: that it lists nothing.
    for n in logs[1:]:
        os.unlink(job / "logs" / n)
    assert os.listdir(job / "logs") == []
    os.rmdir(job / "logs")
    for n in os.listdir(job):
        os.unlink(job / n)
    assert os.listdir(job) == []
    os.rmdir(job)
    assert "gone" not in os.listdir(mnt.out)


# ---- through the share ----

def test_samba_drop_render_fetch_remove(shared, scenes, tmp_path):
    mnt, smb = shared
    local = tmp_path / "client"
    local.mkdir()
    smb_drop(smb, ALICE, local, "shot", scenes.plain, "1-6\nvideo = no\n")
    s = smb_wait_state(smb, ALICE, local, "shot", R.TERMINAL)
    assert s["state"] == "done", mnt.status_text("shot")
    assert s["done"] == "6"
    # The side files stay side files: no job, no refusal for them.
    assert sorted(os.listdir(mnt.out)) == ["shot"]
    qnames = smb_names(smb, ALICE, "queue")
    assert not any(n.endswith(".error") for n in qnames), qnames
    # Frames come through the share byte for byte; so does status.json.
    frames = mnt.frames("shot")
    assert len(frames) == 6
    assert sorted(n for n in smb_names(smb, ALICE, "out/shot") if R.FRAME_RE.match(n)) == frames
    got = local / "frames"
    got.mkdir()
    smb.client("farm", ALICE, ["cd out/shot", "lcd frames", "prompt off", "mget frame_*"],
               cwd=str(local))
    for n in frames:
        assert R.sha(get(got / n)) == R.sha(get(mnt.job_dir("shot") / n)), n
    js = json.loads(smb_get(smb, ALICE, local, "out/shot/status.json"))
    assert js["state"] == "done" and js["done"] == 6
    # A finished job is removed whole through the share.
    smb.client("farm", ALICE, ["cd out", "deltree shot"])
    wait_for(lambda: "shot" not in os.listdir(mnt.out), 10, "out/shot to go")
    assert "shot" not in smb_names(smb, ALICE, "out")


def test_samba_control_and_busy_removal(shared, scenes, tmp_path):
    mnt, smb = shared
    local = tmp_path / "client"
    local.mkdir()
    smb_drop(smb, ALICE, local, "long", scenes.bytes("slow"), "1-60\nvideo = no\n")
    smb_wait_state(smb, ALICE, local, "long", ("rendering",))
    assert smb_control(smb, ALICE, local, "long", "pause") is None
    assert smb_wait_state(smb, ALICE, local, "long", ("paused",), timeout=20)
    # A running (here: paused) job cannot be removed through the share.
    r = smb.client("farm", ALICE, ["cd out", "deltree long"], check=False)
    assert "long" in os.listdir(mnt.out), r.stdout + r.stderr
    assert mnt.status("long")["state"] == "paused"
    assert smb_control(smb, ALICE, local, "long", "resume") is None
    smb_wait_state(smb, ALICE, local, "long", ("rendering", "waiting"), timeout=20)
    # A word control does not know is refused, and the job goes on.
    assert smb_control(smb, ALICE, local, "long", "explode") is not None
    assert smb_control(smb, ALICE, local, "long", "cancel") is None
    smb_wait_state(smb, ALICE, local, "long", ("cancelled",), timeout=20)
    smb.client("farm", ALICE, ["cd out", "deltree long"])
    wait_for(lambda: "long" not in os.listdir(mnt.out), 10, "out/long to go")


# ---- owners (need the owners branch) ----

def test_samba_job_belongs_to_its_samba_user(shared_as_users, scenes, tmp_path):
    mnt, smb = shared_as_users
    local = tmp_path / "client"
    local.mkdir()
    uid, gid = S.ensure_user(ALICE)
    smb_drop(smb, ALICE, local, "mine", scenes.bytes("slow"), "1-60\nvideo = no\n")
    smb_wait_state(smb, ALICE, local, "mine", ("rendering",))
    st = os.stat(mnt.job_dir("mine"))
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert mnt.status("mine").get("owner") == ALICE
    # Bob reads but cannot cancel or remove Alice's job.
    assert smb_status(smb, BOB, local, "mine")["state"] in ("rendering", "waiting")
    assert smb_control(smb, BOB, local, "mine", "cancel") is not None
    r = smb.client("farm", BOB, ["cd queue", "del mine.blend"], check=False)
    assert S.smb_error(r) is not None
    assert mnt.status("mine")["state"] in ("rendering", "waiting")
    assert smb_control(smb, ALICE, local, "mine", "cancel") is None
    smb_wait_state(smb, ALICE, local, "mine", ("cancelled",), timeout=20)
    r = smb.client("farm", BOB, ["cd out", "deltree mine"], check=False)
    assert "mine" in os.listdir(mnt.out), "Bob removed Alice's job"
    smb.client("farm", ALICE, ["cd out", "deltree mine"])
    wait_for(lambda: "mine" not in os.listdir(mnt.out), 10, "out/mine to go")


def test_samba_snippet_is_valid():
    """testparm accepts the shipped snippet as it is, with no warning about
    a parameter in the wrong section."""
    r = subprocess.run(["testparm", "-s", str(S.SAMBA_SNIPPET)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "found in service section" not in r.stderr, r.stderr
    assert "Unknown parameter" not in r.stderr, r.stderr
