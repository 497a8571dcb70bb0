# Helpers for the renderfs end-to-end tests: starting and stopping a real
# mount, dropping jobs, reading status files, waiting with timeouts, and
# reading image headers without third-party modules.
#
# Everything here waits by polling a condition with a deadline; nothing uses a
# fixed sleep as synchronisation.  The few fixed sleeps left in the tests are
# "nothing must happen during this long" checks, which cannot be polled.

import errno
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUIET = 0.3                       # seconds; the tests' `quiet`
QUIET_OPT = "300ms"
TERMINAL = ("done", "failed", "cancelled")
STATES = ("waiting", "provisioning", "rendering", "assembling", "done",
          "failed", "cancelled", "paused")
# Every key of the product.md job status example except missing and error.
JOB_KEYS = ("job", "state", "frames", "done", "rendering", "queued", "failed",
            "progress", "elapsed", "eta", "avg_frame", "nodes", "rate", "spent",
            "estimate")
NODE_KEYS = ("provider", "address", "gpus", "device", "blender", "price",
             "state", "done", "failed")
FRAME_RE = re.compile(r"^frame_(\d{4,})\.(png|exr|jpg|tif)$")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                          r"runtime error:|SUMMARY: UndefinedBehaviorSanitizer")


def renderfs_bin():
    """$RENDERFS_BIN (relative to the current directory), else
    build/fs/renderfs relative to the repo root."""
    b = os.environ.get("RENDERFS_BIN")
    if b:
        return str(Path(b).resolve())
    return str(REPO / "build" / "fs" / "renderfs")


def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns something truthy; return that value.
    Exceptions from pred (e.g. a file not there yet) count as "not yet"."""
    end = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError, KeyError) as e:
            last_exc = e
        if time.monotonic() > end:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise AssertionError(msg)
        time.sleep(interval)


def put(path, data, mode="wb"):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, mode) as f:
        f.write(data)


def get(path):
    with open(path, "rb") as f:
        return f.read()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_scenes(d, specs, timeout=180):
    """Make test scenes with contrib/make_scene.py, all at once: specs maps
    a name to make_scene.py's arguments.  Returns {name: path of
    d/NAME.blend}; raises AssertionError with Blender's output when one
    cannot be made."""
    script = REPO / "contrib" / "make_scene.py"
    procs = {}
    for name, args in specs.items():
        out = Path(d) / (name + ".blend")
        log = open(Path(d) / (name + ".log"), "wb")
        procs[name] = (out, log, subprocess.Popen(
            ["blender", "-b", "--factory-startup", "-Y", "--python", str(script), "--",
             str(out)] + list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    paths = {}
    for name, (out, log, p) in procs.items():
        rc = p.wait(timeout)
        log.close()
        if rc != 0 or not out.exists():
            raise AssertionError("make_scene.py %s failed (%s):\n%s" % (
                name, rc, get(Path(d) / (name + ".log")).decode("utf-8", "replace")[-3000:]))
        paths[name] = out
    return paths


def parse_status(text):
    """`key: value` lines -> dict (first occurrence of a key wins)."""
    d = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() and k.strip() not in d:
            d[k.strip()] = v.strip()
    return d


def parse_frame_list(text):
    """Lenient parser for a `missing:` value: 17,203 or 1-3,7."""
    out = set()
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        if "-" in item:
            a, b = item.split("-", 1)
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(item))
    return out


def leading_number(s):
    m = re.match(r"\s*\$?(-?\d+(?:\.\d+)?)", s)
    if not m:
        raise AssertionError("no number at the start of %r" % (s,))
    return float(m.group(1))


# ---------------------------------------------------------------- images

def image_size(path):
    """(width, height) of a PNG, OpenEXR, JPEG or TIFF file, from its header."""
    data = get(path)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        assert data[12:16] == b"IHDR", "PNG without IHDR first: %s" % path
        return struct.unpack(">II", data[16:24])
    if data[:4] == b"\x76\x2f\x31\x01":
        return _exr_size(data, path)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data, path)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data, path)
    raise AssertionError("%s: not a PNG/EXR/JPEG/TIFF file (starts %r)" % (path, data[:8]))


def image_kind(path):
    data = get(path)[:8]
    if data == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"\x76\x2f\x31\x01":
        return "exr"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _exr_size(data, path):
    i = 8
    while True:
        j = data.index(b"\0", i)
        name = data[i:j]
        if not name:
            break
        k = data.index(b"\0", j + 1)
        typ = data[j + 1:k]
        (size,) = struct.unpack_from("<i", data, k + 1)
        val = k + 5
        if name == b"dataWindow" and typ == b"box2i":
            x0, y0, x1, y1 = struct.unpack_from("<4i", data, val)
            return (x1 - x0 + 1, y1 - y0 + 1)
        i = val + size
    raise AssertionError("%s: EXR header without dataWindow" % path)


def _jpeg_size(data, path):
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        m = data[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7:
            i += 2
            continue
        (ln,) = struct.unpack_from(">H", data, i + 2)
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack_from(">HH", data, i + 5)
            return (w, h)
        i += 2 + ln
    raise AssertionError("%s: JPEG without SOF marker" % path)


def _tiff_size(data, path):
    e = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", data, 4)
    (n,) = struct.unpack_from(e + "H", data, ifd)
    w = h = None
    for k in range(n):
        off = ifd + 2 + 12 * k
        tag, typ, cnt = struct.unpack_from(e + "HHI", data, off)
        if typ == 3:
            (v,) = struct.unpack_from(e + "H", data, off + 8)
        else:
            (v,) = struct.unpack_from(e + "I", data, off + 8)
        if tag == 256:
            w = v
        elif tag == 257:
            h = v
    if w is None or h is None:
        raise AssertionError("%s: TIFF without width/height" % path)
    return (w, h)


def ffprobe(path):
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,pix_fmt,nb_read_frames",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "ffprobe %s failed: %s" % (path, r.stderr)
    streams = json.loads(r.stdout).get("streams") or []
    assert streams, "ffprobe found no video stream in %s" % path
    s = streams[0]
    return {"codec_name": s.get("codec_name"), "pix_fmt": s.get("pix_fmt"),
            "nb_read_frames": int(s.get("nb_read_frames", -1))}


# ---------------------------------------------------------------- processes

def mounted(path):
    """Is `path` a mount point, per /proc/self/mountinfo (works for a dead
    FUSE mount too, where os.path.ismount says no because stat fails)."""
    path = os.path.realpath(str(path)) if os.path.exists(str(path)) else str(path)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if mp == path:
                return True
    return False


def proc_table():
    """pid -> (ppid, state, comm) for every process."""
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                s = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        r = s.rfind(")")
        comm = s[s.find("(") + 1:r]
        rest = s[r + 2:].split()
        t[int(d)] = (int(rest[1]), rest[0], comm)
    return t


def descendants(pid, table=None):
    t = table or proc_table()
    kids = {}
    for p, (pp, _, _) in t.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def set_child_subreaper():
    """Become the subreaper of our descendants, so Blender processes that a
    daemon leaves behind become our children and can be found and reaped."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


class Daemon:
    """One run of the renderfs daemon on a mount point."""

    def __init__(self, mount, extra_opts):
        self.mount = mount
        self.extra_opts = list(extra_opts)
        self.proc = None
        self.killed = False        # the test SIGKILLed it on purpose

    def start(self):
        m = self.mount
        opts = ["state=%s" % m.state, "config=%s" % m.conf] + self.extra_opts
        cmd = [m.bin, "-f", "-o", ",".join(opts), str(m.mnt)]
        m.log_line("$ " + " ".join(cmd))
        with open(m.daemon_log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=str(m.base),
                                         start_new_session=True)
        LIVE.add(self)
        end = time.monotonic() + 15
        while True:
            rc = self.proc.poll()
            if rc is not None:
                LIVE.discard(self)
                raise AssertionError("renderfs exited with %s before the mount was ready:\n%s"
                                     % (rc, m.log_tail()))
            if mounted(m.mnt) and os.path.ismount(str(m.mnt)):
                try:
                    get(m.mnt / "status")
                    return self
                except OSError:
                    pass
            if time.monotonic() > end:
                raise AssertionError("mount not ready after 15s (mounted=%s):\n%s"
                                     % (mounted(m.mnt), m.log_tail()))
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def sigkill(self):
        """Crash it on purpose: SIGKILL, then lazily unmount the dead mount."""
        self.killed = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        LIVE.discard(self)
        subprocess.run(["fusermount3", "-uz", str(self.mount.mnt)],
                       capture_output=True, timeout=30)
        wait_for(lambda: not mounted(self.mount.mnt), 10, "dead mount to go away")

    def unmount(self, lazy_ok=True):
        """fusermount3 -u (then -uz if busy), wait for the daemon to exit.
        Returns a list of problems (empty when all went well)."""
        problems = []
        m = self.mount
        if self.proc.poll() is None:
            r = subprocess.run(["fusermount3", "-u", str(m.mnt)], capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0:
                m.log_line("fusermount3 -u failed: %s" % r.stderr.strip())
                if not lazy_ok:
                    problems.append("fusermount3 -u failed: %s" % r.stderr.strip())
                subprocess.run(["fusermount3", "-uz", str(m.mnt)], capture_output=True,
                               timeout=30)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                problems.append("daemon still running 30s after unmount; killed")
                self.killed = True
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        if mounted(m.mnt):
            subprocess.run(["fusermount3", "-uz", str(m.mnt)], capture_output=True, timeout=30)
        LIVE.discard(self)
        rc = self.proc.returncode
        if not self.killed and rc != 0:
            if rc < 0:
                problems.append("daemon died of signal %d" % -rc)
            else:
                problems.append("daemon exited with status %d" % rc)
        return problems

    def emergency_kill(self):
        # Called from the watchdog thread when a test overran its deadline
        # and is probably stuck in a syscall on the mount.
        try:
            self.killed = True
            os.kill(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        subprocess.run(["fusermount3", "-uz", str(self.mount.mnt)], capture_output=True,
                       timeout=30)


LIVE = set()          # Daemons currently running (for the watchdog)


class Mount:
    """A mount point, state dir and config in one per-test directory."""

    def __init__(self, base, bin_path, config=None, opts=()):
        self.base = Path(base)
        self.bin = bin_path
        self.mnt = self.base / "mnt"
        self.state = self.base / "state"
        self.conf = self.base / "renderfs.conf"
        self.daemon_log = self.base / "daemon.log"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        if config is None:
            config = ("[renderfs]\nbackend = local\nquiet = %s\n"
                      "[local]\nblender = blender\nworkers = 2\n" % QUIET_OPT)
        put(self.conf, config)
        self.opts = list(opts)
        self.daemon = None
        self.runs = []
        self.problems = []

    # -- lifecycle
    def start(self, opts=None):
        assert self.daemon is None, "already mounted"
        d = Daemon(self, self.opts if opts is None else opts)
        self.runs.append(d)
        d.start()
        self.daemon = d
        return self

    def stop(self):
        """Clean unmount; fails the test if the daemon did not exit 0 or
        left processes behind."""
        d, self.daemon = self.daemon, None
        problems = d.unmount() + check_leftovers(d, fail=not d.killed)
        self.check_log()
        if problems:
            raise AssertionError("unmount: %s\n%s" % ("; ".join(problems), self.log_tail()))

    def crash(self):
        d, self.daemon = self.daemon, None
        d.sigkill()

    def teardown(self):
        problems = []
        if self.daemon is not None:
            d, self.daemon = self.daemon, None
            problems += d.unmount()
            problems += check_leftovers(d, fail=not d.killed)
        for d in self.runs:
            if not d.killed and d.proc.returncode not in (0, None):
                pass  # already reported when it was stopped
        try:
            self.check_log()
        except AssertionError as e:
            problems.append(str(e))
        return problems

    def check_log(self):
        try:
            text = get(self.daemon_log).decode("utf-8", "replace")
        except OSError:
            return
        m = SANITIZER_RE.search(text)
        if m:
            raise AssertionError("sanitizer report in daemon output: %s" % m.group(0))

    def log_line(self, s):
        with open(self.daemon_log, "ab") as f:
            f.write(("[test] %s\n" % s).encode("utf-8", "surrogateescape"))

    def log_tail(self, n=60):
        try:
            lines = get(self.daemon_log).decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no daemon log)"
        return "--- daemon output (last %d lines) ---\n%s" % (n, "\n".join(lines[-n:]))

    # -- paths
    @property
    def queue(self):
        return self.mnt / "queue"

    @property
    def out(self):
        return self.mnt / "out"

    def job_dir(self, job):
        return self.out / job

    # -- jobs
    def drop(self, name, blend, rng, sidecar_first=False):
        """Write queue/NAME.blend and queue/NAME.range, like `cp` would."""
        b = self.queue / (name + ".blend")
        r = self.queue / (name + ".range")
        if sidecar_first:
            put(r, rng)
            put(b, blend)
        else:
            put(b, blend)
            put(r, rng)

    def settle(self, blend, since):
        """Prove the daemon has looked at everything dropped before `since`
        (a time.monotonic() value): drop a one-frame sentinel job after it,
        wait for it to finish, and make sure several `quiet` periods passed."""
        self.sentinels = getattr(self, "sentinels", 0) + 1
        name = "sentinel%d" % self.sentinels
        self.drop(name, blend, "1\nvideo = no\n")
        self.wait_done(name)
        left = since + 5 * QUIET - time.monotonic()
        if left > 0:
            time.sleep(left)      # a "nothing may happen" window, not a sync
        return name

    def status(self, job=None):
        p = (self.job_dir(job) / "status") if job is not None else (self.mnt / "status")
        return parse_status(get(p).decode("utf-8"))

    def status_text(self, job=None):
        p = (self.job_dir(job) / "status") if job is not None else (self.mnt / "status")
        return get(p).decode("utf-8")

    def status_json(self, job=None):
        p = (self.job_dir(job) / "status.json") if job is not None else (self.mnt / "status.json")
        return json.loads(get(p).decode("utf-8"))

    def wait_state(self, job, states=TERMINAL, timeout=60):
        if isinstance(states, str):
            states = (states,)
        seen = []

        def check():
            s = self.status(job)
            st = s.get("state")
            if not seen or seen[-1] != st:
                seen.append(st)
            return s if st in states else None
        try:
            return wait_for(check, timeout, "job %r to reach state %s" % (job, "/".join(states)))
        except AssertionError as e:
            raise AssertionError("%s; states seen: %s\n%s" % (e, seen, self._job_debug(job)))

    def wait_done(self, job, timeout=60):
        s = self.wait_state(job, TERMINAL, timeout)
        assert s["state"] == "done", "job %r ended %s:\n%s" % (job, s["state"], self._job_debug(job))
        return s

    def wait_count(self, job, n, timeout=60):
        """Wait until the job's status says done >= n; returns the status."""
        return wait_for(lambda: (lambda s: s if int(s["done"]) >= n else None)(self.status(job)),
                        timeout, "job %r to have %d frames done" % (job, n))

    def _job_debug(self, job):
        try:
            st = self.status_text(job)
        except OSError as e:
            st = "(status unreadable: %s)" % e
        try:
            q = sorted(os.listdir(self.queue))
        except OSError as e:
            q = "(queue unreadable: %s)" % e
        errs = ""
        try:
            for n in os.listdir(self.queue):
                if n.endswith(".error"):
                    errs += "%s: %s\n" % (n, get(self.queue / n).decode("utf-8", "replace"))
        except OSError:
            pass
        return "status of %r:\n%s\nqueue: %s\n%s%s" % (job, st, q, errs, self.log_tail(30))

    def frames(self, job):
        """Sorted frame file names in out/JOB."""
        return sorted(n for n in os.listdir(self.job_dir(job)) if FRAME_RE.match(n))

    def frame_numbers(self, job):
        return sorted(int(FRAME_RE.match(n).group(1)) for n in self.frames(job))

    def snapshot(self, job):
        """name -> (sha256, size, mtime_ns) of every frame file in out/JOB."""
        snap = {}
        for n in self.frames(job):
            p = self.job_dir(job) / n
            st = os.stat(p)
            snap[n] = (sha(get(p)), st.st_size, st.st_mtime_ns)
        return snap

    def control(self, job, cmd):
        """Write a command to out/JOB/control like `echo CMD > control`.
        Returns 0 on success, else the errno of the failed write()."""
        fd = os.open(self.job_dir(job) / "control", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = 0
        try:
            os.write(fd, (cmd + "\n").encode())
        except OSError as e:
            err = e.errno
        try:
            os.close(fd)
        except OSError as e:
            raise AssertionError("control %r: write() returned %s but close() failed with %s; "
                                 "the error must come from the write"
                                 % (cmd, errno.errorcode.get(err, err) if err else "success",
                                    errno.errorcode.get(e.errno, e.errno)))
        return err

    def blender_children(self):
        if self.daemon is None:
            return []
        t = proc_table()
        return [p for p in descendants(self.daemon.pid, t)
                if "blender" in t[p][2] and t[p][1] != "Z"]


# Processes that are not the daemon's even though they descend from this
# test process (a test that starts its own servers sets a predicate here).
not_the_daemons = None


def check_leftovers(d, fail=True, timeout=10):
    """After a daemon exited: processes it started (they now are ours, as
    subreaper) must go away.  Returns problems; kills and reaps what's left."""
    me = os.getpid()
    live_pids = {x.pid for x in LIVE if x.proc.poll() is None}

    def leftovers():
        t = proc_table()
        mine = set(descendants(me, t))
        for lp in live_pids:
            mine.discard(lp)
            mine -= set(descendants(lp, t))
        left = []
        for p in mine:
            if t.get(p, (0, "", ""))[0] == me and t[p][1] == "Z":
                try:
                    os.waitpid(p, os.WNOHANG)
                except ChildProcessError:
                    pass
                continue
            if p in t and t[p][1] != "Z" and not (not_the_daemons and not_the_daemons(p)):
                left.append((p, t[p][2]))
        return left

    end = time.monotonic() + timeout
    left = leftovers()
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = leftovers()
    if not left:
        return []
    for p, _ in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    wait_for(lambda: not [1 for p, _ in leftovers()], 10, "leftover processes to die")
    return ["processes left running %ds after the daemon exited: %s" % (timeout, left)] if fail else []


class Watchdog:
    """Per-test deadline: SIGALRM in the main thread at the deadline, and if
    the test is still stuck 20 s later (blocked in a syscall on a hung mount),
    kill the daemons so the syscall returns."""

    class Timeout(Exception):
        pass

    armed = False
    fired = False
    secs = 0

    @classmethod
    def install(cls):
        def handler(signum, frame):
            if cls.armed:
                cls.armed = False
                raise cls.Timeout("test exceeded its %ss deadline" % cls.secs)
        signal.signal(signal.SIGALRM, handler)

    def __init__(self, secs):
        self.secs = secs
        Watchdog.secs = secs
        self.main = threading.main_thread().ident
        self.t1 = threading.Timer(secs, self._fire)
        self.t2 = threading.Timer(secs + 20, self._kill)
        self.t1.daemon = self.t2.daemon = True

    def __enter__(self):
        Watchdog.armed = True
        Watchdog.fired = False
        self.t1.start()
        self.t2.start()
        return self

    def _fire(self):
        # The exception raised by the handler can be swallowed when it lands
        # in pytest's own code (pluggy returns from a finally:), so the
        # fixture also checks `fired` afterwards.
        Watchdog.fired = True
        signal.pthread_kill(self.main, signal.SIGALRM)

    def _kill(self):
        for d in list(LIVE):
            d.emergency_kill()

    def disarm(self):
        Watchdog.armed = False
        self.t1.cancel()

    def __exit__(self, *a):
        self.disarm()
        self.t2.cancel()
