#!/bin/bash
# Quick standalone check of the render worker (backend/sched/worker.py) against the
# real Blender: generates a tiny scene, drives the worker over its stdin
# protocol with various setups, and checks the protocol lines and the files.
#
#   tests/worker_check.sh            (from anywhere; needs blender, python3)
#
# Exit status 0 when every check passes.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
WORKER=$here/backend/sched/worker.py
MAKE=$here/contrib/make_scene.py
BLENDER=${BLENDER:-blender}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rfs-worker-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }

mk() {  # mk OUT.blend [make_scene options]
	local out=$1; shift
	"$BLENDER" -b --factory-startup -Y --python "$MAKE" -- "$out" "$@" \
		>"$out.log" 2>&1 && [ -s "$out" ] || { echo "make_scene failed:"; cat "$out.log"; exit 1; }
}

# run_worker NAME BLEND LINE...   -> $tmp/NAME.out (stdout), NAME.err, NAME.rc
run_worker() {
	local name=$1 blend=$2; shift 2
	printf '%s\n' "$@" | (cd "$tmp/work" && timeout 120 "$BLENDER" -b -Y --factory-startup \
		"$blend" --python "$WORKER" >"$tmp/$name.out" 2>"$tmp/$name.err")
	echo $? >"$tmp/$name.rc"
}

# check NAME PYTHON-ASSERTIONS: runs the assertions with
#   ev   = list of protocol events (dicts), in order
#   rc   = worker exit status;  out = raw stdout text;  T = temp dir
#   by(kind) = events of that kind;  img(path) = (format, w, h)
check() {
	local name=$1 code=$2
	if python3 "$tmp/checker.py" "$tmp" "$name" "$code"; then
		pass "$name"
	else
		fail "$name (stdout: $tmp/$name.out)"
		sed 's/^/    | /' "$tmp/$name.out" | grep '@rfs' | head -20
		tail -5 "$tmp/$name.err" | sed 's/^/    ! /'
	fi
}

cat >"$tmp/checker.py" <<'EOF'
import hashlib, json, os, struct, sys, traceback
T, name, code = sys.argv[1], sys.argv[2], sys.argv[3]
out = open(os.path.join(T, name + ".out"), "rb").read().decode("utf-8", "replace")
rc = int(open(os.path.join(T, name + ".rc")).read())
ev = []
for line in out.split("\n"):
    if line.startswith("@rfs "):
        ev.append(json.loads(line[5:]))          # must be valid compact JSON
    else:
        # a protocol line must never be glued onto another line
        assert "@rfs {" not in line, "protocol line not at line start: %r" % line[:120]

def by(kind):
    return [e for e in ev if e.get("ev") == kind]

def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()

def img(path):
    d = open(path, "rb").read()
    if d[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = struct.unpack(">II", d[16:24]); return "png", w, h
    if d[:4] == b"\x76\x2f\x31\x01":
        i = 8
        while True:
            j = d.index(b"\0", i); n = d[i:j]
            if not n: break
            k = d.index(b"\0", j + 1); sz = struct.unpack("<i", d[k+1:k+5])[0]
            if n == b"dataWindow":
                x0, y0, x1, y1 = struct.unpack("<iiii", d[k+5:k+21])
                return "exr", x1 - x0 + 1, y1 - y0 + 1
            i = k + 5 + sz
        return "exr", None, None
    if d[:2] == b"\xff\xd8":
        i = 2
        while i < len(d):
            m = d[i+1]; L = struct.unpack(">H", d[i+2:i+4])[0]
            if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", d[i+5:i+9]); return "jpeg", w, h
            i += 2 + L
    if d[:4] in (b"II*\0", b"MM\0*"):
        e = "<" if d[:2] == b"II" else ">"
        off = struct.unpack(e + "I", d[4:8])[0]; n = struct.unpack(e + "H", d[off:off+2])[0]
        w = h = None
        for k in range(n):
            t, ty = struct.unpack(e + "HH", d[off+2+12*k:off+6+12*k])
            v = struct.unpack(e + ("H" if ty == 3 else "I"), d[off+10+12*k:off+(12 if ty == 3 else 14)+12*k])[0]
            if t == 256: w = v
            if t == 257: h = v
        return "tiff", w, h
    return None, None, None

def frames_ok(fmt, w, h, frames, outdir):
    """start -> done for each frame, files match the done lines."""
    r = by("ready")
    assert len(r) == 1 and ev[0]["ev"] == "ready", ev[:1]
    for f in frames:
        s = [i for i, e in enumerate(ev) if e.get("ev") == "start" and e["frame"] == f]
        d = [i for i, e in enumerate(ev) if e.get("ev") == "done" and e["frame"] == f]
        assert len(s) == 1 and len(d) == 1 and s[0] < d[0], ("frame", f, ev)
        last = (0.0, 0)
        for e in ev[s[0] + 1:d[0]]:
            assert e["ev"] == "progress" and e["frame"] == f, e
            assert 0 <= e["fraction"] <= 1 and isinstance(e["step"], int), e
            # each progress line advances: a larger fraction or a new phase
            assert (e["fraction"], e["step"]) > last and e["fraction"] >= last[0], (last, e)
            last = (e["fraction"], e["step"])
        done = ev[d[0]]
        p = done["path"]
        assert os.path.isabs(p) and os.path.dirname(p) == outdir, p
        assert os.path.isfile(p), p
        assert done["sha256"] == sha(p), "sha256 mismatch"
        assert isinstance(done["secs"], float) and done["secs"] >= 0
        got = img(p)
        assert got == (fmt, w, h), (p, got, (fmt, w, h))
        assert (done["width"], done["height"]) == (w, h), done
        # The device the frame rendered on, read back: the one ready chose.
        assert done["device"] == r[0]["device"], (done, r[0])
    leftovers = [n for n in os.listdir(outdir) if n.startswith(".")]
    assert not leftovers, ("temp files left", leftovers)

try:
    exec(code)   # the assertions come from this script, not from any input
except Exception:
    traceback.print_exc(limit=2)
    sys.exit(1)
EOF

command -v "$BLENDER" >/dev/null || { echo "no blender"; exit 1; }
mkdir -p "$tmp/work" "$tmp/o_png" "$tmp/o_exr" "$tmp/o_jpeg" "$tmp/o_tiff" "$tmp/o_res" "$tmp/o_dn"
mk "$tmp/s.blend" --frames 6 --size 32x24 --samples 2
mk "$tmp/d.blend" --frames 6 --size 32x24 --samples 2 --denoise --scene-name "Shot 1"
echo "scenes made in $tmp"

setup() {  # setup FORMAT [extra json members]
	printf '{"scene":null,"engine":"","device":"auto","samples":0,"res_w":0,"res_h":0,"res_pct":0,"format":"%s","gpu_index":-1%s}' "$1" "${2:-}"
}
fr() { printf '{"frame":%d,"out":"%s"}' "$1" "$2"; }

# 1. PNG, three frames, a bad JSON line and a frame that cannot be written in
#    between: the worker keeps going.
run_worker png "$tmp/s.blend" "$(setup png)" \
	"$(fr 1 "$tmp/o_png/frame_000001.png")" \
	'{"frame": 2, "out": ' \
	"$(fr 9 "$tmp/nonexistent/frame_000009.png")" \
	"$(fr 2 "$tmp/o_png/frame_000002.png")" \
	'[1,2,3]' \
	"$(fr 3 "$tmp/o_png/frame_000003.png")" \
	'{"cmd":"quit"}'
check png "
assert rc == 0, rc
r = by('ready')[0]
assert r['engine'] == 'CYCLES' and r['scene'] == 'Scene', r
assert r['blender'].startswith('3.') or r['blender'][0].isdigit(), r
assert (r['width'], r['height']) == (32, 24) and r['fps'] == 24.0, r
assert (r['frame_start'], r['frame_end']) == (1, 6) and r['denoise'] is False, r
assert r['device'] in ('CPU', 'OPTIX', 'CUDA', 'HIP') and r['devices'] and r['why'], r
assert any(x.startswith('CPU:') for x in r['devices']), r
frames_ok('png', 32, 24, [1, 2, 3], T + '/o_png')
assert len(by('error')) == 2, by('error')
f9 = [e for e in by('fail') if e['frame'] == 9]
assert len(f9) == 1 and 'nonexistent' in f9[0]['msg'], by('fail')
shas = set(e['sha256'] for e in by('done'))
assert len(shas) == 3, 'frames should differ'
"

# 2. EXR at 50 %: 16x12, OpenEXR.
run_worker exr "$tmp/s.blend" "$(setup exr ',"res_pct":50')" \
	"$(fr 1 "$tmp/o_exr/frame_000001.exr")" "$(fr 2 "$tmp/o_exr/frame_000002.exr")" \
	"$(fr 3 "$tmp/o_exr/frame_000003.exr")"
check exr "
assert rc == 0, rc          # end of input without quit is a normal exit
r = by('ready')[0]
assert (r['width'], r['height']) == (16, 12), r
frames_ok('exr', 16, 12, [1, 2, 3], T + '/o_exr')
"

# 3. JPEG and 4. TIFF.
run_worker jpeg "$tmp/s.blend" "$(setup jpeg)" \
	"$(fr 1 "$tmp/o_jpeg/f1.jpg")" "$(fr 2 "$tmp/o_jpeg/f2.jpg")" "$(fr 3 "$tmp/o_jpeg/f3.jpg")" '{"cmd":"quit"}'
check jpeg "assert rc == 0, rc; frames_ok('jpeg', 32, 24, [1, 2, 3], T + '/o_jpeg')"
run_worker tiff "$tmp/s.blend" "$(setup tiff)" \
	"$(fr 1 "$tmp/o_tiff/f1.tif")" "$(fr 2 "$tmp/o_tiff/f2.tif")" "$(fr 3 "$tmp/o_tiff/f3.tif")" '{"cmd":"quit"}'
check tiff "assert rc == 0, rc; frames_ok('tiff', 32, 24, [1, 2, 3], T + '/o_tiff')"

# 5. Explicit size, explicit CPU device, samples override.
run_worker res "$tmp/s.blend" "$(setup png ',"res_w":40,"res_h":30,"device":"cpu","samples":1')" \
	"$(fr 4 "$tmp/o_res/f4.png")" '{"cmd":"quit"}'
check res "
assert rc == 0, rc
r = by('ready')[0]
assert r['device'] == 'CPU' and (r['width'], r['height']) == (40, 30), r
frames_ok('png', 40, 30, [4], T + '/o_res')
"

# 6. An explicit device this Blender lacks is an error, not a CPU render.
run_worker optix "$tmp/s.blend" '{"scene":null,"device":"optix","format":"png"}' \
	"$(fr 1 "$tmp/o_res/never.png")"
check optix "
if by('ready'):
    r = by('ready')[0]
    assert r['device'] == 'OPTIX', r        # a node that really has OptiX
else:
    assert rc == 3, rc
    e = by('error'); assert len(e) == 1 and len(ev) == 1, ev
    assert 'optix' in e[0]['msg'].lower() and 'available' in e[0]['msg'], e
    assert not os.path.exists(T + '/o_res/never.png')
"

# 7. A scene name that does not exist: error listing the real ones.
run_worker noscene "$tmp/d.blend" '{"scene":"No Such Scene","format":"png"}'
check noscene "
assert rc == 3, rc
e = by('error'); assert len(ev) == 1 and len(e) == 1, ev
assert 'No Such Scene' in e[0]['msg'] and 'Shot 1' in e[0]['msg'], e
"

# 8. Denoising on: this Blender (Debian, no OpenImageDenoise) must fail the
#    frame with Blender's own message -- every frame, not only the first --
#    and the worker carries on.
oidn=$("$BLENDER" -b --factory-startup -Y --python-expr \
	'import _cycles; print("OIDN=%d" % bool(getattr(_cycles, "with_openimagedenoise", False)))' 2>/dev/null |
	sed -n 's/^OIDN=//p')
run_worker denoise "$tmp/d.blend" '{"scene":"Shot 1","format":"png"}' \
	"$(fr 1 "$tmp/o_dn/f1.png")" "$(fr 2 "$tmp/o_dn/f2.png")" '{"cmd":"quit"}'
if [ "$oidn" = 0 ]; then
	check denoise "
assert rc == 0, rc
r = by('ready')[0]
assert r['scene'] == 'Shot 1' and r['denoise'] is True, r
f = by('fail'); assert [e['frame'] for e in f] == [1, 2], ev
for e in f:
    assert 'OpenImageDenoise' in e['msg'], e
assert not by('done') and not os.listdir(T + '/o_dn'), os.listdir(T + '/o_dn')
"
else
	check denoise "assert rc == 0; frames_ok('png', 32, 24, [1, 2], T + '/o_dn')"
fi

# 9. Progress inside a frame: Eevee prints "Rendering N / 60 samples" every
#    25 samples; the worker passes them on as fractions that only grow.
mkdir -p "$tmp/o_prog"
run_worker progress "$tmp/s.blend" "$(setup png ',"engine":"eevee","samples":60')" \
	"$(fr 1 "$tmp/o_prog/f1.png")" '{"cmd":"quit"}'
check progress "
assert rc == 0, rc
frames_ok('png', 32, 24, [1], T + '/o_prog')
p = [e['fraction'] for e in by('progress')]
assert any(0 < x < 1 for x in p), ('no fraction inside the frame', p)
assert p == sorted(p), p
"

# 10. Setup problems: not JSON, wrong types, nothing at all.
run_worker badsetup "$tmp/s.blend" 'this is not json'
check badsetup "assert rc == 3 and [e['ev'] for e in ev] == ['error'], (rc, ev)"
run_worker badtype "$tmp/s.blend" '{"scene":null,"samples":"__import__(\"os\")","format":"png"}'
check badtype "assert rc == 3 and [e['ev'] for e in ev] == ['error'] and 'samples' in ev[0]['msg'], (rc, ev)"
run_worker empty "$tmp/s.blend"
check empty "assert rc == 3 and [e['ev'] for e in ev] == ['error'], (rc, ev)"

if [ $fails -ne 0 ]; then
	echo "worker_check: $fails check(s) failed"
	exit 1
fi
echo "worker_check: all passed"
exit 0
