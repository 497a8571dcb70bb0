# renderfs render worker: one long-lived Blender per slot.
#
#   blender -b -Y --factory-startup FILE.blend --python worker.py
#
# The daemon writes JSON lines to our stdin; we answer with protocol lines on
# stdout, each exactly one line: "@rfs " followed by compact JSON.  Blender's
# own output goes to stderr and is kept as the frame log.
#
# stdin, first line (setup):
#   {"scene": str|null, "engine": ""|"cycles"|"eevee"|"workbench",
#    "device": "auto"|"optix"|"cuda"|"hip"|"cpu", "samples": int (0 = as saved),
#    "res_w": int, "res_h": int (0 = as saved), "res_pct": int (0 = as saved),
#    "format": "png"|"exr"|"jpeg"|"tiff", "gpu_index": int (-1 = all)}
#   -> {"ev":"ready", "blender", "scene", "engine", "device", "device_name",
#       "devices", "why", "width", "height", "fps", "frame_start", "frame_end",
#       "denoise", "slurm_job" (SLURM_JOB_ID, or null)}
#   -> or {"ev":"error","msg":...} and exit status 3.
# stdin, then any number of:
#   {"frame": N, "out": "/abs/path"}  -> start, any number of progress
#       {"ev":"progress","frame":N,"fraction":0..1,"step":K} (at most four a
#       second; step counts the render's phase changes), then done or fail;
#       done carries "device": what Cycles was set to render that frame on,
#       read back after it ("OPTIX", "CUDA", "HIP", "CPU"; "n/a" off Cycles)
#   {"cmd": "quit"} or end of input   -> exit status 0
#   a line that is not valid JSON     -> {"ev":"error","msg":...}, ignored
#
# Nothing received is ever evaluated; scene names are plain data.  A failed
# frame never ends the worker.
#
# Output discipline: the protocol has the real stdout to itself; fd 1 is
# pointed at a pipe of ours that is copied to stderr, where Blender's own
# output goes, and read for render progress (see Output).

import ctypes
import fcntl
import hashlib
import json
import os
import re
import struct
import sys
import time

import bpy

PREFIX = b"@rfs "
MAX_LINE = 1 << 20          # longest stdin line we accept
MAX_FRAME = 1048574         # Blender's MAXFRAME

ENGINES = {"": None, "cycles": "CYCLES", "eevee": "BLENDER_EEVEE",
           "workbench": "BLENDER_WORKBENCH"}
DEVICES = ("auto", "optix", "cuda", "hip", "cpu")
GPU_TYPES = ("OPTIX", "CUDA", "HIP")
GPU_LABEL = {"OPTIX": "OptiX", "CUDA": "CUDA", "HIP": "HIP", "CPU": "CPU"}
FORMATS = ("png", "exr", "jpeg", "tiff")


try:
    _libc = ctypes.CDLL(None)
except OSError:
    _libc = None


def c_flush():
    """Push Blender's buffered C stdout into the pipe."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    if _libc is not None:
        try:
            _libc.fflush(None)
        except Exception:
            pass


def one_line(s):
    s = " ".join(str(s).split())
    return s[:2000] if s else "unknown error"


def blender_error(e):
    """Blender's operator errors arrive as RuntimeError('Error: text\\n')."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    out = []
    for ln in lines:
        for p in ("Error: ", "Error:"):
            if ln.startswith(p):
                ln = ln[len(p):].strip()
                break
        if ln and ln not in out:
            out.append(ln)
    return one_line("; ".join(out)) if out else one_line(repr(e))


PROGRESS_EVERY = 0.25       # seconds: at most four progress lines a second
PIPE_SIZE = 1 << 20         # Blender's stdout pipe, drained at each stats line

# Blender 3.4's stats lines, as printed in background mode, e.g.
#   Fra:3 Mem:10.94M (Peak 10.94M) | Time:00:00.06 | Remaining:00:01.17 |
#       Mem:1.64M, Peak:1.64M | Scene, ViewLayer | Sample 1/64
#   Fra:3 Mem:11.85M (Peak 12.96M) | Time:00:03.56 | Rendering 16 / 16 samples
# Cycles with tiles adds "Tile 2/4" (or, older builds, "Rendered 3/16 Tiles").
_RE_SAMPLE = re.compile(rb"\bSample (\d+)/(\d+)")
_RE_EEVEE = re.compile(rb"\bRendering (\d+) / (\d+) samples")
_RE_TILE = re.compile(rb"\bTile (\d+)/(\d+)")
_RE_TILES_DONE = re.compile(rb"\bRendered (\d+)/(\d+) Tiles")
_RE_DIGITS = re.compile(rb"[0-9.:]+")
_VOLATILE = (b"Fra:", b"Mem:", b"Time:", b"Remaining:", b"Peak")


def _ratio(m):
    a, b = int(m.group(1)), int(m.group(2))
    return min(a, b) / b if b > 0 else None


def stats_progress(line):
    """(fraction or None, phase key) of one Blender stats line.

    The phase key is the line without its clock and memory figures: a new
    key means Blender went on to another step (syncing, kernels, BVH,
    denoising), which counts as progress although no fraction moves.
    """
    if not line.startswith(b"Fra:"):
        return None, None
    frac = None
    m = _RE_SAMPLE.search(line) or _RE_EEVEE.search(line)
    s = _ratio(m) if m else None
    t = _RE_TILE.search(line)
    td = _RE_TILES_DONE.search(line)
    if t and int(t.group(2)) > 1:
        k, n = int(t.group(1)), int(t.group(2))
        frac = (max(min(k, n), 1) - 1 + (s or 0.0)) / n
    elif td and int(td.group(2)) > 0:
        # "Rendered K/T Tiles, Sample N/M": K tiles done, the next at N.
        # Right after a tile ends Blender prints N = M for it either side
        # of counting it, so N = M adds nothing (never over-reports).
        k, n = int(td.group(1)), int(td.group(2))
        frac = (min(k, n) + (s if s is not None and s < 1 else 0.0)) / n
    elif s is not None:
        frac = s
    parts = [p.strip() for p in line.split(b"|")]
    key = b"|".join(_RE_DIGITS.sub(b"#", p) for p in parts
                    if p and not p.startswith(_VOLATILE))
    return (None if frac is None else max(0.0, min(1.0, frac))), key


class Output:
    """Protocol lines on the real stdout; everything else on stderr.

    At start the real stdout is kept on a private descriptor and fd 1 is
    pointed at a pipe of our own, so Blender's C output and any print()
    can never land inside a protocol line.  That pipe is drained into
    stderr (the daemon's frame log) whenever Blender prints a stats line
    (the render_stats handler, which Blender calls right after it printed
    and flushed one), before each protocol line and after each render;
    each stats line is read for the render's progress, which goes to the
    daemon as "progress" lines.  There is no thread here on purpose: the
    render holds the GIL for long stretches, so a Python thread that had
    to move Blender's output along could deadlock with it once a pipe
    filled up.  Instead the pipe is large (1 MiB) and its write end does
    not block: output beyond it between two stats lines is lost, Blender
    never waits.  Only protocol events and progress tell the daemon a
    render is alive; bytes of log output do not.
    """

    def __init__(self):
        c_flush()
        self.proto = os.dup(1)
        os.set_inheritable(self.proto, False)
        self.rd = None
        self.partial = b""
        self.frame = None
        self.sent = (-1.0, None)     # last (fraction, step) sent
        self.fraction = 0.0
        self.step = 0
        self.key = None
        self.last_sent = 0.0
        try:
            rd, wr = os.pipe()
            try:
                fcntl.fcntl(wr, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
            except OSError:
                pass
            os.set_blocking(rd, False)
            os.set_blocking(wr, False)
            os.dup2(wr, 1)
            os.close(wr)
            self.rd = rd
        except OSError:
            os.dup2(2, 1)            # no pipe: Blender's output straight to the log

    def drain(self):
        """Move Blender's stdout to stderr; read its stats lines."""
        if self.rd is None:
            return
        c_flush()
        while True:
            try:
                data = os.read(self.rd, 1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data:
                break
            _write_all(2, data)
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            if len(self.partial) > 65536:
                self.partial = b""
            for ln in lines:
                self._stats_line(ln)
        self._send_progress()

    def _stats_line(self, line):
        if self.frame is None:
            return
        frac, key = stats_progress(line.rstrip(b"\r"))
        if key is None:
            return
        if key != self.key:
            self.key = key
            self.step += 1
        if frac is not None and frac > self.fraction:
            self.fraction = frac

    def _send_progress(self, force=False):
        if self.frame is None:
            return
        now = time.monotonic()
        cur = (round(self.fraction, 4), self.step)
        if cur == self.sent or (not force and now - self.last_sent < PROGRESS_EVERY):
            return
        self.sent = cur
        self.last_sent = now
        self._write({"ev": "progress", "frame": self.frame,
                     "fraction": cur[0], "step": cur[1]})

    def begin(self, frame):
        self.drain()
        self.frame = frame
        self.fraction = 0.0
        self.step = 0
        self.key = None
        self.sent = (0.0, 0)
        self.last_sent = 0.0

    def end(self):
        self.drain()
        self.frame = None

    def _write(self, obj):
        line = PREFIX + json.dumps(obj, separators=(",", ":"),
                                   ensure_ascii=True).encode("ascii") + b"\n"
        while line:
            try:
                n = os.write(self.proto, line)
            except InterruptedError:
                continue
            except BrokenPipeError:
                os._exit(0)          # the daemon is gone
            line = line[n:]

    def emit(self, obj, begin=None, end=False):
        """Write one protocol line, after Blender's output so far.

        begin=FRAME: progress of that frame is reported from here on;
        end=True: the frame is over (its last progress goes first).
        """
        if end:
            self.end()
        else:
            self.drain()
        self._write(obj)
        if begin is not None:
            self.begin(begin)

    def close(self):
        self.drain()


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except BlockingIOError:
            time.sleep(0.01)
            continue
        except OSError:
            return
        data = data[n:]


def _on_render_stats(*_args):
    try:
        if OUT is not None:
            OUT.drain()
    except Exception:
        pass


OUT = None


def emit(obj):
    OUT.emit(obj)


class SetupError(Exception):
    pass


# ---------------------------------------------------------------------------
# stdin

def read_line(stream):
    """One line as text, None at end of input; over-long lines -> ValueError."""
    data = stream.readline(MAX_LINE)
    if not data:
        return None
    if not data.endswith(b"\n") and len(data) >= MAX_LINE:
        while True:                 # throw away the rest of that line
            more = stream.readline(MAX_LINE)
            if not more or more.endswith(b"\n"):
                break
        raise ValueError("input line longer than %d bytes" % MAX_LINE)
    return data.decode("utf-8", errors="replace").strip()


def parse_obj(text):
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def get_int(obj, key, default, lo, hi):
    v = obj.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int):
        raise SetupError("%s must be an integer" % key)
    if v < lo or v > hi:
        raise SetupError("%s out of range (%d..%d): %d" % (key, lo, hi, v))
    return v


def get_choice(obj, key, default, choices):
    v = obj.get(key, default)
    if v is None:
        v = default
    if not isinstance(v, str) or v.lower() not in choices:
        raise SetupError("%s must be one of %s" % (
            key, ", ".join(repr(c) for c in choices)))
    return v.lower()


# ---------------------------------------------------------------------------
# devices

def cycles_devices():
    """{type: [(name, id)]} for OPTIX/CUDA/HIP/CPU, plus compiled back-ends."""
    found = {t: [] for t in GPU_TYPES + ("CPU",)}
    built = set()
    try:
        import _cycles
        flags = _cycles.get_device_types()
        for t, on in zip(("CUDA", "OPTIX", "HIP", "METAL", "ONEAPI"), flags):
            if on:
                built.add(t)
    except Exception:
        pass
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except Exception:
        return None, found, built
    try:
        prefs.refresh_devices()
    except Exception:
        pass
    for t in GPU_TYPES + ("CPU",):
        try:
            devs = prefs.get_devices_for_type(t) or []
            found[t] = [(str(d.name), str(d.id)) for d in devs
                        if getattr(d, "type", None) == t]
        except Exception:
            found[t] = []
    if not found["CPU"]:
        try:
            import _cycles
            found["CPU"] = [(str(d[0]), str(d[2]))
                            for d in _cycles.available_devices("CPU")
                            if d[1] == "CPU"]
        except Exception:
            pass
    return prefs, found, built


def choose_device(scene, want, gpu_index):
    prefs, found, built = cycles_devices()
    listing = ["%s:%s" % (t, n) for t in GPU_TYPES + ("CPU",)
               for n, _ in found[t]]
    have = [t for t in GPU_TYPES if found[t]]
    avail = ", ".join(GPU_LABEL[t] for t in have + ["CPU"])

    if want == "auto":
        if have:
            t = have[0]
            why = "auto: %s is the best device type present" % GPU_LABEL[t]
        else:
            t = "CPU"
            gpu_built = [x for x in GPU_TYPES if x in built]
            if not gpu_built:
                why = "no GPU back-end in this Blender build"
            else:
                why = "no %s devices found" % "/".join(
                    GPU_LABEL[x] for x in gpu_built)
    elif want == "cpu":
        t = "CPU"
        why = "cpu requested"
    else:
        t = want.upper()
        if not found[t]:
            lack = ("this build has no %s support" % GPU_LABEL[t]
                    if t not in built else "none found on this node")
            raise SetupError(
                "device %s requested, but this Blender has no %s devices "
                "(%s; available: %s)" % (want, GPU_LABEL[t], lack, avail))
        why = "%s requested" % want

    if t == "CPU":
        scene.cycles.device = "CPU"
        if prefs is not None:
            try:
                prefs.compute_device_type = "NONE"
            except Exception:
                pass
        name = ", ".join(n for n, _ in found["CPU"]) or "CPU"
        return "CPU", name, listing, why

    devs = found[t]
    if gpu_index >= 0:
        if gpu_index >= len(devs):
            raise SetupError("gpu_index %d requested, but there %s only %d %s device%s"
                             % (gpu_index, "is" if len(devs) == 1 else "are",
                                len(devs), GPU_LABEL[t], "" if len(devs) == 1 else "s"))
        devs = [devs[gpu_index]]
    ids = set(i for _, i in devs)
    try:
        prefs.compute_device_type = t
        for d in prefs.devices:
            d.use = (d.type == t and d.id in ids)
    except Exception as e:
        raise SetupError("could not select %s devices: %s" % (GPU_LABEL[t], one_line(e)))
    scene.cycles.device = "GPU"
    return t, ", ".join(n for n, _ in devs), listing, why


def device_in_use(scene):
    """The device type Cycles renders on, as its settings stand now: a GPU
    type only when the scene asks for the GPU and a device of the selected
    compute type is enabled (otherwise Cycles renders on the CPU)."""
    if scene.render.engine != "CYCLES":
        return "n/a"
    try:
        if scene.cycles.device != "GPU":
            return "CPU"
        prefs = bpy.context.preferences.addons["cycles"].preferences
        t = prefs.compute_device_type
        if t in GPU_TYPES and any(d.use and d.type == t for d in prefs.devices):
            return t
    except Exception:
        pass
    return "CPU"


# ---------------------------------------------------------------------------
# setup

def apply_format(scene, fmt):
    im = scene.render.image_settings
    if fmt == "png":
        im.file_format = "PNG"
        im.color_mode = "RGBA"
        im.color_depth = "8"
    elif fmt == "exr":
        im.file_format = "OPEN_EXR"
        im.color_mode = "RGBA"
        im.color_depth = "16"
        im.exr_codec = "ZIP"
        try:
            im.use_preview = False
        except Exception:
            pass
    elif fmt == "jpeg":
        im.file_format = "JPEG"
        im.color_mode = "RGB"
        im.quality = 90
    elif fmt == "tiff":
        im.file_format = "TIFF"
        im.color_mode = "RGBA"
        im.color_depth = "8"


def quiet_file_outputs():
    """Mute compositor File Output nodes: we write only where asked."""
    trees = []
    for sc in bpy.data.scenes:
        if sc.node_tree is not None:
            trees.append(sc.node_tree)
    for ng in bpy.data.node_groups:
        if getattr(ng, "bl_idname", "") == "CompositorNodeTree":
            trees.append(ng)
    for tree in trees:
        for node in tree.nodes:
            if node.type == "OUTPUT_FILE":
                node.mute = True


def setup(obj):
    name = obj.get("scene")
    if name is not None and not isinstance(name, str):
        raise SetupError("scene must be a string or null")
    engine = get_choice(obj, "engine", "", tuple(ENGINES))
    device = get_choice(obj, "device", "auto", DEVICES)
    samples = get_int(obj, "samples", 0, 0, 1 << 24)
    res_w = get_int(obj, "res_w", 0, 0, 65536)
    res_h = get_int(obj, "res_h", 0, 0, 65536)
    res_pct = get_int(obj, "res_pct", 0, 0, 32767)
    fmt = get_choice(obj, "format", "png", FORMATS)
    gpu_index = get_int(obj, "gpu_index", -1, -1, 1 << 16)

    if name is not None:
        scene = bpy.data.scenes.get(name)
        if scene is None:
            raise SetupError("scene %s not found (available: %s)" % (
                json.dumps(name), ", ".join(json.dumps(s.name)
                                            for s in bpy.data.scenes)))
    else:
        scene = bpy.context.scene
        if scene is None:
            if not bpy.data.scenes:
                raise SetupError("the file has no scene")
            scene = bpy.data.scenes[0]
    if scene.camera is None and not any(m.camera for m in scene.timeline_markers):
        raise SetupError("scene %s has no camera" % json.dumps(scene.name))

    r = scene.render
    if ENGINES[engine]:
        r.engine = ENGINES[engine]
    eng = r.engine
    if samples > 0:
        if eng == "CYCLES":
            scene.cycles.samples = samples
        elif eng in ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"):
            scene.eevee.taa_render_samples = samples
    if res_w > 0:
        r.resolution_x = res_w
        r.resolution_percentage = 100
    if res_h > 0:
        r.resolution_y = res_h
        r.resolution_percentage = 100
    if res_pct > 0:
        r.resolution_percentage = res_pct
    apply_format(scene, fmt)
    try:
        r.use_multiview = False      # one image per frame, at one path
    except Exception:
        pass
    quiet_file_outputs()

    denoise = False
    if eng == "CYCLES":
        r.use_persistent_data = True
        dev, dev_name, listing, why = choose_device(scene, device, gpu_index)
        denoise = bool(scene.cycles.use_denoising) and any(
            vl.use and getattr(getattr(vl, "cycles", None), "use_denoising", True)
            for vl in scene.view_layers)
    else:
        _, found, _ = cycles_devices()
        listing = ["%s:%s" % (t, n) for t in GPU_TYPES + ("CPU",)
                   for n, _ in found[t]]
        dev, dev_name = "n/a", ""
        why = "engine %s does not use Cycles devices" % eng

    width = r.resolution_x * r.resolution_percentage // 100
    height = r.resolution_y * r.resolution_percentage // 100
    fps_base = r.fps_base or 1.0
    return scene, {
        "ev": "ready",
        "blender": bpy.app.version_string.split()[0],
        "scene": scene.name,
        "engine": eng,
        "device": dev,
        "device_name": dev_name,
        "devices": listing,
        "why": why,
        "width": width,
        "height": height,
        "fps": round(r.fps / fps_base, 6),
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "denoise": denoise,
        # The Slurm job this worker runs in, when srun started it.
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
    }


# ---------------------------------------------------------------------------
# image headers: (width, height) of what we wrote, or None

def image_size(path):
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(head, path)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(path)
        if head[:4] == b"\x76\x2f\x31\x01":
            return _exr_size(head)
    except (struct.error, IndexError, ValueError, OSError):
        return None
    return None


def _jpeg_size(head, path):
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seglen
    return None


def _tiff_size(path):
    with open(path, "rb") as f:
        data = f.read()
    e = "<" if data[:2] == b"II" else ">"
    off = struct.unpack(e + "I", data[4:8])[0]
    n = struct.unpack(e + "H", data[off:off + 2])[0]
    w = h = None
    for k in range(n):
        ent = data[off + 2 + 12 * k: off + 14 + 12 * k]
        tag, typ, _cnt = struct.unpack(e + "HHI", ent[:8])
        if typ == 3:
            val = struct.unpack(e + "H", ent[8:10])[0]
        elif typ == 4:
            val = struct.unpack(e + "I", ent[8:12])[0]
        else:
            continue
        if tag == 256:
            w = val
        elif tag == 257:
            h = val
    return (w, h) if w and h else None


def _exr_size(head):
    i = 8
    while i < len(head):
        j = head.index(b"\x00", i)
        name = head[i:j]
        if not name:
            return None
        k = head.index(b"\x00", j + 1)
        typ = head[j + 1:k]
        size = struct.unpack("<i", head[k + 1:k + 5])[0]
        val = head[k + 5:k + 5 + size]
        if name == b"dataWindow" and typ == b"box2i":
            x0, y0, x1, y1 = struct.unpack("<iiii", val[:16])
            return x1 - x0 + 1, y1 - y0 + 1
        i = k + 5 + size
    return None


# ---------------------------------------------------------------------------
# frames

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def render_result_image():
    for im in bpy.data.images:
        if im.type == "RENDER_RESULT":
            return im
    return None


def render_once(scene):
    """Render the current frame; Blender's error text becomes FrameError."""
    try:
        res = bpy.ops.render.render(write_still=False, scene=scene.name)
    except RuntimeError as e:
        raise FrameError(blender_error(e))
    if "FINISHED" not in res:
        raise FrameError("render did not finish (%s)" % ",".join(sorted(res)))
    img = render_result_image()
    if img is None:
        raise FrameError("no Render Result after rendering")
    return img


def render_frame(scene, frame, out):
    """Render one frame to `out`; returns the done event or raises FrameError.

    Cycles keeps its session between frames (persistent data).  After a
    failed render that session can be left broken: Blender 3.4 then reports
    the next render as finished but leaves no image (seen with denoising on a
    build without OpenImageDenoise).  So a failure turns persistent data off
    for the next frame, a success turns it back on, and a "finished" render
    with nothing to save is tried once more with a fresh session.
    """
    t0 = time.monotonic()
    cycles = scene.render.engine == "CYCLES"
    scene.frame_set(frame)
    d, base = os.path.split(out)
    tmp = os.path.join(d, ".%s.%d.tmp" % (base, os.getpid()))
    try:
        for attempt in (1, 2):
            img = render_once(scene)
            try:
                img.save_render(filepath=tmp, scene=scene)
                break
            except RuntimeError as e:
                if attempt == 1 and cycles and scene.render.use_persistent_data:
                    scene.render.use_persistent_data = False
                    continue
                raise FrameError(blender_error(e))
        try:
            st = os.stat(tmp)
        except OSError:
            raise FrameError("Blender reported success but wrote no file")
        if st.st_size == 0:
            raise FrameError("Blender wrote an empty file")
        size = image_size(tmp)
        if size is None:
            raise FrameError("the written file is not a readable %s image"
                             % scene.render.image_settings.file_format)
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        if cycles:
            scene.render.use_persistent_data = False
        raise
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    if cycles:
        scene.render.use_persistent_data = True
    return {"ev": "done", "frame": frame, "path": out,
            "secs": round(time.monotonic() - t0, 4), "sha256": digest,
            "width": size[0], "height": size[1], "device": device_in_use(scene)}


class FrameError(Exception):
    pass


def handle_frame(scene, obj):
    frame = obj.get("frame")
    if isinstance(frame, bool) or not isinstance(frame, int):
        emit({"ev": "error", "msg": "frame must be an integer"})
        return
    out = obj.get("out")
    msg = None
    if not isinstance(out, str) or not out:
        msg = "out must be a non-empty string"
    elif "\x00" in out or not os.path.isabs(out):
        msg = "out must be an absolute path"
    elif not (-MAX_FRAME <= frame <= MAX_FRAME):
        msg = "frame %d out of range" % frame
    elif out.endswith("/") or not os.path.isdir(os.path.dirname(out)):
        msg = "output directory does not exist: %s" % os.path.dirname(out)
    if msg:
        emit({"ev": "fail", "frame": frame, "msg": msg})
        return
    OUT.emit({"ev": "start", "frame": frame}, begin=frame)
    try:
        ev = render_frame(scene, frame, out)
    except FrameError as e:
        ev = {"ev": "fail", "frame": frame, "msg": one_line(e)}
    except Exception as e:       # never let one frame end the worker
        ev = {"ev": "fail", "frame": frame,
              "msg": one_line("%s: %s" % (type(e).__name__, e))}
    OUT.emit(ev, end=True)


def finish(code):
    """Flush everything and leave with `code`.

    We do not return into Blender: its normal exit reports status 1 whenever
    the last render failed (G.is_break), and a full shutdown is slow and
    pointless here.  Blender's session temp dir is removed by hand.
    """
    OUT.close()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    c_flush()
    try:
        import shutil
        if bpy.app.tempdir:
            shutil.rmtree(bpy.app.tempdir, ignore_errors=True)
    except Exception:
        pass
    os._exit(code)


def main():
    global OUT
    OUT = Output()
    try:
        bpy.app.handlers.render_stats.append(_on_render_stats)
    except Exception:
        pass
    stdin = sys.stdin.buffer

    # Setup: the first non-empty line.
    while True:
        try:
            text = read_line(stdin)
        except ValueError as e:
            emit({"ev": "error", "msg": one_line(e)})
            return finish(3)
        if text is None:
            emit({"ev": "error", "msg": "end of input before setup"})
            return finish(3)
        if text:
            break
    try:
        obj = parse_obj(text)
        scene, ready = setup(obj)
    except (ValueError, SetupError) as e:
        emit({"ev": "error", "msg": one_line(e)})
        return finish(3)
    except Exception as e:
        emit({"ev": "error", "msg": one_line("setup failed: %s: %s"
                                             % (type(e).__name__, e))})
        return finish(3)
    emit(ready)

    while True:
        try:
            text = read_line(stdin)
        except ValueError as e:
            emit({"ev": "error", "msg": one_line(e)})
            continue
        if text is None:
            break
        if not text:
            continue
        try:
            obj = parse_obj(text)
        except ValueError as e:
            emit({"ev": "error", "msg": one_line("bad input line: %s" % e)})
            continue
        if "cmd" in obj:
            if obj.get("cmd") == "quit":
                break
            emit({"ev": "error", "msg": "unknown command"})
            continue
        if "frame" in obj:
            handle_frame(scene, obj)
            continue
        emit({"ev": "error", "msg": "expected a frame or a command"})
    return finish(0)


try:
    main()
except SystemExit:
    raise
except BaseException as e:
    try:
        OUT.emit({"ev": "error", "msg": one_line("worker crashed: %s: %s"
                                                 % (type(e).__name__, e))})
    except Exception:
        pass
    try:
        finish(1)
    finally:
        os._exit(1)
