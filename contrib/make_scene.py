# Generate a small animated Cycles test scene for renderfs.
#
#   blender -b --factory-startup -Y --python contrib/make_scene.py -- OUT.blend \
#       [--frames N] [--size WxH] [--samples S] [--denoise] [--fps F] \
#       [--compress] [--scene-name NAME]
#
# The scene: a coloured cube that spins and slides across a plane, with a sun
# light and a camera; every frame looks different.  Cycles, denoising off
# unless --denoise, 320x180 at 100 % unless --size, frames 1..N (default 48).
import argparse
import math
import sys

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    p = argparse.ArgumentParser(prog="make_scene.py")
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="320x180")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--denoise", action="store_true")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--compress", action="store_true")
    p.add_argument("--scene-name", default=None)
    a = p.parse_args(argv)
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        p.error("--size must be WxH")
    if w < 1 or h < 1 or a.frames < 1 or a.samples < 1 or a.fps < 1:
        p.error("sizes, frames, samples and fps must be positive")
    a.w, a.h = w, h
    return a


def material(name, rgba):
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    bsdf = m.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = rgba
    m.diffuse_color = rgba
    return m


def main():
    a = parse_args()
    scene = bpy.context.scene
    # Start from an empty scene (factory startup has a cube, a light, a camera).
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob, do_unlink=True)
    if a.scene_name:
        scene.name = a.scene_name

    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = a.w, a.h, 100
    r.fps, r.fps_base = a.fps, 1.0
    r.image_settings.file_format = "PNG"
    r.use_compositing = False
    r.use_sequencer = False
    scene.frame_start, scene.frame_end = 1, a.frames
    scene.frame_current = 1

    c = scene.cycles
    c.device = "CPU"
    c.samples = a.samples
    c.preview_samples = a.samples
    c.use_adaptive_sampling = False
    c.use_denoising = bool(a.denoise)
    c.use_preview_denoising = False
    c.max_bounces = 2
    c.diffuse_bounces = c.glossy_bounces = 1
    c.transmission_bounces = c.volume_bounces = c.transparent_max_bounces = 1
    c.caustics_reflective = c.caustics_refractive = False
    c.use_animated_seed = True

    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    if bg is not None:
        bg.inputs["Color"].default_value = (0.05, 0.07, 0.12, 1.0)
        bg.inputs["Strength"].default_value = 1.0

    bpy.ops.mesh.primitive_plane_add(size=12.0, location=(0, 0, 0))
    plane = bpy.context.active_object
    plane.name = "Floor"
    plane.data.materials.append(material("FloorMat", (0.6, 0.6, 0.55, 1.0)))

    bpy.ops.mesh.primitive_cube_add(size=1.5, location=(-2.5, 0, 0.75))
    cube = bpy.context.active_object
    cube.name = "Mover"
    mat = material("MoverMat", (0.9, 0.15, 0.1, 1.0))
    cube.data.materials.append(mat)

    n = a.frames
    cube.location = (-2.5, 0, 0.75)
    cube.rotation_euler = (0, 0, 0)
    cube.keyframe_insert("location", frame=1)
    cube.keyframe_insert("rotation_euler", frame=1)
    cube.location = (2.5, 0, 0.75)
    cube.rotation_euler = (0, 0, math.radians(360.0))
    cube.keyframe_insert("location", frame=max(n, 2))
    cube.keyframe_insert("rotation_euler", frame=max(n, 2))
    # Colour changes too, so even a 1-pixel-wide render differs per frame.
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        col = bsdf.inputs["Base Color"]
        col.default_value = (0.9, 0.15, 0.1, 1.0)
        col.keyframe_insert("default_value", frame=1)
        col.default_value = (0.1, 0.3, 0.95, 1.0)
        col.keyframe_insert("default_value", frame=max(n, 2))
    for obj in (cube,):
        ad = obj.animation_data
        if ad and ad.action:
            for fc in ad.action.fcurves:
                for kp in fc.keyframe_points:
                    kp.interpolation = "LINEAR"

    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6))
    sun = bpy.context.active_object
    sun.data.energy = 4.0
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))

    bpy.ops.object.camera_add(location=(0, -9, 4.5))
    cam = bpy.context.active_object
    cam.rotation_euler = (math.radians(66), 0, 0)
    cam.data.lens = 35
    scene.camera = cam

    scene.frame_set(1)
    bpy.ops.wm.save_as_mainfile(filepath=a.out, compress=bool(a.compress),
                                check_existing=False)
    print("make_scene: wrote %s (%dx%d, %d frames, %d samples, denoise %s)"
          % (a.out, a.w, a.h, n, a.samples, "on" if a.denoise else "off"))


try:
    main()
except SystemExit:
    raise
except Exception as e:  # make a failure visible as a non-zero exit
    print("make_scene: error: %s" % e, file=sys.stderr)
    sys.exit(1)
