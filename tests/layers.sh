#!/bin/bash
# The backend's folders are layers (backend/meson.build lists them, lowest
# first).  A file may include headers of its own folder and of folders
# below it, never above; backend/ includes no FUSE header; SQL text and
# sqlite3 calls appear only in backend/store/ (not in fs/ either).  Prints each breach; exits 1
# when there is one.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top/backend" || exit 1
layers=(core store jobs nodes sched clore engine)
rank() {
	local i
	for i in "${!layers[@]}"; do [ "${layers[$i]}" = "$1" ] && { echo "$i"; return; }; done
	echo 99
}
bad=0
for dir in "${layers[@]}"; do
	me=$(rank "$dir")
	for f in "$dir"/*.[ch]; do
		[ -e "$f" ] || continue
		while IFS= read -r inc; do
			to=${inc%%/*}
			if [ "$(rank "$to")" -gt "$me" ]; then
				echo "layers: $f includes $inc, a layer above $dir" >&2
				bad=1
			fi
		done < <(sed -n 's/^#include "\([a-z]*\/[a-z_]*\.h\)".*/\1/p' "$f")
		if grep -q '^#include <fuse' "$f"; then
			echo "layers: $f includes a FUSE header" >&2
			bad=1
		fi
	done
done
# SQL lives in the store: no sqlite3 call and no SQL text anywhere else.
for f in core/*.[ch] jobs/*.[ch] nodes/*.[ch] sched/*.[ch] clore/*.[ch] engine/*.[ch] ../fs/*.[ch]; do
	[ -e "$f" ] || continue
	if grep -nE 'sqlite3_[a-z]|#include <sqlite3\.h>|store_exec\(|"[^"]*\b(SELECT|UPDATE|INSERT INTO|DELETE FROM|BEGIN|COMMIT)\b' "$f" >&2; then
		echo "layers: $f holds SQL or calls SQLite; that belongs in backend/store/" >&2
		bad=1
	fi
done
if [ $bad -eq 0 ]; then echo "layers: ${#layers[@]} folders, includes point one way, SQL only in store/"; fi
exit $bad
