#!/usr/bin/env python3
"""check_scenes: the .blend reader against scenes Blender itself makes.

    check_scenes.py BLENDINFO

Runs Blender (/usr/bin/blender, or $BLENDER) with make_scenes.py in a temp
dir, which writes the scenes and expected.json: what bpy says about each.
Then runs BLENDINFO on every file and compares scene by scene and path by
path.  Files Debian ships (blender-data: 2.78 and 2.82 gzip, 2.80 plain)
are checked too when installed, against what Blender 3.4 says after
opening them.  Exit 77 (skip) when there is no Blender.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OLD = [
    "/usr/share/blender/scripts/startup/bl_app_templates_system/VFX/startup.blend",
    "/usr/share/blender/scripts/startup/bl_app_templates_system/2D_Animation/startup.blend",
    "/usr/share/blender/scripts/addons/materials_library_vx/templates.blend",
    "/usr/share/blender/scripts/addons/materials_library_vx/sample_materials.blend",
]
failures = 0
checks = 0


def check(ok, msg):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL:", msg)


def blendinfo(tool, path):
    out = subprocess.run([tool, path], capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return out.returncode, lines


def main():
    tool = os.path.abspath(sys.argv[1])
    blender = os.environ.get("BLENDER", "/usr/bin/blender")
    if not shutil.which(blender):
        print("no Blender at", blender)
        return 77
    tmp = tempfile.mkdtemp(prefix="blendfile-")
    try:
        olds = [p for p in OLD if os.path.exists(p)]
        made = subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python",
                               os.path.join(HERE, "make_scenes.py"), "--", tmp] + olds,
                              timeout=90, capture_output=True, text=True)
        if made.returncode or not os.path.exists(os.path.join(tmp, "expected.json")):
            print(made.stdout[-4000:], made.stderr[-4000:])
            print("FAIL: Blender could not make the scenes")
            return 1
        with open(os.path.join(tmp, "expected.json")) as fp:
            expected = json.load(fp)
        kinds_seen = set()
        for want in expected["files"]:
            path = want["file"] if want.get("old") else os.path.join(tmp, want["file"])
            rc, lines = blendinfo(tool, path)
            check(rc == 0 and lines and "error" not in lines[0], "%s: blendinfo failed: %s" % (path, lines[:1]))
            if rc:
                continue
            head = lines[0]
            got_scenes = {x["scene"]: x for x in lines if "scene" in x}
            got_paths = [x for x in lines if "path" in x]
            print("%s: Blender %s, %s, %d scenes, %d paths" % (
                os.path.basename(path), head["saved_by"], head["compression"], len(got_scenes), len(got_paths)))
            check(head["saved_by"] == want["version"] or want.get("old"),
                  "%s: saved_by %s, Blender says %s" % (path, head["saved_by"], want["version"]))
            check(len(got_scenes) == len(want["scenes"]), "%s: %d scenes, Blender has %d" % (
                path, len(got_scenes), len(want["scenes"])))
            for ws in want["scenes"]:
                gs = got_scenes.get(ws["scene"])
                check(gs is not None, "%s: scene %s not read" % (path, ws["scene"]))
                if not gs:
                    continue
                for k, v in ws.items():
                    g = gs.get(k)
                    if k == "fps_base":
                        ok = abs(g - v) < 1e-4
                    else:
                        ok = g == v
                    check(ok, "%s: scene %s: %s is %r, Blender says %r" % (path, ws["scene"], k, g, v))
            key = lambda p: (p["kind"], p["user"], p["path"])  # noqa: E731
            got = {key(p): p for p in got_paths}
            for wp in want["paths"]:
                kinds_seen.add(wp["kind"])
                gp = got.pop(key(wp), None)
                check(gp is not None, "%s: %s %r (%s) not found" % (path, wp["kind"], wp["path"], wp["user"]))
                if gp:
                    for k in ("source", "packed", "tiles"):
                        if k in wp:
                            check(gp[k] == wp[k], "%s: %s %s: %s is %r, Blender says %r" % (
                                path, wp["kind"], wp["user"], k, gp[k], wp[k]))
            check(not got, "%s: paths Blender does not list: %s" % (path, list(got)))
        # Following the libraries: blendinfo -r reaches each file once, and
        # its paths there are the ones read directly.
        shot = os.path.join(tmp, "shot.blend")
        out = subprocess.run([tool, "-r", shot], capture_output=True, text=True, timeout=60)
        files = [json.loads(x)["file"] for x in out.stdout.splitlines() if '"saved_by"' in x]
        want_files = [shot, os.path.join(tmp, "lib.blend"), os.path.join(tmp, "deep", "lib2.blend")]
        check(out.returncode == 0 and sorted(os.path.realpath(f) for f in files) ==
              sorted(os.path.realpath(f) for f in want_files), "blendinfo -r reached %s" % files)
        stone = [json.loads(x) for x in out.stdout.splitlines() if '"stone"' in x]
        check(len(stone) == 1 and stone[0]["path"] == "//tex/stone.png", "lib2's texture via -r: %s" % stone)
        need = {"image", "movieclip", "sound", "library", "volume", "pointcache", "fluidcache", "meshcache",
                "strip"}
        if expected["have_font"]:
            need.add("font")
        if expected["have_cache"]:
            need.add("cachefile")
        check(need <= kinds_seen, "kinds never exercised: %s" % sorted(need - kinds_seen))
        print("tested Debian files:", ", ".join(olds) or "none installed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("check_scenes: %d checks, %d failed" % (checks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
