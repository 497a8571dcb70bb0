# `blender = auto` (issue 13; product.md "Blender on nodes, installed by
# renderfs"): SSH nodes without Blender (sshnodes' hide_blender: an empty
# file bound over /usr/bin/blender in the node's mount namespace) and a
# Blender mirror on the test network (sshnodes.Mirror) serving a build this
# test makes: blender-X.Y.Z-linux-x64/blender laid out like the official
# tarball, its `blender` a wrapper that execs the real Blender, and the
# checksum list blender-X.Y.Z.sha256 beside it naming several files.
#
# Which X.Y.Z: the series that saved the test's scenes (this machine's
# Blender) looked up in renderfs's own release table
# (backend/sched/blender-releases.txt, which the daemon compiles in).  The
# status line shows the version the running Blender reports: the stand-in
# runs this machine's Blender, so that is blender_version.
#
# Skips only where this machine cannot make network namespaces.

import os
import subprocess
from pathlib import Path

import pytest

import rfslib as R
import sshnodes
from rfslib import get, wait_for

known_release = sshnodes.known_blender_release
series_of = sshnodes.blender_series
TINY = (64, 48)


@pytest.fixture(autouse=True)
def _need_namespaces():
    if not sshnodes.can_make_namespaces():
        pytest.skip("cannot make network namespaces here")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, scenes):
    paths = R.make_scenes(tmp_path_factory.mktemp("install_scenes"),
                          {"tiny": ["--frames", "6", "--size", "%dx%d" % TINY, "--samples", "4"]})
    return get(paths["tiny"])



class Farm:
    def __init__(self, tmp_path, rfs, holder):
        self.tmp = tmp_path
        self.rfs = rfs
        self.holder = holder
        self.key = tmp_path / "id_ed25519"
        sshnodes.make_key(self.key)
        self.nodes = None

    def make_nodes(self, hide):
        d = self.tmp / "farm"
        d.mkdir()
        self.nodes = sshnodes.make_nodes(len(hide), str(d), str(self.key) + ".pub",
                                         hide_blender=hide)
        self.holder.append(self.nodes)
        return self.nodes

    def config(self, mirror_url):
        lines = ["[renderfs]", "backend = ssh", "quiet = %s" % R.QUIET_OPT, "lease = 5s",
                 "blender_mirror = %s/" % mirror_url,      # a trailing '/' is fine
                 "[ssh]", "blender = auto", "slots = 1", "identity = %s" % self.key]
        lines += ["node = %s" % n.target for n in self.nodes]
        return "\n".join(lines) + "\n"

    def make_mirror(self, version, tarball, real_blender, good=True):
        root = self.tmp / ("mirror-good" if good else "mirror-bad")
        paths = sshnodes.blender_mirror_tree(root, version, tarball, real_blender, good)
        return root, paths


@pytest.fixture
def _node_sets():
    holder = []
    yield holder
    for ns in holder:
        ns.cleanup()


@pytest.fixture
def farm(tmp_path, monkeypatch, _node_sets, rfs):
    monkeypatch.setattr(R, "not_the_daemons", sshnodes.in_node_namespace)
    return Farm(tmp_path, rfs, _node_sets)


def node_name(node):
    return node.ip


def node_status_text(mnt, node):
    try:
        return get(mnt.mnt / "nodes" / node_name(node) / "status").decode()
    except OSError as e:
        return "(unreadable: %s)" % e


def node_status(mnt, node):
    return R.parse_status(node_status_text(mnt, node))


def wait_node(mnt, node, pred, timeout, what):
    try:
        return wait_for(lambda: (lambda s: s if pred(s) else None)(node_status(mnt, node)),
                        timeout, what, interval=0.1)
    except AssertionError as e:
        raise AssertionError("%s\n--- node status\n%s\n--- sshd log\n%s\n%s" % (
            e, node_status_text(mnt, node), node.read_log(), mnt.log_tail(40)))


def frames_ok(mnt, job, n):
    frames = mnt.frames(job)
    assert len(frames) == n, (frames, mnt.status_text(job))
    for f in frames:
        assert R.image_size(mnt.out / job / f) == TINY, f


@pytest.mark.deadline(150)
def test_node_without_blender_installs_it_once(farm, tiny, blender_version):
    version, tarball = known_release(series_of(blender_version))
    nodes = farm.make_nodes([True])
    node = nodes[0]
    # The node really has no Blender of its own: not in sshd's namespace.
    r = subprocess.run(["nsenter", "-t", str(node.proc.pid), "-m", "--", "sh", "-c",
                        "blender --version"], capture_output=True, timeout=30)
    assert r.returncode != 0, r
    root, (tar_path, sum_path) = farm.make_mirror(version, tarball, node.real_blender)
    installed = Path(node.dir) / "blender" / version / "blender"
    with sshnodes.Mirror(root, node) as mirror:
        mnt = farm.rfs(config=farm.config(mirror.url))
        s = wait_node(mnt, node, lambda s: s.get("state") == "idle", 60, "the node idle")
        assert s["blender"].startswith("none"), node_status_text(mnt, node)
        assert mirror.requests == [], mirror.requests      # nothing fetched before a job

        mnt.drop("first", tiny, "1-6\n")
        st = mnt.wait_done("first", timeout=90)
        frames_ok(mnt, "first", 6)
        s = node_status(mnt, node)
        assert s["blender"] == "%s (installed)" % blender_version, node_status_text(mnt, node)
        assert int(s["done"]) == 6, node_status_text(mnt, node)
        assert mirror.hits(tar_path) == 1 and mirror.hits(sum_path) == 1, mirror.requests
        assert installed.is_file() and os.access(installed, os.X_OK), installed
        # Unpacked whole and renamed into place: no temporary folder left.
        assert sorted(p.name for p in installed.parent.parent.iterdir()) == [version]
        del st

        # A second mount (a fresh connection, a new job) reuses the build.
        mnt.stop()
        mnt.start()
        s = wait_node(mnt, node, lambda s: s.get("state") == "idle", 60, "the node idle again")
        # The probe found the build: it runs before any job asks for it.
        assert s["blender"] == "%s (installed)" % blender_version, node_status_text(mnt, node)
        mnt.drop("second", tiny, "1-3\n")
        mnt.wait_done("second", timeout=90)
        s = node_status(mnt, node)
        assert s["blender"] == "%s (installed)" % blender_version, node_status_text(mnt, node)
        assert mirror.hits(tar_path) == 1 and mirror.hits(sum_path) == 1, mirror.requests
        assert len(mnt.frames("second")) == 3


@pytest.mark.deadline(150)
def test_bad_checksum_is_a_node_error_and_others_render(farm, tiny, blender_version):
    version, tarball = known_release(series_of(blender_version))
    nodes = farm.make_nodes([True, False])
    bare, full = nodes[0], nodes[1]
    root, (tar_path, _) = farm.make_mirror(version, tarball, bare.real_blender, good=False)
    with sshnodes.Mirror(root, bare) as mirror:
        mnt = farm.rfs(config=farm.config(mirror.url))
        s = wait_node(mnt, full, lambda s: s.get("state") == "idle", 60, "the full node idle")
        assert s["blender"] == "%s (on node)" % blender_version, node_status_text(mnt, full)
        mnt.drop("shot", tiny, "1-6\n")
        s = wait_node(mnt, bare, lambda s: s.get("state") == "error", 60,
                      "the node without Blender in error")
        err = s.get("error", "")
        assert "SHA-256" in err and tarball in err, node_status_text(mnt, bare)
        mnt.wait_done("shot", timeout=90)
        frames_ok(mnt, "shot", 6)
        s = node_status(mnt, bare)
        assert s["state"] == "error" and int(s["done"]) == 0, node_status_text(mnt, bare)
        assert int(node_status(mnt, full)["done"]) == 6
        # Nothing half-installed, and the download was tried once.
        assert not (Path(bare.dir) / "blender" / version).exists()
        assert mirror.hits(tar_path) == 1, mirror.requests


@pytest.mark.deadline(120)
def test_mirror_without_the_known_patch_gives_the_newest_it_lists(farm, tiny, blender_version):
    """The release table names a patch this mirror does not have: the
    series folder's listing names another, which is installed instead."""
    known, _ = known_release(series_of(blender_version))
    other = "%s.%d" % (series_of(known), int(known.split(".")[2]) + 1)
    nodes = farm.make_nodes([True])
    node = nodes[0]
    root, (tar_path, _) = farm.make_mirror(other, "blender-%s-linux-x64.tar.xz" % other,
                                           node.real_blender)
    with sshnodes.Mirror(root, node) as mirror:
        mnt = farm.rfs(config=farm.config(mirror.url))
        mnt.drop("shot", tiny, "1-3\n")
        mnt.wait_done("shot", timeout=90)
        frames_ok(mnt, "shot", 3)
        assert int(node_status(mnt, node)["done"]) == 3, node_status_text(mnt, node)
        folder = "/Blender%s/" % series_of(known)
        assert mirror.hits(folder + "blender-%s.sha256" % known) == 1, mirror.requests
        assert mirror.hits(folder) == 1 and mirror.hits(tar_path) == 1, mirror.requests
        assert sorted(p.name for p in (Path(node.dir) / "blender").iterdir()) == [other]


@pytest.mark.deadline(90)
def test_bad_checksum_on_the_only_node_fails_the_job_with_the_reason(farm, tiny, blender_version):
    version, tarball = known_release(series_of(blender_version))
    nodes = farm.make_nodes([True])
    node = nodes[0]
    root, _ = farm.make_mirror(version, tarball, node.real_blender, good=False)
    with sshnodes.Mirror(root, node) as mirror:
        mnt = farm.rfs(config=farm.config(mirror.url))
        mnt.drop("shot", tiny, "1-3\n")
        s = mnt.wait_state("shot", timeout=60)
        assert s["state"] == "failed", mnt.status_text("shot")
        err = s.get("error", "")
        assert "SHA-256 mismatch" in err and tarball in err, mnt.status_text("shot")
        assert mnt.frames("shot") == [] and int(node_status(mnt, node)["done"]) == 0
        assert mirror.requests, "the node never asked the mirror"
