# The installed layout, per product.md "Shared mounts": `meson install
# --destdir D` puts renderfs in bin and renderfs.1 in man1; the installed
# binary runs (--version, --help), carries its Blender worker (it writes it
# into the state directory at mount, byte for byte backend/sched/worker.py,
# and renders with it), and the contrib/ files that start it at boot agree
# with that layout: the systemd unit's ExecStart is the installed binary
# (and systemd-analyze accepts the unit), and the fstab line mounts through
# mount(8) and mount.fuse3.

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import rfslib as R
from rfslib import get, wait_for

pytestmark = pytest.mark.deadline(150)

WORKER = R.REPO / "backend" / "sched" / "worker.py"


def build_dir():
    b = os.environ.get("RENDERFS_BUILD")
    return Path(b).resolve() if b else R.REPO / "build"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """{'destdir': D, 'bin': D/.../bin/renderfs, 'man': D/.../man1/renderfs.1,
    'prefix_bin': the binary's path on the target system}."""
    b = build_dir()
    if not (b / "build.ninja").exists():
        pytest.fail("no meson build directory at %s (set RENDERFS_BUILD)" % b)
    d = tmp_path_factory.mktemp("destdir")
    # --no-rebuild: the suite's other tests are using this build.
    r = subprocess.run(["meson", "install", "-C", str(b), "--no-rebuild", "--destdir", str(d)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "meson install failed:\n%s\n%s" % (r.stdout, r.stderr)
    r = subprocess.run(["meson", "introspect", "--installed", str(b)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    dests = list(json.loads(r.stdout).values())
    bins = [p for p in dests if p.endswith("/bin/renderfs")]
    mans = [p for p in dests if p.endswith("/man1/renderfs.1")]
    assert len(bins) == 1 and len(mans) == 1, "install destinations: %s" % dests
    out = {"destdir": d, "prefix_bin": bins[0], "bin": Path(str(d) + bins[0]),
           "man": Path(str(d) + mans[0])}
    for k in ("bin", "man"):
        assert out[k].is_file(), "%s is not installed at %s" % (k, out[k])
    assert os.access(out["bin"], os.X_OK), "the installed renderfs is not executable"
    return out


def test_installed_binary_runs(installed):
    r = subprocess.run([str(installed["bin"]), "--version"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("renderfs "), r.stdout
    want = hashlib.sha256(get(WORKER)).hexdigest()
    assert "worker: built in, %d bytes, sha256 %s" % (len(get(WORKER)), want) in r.stdout, \
        "--version does not name the worker of this source tree:\n%s" % r.stdout
    r = subprocess.run([str(installed["bin"]), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and "-o state=DIR" in r.stdout, r.stdout[:500]


def test_man_page_installed(installed):
    text = get(installed["man"]).decode()
    assert text.startswith(".TH RENDERFS 1") or "\n.TH RENDERFS 1" in text[:2000], text[:200]
    assert "SHARED MOUNTS" in text, "the man page has no SHARED MOUNTS section"
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", str(installed["man"])], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat",
                                                PAGER="cat"))
        assert r.returncode == 0 and "renderfs" in r.stdout, r.stderr


def test_installed_binary_finds_its_worker(installed, rfs, scenes):
    m = rfs(start=False)
    m.bin = str(installed["bin"])
    m.start()
    m.drop("inst", scenes.plain, "1-2\nvideo = no\n")
    m.wait_done("inst")
    assert m.frame_numbers("inst") == [1, 2]
    assert get(m.state / "worker.py") == get(WORKER), \
        "the installed binary did not write this tree's worker into its state directory"


def test_systemd_unit_runs_the_installed_binary(installed, tmp_path):
    unit = (R.REPO / "contrib" / "renderfs.service").read_text()
    lines = [l for l in unit.splitlines() if l.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    argv = lines[0][len("ExecStart="):].split()
    assert argv[0] == installed["prefix_bin"], \
        "the unit runs %s, meson installs %s" % (argv[0], installed["prefix_bin"])
    assert "-f" in argv, "the unit must keep renderfs in the foreground (Type=simple)"
    assert "Type=simple" in unit
    for name in ("README.md",):
        assert "contrib/renderfs.service" in (R.REPO / name).read_text(), \
            "%s does not point at contrib/renderfs.service" % name
    if not shutil.which("systemd-analyze"):
        return
    # systemd-analyze checks that ExecStart exists: point it at the copy in
    # the destdir, and man: at the installed page.
    local = tmp_path / "renderfs.service"
    local.write_text(unit.replace(installed["prefix_bin"], str(installed["bin"])))
    manpath = str(installed["man"].parent.parent)
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, MANPATH=manpath))
    problems = [l for l in (r.stdout + r.stderr).splitlines() if "renderfs.service" in l]
    assert r.returncode == 0 and not problems, "systemd-analyze verify:\n%s%s" % (r.stdout,
                                                                                 r.stderr)


def renderfs_pids(state):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = get("/proc/%s/cmdline" % p).split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"renderfs") and any(str(state).encode() in a for a in cmd):
            pids.append(int(p))
    return pids


# The PATH mount(8) gives its helpers, whatever the caller's (libmount's
# fixed one, seen with a helper that prints it): mount.fuse3 finds the
# program of a fuse.TYPE line there.
MOUNT_HELPER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_fstab_line_mounts(installed, tmp_path, scenes):
    if os.geteuid() != 0:
        pytest.skip("mount(8) with an fstab line needs root")
    text = (R.REPO / "contrib" / "fstab.example").read_text()
    assert "contrib/fstab.example" in (R.REPO / "README.md").read_text(), \
        "README.md does not point at contrib/fstab.example"
    entries = [l.split() for l in text.splitlines() if l.strip() and not l.startswith("#")]
    assert len(entries) == 1 and len(entries[0]) == 6, entries
    source, _, fstype, options, _, _ = entries[0]
    assert fstype == "fuse.renderfs", fstype
    # For fuse.renderfs, mount.fuse3 runs "renderfs" from mount(8)'s PATH:
    # the installed binary must be there.
    assert os.path.dirname(installed["prefix_bin"]) in MOUNT_HELPER_PATH.split(":"), \
        "mount(8) would not find %s" % installed["prefix_bin"]
    mnt, state = tmp_path / "mnt", tmp_path / "state"
    mnt.mkdir()
    conf = tmp_path / "renderfs.conf"
    conf.write_text("[renderfs]\nbackend = local\nquiet = %s\n[local]\nblender = blender\n"
                    "workers = 1\n" % R.QUIET_OPT)
    opts = options.replace("/var/lib/renderfs", str(state)).replace("/etc/renderfs.conf",
                                                                     str(conf))
    # The line's options through mount(8) and mount.fuse3, with the
    # program named by path (the PROGRAM#SOURCE form), since the copy under
    # the destdir is on no PATH that mount(8) keeps.
    r = subprocess.run(["mount", "-t", "fuse", "-o", opts, "%s#%s" % (installed["bin"], source),
                        str(mnt)], capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 0, "mount -o %s: %s%s" % (opts, r.stdout, r.stderr)
        wait_for(lambda: R.mounted(mnt) and (mnt / "status").exists(), 15, "the fstab mount")
        pids = renderfs_pids(state)
        assert pids and all(os.readlink("/proc/%d/exe" % p) == str(installed["bin"])
                            for p in pids), "the mount is not the installed binary's: %s" % pids
        R.put(mnt / "queue" / "fst.blend", scenes.plain)
        R.put(mnt / "queue" / "fst.range", "1\nvideo = no\n")
        wait_for(lambda: R.parse_status(get(mnt / "out" / "fst" / "status").decode())["state"]
                 == "done", 60, "the job on the fstab mount")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30)
        if R.mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=30)
    wait_for(lambda: not renderfs_pids(state), 30, "the fstab mount's daemon to exit")
