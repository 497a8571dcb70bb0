# What intake reads from the .blend itself (product.md "Scenes with their
# files"): files the scene uses that the drop does not hold refuse it, one
# NAME.error line each, unless the sidecar says `missing = ignore` (then
# status lists them as missing_files:); a sidecar without frames renders
# the scene's own range and step; status and status.json show the scene's
# facts (scene, engine, resolution, samples, fps, saved_by, files).
#
# A single-file drop holds only its .blend, so a texture at
# //textures/wood.png is missing from it.  (Folder drops, which can hold
# it, are the next step.)  The scenes are made by Blender from the suite's
# plain scene with tests/blend/scene_variants.py.

import json
import subprocess

import pytest

from rfslib import REPO, get, wait_for

pytestmark = pytest.mark.deadline(90)


@pytest.fixture(scope="module")
def variants(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    p = subprocess.run(["blender", "-b", str(scenes.path("plain")), "--factory-startup", "-Y",
                        "--python", str(REPO / "tests" / "blend" / "scene_variants.py"),
                        "--", str(out)],
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    if p.returncode != 0 or not (out / "tex.blend").exists():
        pytest.fail("scene_variants.py failed:\n" + (p.stdout + p.stderr)[-3000:])
    return {n: get(out / (n + ".blend")) for n in ("tex", "range")}


def wait_error(mnt, name):
    return wait_for(lambda: get(mnt.queue / (name + ".error")).decode("utf-8", "replace"),
                    30, "queue/%s.error" % name)


WOOD = 'missing: //textures/wood.png (image "wood")'


def test_missing_texture_refuses(mnt, variants):
    mnt.drop("tex", variants["tex"], "1\nvideo = no\n")
    text = wait_error(mnt, "tex")
    assert WOOD in text.splitlines(), text
    assert len([l for l in text.splitlines() if l.strip()]) == 1, text
    # Refused before anything was rendered: no job, the inputs kept.
    assert list(mnt.out.iterdir()) == []
    assert get(mnt.queue / "tex.blend") == variants["tex"]


def test_missing_ignore_renders_and_says_so(mnt, variants):
    mnt.drop("tex", variants["tex"], "1\nvideo = no\nmissing = ignore\n")
    mnt.wait_done("tex")
    assert mnt.frames("tex") == ["frame_0001.png"]
    text = mnt.status_text("tex")
    assert 'missing_files: //textures/wood.png (image "wood")' in text.splitlines(), text
    js = mnt.status_json("tex")
    assert js["missing_files"] == ['//textures/wood.png (image "wood")'], js
    assert not (mnt.queue / "tex.error").exists()


def test_fixing_the_sidecar_accepts(mnt, variants):
    mnt.drop("tex", variants["tex"], "1\nvideo = no\n")
    wait_error(mnt, "tex")
    with open(mnt.queue / "tex.range", "w") as f:
        f.write("1\nvideo = no\nmissing = ignore\n")
    mnt.wait_done("tex")
    assert not (mnt.queue / "tex.error").exists()


def test_no_frame_list_renders_the_scene_range(mnt, variants, blender_version):
    mnt.drop("rng", variants["range"], "video = no\n")
    mnt.wait_done("rng")
    # range.blend: frames 2-6, step 2
    assert mnt.frames("rng") == ["frame_0002.png", "frame_0004.png", "frame_0006.png"]
    s = mnt.status("rng")
    assert s["frames"] == "3", s
    assert s["scene"] == "Scene"
    assert s["engine"] == "CYCLES"
    assert s["resolution"] == "32x24 (100%)"
    assert s["samples"] == "2"
    assert s["fps"] == "24"
    assert blender_version.startswith(s["saved_by"] + "."), (s["saved_by"], blender_version)
    n, size = s["files"].split(" ", 1)
    assert n == "1" and size.startswith("(") and size.endswith(")"), s["files"]
    js = mnt.status_json("rng")
    assert js["scene"] == "Scene" and js["samples"] == 2 and js["fps"] == 24, js
    assert js["saved_by"] == s["saved_by"] and js["resolution"] == "32x24 (100%)", js
    assert "missing_files" not in js


def test_no_frame_list_and_a_scene_not_in_the_file(mnt, variants):
    mnt.drop("rng", variants["range"], "scene = Nope\n")
    text = wait_error(mnt, "rng")
    assert "rng.range" in text and "Nope" in text, text
