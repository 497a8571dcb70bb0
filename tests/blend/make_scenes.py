# make_scenes.py: scenes for the .blend reader's tests, made by Blender.
#
#   blender -b --factory-startup --python tests/blend/make_scenes.py -- OUTDIR [OLD.blend...]
#
# Writes into OUTDIR a library (lib.blend) and a shot (shot.blend, plain;
# shot_zstd.blend, compressed) that uses one of everything the reader
# lists: an image texture by relative path, an image sequence, a UDIM tile
# set, a packed image, a movie clip, a sound, a font, a linked library, a
# volume, a cache file (when this Blender can make one), particle caches on
# disk (default folder and an external one), a fluid domain cache and a Mesh
# Cache modifier, sequencer strips (images, and a movie when this Blender
# has FFmpeg); plus a second scene on EEVEE.  Then expected.json: what
# Blender itself says about each file (its own bpy values, not ours), for
# check_scenes.py to compare with what blendinfo reads.  Every OLD.blend
# given (files that Debian ships) is opened too and its scenes described.
import json
import os
import shutil
import struct
import sys
import wave

import bpy

argv = sys.argv[sys.argv.index("--") + 1:]
out = os.path.abspath(argv[0])
olds = argv[1:]
os.makedirs(out, exist_ok=True)


def png(path, w, h, rgba):
    img = bpy.data.images.new("tmp_png", w, h, alpha=True)
    img.pixels = list(rgba) * (w * h)
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def sub(*parts):
    p = os.path.join(out, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def textured(obname, imgname, relpath):
    """The active object gets a material with an image texture."""
    img = bpy.data.images.load(relpath)
    img.name = imgname
    m = bpy.data.materials.new(imgname)
    m.use_nodes = True
    m.node_tree.nodes.new("ShaderNodeTexImage").image = img
    bpy.context.object.name = obname
    bpy.context.object.data.materials.append(m)


# ---------------------------------------------------------------- libraries
# lib2.blend (with its own texture) is linked by lib.blend, which the shot links:
# the shot then names both, the second as an indirect library.
bpy.ops.wm.read_factory_settings(use_empty=True)
os.makedirs(os.path.join(out, "deep"), exist_ok=True)
bpy.ops.wm.save_as_mainfile(filepath=sub("deep", "lib2.blend"), compress=False)
png(sub("deep", "tex", "stone.png"), 2, 2, (0.5, 0.5, 0.5, 1))
bpy.ops.mesh.primitive_cube_add()
textured("DeepCube", "stone", "//tex/stone.png")
bpy.ops.wm.save_as_mainfile(filepath=sub("deep", "lib2.blend"), compress=False)

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=sub("lib.blend"), compress=False)
png(sub("libtex", "brick.png"), 2, 2, (0.7, 0.2, 0.2, 1))
bpy.ops.mesh.primitive_cube_add()
textured("LibCube", "brick", "//libtex/brick.png")
with bpy.data.libraries.load("//deep/lib2.blend", link=True, relative=True) as (src, dst):
    dst.objects = ["DeepCube"]
for ob in dst.objects:
    bpy.context.scene.collection.objects.link(ob)
bpy.ops.wm.save_as_mainfile(filepath=sub("lib.blend"), compress=False)

# ---------------------------------------------------------------- a movie
# Two frames of 32x32 H.264, when this Blender has FFmpeg.
have_movie = False
try:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    m = bpy.context.scene
    m.render.engine = "BLENDER_WORKBENCH"
    m.render.resolution_x = m.render.resolution_y = 32
    m.frame_start, m.frame_end = 1, 2
    m.render.image_settings.file_format = "FFMPEG"
    m.render.ffmpeg.format = "MPEG4"
    m.render.ffmpeg.codec = "H264"
    m.render.filepath = sub("movies", "clip.mp4")
    m.render.use_file_extension = False
    m.camera = bpy.data.objects.new("C", bpy.data.cameras.new("C"))
    m.collection.objects.link(m.camera)
    bpy.ops.render.render(animation=True)
    have_movie = os.path.getsize(sub("movies", "clip.mp4")) > 0
except Exception as e:  # noqa: BLE001 - no FFmpeg: no movie strip
    print("make_scenes: no movie:", e)

# ---------------------------------------------------------------- files on disk
bpy.ops.wm.read_factory_settings(use_empty=True)
png(sub("textures", "wood.png"), 4, 4, (0.6, 0.3, 0.1, 1))
for f in (1, 2, 3):
    png(sub("seq", "frame_%04d.png" % f), 2, 2, (f / 3, 0, 0, 1))
for t in (1001, 1002, 1011):
    png(sub("udim", "tiles.%d.png" % t), 2, 2, (0, 0, 1, 1))
png(sub("packme.png"), 2, 2, (0, 1, 0, 1))
with wave.open(sub("sounds", "beep.wav"), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", (i % 40) * 500) for i in range(800)))
font_src = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
have_font = os.path.exists(font_src)
if have_font:
    shutil.copy(font_src, sub("fonts", "mono.ttf"))

# Save once first, so that "//" paths mean OUTDIR from here on.
shot = sub("shot.blend")
bpy.ops.wm.save_as_mainfile(filepath=shot, compress=False)

# ---------------------------------------------------------------- the shot
sc = bpy.context.scene
sc.name = "Shot"
sc.frame_start, sc.frame_end, sc.frame_step = 5, 17, 3
sc.render.fps, sc.render.fps_base = 30, 1.001
sc.render.resolution_x, sc.render.resolution_y = 640, 360
sc.render.resolution_percentage = 50
sc.render.engine = "CYCLES"
sc.cycles.samples = 37

cam_data = bpy.data.cameras.new("CamData")
cam = bpy.data.objects.new("ShotCam", cam_data)
sc.collection.objects.link(cam)
sc.camera = cam

wood = bpy.data.images.load("//textures/wood.png")
wood.name = "wood"
seq = bpy.data.images.load("//seq/frame_0001.png")
seq.name = "seq"
seq.source = "SEQUENCE"
udim = bpy.data.images.load("//udim/tiles.1001.png")
udim.name = "udim"
udim.source = "TILED"
udim.tiles.new(tile_number=1002)
udim.tiles.new(tile_number=1011)
packed = bpy.data.images.load("//packme.png")
packed.name = "packed"
packed.pack()
# A texture node using each image, as an artist's material would.
mat = bpy.data.materials.new("Mat")
mat.use_nodes = True
for img in (wood, seq, udim, packed):
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = img
bpy.ops.mesh.primitive_uv_sphere_add()
bpy.context.object.name = "Ball"
bpy.context.object.data.materials.append(mat)

clip = bpy.data.movieclips.load("//seq/frame_0001.png")
clip.name = "clip"
sc.active_clip = clip
sound = bpy.data.sounds.load("//sounds/beep.wav")
sound.name = "beep"
spk = bpy.data.speakers.new("Spk")
spk.sound = sound
sc.collection.objects.link(bpy.data.objects.new("Speaker", spk))
if have_font:
    font = bpy.data.fonts.load("//fonts/mono.ttf")
    font.name = "mono"
    txt = bpy.data.curves.new("Title", "FONT")
    txt.font = font
    sc.collection.objects.link(bpy.data.objects.new("Title", txt))
vol = bpy.data.volumes.new("smoke")
vol.filepath = "//vdb/smoke.vdb"
vol_ob = bpy.data.objects.new("SmokeVol", vol)
sc.collection.objects.link(vol_ob)

with bpy.data.libraries.load("//lib.blend", link=True, relative=True) as (src, dst):
    dst.objects = ["LibCube"]
for ob in dst.objects:
    sc.collection.objects.link(ob)

# A cache file: this Blender may lack Alembic and USD; then there is none.
have_cache = False
try:
    bpy.ops.cachefile.open(filepath=sub("caches", "anim.abc"), relative_path=True)
    have_cache = len(bpy.data.cache_files) > 0
    if have_cache:
        bpy.data.cache_files[0].use_fake_user = True
except Exception as e:  # noqa: BLE001 - any failure just means no cache file
    print("make_scenes: no cache file:", e)

# Particles with caches on disk: the default folder and an external one.
bpy.ops.mesh.primitive_plane_add()
emitter = bpy.context.object
emitter.name = "Emitter"
emitter.modifiers.new("P1", "PARTICLE_SYSTEM")
emitter.particle_systems[0].point_cache.use_disk_cache = True
emitter.modifiers.new("P2", "PARTICLE_SYSTEM")
pc = emitter.particle_systems[1].point_cache
pc.use_external = True
pc.filepath = "//ptcache_ext"
mc = emitter.modifiers.new("MC", "MESH_CACHE")
mc.filepath = "//caches/wave.mdd"

bpy.ops.mesh.primitive_cube_add()
domain = bpy.context.object
domain.name = "Domain"
fl = domain.modifiers.new("Fluid", "FLUID")
fl.fluid_type = "DOMAIN"
fl.domain_settings.cache_directory = "//fluid_cache"

# Sequencer strips: an image strip of two frames, a movie strip.
se = sc.sequence_editor_create()
slides = se.sequences.new_image("Slides", "//seq/frame_0001.png", 1, 1)
slides.elements.append("frame_0002.png")
if have_movie:
    se.sequences.new_movie("Film", "//movies/clip.mp4", 2, 1)

# A second scene on EEVEE, not the active one.
other = bpy.data.scenes.new("Other")
other.render.engine = "BLENDER_EEVEE"
other.eevee.taa_render_samples = 12
other.frame_start, other.frame_end = 100, 120
other.render.fps = 25
bpy.context.window.scene = sc if bpy.context.window else sc

bpy.ops.wm.save_as_mainfile(filepath=shot, compress=False, relative_remap=True)


def describe(path):
    """What bpy says about the open file."""
    d = {"file": os.path.basename(path), "version": "%d.%d" % bpy.data.version[:2], "scenes": [], "paths": []}
    for s in bpy.data.scenes:
        e = {
            "scene": s.name,
            "frame_start": s.frame_start,
            "frame_end": s.frame_end,
            "frame_step": s.frame_step,
            "fps": s.render.fps,
            "fps_base": round(s.render.fps_base, 5),
            "res_x": s.render.resolution_x,
            "res_y": s.render.resolution_y,
            "res_percent": s.render.resolution_percentage,
            "engine": s.render.engine,
            "camera": s.camera.name if s.camera else "",
            "active": int(s == bpy.context.scene),
        }
        if s.render.engine == "CYCLES":
            e["samples"] = s.cycles.samples
        elif s.render.engine.startswith("BLENDER_EEVEE"):
            e["samples"] = s.eevee.taa_render_samples
        d["scenes"].append(e)

    def add(kind, idb, path, source="file", packed=0, tiles=None):
        p = {"path": path, "kind": kind, "user": idb.name, "source": source, "packed": packed}
        if tiles is not None:
            p["tiles"] = tiles
        d["paths"].append(p)

    srcmap = {"FILE": "file", "SEQUENCE": "sequence", "TILED": "tiled", "MOVIE": "movie"}
    for im in bpy.data.images:
        if im.source in ("FILE", "SEQUENCE", "TILED", "MOVIE") and im.filepath and not im.library:
            add("image", im, im.filepath, srcmap[im.source], int(im.packed_file is not None),
                [t.number for t in im.tiles] if im.source == "TILED" else None)
    for c in bpy.data.movieclips:
        add("movieclip", c, c.filepath, "sequence" if c.source == "SEQUENCE" else "movie")
    for s in bpy.data.sounds:
        add("sound", s, s.filepath, packed=int(s.packed_file is not None))
    for f in bpy.data.fonts:
        if f.filepath != "<builtin>":
            add("font", f, f.filepath, packed=int(f.packed_file is not None))
    for lib in bpy.data.libraries:
        add("library", lib, lib.filepath, packed=int(lib.packed_file is not None))
    for v in bpy.data.volumes:
        if not v.library:
            add("volume", v, v.filepath, "sequence" if v.is_sequence else "file",
                packed=int(v.packed_file is not None))
    for c in bpy.data.cache_files:
        add("cachefile", c, c.filepath)
    stem = os.path.splitext(os.path.basename(path))[0]
    for ob in bpy.data.objects:
        if ob.library:
            continue
        seen = set()
        for ps in ob.particle_systems:
            pcache = ps.point_cache
            if pcache.use_external:
                p = pcache.filepath
            elif pcache.use_disk_cache:
                p = "//blendcache_%s/" % stem
            else:
                continue
            if p not in seen:
                seen.add(p)
                add("pointcache", ob, p, "dir")
        for m in ob.modifiers:
            if m.type == "FLUID" and m.fluid_type == "DOMAIN":
                add("fluidcache", ob, m.domain_settings.cache_directory, "dir")
            if m.type == "MESH_CACHE":
                add("meshcache", ob, m.filepath)
    for s in bpy.data.scenes:
        if not s.sequence_editor:
            continue
        for st in s.sequence_editor.sequences_all:
            if st.type == "IMAGE":
                for e in st.elements:
                    d["paths"].append({"path": st.directory + e.filename, "kind": "strip", "user": st.name,
                                       "source": "file", "packed": 0})
            elif st.type == "MOVIE":
                d["paths"].append({"path": st.filepath, "kind": "strip", "user": st.name, "source": "movie",
                                   "packed": 0})
    return d


expected = {"have_font": have_font, "have_cache": have_cache, "have_movie": have_movie, "files": []}
bpy.ops.wm.open_mainfile(filepath=shot)
d = describe(shot)
expected["files"].append(d)
bpy.ops.wm.save_as_mainfile(filepath=sub("shot_zstd.blend"), compress=True, copy=True)
z = json.loads(json.dumps(d))
z["file"] = "shot_zstd.blend"
for p in z["paths"]:
    if p["kind"] == "pointcache" and p["path"].startswith("//blendcache_"):
        p["path"] = "//blendcache_shot_zstd/"
expected["files"].append(z)

for lib in ("lib.blend", "deep/lib2.blend"):
    bpy.ops.wm.open_mainfile(filepath=sub(lib))
    d = describe(sub(lib))
    d["file"] = lib
    expected["files"].append(d)

for old in olds:
    bpy.ops.wm.open_mainfile(filepath=old)
    d = describe(old)
    d["file"] = old
    d["old"] = True
    expected["files"].append(d)

with open(os.path.join(out, "expected.json"), "w") as fp:
    json.dump(expected, fp, indent=1)
print("make_scenes: wrote", len(expected["files"]), "descriptions")
