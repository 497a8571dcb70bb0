#!/usr/bin/python3
# A `blender` whose every frame fails: speaks the worker protocol of
# backend/worker.py without Blender.  Installed as `blender` first on one
# test node's PATH (tests/integration/test_ssh.py).
import json
import sys


def emit(obj):
    sys.stdout.write("@rfs " + json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    setup = False
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            emit({"ev": "error", "msg": "bad input line"})
            continue
        if not setup:
            setup = True
            emit({"ev": "ready", "blender": "fake", "scene": "Scene", "engine": "cycles",
                  "device": "CPU", "device_name": "CPU", "why": "fake", "devices": ["CPU"],
                  "width": 64, "height": 48, "fps": 24, "frame_start": 1, "frame_end": 250,
                  "denoise": False})
            continue
        if obj.get("cmd") == "quit":
            break
        if "frame" in obj:
            n = obj["frame"]
            emit({"ev": "start", "frame": n})
            sys.stderr.write("fake blender: failing frame %s on purpose\n" % n)
            sys.stderr.flush()
            emit({"ev": "fail", "frame": n, "msg": "fake failure"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
