# The clore backend end to end (product.md "Configuration file", "status
# files", "Bad input and failures"; architecture.md "Money"; clore-api.md):
# renderfs rents servers from tests/clore_fake.py, whose servers are real
# sshd nodes (sshnodes.py, one network namespace each) running real Blender.
#
# Each node has its own authorized_keys, empty until the fake writes the
# ssh_key of an order made on that server, and emptied again when the order
# ends; then the fake also kills the node's sessions (sshnodes.py
# end-sessions): a rented container going away.  So renderfs can reach a
# node only with the key it sent, and only while its order lasts.
#
# Every test runs its own fake with --rate-scale RATE_SCALE and renderfs with
# RENDERFS_CLORE_RATE_SCALE=RATE_SCALE, so the fake's rate-limit windows
# match the client's.  The fixture's teardown, after the last unmount,
# insists on: zero rate-limit violations, the API key nowhere in the fake's
# log, no order of renderfs's still active (unmount cancels them), every
# on_end hook run cleanly.
#
# Prices in the fake are per day, in CLORE-Blockchain at $0.02: 100 CLORE a
# day is $0.0833 an hour.  Ranking is $/h of the server / (benchmark score of
# the model x GPU count); scores used here: RTX 4090 11000, RTX 3090 5400,
# RTX A6000 5700, RTX 3080 4700.
#
# Skips only where this machine cannot make network namespaces.

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import rfslib as R
import sshnodes
from rfslib import get, wait_for

FAKE = R.REPO / "tests" / "clore_fake.py"
RATE_SCALE = 0.05
LEASE = 5.0
CLORE_USD = 0.02                  # the fake's default rate for CLORE-Blockchain
FEE_USD = 0.10                    # the fake's default creation fee
TINY = (64, 48)
SLOW = (320, 240)
ORDER_LINE = re.compile(r"^order:\s*(\d+)\s+server\s+(\d+)\s+(\S+)\s+(spot|on-demand)\s+"
                        r"\$(\d+(?:\.\d+)?)/h\s+spent\s+\$(\d+(?:\.\d+)?)\s+node\s+(\S+)\s*$", re.M)

# GPU model names as the marketplace spells them.
RTX4090 = "NVIDIA GeForce RTX 4090"
RTX3090 = "NVIDIA GeForce RTX 3090"
A6000 = "NVIDIA RTX A6000"
RTX3080 = "NVIDIA GeForce RTX 3080"


@pytest.fixture(autouse=True)
def _need_namespaces():
    if not sshnodes.can_make_namespaces():
        pytest.skip("cannot make network namespaces here")


CLORE_SCENES = {
    # About 0.1 s a frame: for jobs that only need to finish.
    "tiny": ["--frames", "36", "--size", "%dx%d" % TINY, "--samples", "16"],
    # About 0.5 s a frame alone on 2 cores: for jobs that must still be
    # running when the test acts on them.
    "slow": ["--frames", "60", "--size", "%dx%d" % SLOW, "--samples", "24"],
}


@pytest.fixture(scope="module")
def clore_scenes(tmp_path_factory, _environment):
    try:
        paths = R.make_scenes(tmp_path_factory.mktemp("clore_scenes"), CLORE_SCENES)
    except AssertionError as e:
        pytest.fail(str(e))
    return {name: get(path) for name, path in paths.items()}


@pytest.fixture
def tiny(clore_scenes):
    return clore_scenes["tiny"]


@pytest.fixture
def slow(clore_scenes):
    return clore_scenes["slow"]


# ---------------------------------------------------------------- the fake

def usd_h(per_day_clore):
    """$/h of a whole server listed at per_day_clore CLORE-Blockchain a day."""
    return per_day_clore * CLORE_USD / 24.0


class Fake:
    """One tests/clore_fake.py process and its control endpoints."""

    def __init__(self, tmp, key, scenario):
        self.tmp = tmp
        self.key = key
        self.scenario = dict(scenario, key=key)
        self.path = tmp / "scenario.json"
        self.log = tmp / "fake.log"
        self.errlog = tmp / "fake.stderr"
        # The key travels in the scenario file, never on a command line
        # (test_key_never_shown reads every process's cmdline).
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.scenario, f, indent=1)
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), "--port", "0", "--scenario", str(self.path),
                 "--rate-scale", repr(RATE_SCALE), "--log", str(self.log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        line = self.proc.stdout.readline().decode("utf-8", "replace")
        m = re.match(r"listening (\d+)", line)
        if not m:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("the fake Clore API did not start (said %r):\n%s"
                                 % (line, get(self.errlog).decode("utf-8", "replace")[-2000:]))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d/v1" % self.port
        self.allow_active = False   # a test that keeps rentals at unmount sets this

    def control(self, name, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/_control/%s" % (self.port, name), data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read().decode())

    def state(self):
        return self.control("state")

    def set(self, **kw):
        out = self.control("set", kw)
        assert out.get("ok"), "/_control/set %r: %r" % (kw, out)
        return out

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()

    def is_ours(self, pid):
        """pid is the fake or something it started (an on_end hook)."""
        for _ in range(64):
            if pid == self.proc.pid:
                return True
            try:
                with open("/proc/%d/stat" % pid) as f:
                    pid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return False
            if pid <= 1:
                return False
        return False


def api_orders(st):
    return [o for o in st["orders"] if o["owner"] == "api"]


def active_api(st):
    return [o for o in api_orders(st) if not o["ended"]]


def attempts_on(st, sid):
    return [a for a in st["create_attempts"] if a["server"] == sid]


def max_overlap(st):
    """The most renderfs orders that were active at one moment, from the
    fake's record of when each was created and ended."""
    ords = api_orders(st)
    best = 0
    for o in ords:
        t = o["t_created"]
        n = sum(1 for p in ords if p["t_created"] <= t and (p["t_ended"] is None or p["t_ended"] > t))
        best = max(best, n)
    return best


RATES = {"CLORE-Blockchain": CLORE_USD, "USD-Blockchain": 1.0, "bitcoin": 65000.0}


def fake_charges(st):
    """USD the fake charged for renderfs's orders, by its own accounting as
    my_orders shows it: `spend` (in the order's currency) plus
    `creation_fee` (a USD amount, clore-api.md)."""
    return sum(float(o["spend"]) * RATES[o["currency"]] + float(o["creation_fee"])
               for o in api_orders(st))


def wallet_paid(st0, st):
    """USD that left the wallets between two fake states."""
    return sum((float(st0["wallets"][c]) - float(st["wallets"].get(c, 0))) * RATES[c]
               for c in st0["wallets"])


def excerpt(st, limit=40):
    """The fake's state, short enough for an assertion message."""
    now = st.get("now", time.time())
    out = ["--- fake: violations %s, forced %s, unauthorized %s, requests %s, wallets %s"
           % (st["violations"], st["forced"], st["unauthorized"], st["requests"], st["wallets"])]
    for o in st["orders"][-limit:]:
        out.append("  order %s server %s owner %s %s price %s/day online %s ended %s (%s) "
                   "created %.1fs ago, ended %s, spend %s fee %s" % (
                       o["id"], o["si"], o["owner"], "spot" if o["spot"] else "on-demand", o["price"],
                       o["online"], o["ended"], o["end_reason"], now - o["t_created"],
                       "%.1fs ago" % (now - o["t_ended"]) if o["t_ended"] else "-",
                       o["spend"], o["creation_fee"]))
    for a in st["create_attempts"][-limit:]:
        out.append("  create_order server %s %s bid %s -> code %s %s, %.1fs ago" % (
            a["server"], a["type"], a["spotprice"], a["code"], a["error"] or "", now - a["t"]))
    for c in st["cancels"][-limit:]:
        out.append("  cancel_order %s (owner %s, was active %s) -> %s, %.1fs ago" % (
            c["id"], c["owner"], c["was_active"], c.get("reply"), now - c["t"]))
    bad = [r for r in st.get("on_end", []) if r["rc"] != 0]
    if bad:
        out.append("  on_end failures: %r" % bad)
    return "\n".join(out)


def fake_gpu_env(tmp):
    """Session environment for a node whose `blender` is ssh_fakes/gpu_blender.py:
    the real Blender, reporting a CUDA device it picked and renders on."""
    d = tmp / "bin-gpu"
    d.mkdir(exist_ok=True)
    shutil.copyfile(R.REPO / "tests" / "integration" / "ssh_fakes" / "gpu_blender.py", d / "blender")
    os.chmod(d / "blender", 0o755)
    return {"PATH": "%s:/usr/bin:/bin" % d}


# ---------------------------------------------------------------- the farm

class Clore:
    """A test's nodes, fake marketplace and mounts: nodes first, then the
    fake (its servers are the nodes), then the mount."""

    def __init__(self, tmp, rfs, holder, fakes, monkeypatch):
        self.tmp = tmp
        self.rfs = rfs
        self.holder = holder
        self.fakes = fakes
        self.mp = monkeypatch
        self.key = "rfs-clore-%s" % os.urandom(16).hex()
        self.keyfile = tmp / "clore.key"
        self.write_key(self.key)
        self.nodes = []
        self.fake = None
        self.mnt = None

    def write_key(self, text, mode=0o600):
        if self.keyfile.exists():
            self.keyfile.unlink()
        fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.chmod(self.keyfile, mode)

    def make_nodes(self, n, cpu=(), hide_blender=None):
        """n nodes standing for rented GPU servers: their `blender` is the
        real one behind ssh_fakes/gpu_blender.py, which reports the CUDA
        device a rented server has (renderfs gives back a rented node whose
        Blender renders on CPU).  The nodes numbered in cpu keep the plain
        Blender, which falls back to CPU here."""
        assert not self.nodes
        d = self.tmp / "farm"
        d.mkdir()
        gpu = fake_gpu_env(self.tmp)
        env = [None if i in cpu else gpu for i in range(n)]
        ns = sshnodes.make_nodes(n, str(d), None, env=env, hide_blender=hide_blender)
        self.holder.append(ns)
        self.nodes = list(ns)
        return self.nodes

    def server(self, sid, node=None, gpu=RTX3090, gpus=1, od=100.0, spot=None, min_spot=None,
               online_after=0.5, **extra):
        """A marketplace server; with a node, renting it gives that node."""
        s = {"id": sid, "gpus": gpus, "gpu": gpu, "gpuram": 24, "reliability": 0.99,
             "on_demand": {"CLORE-Blockchain": od}, "online_after": online_after}
        if spot is not None:
            s["spot"] = {"CLORE-Blockchain": spot}
            s["min_spot"] = {"CLORE-Blockchain": spot if min_spot is None else min_spot}
        if node is not None:
            s["ssh"] = {"host": node.ip, "port": node.port}
            s["authorized_keys"] = node.authorized_keys
            s["on_end"] = node.end_sessions_argv()
        else:
            # Nothing listens there: renting it by mistake gives no node.
            s["ssh"] = {"host": "127.0.0.1", "port": 9}
        s.update(extra)
        return s

    def start_fake(self, servers, **scenario):
        assert self.fake is None
        d = self.tmp / "fake"
        d.mkdir()
        scenario.setdefault("wallets", [{"name": "CLORE-Blockchain", "balance": 1e6}])
        self.fake = Fake(d, self.key, dict(scenario, servers=servers))
        self.fakes.append(self.fake)
        return self.fake

    def config(self, key="file", renderfs=(), **clore):
        c = {"api_url": self.fake.url, "api_key_file": str(self.keyfile) if key == "file" else None,
             "image": "renderfs/blender:test", "nodes": 3,
             "gpu": "RTX 4090, RTX 3090, A6000, RTX 3080", "min_vram": 8, "max_price": "0.50",
             "spot": "no", "spot_margin": "15%", "currency": "CLORE-Blockchain", "budget": "20.00",
             "poll": "1s", "boot_timeout": "30s", "idle": "2s", "keep_at_unmount": "no",
             "min_reliability": "0.9"}
        c.update(clore)
        lines = ["[renderfs]", "backend = clore", "quiet = %s" % R.QUIET_OPT, "lease = %ds" % LEASE]
        lines += list(renderfs)
        lines += ["[ssh]", "blender = blender", "slots = 1", "[clore]"]
        lines += ["%s = %s" % (k, v) for k, v in c.items() if v is not None]
        return "\n".join(lines) + "\n"

    def mount(self, key="file", start=True, renderfs=(), **clore):
        if key == "env":
            self.mp.setenv("CLORE_API_KEY", self.key)
        self.mnt = self.rfs(config=self.config(key=key, renderfs=renderfs, **clore), start=start)
        return self.mnt

    # -- looking

    def state(self):
        return self.fake.state()

    def debug(self, job=None, mnt=None):
        mnt = mnt or self.mnt
        out = []
        if mnt is not None and mnt.daemon is not None:
            for name, path in (("MOUNT/status", mnt.mnt / "status"),
                               ("out/%s/status" % job, mnt.job_dir(job) / "status" if job else None)):
                if path is None:
                    continue
                try:
                    out.append("--- %s\n%s" % (name, get(path).decode("utf-8", "replace")))
                except OSError as e:
                    out.append("--- %s unreadable: %s" % (name, e))
            try:
                for n in sorted(os.listdir(mnt.mnt / "nodes")):
                    try:
                        out.append("--- nodes/%s/status\n%s" % (
                            n, get(mnt.mnt / "nodes" / n / "status").decode("utf-8", "replace")))
                    except OSError as e:
                        out.append("--- nodes/%s/status unreadable: %s" % (n, e))
            except OSError:
                pass
        if self.fake is not None and self.fake.alive():
            try:
                out.append(excerpt(self.state()))
            except OSError as e:
                out.append("--- fake state unreadable: %s" % e)
        for n in self.nodes:
            log = n.read_log().strip()
            if log:
                out.append("--- sshd log of %s (%s)\n%s" % (n.name, n.ip, log[-600:]))
        if mnt is not None:
            out.append(mnt.log_tail(40))
        return "\n".join(out)

    def wait(self, pred, timeout, what, job=None, interval=0.1):
        try:
            return wait_for(pred, timeout, what, interval=interval)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.debug(job)))

    def wait_done(self, job, timeout):
        try:
            return self.mnt.wait_done(job, timeout=timeout)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.debug(job)))

    def wait_released(self, timeout, job=None):
        """Every order of renderfs's ended, while the mount is up."""
        return self.wait(lambda: (lambda st: st if not active_api(st) else None)(self.state()),
                         timeout, "every order renderfs made to be released", job)


@pytest.fixture
def _clore_nodes():
    """Set up before the fake and rfs, so torn down after both."""
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
def _clore_fakes():
    """Set up before rfs, so torn down after every mount is gone: the checks
    every test must pass, then the fake is stopped."""
    fakes = []
    yield fakes
    problems = []
    for fake in fakes:
        try:
            if not fake.alive():
                problems.append("the fake Clore API died during the test:\n%s"
                                % get(fake.errlog).decode("utf-8", "replace")[-2000:])
                continue
            st = fake.state()
            # on_end hooks run in threads: let them finish before judging.
            hooked = {s["id"] for s in fake.scenario.get("servers", []) if s.get("on_end")}
            ended = [o for o in st["orders"] if o["ended"] and o["si"] in hooked]
            try:
                st = wait_for(lambda: (lambda s: s if len(s["on_end"]) >= len(ended) else None)(
                    fake.state()), 15, "the fake's on_end hooks to finish")
            except AssertionError as e:
                problems.append(str(e))
            if st["violations"] != 0:
                problems.append("the fake counted %d rate-limit violations\n%s"
                                % (st["violations"], excerpt(st)))
            left = active_api(st)
            if left and not fake.allow_active:
                problems.append("orders renderfs made are still active after the last unmount: %s\n%s"
                                % ([o["id"] for o in left], excerpt(st)))
            bad = [r for r in st["on_end"] if r["rc"] != 0]
            if bad:
                problems.append("on_end hooks failed: %r" % bad)
        finally:
            fake.stop()
        try:
            log = get(fake.log).decode("utf-8", "replace")
        except OSError:
            log = ""
        if fake.key in log:
            problems.append("the API key is in the fake's request log %s" % fake.log)
    if problems:
        pytest.fail("teardown: " + "\n".join(problems), pytrace=False)


@pytest.fixture
def clore(tmp_path, monkeypatch, _clore_nodes, _clore_fakes, rfs):
    monkeypatch.setenv("RENDERFS_CLORE_RATE_SCALE", repr(RATE_SCALE))
    monkeypatch.delenv("CLORE_API_KEY", raising=False)
    c = Clore(tmp_path, rfs, _clore_nodes, _clore_fakes, monkeypatch)

    # sshd and its sessions live in the nodes' namespaces and belong to the
    # nodes; the fake and its on_end hooks belong to the test: none of them
    # is a process the daemon left behind.
    def not_the_daemons(pid):
        return sshnodes.in_node_namespace(pid) or any(f.is_ours(pid) for f in _clore_fakes)
    monkeypatch.setattr(R, "not_the_daemons", not_the_daemons)
    return c


# ---------------------------------------------------------------- status

def clore_line(mnt):
    """MOUNT/status's clore: value.  Missing raises KeyError, which the
    wait helpers treat as "not yet"."""
    text = mnt.status_text()
    s = R.parse_status(text)
    if "clore" not in s:
        raise KeyError("MOUNT/status has no clore: line:\n%s" % text)
    return s["clore"]


def held_orders(mnt):
    """MOUNT/status order lines: id -> (server, state, kind, $/h, spent, node)."""
    text = mnt.status_text()
    out = {}
    for m in ORDER_LINE.finditer(text):
        out[int(m.group(1))] = (int(m.group(2)), m.group(3), m.group(4), float(m.group(5)),
                                float(m.group(6)), m.group(7))
    bad = [ln for ln in text.splitlines() if ln.startswith("order:") and not ORDER_LINE.match(ln)]
    assert not bad, "order lines not in the form 'order: ID server SID STATE spot|on-demand " \
        "$X/h spent $Y node clore-ID': %r\n%s" % (bad, text)
    return out


def node_status(mnt, oid):
    return R.parse_status(get(mnt.mnt / "nodes" / ("clore-%d" % oid) / "status").decode())


def counter(s, key):
    assert key in s, "status lacks %r: %s" % (key, s)
    return int(s[key])


def node_frames(mnt, job):
    j = mnt.status_json(job)
    nf = j.get("node_frames")
    assert isinstance(nf, dict), "status.json of %s has no node_frames object: %r" % (job, j)
    return {k: v for k, v in nf.items() if v}


def check_frames(clore, job, numbers, size, st=None):
    """Every frame exactly once: each file there once, complete, the right
    size; the per-node counts sum to the frame count and name only nodes of
    orders renderfs made."""
    mnt = clore.mnt
    names = ["frame_%04d.png" % n for n in numbers]
    have = mnt.frames(job)
    assert have == names, "frames of %s: %s, expected %s\n%s" % (job, have, names, clore.debug(job))
    for n in names:
        p = mnt.job_dir(job) / n
        assert R.image_kind(p) == "png" and R.image_size(p) == size, "%s: bad frame" % p
    nf = node_frames(mnt, job)
    assert sum(nf.values()) == len(names), "node_frames %r do not sum to %d\n%s" % (
        nf, len(names), clore.debug(job))
    st = st or clore.state()
    known = {"clore-%d" % o["id"] for o in api_orders(st)}
    assert set(nf) <= known, "node_frames names nodes that are not renderfs's orders: %r " \
        "(orders %r)\n%s" % (nf, sorted(known), excerpt(st))
    return nf


def money_ok(got, want, slack=0.0):
    return abs(got - want) <= 0.10 * abs(want) + 0.002 + slack


def timing_slack(st):
    """USD that 1.5 s of every renderfs order is worth: `ct` has whole-second
    resolution, and renderfs may see an order or its end one poll late.
    Negligible except at the budget test's $0.10 a second."""
    return sum(float(o["price"]) * CLORE_USD / 86400.0 * 1.5 for o in api_orders(st))


def check_money(clore, jobs=()):
    """MOUNT/status spent matches what the fake charged renderfs, and the
    jobs' spent plus idle adds up to it.  Call once nothing is held."""
    mnt = clore.mnt
    st = clore.state()
    top = mnt.status_json()
    text = mnt.status_text()
    for k in ("spent", "idle", "rate", "clore", "orders"):
        assert k in top, "MOUNT/status.json lacks %r: %r" % (k, top)
    farm = float(top["spent"])
    want = fake_charges(st)
    slack = timing_slack(st)
    assert money_ok(farm, want, slack), "MOUNT/status.json spent $%.4f, the fake charged $%.4f for " \
        "renderfs's orders\n%s\n%s" % (farm, want, text, excerpt(st))
    s = R.parse_status(text)
    assert abs(R.leading_number(s["spent"]) - farm) <= 0.006, \
        "spent differs between status (%s) and status.json (%s)" % (s["spent"], farm)
    if jobs:
        js = sum(float(mnt.status_json(j)["spent"]) for j in jobs)
        idle = float(top["idle"])
        assert money_ok(js + idle, farm, slack), "jobs spent $%.4f + idle $%.4f != farm spent $%.4f\n%s\n%s" % (
            js, idle, farm, text, "\n".join(mnt.status_text(j) for j in jobs))
    return farm


# ---------------------------------------------------------------- tests
#
# Each test builds its nodes first, then the fake, then mounts: a FUSE mount
# made before sshd started would be copied into sshd's mount namespace.


@pytest.mark.deadline(150)
def test_job_rents_three_servers_and_releases_them(clore, slow):
    nodes = clore.make_nodes(3)
    servers = [
        clore.server(101, nodes[0], gpu=RTX4090, od=240),    # $0.20/h / 11000
        clore.server(102, nodes[1], gpu=RTX3090, od=100),    # $0.083/h / 5400
        clore.server(103, nodes[2], gpu=A6000, od=110),      # $0.092/h / 5700
        # Fits every filter but is the most expensive per unit of speed.
        clore.server(104, None, gpu=RTX3080, od=300),        # $0.25/h / 4700
        # Cheap, but each fails one filter: never ordered.
        clore.server(191, None, gpu=RTX4090, od=10, gpuram=6),               # min_vram 8
        clore.server(192, None, gpu=RTX4090, od=2000),                       # $1.67/GPU-h > 0.50
        clore.server(193, None, gpu="NVIDIA GeForce GTX 1080", od=10),       # not in gpu =
        clore.server(194, None, gpu=RTX4090, on_demand={"bitcoin": 1e-7},
                     allowed_coins=["bitcoin"]),                              # currency
        clore.server(195, None, gpu=RTX4090, od=10, reliability=0.5),        # min_reliability
        clore.server(196, None, gpu=RTX4090, od=10, rented=True),            # rented
    ]
    fake = clore.start_fake(servers)
    st0 = clore.state()
    mnt = clore.mount(nodes=3, idle="2s")
    clore.wait(lambda: clore_line(mnt).startswith("ok"), 10, "clore: ok before any job")
    N = 18
    mnt.drop("shot", slow, "1-%d\nvideo = no\n" % N)

    st = clore.wait(lambda: (lambda st: st if len(api_orders(st)) >= 3 else None)(clore.state()),
                    40, "renderfs to order 3 servers", "shot")
    ids = sorted(o["id"] for o in api_orders(st))
    assert {o["si"] for o in api_orders(st)} == {101, 102, 103}, \
        "renderfs did not rent the 3 cheapest servers per unit of speed\n%s" % excerpt(st)
    for o in api_orders(st):
        assert not o["spot"] and o["image"] == "renderfs/blender:test", excerpt(st)
        assert o["ssh_key"].startswith("ssh-"), "order %s carries no public key: %r" % (o["id"], o["ssh_key"])

    # While they are held: the farm's order lines and each node's status.
    def all_held():
        h = held_orders(mnt)
        return h if set(h) == set(ids) else None
    held = clore.wait(all_held, 30, "MOUNT/status to list the 3 orders", "shot")
    for o in api_orders(st):
        sid, state, kind, price, _, node = held[o["id"]]
        # A booting order has no node yet and may show "-".
        names = ("clore-%d" % o["id"], "-") if state == "booting" else ("clore-%d" % o["id"],)
        assert sid == o["si"] and kind == "on-demand" and node in names, \
            "order line of %s: %r\n%s" % (o["id"], held[o["id"]], mnt.status_text())
        assert state in ("booting", "ready", "releasing"), held[o["id"]]
        assert abs(price - usd_h(o["price"])) <= 0.006, "order %s: $%s/h, expected $%.4f/h\n%s" % (
            o["id"], price, usd_h(o["price"]), mnt.status_text())
    top = mnt.status_json()
    assert sorted(int(x["id"]) for x in top["orders"]) == ids, top["orders"]
    for x in top["orders"]:
        for k in ("id", "server", "state", "spot", "price_h", "spent", "node"):
            assert k in x, "status.json orders entry lacks %r: %r" % (k, x)
    assert R.leading_number(mnt.status()["rate"]) > 0, mnt.status_text()

    def node_up(oid):
        s = node_status(mnt, oid)
        return s if s.get("state") in ("idle", "rendering") else None
    for o in api_orders(st):
        ns = clore.wait(lambda: node_up(o["id"]), 40, "node clore-%d to be up" % o["id"], "shot")
        for k in R.NODE_KEYS + ("order", "server", "spot", "spent"):
            assert k in ns, "nodes/clore-%d/status lacks %r: %r" % (o["id"], k, ns)
        assert ns["provider"] == "clore", ns
        assert int(ns["order"]) == o["id"] and int(ns["server"]) == o["si"], ns
        assert ns["spot"] == "no", ns
        assert abs(R.leading_number(ns["price"]) - usd_h(o["price"])) <= 0.006, ns
    # Once up, each order line and status.json entry names its node.
    held = held_orders(mnt)
    for oid, (_, state, _, _, _, node) in held.items():
        if state == "ready":
            assert node == "clore-%d" % oid, "order line of %s: %r\n%s" % (oid, held[oid], mnt.status_text())
    for x in mnt.status_json()["orders"]:
        if x["state"] == "ready":
            assert x["node"] == "clore-%d" % int(x["id"]), "status.json orders entry %r" % x

    s = clore.wait_done("shot", timeout=120)
    assert counter(s, "failed") == 0 and counter(s, "interrupted") == 0, s
    for k in ("rate", "spent", "estimate", "frames_per_dollar"):
        assert k in s, "the job's status lacks %r:\n%s" % (k, mnt.status_text("shot"))
    nf = check_frames(clore, "shot", range(1, N + 1), SLOW)
    assert len(nf) >= 2, "the job ran on fewer than 2 of the 3 rented nodes: %r\n%s" % (
        nf, clore.debug("shot"))

    # Idle grace 2 s, then released, while still mounted.
    st = clore.wait_released(20, "shot")
    assert mnt.daemon is not None and R.mounted(mnt.mnt)
    for o in api_orders(st):
        assert o["end_reason"] == "cancelled", excerpt(st)
    assert sorted(o["id"] for o in api_orders(st)) == ids, \
        "orders beyond the 3 the job needed\n%s" % excerpt(st)
    never = {104, 191, 192, 193, 194, 195, 196}
    tried = [a for a in st["create_attempts"] if a["server"] in never]
    assert not tried, "create_order on servers that must never be ordered: %r\n%s" % (
        tried, excerpt(st))
    clore.wait(lambda: not held_orders(mnt) and R.leading_number(mnt.status()["rate"]) == 0,
               10, "MOUNT/status to show no order held and a rate of $0", "shot")
    assert clore_line(mnt).startswith("ok"), mnt.status_text()
    farm = check_money(clore, ["shot"])
    # The marketplace's own accounting, two ways: what its orders say
    # (spend plus the creation fee, a USD amount) and what left the wallet.
    # renderfs's farm spent agrees with both within 5 %; the fees (3 x about
    # $0.10) are most of it, so reading the fee as the order's currency
    # (3 x $0.002) cannot pass.
    st = clore.state()
    charged, paid = fake_charges(st), wallet_paid(st0, st)
    assert abs(paid - charged) <= 0.001 * charged + 1e-6, "the fake's orders say $%.4f, its wallet " \
        "lost $%.4f\n%s" % (charged, paid, excerpt(st))
    assert charged >= 3 * FEE_USD, "3 orders cost less than their creation fees: $%.4f\n%s" % (
        charged, excerpt(st))
    assert abs(farm - charged) <= 0.05 * charged, "MOUNT/status.json spent $%.4f, the marketplace " \
        "charged $%.4f (wallet $%.4f): more than 5 %% apart\n%s\n%s" % (
            farm, charged, paid, mnt.status_text(), excerpt(st))
    assert fake.alive()


@pytest.mark.deadline(150)
def test_spot_node_outbid_mid_job(clore, slow):
    nodes = clore.make_nodes(3)
    servers = [
        clore.server(201, nodes[0], gpu=RTX4090, od=200, spot=50, min_spot=40),
        clore.server(202, nodes[1], gpu=RTX3090, od=120, spot=30,
                     spot_offers=[{"bid": 35, "currency": "CLORE-Blockchain"}]),
        clore.server(203, nodes[2], gpu=RTX3090, od=140, spot=40),
    ]
    clore.start_fake(servers)
    mnt = clore.mount(nodes=2, spot="yes", spot_margin="15%", idle="2s")
    N = 24
    mnt.drop("long", slow, "1-%d\nvideo = no\n" % N)

    def victim():
        st = clore.state()
        for o in active_api(st):
            try:
                ns = node_status(mnt, o["id"])
            except OSError:
                continue
            if int(ns.get("done", 0)) >= 1 and ns.get("state") == "rendering" \
                    and int(mnt.status("long").get("queued", 0)) > 8:
                return o
        return None
    v = clore.wait(victim, 90, "a rented node to have rendered a frame and be rendering another",
                   "long")
    t_outbid = time.time()
    out = clore.fake.control("outbid", {"order_id": v["id"]})
    assert out.get("ok"), out

    s = clore.wait_done("long", timeout=120)
    st = clore.state()
    assert counter(s, "failed") == 0, s
    assert counter(s, "interrupted") >= 1, "the frame on the outbid node was not given back " \
        "as interrupted:\n%s" % clore.debug("long")
    assert counter(s, "retried") == 0, "an outbid node used up retries:\n%s" % clore.debug("long")
    check_frames(clore, "long", range(1, N + 1), SLOW, st)
    later = [o for o in api_orders(st) if o["t_created"] > t_outbid]
    assert later, "no replacement order after the outbid\n%s" % excerpt(st)
    assert max_overlap(st) <= 2, "more than nodes = 2 orders at once\n%s" % excerpt(st)

    # Every bid: max(listed spot, floor, highest other bid) * 1.15.
    listed = {s["id"]: s for s in servers}
    stranger = {sid: [o["bid"] for o in s.get("spot_offers", [])] for sid, s in listed.items()}
    stranger[v["si"]].append(v["price"] * 1.1 + 1)       # what /_control/outbid bid
    for o in api_orders(st):
        assert o["spot"], "a spot = yes order was made on demand\n%s" % excerpt(st)
        srv = listed[o["si"]]
        others = stranger[o["si"]] if o["t_created"] > t_outbid else \
            [b["bid"] for b in srv.get("spot_offers", [])]
        base = max([srv["spot"]["CLORE-Blockchain"], srv["min_spot"]["CLORE-Blockchain"]] + others)
        assert abs(o["price"] - base * 1.15) <= 0.01 * base * 1.15, \
            "order %s on %s bid %s/day, expected %.2f (= %s x 1.15)\n%s" % (
                o["id"], o["si"], o["price"], base * 1.15, base, excerpt(st))
    clore.wait_released(20, "long")


@pytest.mark.deadline(120)
def test_server_never_online_is_cancelled_and_avoided(clore, tiny):
    nodes = clore.make_nodes(2)
    servers = [
        clore.server(301, None, gpu=RTX4090, od=100, online_after="never"),   # the cheapest
        clore.server(302, nodes[0], gpu=RTX3090, od=100),
        clore.server(303, nodes[1], gpu=RTX3090, od=200),
    ]
    clore.start_fake(servers)
    boot = 3.0
    mnt = clore.mount(nodes=1, boot_timeout="3s", idle="2s")
    mnt.drop("shot", tiny, "1-6\nvideo = no\n")
    s = clore.wait_done("shot", timeout=60)
    assert counter(s, "failed") == 0, s
    st = clore.state()
    dead = [o for o in api_orders(st) if o["si"] == 301]
    assert len(dead) == 1, "expected one order on the cheapest server first\n%s" % excerpt(st)
    d = dead[0]
    assert d["ended"] and d["end_reason"] == "cancelled", \
        "the order that never came online was not cancelled\n%s" % excerpt(st)
    held = d["t_ended"] - d["t_created"]
    assert boot * 0.9 <= held <= boot + 5, "the never-online order was cancelled after %.1fs, " \
        "boot_timeout is %gs\n%s" % (held, boot, excerpt(st))
    assert any(o["si"] in (302, 303) for o in api_orders(st)), excerpt(st)
    check_frames(clore, "shot", range(1, 7), TINY, st)

    # Released; a second job rents again, never the server that failed.
    clore.wait_released(20, "shot")
    mnt.drop("again", tiny, "1-2\nvideo = no\n")
    clore.wait_done("again", timeout=60)
    st = clore.wait_released(20, "again")
    assert len(attempts_on(st, 301)) == 1, "the server that never came online was ordered " \
        "again\n%s" % excerpt(st)
    assert max_overlap(st) <= 1, excerpt(st)
    check_money(clore, ["shot", "again"])


@pytest.mark.deadline(120)
def test_short_balance_waits_then_recovers(clore, tiny):
    nodes = clore.make_nodes(1)
    fake = clore.start_fake([clore.server(401, nodes[0], od=100)],
                            wallets=[{"name": "CLORE-Blockchain", "balance": 1}])
    mnt = clore.mount(nodes=1)
    mnt.drop("shot", tiny, "1-4\nvideo = no\n")
    line = clore.wait(lambda: (lambda v: v if re.search(r"(?i)balance", v) else None)(clore_line(mnt)),
                      20, "a clore: line about the balance", "shot")
    assert line.startswith("error"), "clore: %s" % line
    # It waits: no order tried, the job not failed.
    time.sleep(2.0)          # a "nothing may happen" window
    st = fake.state()
    assert st["requests"].get("create_order", 0) == 0, "create_order with a short balance\n%s" % excerpt(st)
    s = mnt.status("shot")
    assert s["state"] not in ("failed", "cancelled", "done"), mnt.status_text("shot")
    assert re.search(r"(?i)balance", clore_line(mnt)), mnt.status_text()

    fake.set(balance={"CLORE-Blockchain": 100000})
    clore.wait_done("shot", timeout=60)
    check_frames(clore, "shot", range(1, 5), TINY)
    clore.wait(lambda: clore_line(mnt).startswith("ok"), 15, "the clore: line back to ok", "shot")


@pytest.mark.deadline(90)
def test_invalid_key_no_retry_storm(clore, tiny):
    nodes = clore.make_nodes(1)
    fake = clore.start_fake([clore.server(501, nodes[0], od=100)])
    wrong = "rfs-wrong-%s" % os.urandom(16).hex()
    clore.write_key(wrong)
    mnt = clore.mount(nodes=1)
    mnt.drop("shot", tiny, "1-2\nvideo = no\n")
    clore.wait(lambda: re.search(r"(?i)api key", clore_line(mnt)), 20,
               "a clore: line about the API key", "shot")
    assert clore_line(mnt).startswith("error"), mnt.status_text()
    n0 = fake.state()["requests_total"]
    time.sleep(5.0)          # a "nothing may happen" window: no retry storm
    st = fake.state()
    assert st["requests_total"] - n0 <= 3, "%d requests in 5 s after code 3\n%s" % (
        st["requests_total"] - n0, excerpt(st))
    assert st["requests"].get("create_order", 0) == 0 and not api_orders(st), excerpt(st)
    assert re.search(r"(?i)api key", clore_line(mnt)), mnt.status_text()
    for text in (mnt.status_text(), mnt.status_text("shot"), get(mnt.daemon_log).decode("utf-8", "replace")):
        assert wrong not in text, "the (wrong) API key is shown"
    mnt.stop()
    assert wrong not in get(fake.log).decode("utf-8", "replace")


@pytest.mark.deadline(120)
def test_budget_reached_mid_job(clore, slow):
    nodes = clore.make_nodes(2)
    # $360/h a server: $0.10 a second.
    price = 360.0 * 24 / CLORE_USD
    servers = [clore.server(701, nodes[0], gpu=RTX4090, od=price),
               clore.server(702, nodes[1], gpu=RTX4090, od=price * 1.01)]
    budget = 0.80
    fake = clore.start_fake(servers, wallets=[{"name": "CLORE-Blockchain", "balance": 1e9}])
    mnt = clore.mount(nodes=1, max_price=0, budget="%.2f" % budget, idle="2m")
    N = 40
    mnt.drop("long", slow, "1-%d\nvideo = no\n" % N)
    clore.wait(lambda: api_orders(clore.state()), 30, "renderfs to rent a server", "long")
    st = clore.wait_released(40, "long")
    t_release = max(o["t_ended"] for o in api_orders(st))
    clore.wait(lambda: re.search(r"(?i)budget", clore_line(mnt)), 10,
               "the clore: line to say the budget is reached", "long")
    clore.wait(lambda: re.search(r"(?i)budget", mnt.status("long").get("error", "")), 10,
               "the job's error: line to say the budget is reached", "long")
    time.sleep(3.0)          # a "nothing may happen" window: no new rental
    st = fake.state()
    late = [a for a in st["create_attempts"] if a["t"] > t_release]
    assert not late, "create_order after the budget was reached: %r\n%s" % (late, excerpt(st))
    assert not active_api(st), excerpt(st)
    s = mnt.status("long")
    assert s["state"] != "done" and counter(s, "done") < N, "the job finished before the " \
        "budget ran out: nothing was tested\n%s" % mnt.status_text("long")
    farm = check_money(clore, ["long"])
    assert farm <= budget + 0.35, "spent $%.2f with a $%.2f budget at $0.10/s: released too " \
        "late\n%s\n%s" % (farm, budget, mnt.status_text(), excerpt(st))


def _crash_and_finish(clore, job, n, size, nodes_cap, before=None):
    """Remount after a crash, let the job finish; no frame lost or changed,
    never more than nodes_cap orders at once, nothing left rented."""
    mnt = clore.mnt
    mnt.start()
    if before:
        now = mnt.snapshot(job)
        for name, v in before.items():
            assert now.get(name) == v, "%s lost or changed by the crash" % name
    s = clore.wait_done(job, timeout=120)
    assert counter(s, "failed") == 0, s
    check_frames(clore, job, range(1, n + 1), size)
    if before:
        after = mnt.snapshot(job)
        for name, v in before.items():
            assert after[name] == v, "%s changed across the restart" % name
    st = clore.wait_released(25, job)
    assert max_overlap(st) <= nodes_cap, "more than nodes = %d of renderfs's orders active at " \
        "once\n%s" % (nodes_cap, excerpt(st))
    for o in api_orders(st):
        assert o["ended"], excerpt(st)
    return st


@pytest.mark.deadline(150)
def test_sigkill_mid_job_then_remount(clore, slow):
    nodes = clore.make_nodes(3)
    servers = [clore.server(801, nodes[0], od=100), clore.server(802, nodes[1], od=110),
               clore.server(803, nodes[2], od=120)]
    clore.start_fake(servers)
    mnt = clore.mount(nodes=2, idle="2s")
    N = 16
    mnt.drop("long", slow, "1-%d\nvideo = no\n" % N)
    clore.wait(lambda: int(mnt.status("long")["done"]) >= 3, 90, "3 frames done", "long")
    before = mnt.snapshot("long")
    assert 3 <= len(before) < N, "job finished too early to test a crash"
    mnt.crash()
    st = clore.state()
    assert len(active_api(st)) <= 2, excerpt(st)
    _crash_and_finish(clore, "long", N, SLOW, 2, before)


@pytest.mark.deadline(120)
def test_sigkill_while_create_order_waits_for_its_reply(clore, tiny):
    nodes = clore.make_nodes(2)
    servers = [clore.server(811, nodes[0], od=100), clore.server(812, nodes[1], od=110)]
    fake = clore.start_fake(servers)
    mnt = clore.mount(nodes=1, idle="2s")
    stall = 4000
    fake.set(stall_ms=stall)           # every reply comes 4 s late, create_order's too
    mnt.drop("shot", tiny, "1-6\nvideo = no\n")
    st = clore.wait(lambda: (lambda st: st if api_orders(st) else None)(fake.state()), 60,
                    "create_order to make an order (its reply held back)", "shot", interval=0.02)
    o = api_orders(st)[0]
    assert st["now"] - o["t_created"] < stall / 1000.0 - 1, "too late to crash while waiting"
    mnt.crash()
    fake.set(stall_ms=0)
    st = _crash_and_finish(clore, "shot", 6, TINY, 1)
    first = [p for p in api_orders(st) if p["id"] == o["id"]][0]
    assert first["ended"], "the order made just before the crash is still active\n%s" % excerpt(st)


@pytest.mark.deadline(120)
def test_users_own_orders_are_left_alone(clore, tiny):
    nodes = clore.make_nodes(2)
    servers = [
        # The cheapest per unit of speed, but the user's own on-demand rental holds it.
        clore.server(901, None, gpu=RTX4090, od=100),
        clore.server(902, nodes[0], od=100),
        clore.server(903, nodes[1], od=150),
        # The user's spot rental, on a model renderfs is not told to rent.
        clore.server(904, None, gpu="NVIDIA GeForce GTX 1080", od=60, spot=20),
    ]
    user = [{"id": 77, "server": 901, "spot": False, "price": 100, "ct_ago": 7200, "spend": 4.0,
             "online": True, "host": "127.0.0.1", "port": 9, "image": "user/own-image"},
            {"id": 78, "server": 904, "spot": True, "price": 25, "ct_ago": 600, "online": True,
             "host": "127.0.0.1", "port": 9, "image": "user/own-image"}]
    fake = clore.start_fake(servers, orders=user, next_order_id=5001)
    mnt = clore.mount(nodes=1, idle="2m")
    mnt.drop("shot", tiny, "1-6\nvideo = no\n")
    seen = set()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            seen |= set(os.listdir(mnt.mnt / "nodes"))
            seen |= {"order %d" % i for i in held_orders(mnt)}
            if mnt.status("shot")["state"] in R.TERMINAL:
                break
        except OSError:
            pass
        time.sleep(0.1)
    s = clore.wait_done("shot", timeout=5)
    assert counter(s, "failed") == 0, s
    for mine in ("clore-77", "clore-78", "order 77", "order 78"):
        assert mine not in seen, "renderfs shows the user's own order as its own: %s in %s" % (
            mine, sorted(seen))
    check_frames(clore, "shot", range(1, 7), TINY)
    # The farm's money is renderfs's orders only, not the user's.
    check_money(clore, ["shot"])
    assert active_api(fake.state()), "idle = 2m: the rental should still be held"
    mnt.stop()                          # unmount cancels renderfs's orders, only those
    st = fake.state()
    for o in api_orders(st):
        assert o["ended"] and o["end_reason"] == "cancelled", excerpt(st)
    cancelled = {c["id"] for c in st["cancels"]}
    for u in user:
        o = [x for x in st["orders"] if x["id"] == u["id"]][0]
        assert u["id"] not in cancelled, "cancel_order on the user's order %d\n%s" % (u["id"], excerpt(st))
        assert not o["ended"] and o["owner"] == "user", excerpt(st)
        assert float(o["price"]) == float(u["price"]) and o["spot"] == u["spot"], \
            "the user's order %d was changed: %r" % (u["id"], o)
    assert not attempts_on(st, 901), "create_order on a server marked rented\n%s" % excerpt(st)


def _walk_for(root, needle, skip_mounts=True):
    """Paths under root whose name or bytes hold needle."""
    hits = []
    for d, dirs, files in os.walk(root):
        if skip_mounts:
            for x in list(dirs):
                if R.mounted(os.path.join(d, x)):
                    dirs.remove(x)
        for n in dirs + files:
            if needle in n:
                hits.append(os.path.join(d, n))
        for n in files:
            p = os.path.join(d, n)
            try:
                with open(p, "rb") as f:
                    if needle.encode() in f.read():
                        hits.append(p)
            except OSError:
                pass           # control is write-only, sockets, vanished files
    return hits


def _cmdlines_with(needle):
    hits = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if needle.encode() in f.read():
                    hits.append((int(d), R.proc_table().get(int(d), (0, "", "?"))[2]))
        except OSError:
            pass
    return hits


@pytest.mark.deadline(120)
@pytest.mark.parametrize("how", ["file", "env"])
def test_key_never_shown(clore, tiny, how):
    nodes = clore.make_nodes(1)
    fake = clore.start_fake([clore.server(1001, nodes[0], od=100)])
    mnt = clore.mount(key=how, nodes=1, idle="2m")
    mnt.drop("shot", tiny, "1-4\n")
    clore.wait_done("shot", timeout=60)
    st = fake.state()
    assert active_api(st), "the node should still be held (idle = 2m)\n%s" % excerpt(st)
    key = clore.key
    # Everything under the mount, read through it, status files included.
    hits = []
    for d, dirs, files in os.walk(mnt.mnt):
        for n in dirs + files:
            if key in n:
                hits.append(os.path.join(d, n))
        for n in files:
            try:
                data = get(os.path.join(d, n))
            except OSError:
                continue
            if key.encode() in data:
                hits.append(os.path.join(d, n))
    assert not hits, "the API key is in files under the mount: %s" % hits
    assert not _cmdlines_with(key), "the API key is on a command line: %r" % _cmdlines_with(key)
    # Nothing that went to the rented machine carries it either.
    assert key not in json.dumps([(o["env"], o["command"], o["image"]) for o in api_orders(st)]), \
        "the API key was sent to the rented container (env, command or image)"
    assert not _walk_for(nodes[0].dir, key), "the API key is in files on the rented node"
    mnt.stop()
    assert key not in get(mnt.daemon_log).decode("utf-8", "replace"), "the API key is in the daemon log"
    hits = _walk_for(mnt.state, key)
    assert not hits, "the API key is in the state dir: %s" % hits
    assert key not in get(fake.log).decode("utf-8", "replace")


def _refused_mount(mnt, what):
    """Run renderfs on mnt's config, expecting it to refuse before
    mounting; returns its output.  Fails the test if it mounted."""
    cmd = [mnt.bin, "-f", "-o", "state=%s,config=%s" % (mnt.state, mnt.conf), str(mnt.mnt)]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = p.communicate(timeout=20)[0].decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-u", str(mnt.mnt)], capture_output=True, timeout=30)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        subprocess.run(["fusermount3", "-uz", str(mnt.mnt)], capture_output=True, timeout=30)
        pytest.fail("renderfs mounted with %s" % what)
    assert p.returncode != 0, "renderfs exited 0 with %s:\n%s" % (what, out)
    assert not R.mounted(mnt.mnt), "mounted anyway with %s" % what
    return out


@pytest.mark.deadline(60)
@pytest.mark.parametrize("mode", [0o644, 0o640], ids=["0644", "0640"])
def test_key_file_readable_by_others_is_refused(clore, mode):
    clore.start_fake([])
    clore.write_key(clore.key, mode)
    out = _refused_mount(clore.mount(start=False), "a key file of mode %o" % mode)
    assert str(clore.keyfile) in out, "the message does not name the key file %s:\n%s" % (
        clore.keyfile, out)
    assert re.search(r"(?i)group|other|world|permission|mode|readable|0?6[04][04]", out), \
        "the message does not say what is wrong with the key file:\n%s" % out
    assert clore.key not in out, "the message shows the key"
    st = clore.state()
    assert st["requests_total"] == 0, "renderfs talked to the API before refusing\n%s" % excerpt(st)


@pytest.mark.deadline(60)
@pytest.mark.parametrize("bad", [
    ({"api_url": "http://api.example.com/v1"}, r"(?i)api_url.*(http|loopback)"),
    # No image is fine with blender = auto (the default, test below); with
    # a Blender of the user's own there is nothing to start it from.
    ({"image": "", "blender": "blender"}, r"(?i)image"),
], ids=["plain-http-remote", "no-image-no-auto"])
def test_bad_clore_settings_refused_before_mounting(clore, bad):
    settings, why = bad
    clore.start_fake([])
    clore.write_key(clore.key)
    out = _refused_mount(clore.mount(start=False, **settings), repr(settings))
    assert re.search(why, out), "the message does not say what is wrong with %r:\n%s" % (settings, out)
    assert clore.key not in out, "the message shows the key"
    assert clore.state()["requests_total"] == 0, "renderfs talked to the API before refusing"


# ---------------------------------------------------------------- unmount under fire

def _fake_log_lines(fake):
    try:
        return get(fake.log).decode("utf-8", "replace").splitlines()
    except OSError:
        return []


@pytest.mark.deadline(200)
def test_unmount_gives_everything_back_under_fire(clore, slow):
    """Unmount with one node unreachable and the front proxy answering HTTP
    429 to cancel_order: a failed cancel is tried again (the client gives up
    after 5 tries, so 7 refusals need a second round); while the refusals
    last longer than the retry window, the orders left are named on stderr,
    stay on the account, and the next mount cancels them before any other
    request."""
    nodes = clore.make_nodes(2)
    servers = [clore.server(1101, nodes[0], od=100), clore.server(1102, nodes[1], od=110)]
    fake = clore.start_fake(servers)
    mnt = clore.mount(nodes=2, idle="1m")
    N = 30
    mnt.drop("long", slow, "1-%d\nvideo = no\n" % N)

    def both_rendering():
        st = fake.state()
        act = active_api(st)
        if len(act) != 2:
            return None
        for o in act:
            try:
                if node_status(mnt, o["id"]).get("state") != "rendering":
                    return None
            except OSError:
                return None
        return act
    act = clore.wait(both_rendering, 90, "two rented nodes rendering", "long")
    victim = {1101: nodes[0], 1102: nodes[1]}[act[0]["si"]]
    victim.link_down()
    fake.set(cancel_429=7)              # more than one cancel call's 5 tries
    t0 = time.monotonic()
    mnt.stop()                          # asserts exit 0 within 30 s
    took = time.monotonic() - t0
    victim.link_up()
    st = fake.state()
    assert st["cancels_refused"] == 7, "the 429s were not all met: %d\n%s" % (
        st["cancels_refused"], excerpt(st))
    for o in api_orders(st):
        assert o["ended"] and o["end_reason"] == "cancelled", \
            "an order survived the unmount although the 429s stopped in time\n%s" % excerpt(st)
    log = get(mnt.daemon_log).decode("utf-8", "replace")
    assert "could not be cancelled" not in log, mnt.log_tail(30)
    print("unmount with an unreachable node and 7 refused cancels took %.1fs" % took)

    # Now the refusals outlast the retry window (60 s x RATE_SCALE).
    mnt.start()
    act = clore.wait(both_rendering, 90, "two rented nodes rendering again", "long")
    left = sorted(o["id"] for o in act)
    fake.set(cancel_429=100000)
    mark = len(get(mnt.daemon_log))
    mnt.stop()
    st = fake.state()
    assert sorted(o["id"] for o in active_api(st)) == left, \
        "the orders whose cancels were refused should still be on the account\n%s" % excerpt(st)
    said = get(mnt.daemon_log)[mark:].decode("utf-8", "replace")
    lines = [ln for ln in said.splitlines() if "could not be cancelled" in ln]
    assert lines, "unmount did not say which orders are left:\n%s" % said[-3000:]
    for oid in left:
        assert re.search(r"\b%d\b" % oid, lines[-1]), "order %d not named: %r" % (oid, lines[-1])

    # The next mount cancels them first thing.
    fake.set(cancel_429=0)
    before = len(_fake_log_lines(fake))
    mnt.start()
    st = clore.wait(lambda: (lambda st: st if all(
        o["ended"] for o in api_orders(st) if o["id"] in left) else None)(fake.state()),
        20, "the orders left at the last unmount to be cancelled", "long")
    first = _fake_log_lines(fake)[before:before + len(left)]
    assert first and all(ln.startswith("POST /v1/cancel_order -> 200 0") for ln in first), \
        "the remount's first requests were not the cancels: %r" % first
    for o in api_orders(st):
        if o["id"] in left:
            assert o["end_reason"] == "cancelled", excerpt(st)
    s = clore.wait_done("long", timeout=150)
    assert counter(s, "failed") == 0, s
    check_frames(clore, "long", range(1, N + 1), SLOW)


@pytest.mark.deadline(120)
def test_key_installed_late_is_waited_for(clore, tiny):
    """The container puts the order's key in place only 5 s after the order
    shows online: sshd refuses it until then.  renderfs keeps trying (with
    backoff, up to boot_timeout) and renders there, on the one order."""
    nodes = clore.make_nodes(1)
    fake = clore.start_fake([clore.server(1201, nodes[0], od=100, online_after=0.5, keys_after=5)])
    mnt = clore.mount(nodes=1, boot_timeout="30s", idle="2s")
    mnt.drop("shot", tiny, "1-4\nvideo = no\n")
    s = clore.wait_done("shot", timeout=80)
    assert counter(s, "failed") == 0, s
    st = fake.state()
    assert len(attempts_on(st, 1201)) == 1 and len(api_orders(st)) == 1, \
        "the server was given up and ordered again\n%s" % excerpt(st)
    o = api_orders(st)[0]
    assert o["t_keys"] is not None and o["t_keys"] - o["t_created"] >= 5, excerpt(st)
    nf = check_frames(clore, "shot", range(1, 5), TINY, st)
    assert nf == {"clore-%d" % o["id"]: 4}, nf
    assert re.search(r"node clore-%d unusable: authentication failed" % o["id"],
                     get(mnt.daemon_log).decode("utf-8", "replace")), \
        "the node never refused the key: the test did not test a late key\n%s" % clore.debug("shot")
    clore.wait_released(20, "shot")


@pytest.mark.deadline(150)
def test_each_job_gets_nodes_of_its_own_wishes(clore, tiny):
    """Two jobs, each wanting another GPU model: each gets a node that fits
    its own sidecar (not only the top-priority job), and no frame of one
    renders on the node rented for the other."""
    nodes = clore.make_nodes(2)
    servers = [clore.server(1301, nodes[0], gpu=RTX4090, od=100),
               clore.server(1302, nodes[1], gpu=RTX3090, od=100)]
    fake = clore.start_fake(servers)
    mnt = clore.mount(nodes=2, idle="3s")
    mnt.drop("fast", tiny, "1-8\nvideo = no\npriority = 5\ngpu = RTX 4090\n")
    mnt.drop("cheap", tiny, "1-8\nvideo = no\ngpu = RTX 3090\n")
    for job in ("fast", "cheap"):
        s = clore.wait_done(job, timeout=100)
        assert counter(s, "failed") == 0, s
    st = fake.state()
    by_server = {}
    for o in api_orders(st):
        by_server.setdefault(o["si"], []).append("clore-%d" % o["id"])
    assert set(by_server) == {1301, 1302}, "expected one order per GPU model\n%s" % excerpt(st)
    for job, sid in (("fast", 1301), ("cheap", 1302)):
        nf = check_frames(clore, job, range(1, 9), TINY, st)
        wrong = {n: c for n, c in nf.items() if n not in by_server[sid]}
        assert not wrong, "frames of %s rendered on nodes its gpu wish refuses: %r (its server's " \
            "nodes %r)\n%s" % (job, wrong, by_server[sid], clore.debug(job))
    clore.wait_released(25)


@pytest.mark.deadline(150)
def test_rented_gpu_node_rendering_on_cpu_is_an_error(clore, tiny):
    """Two rented GPU servers: on one the worker reports a CUDA device (and
    each frame rendered on it); on the other Blender falls back to CPU, as
    this machine's Blender does.  The CPU one is an error, given back and
    not rented again; every frame renders on the CUDA node, whose status
    shows the device list and the device used."""
    nodes = clore.make_nodes(2, cpu=(1,))
    servers = [clore.server(1401, nodes[0], gpu=RTX3090, od=100),
               # The cheaper one: rented first, and the one that falls back.
               clore.server(1402, nodes[1], gpu=RTX3090, od=90)]
    fake = clore.start_fake(servers)
    mnt = clore.mount(nodes=2, idle="1m")
    mnt.drop("shot", tiny, "1-8\nvideo = no\n")
    s = clore.wait_done("shot", timeout=100)
    assert counter(s, "failed") == 0, s
    st = fake.state()
    on = {o["si"]: o for o in api_orders(st)}
    assert set(on) == {1401, 1402}, excerpt(st)
    assert len(attempts_on(st, 1402)) == 1, "the CPU server was rented again\n%s" % excerpt(st)
    cpu, gpu = on[1402], on[1401]
    assert cpu["ended"] and cpu["end_reason"] == "cancelled", \
        "the GPU server rendering on CPU was kept\n%s" % excerpt(st)
    nf = check_frames(clore, "shot", range(1, 9), TINY, st)
    assert nf == {"clore-%d" % gpu["id"]: 8}, "frames rendered on the CPU fallback: %r\n%s" % (
        nf, clore.debug("shot"))
    log = get(mnt.daemon_log).decode("utf-8", "replace")
    said = [ln for ln in log.splitlines() if "renders on CPU" in ln and "server 1402" in ln]
    assert said, "no line says the server renders on CPU:\n%s" % mnt.log_tail(40)
    ns = node_status(mnt, gpu["id"])
    assert ns["device"].startswith("CUDA"), ns
    assert "RTX 3090" in ns["gpus"] and int(R.leading_number(ns["gpus"])) == 1, ns
    assert counter(ns, "done") == 8, ns
    mnt.stop()


@pytest.mark.deadline(120)
def test_no_image_rents_the_stock_one_and_installs_blender(clore, tiny, blender_version):
    """Only the key file, nodes and a budget: the order names the stock
    image the docs name, the rented node (no Blender, like that image)
    installs the scene's series from the mirror and renders."""
    version, tarball = sshnodes.known_blender_release(sshnodes.blender_series(blender_version))
    nodes = clore.make_nodes(1, hide_blender=[True])
    root = clore.tmp / "mirror"
    # The installed build is the real Blender behind the GPU stand-in (a
    # rented node rendering on CPU is refused): the mirror's wrapper runs it.
    fake_gpu_env(clore.tmp)
    wrap = clore.tmp / "gpu-wrap.sh"
    wrap.write_text("#!/bin/sh\nRFS_FAKE_GPU_REAL=%s exec %s \"$@\"\n"
                    % (nodes[0].real_blender, clore.tmp / "bin-gpu" / "blender"))
    os.chmod(wrap, 0o755)
    tar_path, _ = sshnodes.blender_mirror_tree(root, version, tarball, str(wrap))
    with sshnodes.Mirror(root, nodes[0]) as mirror:
        clore.start_fake([clore.server(1101, nodes[0], od=100)])
        mnt = clore.mount(image=None, nodes=1, idle="60s", renderfs=["blender_mirror = %s" % mirror.url])
        mnt.drop("shot", tiny, "1-4\nvideo = no\n")
        clore.wait_done("shot", timeout=90)
        st = clore.state()
        check_frames(clore, "shot", range(1, 5), TINY, st)
        orders = api_orders(st)
        doc = (R.REPO / "docs" / "modules" / "provision.md").read_text()
        assert orders and all(o["image"] and "`%s`" % o["image"] in doc for o in orders), \
            "the orders' image is not the default docs/modules/provision.md names\n%s" % excerpt(st)
        s = node_status(mnt, orders[0]["id"])
        assert s["blender"] == "%s (installed)" % blender_version, clore.debug("shot")
        assert mirror.hits(tar_path) == 1, mirror.requests
