#!/bin/bash
# The demo: install, build, mount renderfs, render a scene it generates on
# this machine, show the progress, and say where the frames and video are.
#   bash contrib/demo.sh [DIR]        (DIR defaults to ./renderfs-demo)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:-renderfs-demo}")
mnt="$dir/mnt"

"$top/contrib/deps.sh" run
if [ ! -f "$top/build/build.ninja" ]; then
	meson setup "$top/build" "$top" >/dev/null
fi
ninja -C "$top/build" >/dev/null
bin="$top/build/fs/renderfs"

mkdir -p "$dir" "$mnt"
if mountpoint -q "$mnt"; then
	fusermount3 -u "$mnt"
	while mountpoint -q "$mnt"; do sleep 0.2; done
fi
workers=$(( $(nproc) > 1 ? 2 : 1 ))
if [ ! -f "$dir/demo.blend" ]; then
	echo "generating the demo scene (Blender)..."
	blender -b --factory-startup -Y --python "$top/contrib/make_scene.py" -- "$dir/demo.blend" \
		--frames 48 --size 320x180 --samples 16 >"$dir/make_scene.log" 2>&1
fi
"$bin" "$mnt" -o "state=$dir/state,local.workers=$workers,renderfs.quiet=1s"
for _ in $(seq 50); do [ -r "$mnt/status" ] && break; sleep 0.1; done

# A new job each run: demo, demo-2, ... (finished frames are never overwritten).
before=$(ls "$mnt/out")
cp "$dir/demo.blend" "$mnt/queue/demo.blend"
printf '# the bundled demo: 48 frames\n1-48\n' > "$mnt/queue/demo.range"
job=""
while [ -z "$job" ]; do
	sleep 0.2
	job=$(comm -13 <(echo "$before") <(ls "$mnt/out") | head -n 1)
	[ -f "$mnt/queue/demo.error" ] && { cat "$mnt/queue/demo.error"; exit 1; }
done
# The node knows what it renders on once its first worker has started:
# wait for that (or for the job to end), then name the node and its device.
node=local
device=unknown
for _ in $(seq 150); do
	device=$(sed -n 's/^device: //p' "$mnt/nodes/$node/status")
	[ -n "$device" ] && [ "$device" != unknown ] && break
	case "$(sed -n 's/^state: //p' "$mnt/out/$job/status")" in done|failed|cancelled) break ;; esac
	sleep 0.2
done
echo "job '$job' accepted; rendering on node $node (${device:-unknown})"
state=""
while :; do
	status=$(cat "$mnt/out/$job/status")
	state=$(sed -n 's/^state: //p' <<<"$status")
	printf '\r%-10s %s  eta %s   ' "$state" "$(sed -n 's/^progress: //p' <<<"$status")" \
		"$(sed -n 's/^eta: //p' <<<"$status")"
	case "$state" in done|failed|cancelled) break ;; esac
	sleep 0.5
done
echo
cat "$mnt/out/$job/status"
echo
echo "frames: $mnt/out/$job/"
[ -f "$mnt/out/$job/$job.mp4" ] && echo "video:  $mnt/out/$job/$job.mp4"
echo "renderfs stays mounted at $mnt; drop your own NAME.blend and NAME.range into $mnt/queue/."
echo "unmount with: fusermount3 -u $mnt"
[ "$state" = done ]
