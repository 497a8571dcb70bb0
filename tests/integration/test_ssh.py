# The ssh backend end to end (issue 3; product.md "Bad input and failures",
# architecture.md "Nodes" and "Scheduling"): real sshd processes, each in its
# own network namespace (sshnodes.py), running real Blender, driven through
# the mount.  Faults are real ones: sshd killed, the link taken down, a host
# key changed, renderfs SIGKILLed.  Per-node Blender behaviour comes from
# small `blender` stand-ins in ssh_fakes/ put first on one node's PATH with
# sshd's SetEnv.
#
# "Every frame exactly once" means: every frame file exists once, and the
# per-node counts (node_frames) sum to the frame count.  Blender may have run
# a frame twice (tail duplicates; the first verified result wins).
#
# Skips only where this machine cannot make network namespaces.

import os
import re
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

import rfslib as R
import sshnodes
from rfslib import get, wait_for

HERE = Path(__file__).resolve().parent
FAKES = HERE / "ssh_fakes"
LEASE = 5.0                       # seconds; the tests' `lease`
TINY = (64, 48)                   # the tiny scene's size
MEDIUM = (128, 96)
SLOW = (320, 240)                 # conftest's "slow" scene


@pytest.fixture(autouse=True)
def _need_namespaces():
    if not sshnodes.can_make_namespaces():
        pytest.skip("cannot make network namespaces here")


SSH_SCENES = {
    # About 0.1 s a frame: for jobs that only need to finish.
    "tiny": ["--frames", "36", "--size", "%dx%d" % TINY, "--samples", "16"],
    # About 0.3-0.5 s a frame with three nodes on two cores: long enough
    # for every node to have loaded Blender before the queue runs dry.
    "medium": ["--frames", "36", "--size", "%dx%d" % MEDIUM, "--samples", "16"],
}


@pytest.fixture(scope="module")
def ssh_scenes(tmp_path_factory, scenes):
    try:
        paths = R.make_scenes(tmp_path_factory.mktemp("ssh_scenes"), SSH_SCENES)
    except AssertionError as e:
        pytest.fail(str(e))
    return {name: get(path) for name, path in paths.items()}


@pytest.fixture
def tiny(ssh_scenes):
    return ssh_scenes["tiny"]


@pytest.fixture
def medium(ssh_scenes):
    return ssh_scenes["medium"]


# ---------------------------------------------------------------- leftovers


# ---------------------------------------------------------------- the farm

class Farm:
    """The test's nodes and mounts: nodes first, mounts after."""

    def __init__(self, tmp_path, rfs, holder):
        self.tmp = tmp_path
        self.rfs = rfs
        self.holder = holder
        self.key = tmp_path / "id_ed25519"
        sshnodes.make_key(self.key)
        self.nodes = None

    def make_nodes(self, n, env=None):
        assert self.nodes is None
        d = self.tmp / "farm"
        d.mkdir()
        self.nodes = sshnodes.make_nodes(n, str(d), str(self.key) + ".pub", env=env)
        self.holder.append(self.nodes)
        return self.nodes

    def config(self, nodes=None, identity=True, extra=""):
        nodes = self.nodes if nodes is None else nodes
        lines = ["[renderfs]", "backend = ssh", "quiet = %s" % R.QUIET_OPT,
                 "lease = %ds" % LEASE, "[ssh]"]
        lines += ["node = %s" % n.target for n in nodes]
        if identity:
            lines.append("identity = %s" % self.key)
        lines.append("slots = 1")
        return "\n".join(lines) + "\n" + extra

    def mount(self, **kw):
        return self.rfs(config=self.config(**kw))

    def fake_path(self, fake, **extra):
        """Session environment for a node whose `blender` is ssh_fakes/FAKE.py;
        returns it and the directory holding that `blender`."""
        d = self.tmp / ("bin-" + fake)
        d.mkdir(exist_ok=True)
        shutil.copyfile(FAKES / (fake + ".py"), d / "blender")
        os.chmod(d / "blender", 0o755)
        env = {"PATH": "%s:/usr/bin:/bin" % d}
        env.update(extra)
        return env, d


@pytest.fixture
def _node_sets():
    """Set up before rfs, so torn down after every mount is gone."""
    holder = []
    yield holder
    errors = []
    for ns in holder:
        try:
            ns.cleanup()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def farm(tmp_path, monkeypatch, _node_sets, rfs):
    # sshd, and what its sessions run, live in the nodes' network
    # namespaces: they belong to the nodes (whose cleanup kills them), not
    # to the daemon, though sshnodes started them from this process.
    monkeypatch.setattr(R, "not_the_daemons", sshnodes.in_node_namespace)
    return Farm(tmp_path, rfs, _node_sets)


def node_name(node):
    return node.ip if node.port == 22 else "%s:%d" % (node.ip, node.port)


def node_status(mnt, node):
    return R.parse_status(get(mnt.mnt / "nodes" / node_name(node) / "status").decode())


def node_status_text(mnt, node):
    try:
        return get(mnt.mnt / "nodes" / node_name(node) / "status").decode()
    except OSError as e:
        return "(unreadable: %s)" % e


def farm_debug(mnt, nodes):
    out = []
    for n in nodes:
        out.append("--- nodes/%s/status\n%s" % (node_name(n), node_status_text(mnt, n)))
        log = n.read_log().strip()
        if log:
            out.append("--- sshd log of %s\n%s" % (n.name, log))
    try:
        out.append("--- MOUNT/status\n" + mnt.status_text())
    except OSError:
        pass
    return "\n".join(out)


def wait_node_state(mnt, node, states, timeout, nodes=()):
    if isinstance(states, str):
        states = (states,)
    try:
        return wait_for(lambda: (lambda s: s if s.get("state") in states else None)(
            node_status(mnt, node)), timeout,
            "nodes/%s/status state %s" % (node_name(node), "/".join(states)), interval=0.1)
    except AssertionError as e:
        raise AssertionError("%s\n%s\n%s" % (e, farm_debug(mnt, nodes or [node]),
                                             mnt.log_tail(40)))


def wait_all_idle(mnt, nodes, timeout=60):
    for n in nodes:
        wait_node_state(mnt, n, "idle", timeout, nodes)


def node_frames(mnt, job):
    """node name -> frames done there, from status.json, checked against
    the text twin's `node_frames: A=3, B=5` line."""
    j = mnt.status_json(job)
    nf = j["node_frames"]
    assert isinstance(nf, dict), j
    text = mnt.status(job).get("node_frames", "")
    parsed = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        k, sep, v = item.rpartition("=")
        assert sep, "bad node_frames line %r" % text
        parsed[k.strip()] = int(v)
    assert {k: v for k, v in parsed.items() if v} == {k: v for k, v in nf.items() if v}, (
        "node_frames differ between status and status.json: %r vs %r" % (text, nf))
    return nf


def counter(s, key):
    assert key in s, "status lacks %r: %s" % (key, s)
    return int(s[key])


def png_ok(path, size):
    """A complete, intact PNG of the given size: every chunk's CRC right,
    the image data inflates to exactly the size IHDR promises."""
    data = get(path)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "%s: not a PNG" % path
    i, idat, ihdr, end = 8, b"", None, False
    while i < len(data):
        assert i + 12 <= len(data), "%s: truncated chunk at %d" % (path, i)
        (ln,) = struct.unpack(">I", data[i:i + 4])
        typ = data[i + 4:i + 8]
        body = data[i + 8:i + 8 + ln]
        (crc,) = struct.unpack(">I", data[i + 8 + ln:i + 12 + ln])
        assert len(body) == ln, "%s: truncated %r chunk" % (path, typ)
        assert zlib.crc32(typ + body) & 0xFFFFFFFF == crc, "%s: bad CRC in %r chunk" % (path, typ)
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBB", body[:10])
        elif typ == b"IDAT":
            idat += body
        elif typ == b"IEND":
            end = True
            break
        i += 12 + ln
    assert ihdr and end, "%s: no IHDR or IEND" % path
    w, h, depth, color = ihdr
    assert (w, h) == size, "%s: %dx%d, expected %dx%d" % (path, w, h, size[0], size[1])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + (w * channels * depth + 7) // 8), "%s: wrong image data size" % path


def check_frames(mnt, job, numbers, size):
    names = ["frame_%04d.png" % n for n in numbers]
    assert mnt.frames(job) == names, "frames of %s: %s" % (job, mnt.frames(job))
    for n in names:
        png_ok(mnt.job_dir(job) / n, size)


def check_exactly_once(mnt, job, numbers, size, nodes):
    check_frames(mnt, job, numbers, size)
    nf = node_frames(mnt, job)
    assert sum(nf.values()) == len(numbers), "node_frames %r do not sum to %d" % (nf, len(numbers))
    known = {node_name(n) for n in nodes}
    assert set(nf) <= known, "node_frames names unknown nodes: %r (nodes %r)" % (nf, known)
    return nf


# ---------------------------------------------------------------- tests
#
# Each test builds its nodes first, then mounts: a FUSE mount made before
# sshd started would be copied into sshd's mount namespace.


@pytest.mark.deadline(150)
def test_three_nodes_share_a_job(farm, medium, blender_version):
    nodes = farm.make_nodes(3)
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    for n in nodes:
        s = node_status(mnt, n)
        for k in R.NODE_KEYS:
            assert k in s, "nodes/%s/status lacks %r:\n%s" % (node_name(n), k,
                                                               node_status_text(mnt, n))
        assert s["provider"] == "ssh", s
        assert n.ip in s["address"], s
        assert blender_version in s["blender"], s
        assert re.search(r"(?i)\bcpu\b", s["device"]), s

    mnt.drop("shot", medium, "1-36\n")
    s = mnt.wait_done("shot", timeout=120)
    assert counter(s, "frames") == 36 and counter(s, "done") == 36, s
    assert counter(s, "failed") == 0 and counter(s, "interrupted") == 0, s
    assert counter(s, "retried") == 0, s
    nf = check_exactly_once(mnt, "shot", range(1, 37), MEDIUM, nodes)
    for n in nodes:
        assert nf.get(node_name(n), 0) > 0, "%s rendered nothing: node_frames %r\n%s" % (
            node_name(n), nf, farm_debug(mnt, nodes))
    v = R.ffprobe(mnt.job_dir("shot") / "shot.mp4")
    assert v == {"codec_name": "h264", "pix_fmt": "yuv420p", "nb_read_frames": 36}
    # Every node is listed in the farm's status, and its own status agrees.
    top = mnt.status_text()
    for n in nodes:
        assert re.search(r"(?m)^node: %s\b" % re.escape(node_name(n)), top), top
        ns = node_status(mnt, n)
        assert counter(ns, "done") >= nf[node_name(n)], ns
        assert counter(ns, "failed") == 0, ns
    # The .blend went to each node once, by content.
    digest = R.sha(medium)
    for n in nodes:
        hits = [p for p in Path(n.dir).rglob("*.blend") if p.name.startswith(digest)]
        assert hits, "no %s.blend under %s: %s" % (digest, n.dir, list(Path(n.dir).rglob("*")))


@pytest.mark.deadline(180)
def test_sshd_killed_mid_job(farm, scenes):
    nodes = farm.make_nodes(3)
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    victim = nodes[1]
    N = 30
    mnt.drop("long", scenes.bytes("slow"), "1-%d\nvideo = no\n" % N)
    wait_for(lambda: counter(node_status(mnt, victim), "done") >= 2
             and node_status(mnt, victim)["state"] == "rendering"
             and counter(mnt.status("long"), "queued") > 3, 120,
             "the victim to have rendered 2 frames and be rendering another")
    victim.kill_sshd()
    s = mnt.wait_done("long", timeout=150)
    assert counter(s, "failed") == 0, s
    assert counter(s, "interrupted") >= 1, "the frame in flight on the killed node was not " \
        "given back as interrupted:\n%s\n%s" % (mnt.status_text("long"), farm_debug(mnt, nodes))
    assert counter(s, "retried") == 0, "a lost node used up retries:\n%s" % mnt.status_text("long")
    nf = check_exactly_once(mnt, "long", range(1, N + 1), SLOW, nodes)
    assert nf.get(node_name(victim), 0) >= 1, nf
    ns = wait_node_state(mnt, victim, ("offline", "connecting", "error"), 30, nodes)
    assert ns["state"] != "idle"


@pytest.mark.deadline(240)
def test_link_down_longer_than_lease(farm, scenes, medium):
    nodes = farm.make_nodes(3)
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    victim = nodes[2]
    N = 48
    mnt.drop("long", scenes.bytes("slow"), "1-%d\nvideo = no\n" % N)
    wait_for(lambda: counter(node_status(mnt, victim), "done") >= 1
             and node_status(mnt, victim)["state"] == "rendering"
             and counter(mnt.status("long"), "queued") > 24, 120,
             "the victim to have rendered a frame and be rendering another")
    victim.link_down()
    t0 = time.monotonic()
    try:
        # The lease runs out while the link is down: the frame comes back.
        s = wait_for(lambda: (lambda s: s if counter(s, "interrupted") >= 1 else None)(
            mnt.status("long")), 3 * LEASE,
            "the frame on the unreachable node to be given back as interrupted")
        assert s["state"] != "done" or counter(s, "interrupted") >= 1
        assert time.monotonic() - t0 >= LEASE * 0.8, "given back before the lease ran out"
        wait_node_state(mnt, victim, ("offline", "connecting", "error"), 10, nodes)
        left = t0 + 12 - time.monotonic()
        if left > 0:
            time.sleep(left)      # the outage itself, not a sync
    finally:
        victim.link_up()
    s = mnt.wait_done("long", timeout=150)
    assert counter(s, "failed") == 0 and counter(s, "retried") == 0, s
    assert counter(s, "interrupted") >= 1, s
    check_exactly_once(mnt, "long", range(1, N + 1), SLOW, nodes)

    # The node comes back (reconnect backoff: up to ~16 s by now) ...
    wait_node_state(mnt, victim, "idle", 60, nodes)
    # ... and takes work again.
    mnt.drop("again", medium, "1-36\nvideo = no\n")
    s = mnt.wait_done("again", timeout=120)
    nf = check_exactly_once(mnt, "again", range(1, 37), MEDIUM, nodes)
    assert nf.get(node_name(victim), 0) > 0, "the node back from the outage rendered nothing " \
        "of a new job: %r\n%s" % (nf, farm_debug(mnt, nodes))


@pytest.mark.deadline(150)
def test_node_failing_every_frame_is_blocklisted(farm, tiny):
    env, _ = farm.fake_path("failing_blender")
    nodes = farm.make_nodes(3, env=[None, env, None])
    bad = nodes[1]
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    mnt.drop("shot", tiny, "1-36\nvideo = no\n")
    s = mnt.wait_done("shot", timeout=120)
    assert counter(s, "failed") == 0, s
    nf = check_exactly_once(mnt, "shot", range(1, 37), TINY, nodes)
    assert nf.get(node_name(bad), 0) == 0, nf
    ns = node_status(mnt, bad)
    assert counter(ns, "failed") >= 3, "the failing node's failures are not counted:\n%s" % (
        node_status_text(mnt, bad))
    # Blocklisted after 3: the job did not keep feeding it frames.
    assert counter(ns, "failed") <= 6, "the failing node was not blocklisted:\n%s" % (
        node_status_text(mnt, bad))
    assert counter(s, "retried") >= 3, s
    for n in nodes:
        if n is not bad:
            assert nf.get(node_name(n), 0) > 0, nf


@pytest.mark.deadline(150)
def test_slow_node_gets_fewer_frames_and_does_not_hold_up_the_end(farm, medium):
    delay = 4.0
    env, _ = farm.fake_path("slow_blender", RFS_FAKE_DELAY="%g" % delay)
    nodes = farm.make_nodes(3, env=[None, None, env])
    slow = nodes[2]
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    N = 36
    mnt.drop("shot", medium, "1-%d\nvideo = no\n" % N)
    wait_for(lambda: mnt.status("shot"), 30, "job shot to appear")
    # When was the last frame handed out, and when was the job done?
    t_handed = t_done = None
    end = time.monotonic() + 120
    while time.monotonic() < end:
        s = mnt.status("shot")
        now = time.monotonic()
        if t_handed is None and s.get("state") != "waiting" and counter(s, "queued") == 0:
            t_handed = now
        if counter(s, "done") >= N:
            t_done = now
            break
        time.sleep(0.05)
    assert t_done is not None, mnt.status_text("shot")
    if t_handed is None:
        t_handed = t_done
    s = mnt.wait_done("shot", timeout=30)
    print("slow node test: last frame handed out %.2fs before the job was done" % (
        t_done - t_handed))
    print(mnt.status_text("shot"))
    nf = check_exactly_once(mnt, "shot", range(1, N + 1), MEDIUM, nodes)
    fast = [nf.get(node_name(n), 0) for n in nodes if n is not slow]
    assert all(nf.get(node_name(slow), 0) < k for k in fast), (
        "the slow node got as many frames as a fast one: %r" % nf)
    # Once every frame is handed out, the job does not wait for the slow
    # node's last frame (each takes it over `delay` s): idle fast slots
    # render it again and the first verified result wins.
    tail = t_done - t_handed
    assert tail < delay * 0.8, "the job ended %.1fs after its last frame was handed out: " \
        "it waited on the slow node (%.1fs a frame)\n%s" % (tail, delay, mnt.status_text("shot"))
    assert counter(s, "failed") == 0, s


@pytest.mark.deadline(150)
def test_changed_host_key_refuses_the_node(farm, tiny):
    nodes = farm.make_nodes(2)
    changed = nodes[0]
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)             # both host keys pinned now
    mnt.stop()
    old = changed.host_key_fingerprint()
    changed.new_host_key()
    assert changed.host_key_fingerprint() != old
    mnt.start()
    wait_node_state(mnt, changed, ("offline", "error"), 30, nodes)
    ns = wait_for(lambda: (lambda s: s if "error" in s else None)(node_status(mnt, changed)),
                  30, "an error line in the refused node's status")
    assert re.search(r"(?i)host key", ns["error"]), node_status_text(mnt, changed)
    wait_node_state(mnt, nodes[1], "idle", 60, nodes)
    mnt.drop("shot", tiny, "1-8\nvideo = no\n")
    s = mnt.wait_done("shot", timeout=90)
    assert counter(s, "failed") == 0, s
    nf = check_exactly_once(mnt, "shot", range(1, 9), TINY, nodes)
    assert nf.get(node_name(changed), 0) == 0, nf
    # Still refused, never quietly re-pinned.
    ns = node_status(mnt, changed)
    assert ns["state"] in ("offline", "error") and re.search(r"(?i)host key", ns.get("error", "")), \
        node_status_text(mnt, changed)


@pytest.mark.deadline(150)
def test_frame_damaged_after_checksum_is_rendered_again(farm, tiny):
    env, bindir = farm.fake_path("corrupting_blender")
    # One node only: with a second one, an idle slot there could race the
    # damaged frame as a duplicate and win, and the damaged result would be
    # dropped unexamined (also correct, but then this test shows nothing).
    nodes = farm.make_nodes(1, env=[env])
    bad = nodes[0]
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    N = 12
    mnt.drop("shot", tiny, "1-%d\n" % N)
    s = mnt.wait_done("shot", timeout=120)
    flag = bindir / "corrupted"
    assert flag.exists(), "the wrapper never damaged a frame (did %s run its blender?)\n%s" % (
        node_name(bad), farm_debug(mnt, nodes))
    check_exactly_once(mnt, "shot", range(1, N + 1), TINY, nodes)
    assert counter(s, "failed") == 0, s
    assert counter(s, "retried") >= 1, "the damaged frame was not tried again:\n%s" % (
        mnt.status_text("shot"))
    v = R.ffprobe(mnt.job_dir("shot") / "shot.mp4")
    assert v["nb_read_frames"] == N
    # Somebody said why: the job, the node, a frame log or renderfs's log.
    said = [mnt.status_text("shot"), node_status_text(mnt, bad),
            get(mnt.daemon_log).decode("utf-8", "replace")]
    logs = mnt.job_dir("shot") / "logs"
    said += [get(logs / n).decode("utf-8", "replace") for n in os.listdir(logs)]
    assert any(re.search(r"(?i)checksum|mismatch", t) for t in said), \
        "nothing mentions the checksum mismatch:\n%s\n%s" % (mnt.status_text("shot"),
                                                             node_status_text(mnt, bad))


@pytest.mark.deadline(180)
def test_sigkill_mid_job_then_remount(farm, scenes):
    nodes = farm.make_nodes(2)
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    N = 16
    mnt.drop("long", scenes.bytes("slow"), "1-%d\n" % N)
    mnt.wait_count("long", 3, timeout=90)
    before = mnt.snapshot("long")
    logs = mnt.job_dir("long") / "logs"
    logs_before = {n: os.stat(logs / (n[:-4] + ".log")).st_mtime_ns for n in before}
    assert 3 <= len(before) < N, "job finished too early to test a crash"
    mnt.crash()
    assert not R.mounted(mnt.mnt)
    mnt.start()
    now = mnt.snapshot("long")
    for n, v in before.items():
        assert now.get(n) == v, "%s lost or changed by the crash" % n
    s = mnt.wait_done("long", timeout=150)
    assert counter(s, "failed") == 0, s
    check_exactly_once(mnt, "long", range(1, N + 1), SLOW, nodes)
    after = mnt.snapshot("long")
    for n, v in before.items():
        assert after[n] == v, "%s changed across the restart: %s -> %s" % (n, v, after[n])
        assert os.stat(logs / (n[:-4] + ".log")).st_mtime_ns == logs_before[n], \
            "%s was rendered again after the restart" % n
    v = R.ffprobe(mnt.job_dir("long") / "long.mp4")
    assert v["nb_read_frames"] == N


TAG = "rfs_sshpwn_%d" % os.getpid()
EVIL = "a$(touch %s_d)b'c\"d`touch %s_b`e\nf;touch %s_s" % (TAG, TAG, TAG)
EVIL_SCENE = "$(touch %s_scene)" % TAG


def marker_hits(base, nodes):
    places = [Path("/"), Path("/tmp"), Path(os.path.expanduser("~")), R.REPO,
              Path(os.getcwd()), Path(base)] + [Path(n.dir) for n in nodes]
    hits = []
    for d in places:
        try:
            hits += [str(d / n) for n in os.listdir(d) if n.startswith(TAG)]
        except OSError:
            pass
    for root, dirs, files in os.walk(base):
        for d in list(dirs):
            if R.mounted(os.path.join(root, d)):
                dirs.remove(d)
        hits += [os.path.join(root, n) for n in files + dirs if n.startswith(TAG)]
    return sorted(set(hits))


@pytest.mark.deadline(150)
def test_names_run_no_command_on_the_node(farm, tiny, tmp_path):
    nodes = farm.make_nodes(2)
    assert marker_hits(tmp_path, nodes) == []
    mnt = farm.mount()
    wait_all_idle(mnt, nodes)
    mnt.drop(EVIL, tiny, "1-4\n")
    s = mnt.wait_done(EVIL, timeout=90)
    assert counter(s, "failed") == 0, s
    check_exactly_once(mnt, EVIL, range(1, 5), TINY, nodes)
    assert R.ffprobe(mnt.job_dir(EVIL) / (EVIL + ".mp4"))["nb_read_frames"] == 4
    assert marker_hits(tmp_path, nodes) == []

    # A scene name is data too: no such scene, the job fails and says so.
    mnt.drop("scn", tiny, "1-2\nretries = 0\nvideo = no\nscene = %s\n" % EVIL_SCENE)
    try:
        mnt.wait_state("scn", R.TERMINAL, timeout=90)
    finally:
        text = mnt.status_text("scn")
    st = R.parse_status(text)
    assert st["state"] == "failed", text
    assert "error" in st and re.search(r"(?i)scene", st["error"]) and EVIL_SCENE in text, text
    assert marker_hits(tmp_path, nodes) == []
    mnt.stop()
    assert marker_hits(tmp_path, nodes) == []


@pytest.mark.deadline(150)
def test_key_made_by_renderfs(farm, tiny):
    nodes = farm.make_nodes(2)          # they accept only the test's own key for now
    mnt = farm.mount(identity=False)
    top = mnt.status(None)
    assert "ssh_key" in top, mnt.status_text()
    pub = Path(top["ssh_key"])
    assert pub.is_file() and str(pub).startswith(str(mnt.state)), top["ssh_key"]
    assert pub.read_text().startswith("ssh-ed25519 "), pub.read_text()
    priv = pub.with_suffix("")
    assert priv.is_file() and (os.stat(priv).st_mode & 0o077) == 0, oct(os.stat(priv).st_mode)
    assert str(pub) in get(mnt.daemon_log).decode("utf-8", "replace")
    with open(nodes[0].authorized_keys, "a") as f:
        f.write(pub.read_text().strip() + "\n")
    wait_all_idle(mnt, nodes, timeout=90)
    mnt.drop("shot", tiny, "1-6\nvideo = no\n")
    s = mnt.wait_done("shot", timeout=90)
    assert counter(s, "failed") == 0, s
    check_exactly_once(mnt, "shot", range(1, 7), TINY, nodes)
