#!/usr/bin/python3
# A `blender` that runs no Blender: it speaks the worker protocol itself
# (see backend/sched/worker.py) and behaves as RFS_FAKE_MODE says:
#
#   progress  ready 64x64; each frame: start, progress 0.25, then waits for
#             the file RFS_FAKE_GO to exist, progress 1.0, a 64x64 PNG, done
#   chatty    ready 64x64; each frame: start, then 64 KiB lines on stderr
#             forever, never any progress (a hung render that talks)
#   liar      ready 65536x65536; each frame: a 128x128 PNG and done (the
#             wrong size for the job, whatever the node announced)
#
# The arguments are Blender's (-b -Y --factory-startup FILE --python W) and
# are ignored.
import hashlib
import json
import os
import struct
import sys
import time
import zlib


def emit(obj):
    sys.stdout.write("@rfs " + json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def png(w, h):
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def deliver(frame, out, w, h, t0):
    data = png(w, h)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    emit({"ev": "done", "frame": frame, "path": out, "secs": round(time.monotonic() - t0, 3),
          "sha256": hashlib.sha256(data).hexdigest(), "width": w, "height": h})


def main():
    mode = os.environ.get("RFS_FAKE_MODE", "progress")
    go = os.environ.get("RFS_FAKE_GO", "")
    setup = sys.stdin.readline()
    if not setup:
        return 3
    size = 65536 if mode == "liar" else 64
    emit({"ev": "ready", "blender": "3.4.1", "scene": "Scene", "engine": "CYCLES",
          "device": "CPU", "devices": ["CPU:fake"], "why": "fake", "width": size, "height": size,
          "fps": 24.0, "frame_start": 1, "frame_end": 10, "denoise": False})
    for line in sys.stdin:
        req = json.loads(line)
        if "frame" not in req:
            break
        frame, out = req["frame"], req["out"]
        t0 = time.monotonic()
        emit({"ev": "start", "frame": frame})
        if mode == "chatty":
            blob = (b"Fra:%d Mem:9M | Time:00:00.00 | Synchronizing object | " % frame)
            blob += b"x" * (65536 - len(blob) - 1) + b"\n"
            while True:
                os.write(2, blob)
                time.sleep(0.005)
        if mode == "liar":
            deliver(frame, out, 128, 128, t0)
            continue
        emit({"ev": "progress", "frame": frame, "fraction": 0.25, "step": 1})
        # The test lets the frame finish once it has seen the progress; a
        # poll on a file the test creates, not a guess at timing.
        while go and not os.path.exists(go):
            time.sleep(0.05)
        emit({"ev": "progress", "frame": frame, "fraction": 1.0, "step": 2})
        deliver(frame, out, 64, 64, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
