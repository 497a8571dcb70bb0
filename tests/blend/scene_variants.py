# scene_variants.py: variants of a test scene for intake's tests, made by Blender.
#
#   blender -b BASE.blend -Y --python tests/blend/scene_variants.py -- OUTDIR
#
# BASE.blend is a scene made by contrib/make_scene.py.  Writes into OUTDIR:
#   tex.blend    the base scene with a material on every mesh whose colour
#                comes from an image texture "wood" at //textures/wood.png
#                (the file itself is not made: a single-file drop lacks it)
#   range.blend  the base scene with the frame range 2-6, step 2
import os
import sys

import bpy

out = os.path.abspath(sys.argv[sys.argv.index("--") + 1])
os.makedirs(out, exist_ok=True)
scene = bpy.context.scene


def save(name):
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, name), copy=True,
                                relative_remap=False, compress=False)


# range.blend
start, end, step = scene.frame_start, scene.frame_end, scene.frame_step
scene.frame_start, scene.frame_end, scene.frame_step = 2, 6, 2
save("range.blend")
scene.frame_start, scene.frame_end, scene.frame_step = start, end, step

# tex.blend: an image that names a file, used by a material on each mesh
img = bpy.data.images.new("wood", 4, 4)
img.source = "FILE"
img.filepath = "//textures/wood.png"
mat = bpy.data.materials.new("wood")
mat.use_nodes = True
nodes = mat.node_tree.nodes
tex = nodes.new("ShaderNodeTexImage")
tex.image = img
bsdf = nodes.get("Principled BSDF")
if bsdf is not None:
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
for ob in scene.objects:
    if ob.type == "MESH":
        ob.data.materials.clear()
        ob.data.materials.append(mat)
save("tex.blend")
