#!/usr/bin/env python3
"""mkseeds.py: (re)write the fuzz targets' seed corpora in tests/fuzz/seeds/.

    python3 tests/fuzz/mkseeds.py [--blender]

The seeds are committed; this script says where they came from and makes
them again.  Files named regress-* are inputs that once broke a parser
(kept by hand, never rewritten here).  Needs python3 and, for the images,
ffmpeg (Debian 12's); with --blender also blender and zstd, for one real
Blender 3.4 file (tests/blend/make_scenes.py's shot) stripped to what the
reader looks at.
"""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def out(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------ sidecar

SIDECARS = {
    "product": "# shot 12, final look\n1-250\nsamples = 256\nresolution = 1920x1080\ndevice = optix\nbudget = 6.00\n",
    "all-keys": ("frames = 1,5,10-20,100-200x10\nscene = Shot 2\nengine = cycles\ndevice = cuda\n"
                 "samples = 64\nresolution = 50%\nformat = exr\nvideo = no\nfps = 29.97\nretries = 0\n"
                 "timeout = 1h30m\npriority = -3\nnodes = 4\ngpu = RTX 4090, RTX 3090\nmin_vram = 12\n"
                 "max_price = 0.45\nspot = yes\nbudget = 20\n"),
    "durations": "1\ntimeout = 500ms\n",
    "errors": "1-9x0\nsampels = 3\nsamples = -1\nsamples = 2\nformat = gif\n\xff\xfe = x\nresolution = 0x0\n",
    "crlf": "# windows\r\n1-3\r\nformat = jpeg\r\n",
    "utf8": "frames = 7\nscene = Szene \u00fcber \u65e5\u672c\n",
    "no-frames": "engine = eevee\n",
    "big-range": "0-1048574x3\n",
}


def sidecar_seeds():
    for name, text in SIDECARS.items():
        out("sidecar", name, text.encode("utf-8", "surrogateescape"))


# ------------------------------------------------------------ configuration

# The file, then NUL-separated -o overrides (fuzz_config.c).
CONFIGS = {
    "local": ("[renderfs]\nquiet = 2s          # a drop is complete once untouched this long\n"
              "stall = 10m\n[local]\nblender = blender   # path or name on PATH\nworkers = 2\n", []),
    "ssh": ("[renderfs]\nbackend = ssh\nlease = 60s\n[ssh]\nnode = render@gpu1.example.net\n"
            "node = render@10.0.0.12:2222\nidentity = ~/.ssh/renderfs_ed25519\n", ["ssh.slots=2"]),
    "clore": ("[renderfs]\nbackend = clore\n[clore]\napi_key_file = ~/.config/renderfs/clore.key\n"
              "image = yourname/blender-sshd:4.2\nnodes = 3\ngpu = RTX 4090, RTX 3090\nmax_price = 0.50\n"
              "spot = yes\nbudget = 20.00\nidle = 2m\n", ["clore.nodes=5", "renderfs.quiet=1s"]),
    "errors": ("[renderfs]\nqiuet = 2s\n[nowhere]\nx = 1\nnot ini\n[local]\nworkers = -1\n",
               ["bad", "local.workers="]),
    "long-line": ("[local]\nblender = " + "b" * 1500 + "\n", []),
}


def config_seeds():
    for name, (text, overrides) in CONFIGS.items():
        out("config", name, "\0".join([text] + overrides).encode())


# ------------------------------------------------------------ images

def image_seeds():
    if not shutil.which("ffmpeg"):
        print("mkseeds: no ffmpeg, image seeds not made", file=sys.stderr)
        return
    fmts = {"png": 0, "exr": 1, "jpeg": 2, "tiff": 3}
    cases = [
        ("png", "rgb24", 16, 12, []),
        ("png", "rgba64be", 8, 8, []),
        ("png", "gray", 5, 3, []),
        ("png", "pal8", 7, 4, []),
        ("jpeg", "yuvj420p", 16, 16, []),
        ("jpeg", "yuvj444p", 9, 5, []),
        ("tiff", "rgb24", 8, 6, ["-compression_algo", "raw"]),
        ("tiff", "rgb24", 8, 6, ["-compression_algo", "deflate"]),
        ("tiff", "gray", 6, 6, ["-compression_algo", "packbits"]),
        ("exr", "gbrpf32le", 8, 4, ["-compression", "none"]),
        ("exr", "gbrapf32le", 6, 4, ["-compression", "zip1", "-format", "half"]),
        ("exr", "gbrpf32le", 8, 20, ["-compression", "zip16"]),
        ("exr", "gbrpf32le", 4, 4, ["-compression", "rle"]),
    ]
    ext = {"png": "png", "jpeg": "jpg", "tiff": "tif", "exr": "exr"}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (fmt, pix, w, h, extra) in enumerate(cases):
            f = os.path.join(tmp, "x.%s" % ext[fmt])
            src = "testsrc=s=%dx%d" % (w, h) if fmt != "exr" else "color=c=orange:s=%dx%d" % (w, h)
            cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-frames:v", "1",
                   "-pix_fmt", pix] + extra + [f]
            if subprocess.run(cmd).returncode:
                print("mkseeds: ffmpeg could not make %s %s" % (fmt, pix), file=sys.stderr)
                continue
            data = open(f, "rb").read()
            # the size the job asked for: the real one, or "not known" (0x0)
            want = (w, h) if i % 3 else (0, 0)
            head = struct.pack("<BHH", fmts[fmt], *want)
            out("image", "%s-%02d-%s-%dx%d" % (fmt, i, pix, w, h), head + data)


# ------------------------------------------------------------ .blend
#
# A small SDNA of our own, as tests/unit/test_blendfile.c lays it out, in
# three header forms; the reader takes every offset from it.

BASIC = [("char", 1), ("short", 2), ("int", 4), ("float", 4), ("double", 8), ("void", 0)]
STRUCTS = [
    ("ListBase", [("void", "*first"), ("void", "*last")]),
    ("ID", [("void", "*next"), ("void", "*prev"), ("char", "name[66]"), ("short", "flag"),
            ("IDProperty", "*properties")]),
    ("IDPropertyData", [("void", "*pointer"), ("ListBase", "group"), ("int", "val"), ("int", "val2")]),
    ("IDProperty", [("IDProperty", "*next"), ("IDProperty", "*prev"), ("char", "type"), ("char", "subtype"),
                    ("short", "flag"), ("char", "name[64]"), ("IDPropertyData", "data")]),
    ("RenderData", [("int", "sfra"), ("int", "efra"), ("int", "frame_step"), ("short", "frs_sec"),
                    ("short", "xsch"), ("short", "ysch"), ("short", "size"), ("float", "frs_sec_base"),
                    ("char", "engine[32]")]),
    ("SceneEEVEE", [("int", "flag"), ("int", "taa_render_samples")]),
    ("Scene", [("ID", "id"), ("Object", "*camera"), ("RenderData", "r"), ("SceneEEVEE", "eevee")]),
    ("Object", [("ID", "id"), ("void", "(*func)()")]),
    ("Image", [("ID", "id"), ("char", "filepath[1024]"), ("short", "source"), ("short", "pad[3]"),
               ("PackedFile", "*packedfile"), ("ListBase", "packedfiles"), ("ListBase", "tiles")]),
    ("ImageTile", [("ImageTile", "*next"), ("ImageTile", "*prev"), ("int", "tile_number"), ("int", "pad")]),
    ("Library", [("ID", "id"), ("char", "filepath[1024]"), ("char", "filepath_abs[1024]"),
                 ("PackedFile", "*packedfile")]),
    ("bSound", [("ID", "id"), ("char", "filepath[1024]"), ("PackedFile", "*packedfile")]),
    ("PackedFile", [("int", "size"), ("int", "seek"), ("void", "*data")]),
    ("FileGlobal", [("char", "subvstr[4]"), ("short", "subversion"), ("short", "pad"),
                    ("Scene", "*curscene"), ("char", "build_hash[16]"), ("char", "filepath[1024]")]),
]
TYPES = [b for b, _ in BASIC] + [s for s, _ in STRUCTS]
SDEF = dict(STRUCTS)


class Form:
    def __init__(self, ptr, be, large):
        self.ptr, self.be, self.large = ptr, be, large

    def uint(self, v, size):
        return v.to_bytes(size, "big" if self.be else "little")


def count(name):
    n = 1
    for part in name.split("[")[1:]:
        n *= int(part.split("]")[0])
    return n


def type_len(fm, t):
    for b, l in BASIC:
        if b == t:
            return l
    return sum(field_len(fm, ft, fn) for ft, fn in SDEF[t])


def field_len(fm, ft, fn):
    each = fm.ptr if "*" in fn else type_len(fm, ft)
    return each * count(fn)


def field_at(fm, sname, path):
    off = 0
    for i, seg in enumerate(path.split(".")):
        o = 0
        for ft, fn in SDEF[sname]:
            bare = fn.lstrip("*(").split("[")[0].split(")")[0]
            if bare == seg:
                break
            o += field_len(fm, ft, fn)
        else:
            raise KeyError(path)
        off += o
        if i == len(path.split(".")) - 1:
            return off, field_len(fm, ft, fn)
        sname = ft
    raise KeyError(path)


def sdna(fm):
    names = []
    for _, fields in STRUCTS:
        for _, fn in fields:
            if fn not in names:
                names.append(fn)

    def pad4(b):
        return b + b"\0" * (-len(b) % 4)
    b = b"SDNANAME" + fm.uint(len(names), 4) + b"".join(n.encode() + b"\0" for n in names)
    b = pad4(b) + b"TYPE" + fm.uint(len(TYPES), 4) + b"".join(t.encode() + b"\0" for t in TYPES)
    b = pad4(b) + b"TLEN" + b"".join(fm.uint(type_len(fm, t), 2) for t in TYPES)
    b = pad4(b) + b"STRC" + fm.uint(len(STRUCTS), 4)
    for i, (_, fields) in enumerate(STRUCTS):
        b += fm.uint(len(BASIC) + i, 2) + fm.uint(len(fields), 2)
        for ft, fn in fields:
            b += fm.uint(TYPES.index(ft), 2) + fm.uint(names.index(fn), 2)
    return b


class Inst:
    def __init__(self, fm, sname):
        self.fm, self.sname = fm, sname
        self.p = bytearray(type_len(fm, sname))

    def set(self, path, v):
        off, size = field_at(self.fm, self.sname, path)
        self.p[off:off + size] = self.fm.uint(v, size)

    def setf(self, path, v):
        self.set(path, struct.unpack("<I", struct.pack("<f", v))[0])

    def str(self, path, s):
        off, size = field_at(self.fm, self.sname, path)
        s = s.encode()[:size - 1]
        self.p[off:off + len(s)] = s


def bhead(fm, code, length, old, sdna_i, nr):
    c = code.encode().ljust(4, b"\0")
    if fm.large:
        return c + fm.uint(sdna_i, 4) + fm.uint(old, 8) + fm.uint(length, 8) + fm.uint(nr, 8)
    return c + fm.uint(length, 4) + fm.uint(old, fm.ptr) + fm.uint(sdna_i, 4) + fm.uint(nr, 4)


def block(fm, code, old, inst):
    si = [s for s, _ in STRUCTS].index(inst.sname)
    return bhead(fm, code, len(inst.p), old, si, 1) + bytes(inst.p)


def blend(fm, version, rich=True):
    if fm.large:
        b = b"BLENDER17-01%s%04d" % (b"V" if fm.be else b"v", version)
    else:
        b = b"BLENDER%s%s%03d" % (b"_" if fm.ptr == 4 else b"-", b"V" if fm.be else b"v", version)
    g = Inst(fm, "FileGlobal")
    g.set("subversion", 7)
    g.set("curscene", 0x1000)
    g.str("build_hash", "abc123def456")
    g.str("filepath", "/home/artist/shot.blend")
    b += block(fm, "GLOB", 0x10, g)
    for old, name, sfra in ((0x1000, "Shot", 11), (0x1100, "Other", 21)) if rich else ((0x1000, "Shot", 1),):
        sc = Inst(fm, "Scene")
        sc.str("id.name", "SC" + name)
        sc.set("id.properties", 0x100)
        sc.set("camera", 0x2000)
        sc.set("r.sfra", sfra)
        sc.set("r.efra", 250)
        sc.set("r.frame_step", 1)
        sc.set("r.frs_sec", 24)
        sc.setf("r.frs_sec_base", 1.0)
        sc.set("r.xsch", 1920)
        sc.set("r.ysch", 1080)
        sc.set("r.size", 100)
        sc.str("r.engine", "CYCLES")
        sc.set("eevee.taa_render_samples", 16)
        b += block(fm, "SC", old, sc)
    if rich:
        for old, name, typ, val, nxt in ((0x100, "", 6, 0x110, 0), (0x110, "cycles", 6, 0x120, 0),
                                         (0x120, "samples", 1, 128, 0)):
            p = Inst(fm, "IDProperty")
            p.set("type", typ)
            p.str("name", name)
            p.set("next", nxt)
            p.set("data.group.first" if typ == 6 else "data.val", val)
            b += block(fm, "DATA", old, p)
    ob = Inst(fm, "Object")
    ob.str("id.name", "OBCamera")
    b += block(fm, "OB", 0x2000, ob)
    if rich:
        im = Inst(fm, "Image")
        im.str("id.name", "IMwood")
        im.str("filepath", "//textures/wood.png")
        im.set("source", 1)
        b += block(fm, "IM", 0x3000, im)
        im = Inst(fm, "Image")
        im.str("id.name", "IMudim")
        im.str("filepath", "//udim/t.<UDIM>.png")
        im.set("source", 6)
        im.set("tiles.first", 0x3110)
        b += block(fm, "IM", 0x3100, im)
        t = Inst(fm, "ImageTile")
        t.set("tile_number", 1001)
        b += block(fm, "DATA", 0x3110, t)
        for code, sname, old, name, path in (("LI", "Library", 0x4000, "lib.blend", "//lib.blend"),
                                             ("SO", "bSound", 0x4100, "beep", "//sounds/beep.wav")):
            x = Inst(fm, sname)
            x.str("id.name", code + name)
            x.str("filepath", path)
            b += block(fm, code, old, x)
    d = sdna(fm)
    b += bhead(fm, "DNA1", len(d), 0x8000, 0, 1) + d
    b += bhead(fm, "ENDB", 0, 0, 0, 0)
    return b


def zstd(data):
    if not shutil.which("zstd"):
        return None
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def blend_seeds():
    for name, fm, ver in (("le64", Form(8, 0, 0), 304), ("be32", Form(4, 1, 0), 279),
                          ("large", Form(8, 0, 1), 500)):
        data = blend(fm, ver)
        out("blend", name + ".blend", data)
        out("blend", name + "-min.blend", blend(fm, ver, rich=False))
    data = blend(Form(8, 0, 0), 304)
    out("blend", "le64-gzip.blend", gzip.compress(data, 6, mtime=0))
    z = zstd(data)
    if z:
        out("blend", "le64-zstd.blend", z)


def blender_seed():
    """A real Blender file: tests/blend/make_scenes.py's shot.blend (every kind
    of external file the reader lists), stripped to the globals, the ID blocks
    that name files, scenes and objects with their data blocks, the SDNA and
    ENDB, zstd-compressed."""
    if not shutil.which("blender") or not shutil.which("zstd"):
        print("mkseeds: --blender needs blender and zstd", file=sys.stderr)
        return
    make = os.path.join(HERE, "..", "blend", "make_scenes.py")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["blender", "-b", "--factory-startup", "--python", make, "--", tmp],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        d = open(os.path.join(tmp, "shot.blend"), "rb").read()
    assert d[:9] == b"BLENDER-v", d[:12]
    ids = {b"GLOB", b"SC\0\0", b"OB\0\0", b"CA\0\0", b"IM\0\0", b"LI\0\0", b"SO\0\0", b"VF\0\0",
           b"MC\0\0", b"VO\0\0", b"CF\0\0", b"DNA1", b"ENDB"}
    keep, off, keeping = [d[:12]], 12, False
    while off < len(d):
        code = d[off:off + 4]
        ln = struct.unpack("<I", d[off + 4:off + 8])[0]
        if code != b"DATA":  # a DATA block belongs to the ID block before it
            keeping = code in ids
        if keeping:
            keep.append(d[off:off + 24 + ln])
        off += 24 + ln
        if code == b"ENDB":
            break
    out("blend", "blender-3.4-shot-stripped-zstd.blend", zstd(b"".join(keep)))


# ------------------------------------------------------------ Clore replies

SERVER = ('{"id":12345,"owner":77,"mrl":72,"rented":false,"reliability":0.991,'
          '"allowed_coins":["CLORE-Blockchain","bitcoin","USD-Blockchain"],"rating":{"avg":4.8,"cnt":25},'
          '"gpu_array":["NVIDIA GeForce RTX 4090","NVIDIA GeForce RTX 4090"],"cuda_version":"12.4",'
          '"price":{"on_demand":{"CLORE-Blockchain":120.5,"bitcoin":0.000021,"USD-Blockchain":7.2},'
          '"spot":{"CLORE-Blockchain":60.0,"bitcoin":0.0000105,"USD-Blockchain":3.6},'
          '"usd":{"on_demand_clore":7.1,"on_demand_usd":7.2,"on_demand_btc":7.2,"spot":3.6}},'
          '"specs":{"cpu":"AMD Ryzen 9 5950X","cpus":"16/32","ram":62.7,"gpu":"2x NVIDIA GeForce RTX 4090",'
          '"gpuram":24,"disk":"NVMe 1000GB","net":{"cc":"DE","up":500.1,"down":900.3}}}')
SERVER2 = ('{"id":"777","rented":"true","allowed_coins":["bitcoin"],"rating":4,'
           '"gpu_array":[["NVIDIA A100"]],"price":{"on_demand":{"bitcoin":"0.0001"},"usd":{"spot":"2"}},'
           '"specs":{"gpu":"NVIDIA A100","gpuram":"80","net":{"cc":"US"}}}')
ORDER = ('{"id":123,"si":456,"ct":1714608000,"currency":"CLORE-Blockchain","price":60.0,"creation_fee":0.1,'
         '"spend":2.5,"image":"renderfs/worker","mrl":72,"spot":true,"online":true,"expired":false,'
         '"pub_cluster":["n1.example.net"],"tcp_ports":["22:1277","8080:2000"],"http_port":"8888",'
         '"specs":{"gpu":"2x NVIDIA GeForce RTX 4090","gpuram":24},"gpu_array":["RTX 4090"]}')
SPOT = ('{"code":0,"exists":true,"market":{"offers":[{"offer_id":991,"bid":60.0,"active":true,"my":true,'
        '"currency":"CLORE-Blockchain"}],"server":{"min_pricing":{"CLORE-Blockchain":50},"mrl":72,'
        '"visibility":"public","online":true},"currency_rates_in_usd":{"bitcoin":65000.0,'
        '"CLORE-Blockchain":0.02}}}')

# (call byte, replies); a reply is its HTTP outcome byte ('0' = 200) and body.
CLORE = {
    "marketplace": ("\x00", ['0{"code":0,"servers":[%s,%s]}' % (SERVER, SERVER2)]),
    "marketplace-retry": ("\x00", ['1', '0{"code":5}', '0{"code":0,"servers":[%s],"my_servers":[1]}' % SERVER]),
    "marketplace-notlist": ("\x00", ['0{"code":0,"servers":{"a":1}}']),
    "wallets": ("\x01", ['0{"code":0,"wallets":[{"name":"CLORE-Blockchain","balance":123.4,'
                         '"deposit":"abc","withdrawal_fee":1.0},{"name":"bitcoin","balance":"0.1"}]}']),
    "wallets-401": ("\x01", ['2']),
    "my_orders": ("\x02", ['0{"code":0,"orders":[%s,{"id":124,"si":456,"ct":1714608100,"pub_cluster":"h",'
                           '"tcp_ports":[2200]}]}' % ORDER]),
    "spot": ("\x03", [SPOT.join(['0', ''])]),
    "spot-unknown": ("\x03", ['0{"code":0,"exists":false}']),
    "cancel": ("\x04", ['0{"code":0}']),
    "cancel-refused": ("\x04", ['0{"code":2}', '0{"code":0,"orders":[{"id":77}]}']),
    "cancel-gone": ("\x04", ['0{"code":6,"error":"order-not-found"}', '0{"code":0,"orders":[]}']),
    "create-balance": ("\x05", ['0{"code":6,"error":"not_enough_balance"}']),
    "create-ok": ("\x05", ['0{"code":0}']),
    "set-spot-step": ("\x06", ['0{"code":6,"error":"exceeded_max_step","max_step":5.5}']),
    "set-spot-wait": ("\x06", ['0{"code":6,"error":"can_lower_every_600_seconds","time_to_lowering":120}']),
    "set-spot-500": ("\x06", ['5<html>oops</html>']),
}


def clore_seeds():
    for name, (call, replies) in CLORE.items():
        out("clore", name, (call + "\0".join(replies)).encode())


# ------------------------------------------------------------ the worker protocol

PROTO = [
    '@rfs {"ev":"ready","blender":"3.4.1","device":"OPTIX","why":"auto","width":1920,"height":1080,'
    '"fps":24,"devices":["NVIDIA GeForce RTX 4090","CPU"]}',
    '@rfs {"ev":"start","frame":12}',
    '@rfs {"ev":"progress","frame":12,"fraction":0.41,"step":3}',
    '@rfs {"ev":"done","frame":12,"secs":31.5,"device":"CUDA",'
    '"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}',
    '@rfs {"ev":"fail","frame":13,"msg":"CUDA error: out of memory"}',
    '@rfs {"ev":"error","msg":"scene \\"x\\" not found"}',
    '@rfs {"ev":"done","frame":-1,"secs":1e300}',
    '@rfs  {"ev":"start","frame":1}  ',
    'Fra:12 Mem:45.2M | Time:00:01.02 | Sample 12/64',
    '@rfs {"ev":"ready","blender":"3.4.1\\nstate: idle","width":65536}',
]


def proto_seeds():
    for i, line in enumerate(PROTO):
        out("proto", "line-%02d" % i, line.encode())


if __name__ == "__main__":
    sidecar_seeds()
    config_seeds()
    image_seeds()
    blend_seeds()
    clore_seeds()
    proto_seeds()
    if "--blender" in sys.argv[1:]:
        blender_seed()
