#!/bin/bash
# Install what renderfs needs from Debian's packages (Debian 12).
#   contrib/deps.sh run    build and run renderfs
#   contrib/deps.sh test   also what the test suite needs
# Installs only what is missing; needs root (or sudo) when something is.
set -eu
want=(meson ninja-build pkg-config gcc libfuse3-dev fuse3 libsqlite3-dev libcurl4-openssl-dev
      libcjson-dev libssh2-1-dev libinih-dev libssl-dev libzstd-dev zlib1g-dev blender ffmpeg)
if [ "${1:-run}" = test ]; then
	# curl and xz-utils: what a test node downloads and unpacks Blender with
	# (test_install.py; python3 is the fallback on a node without them);
	# libclang-rt-dev: libFuzzer (tests/fuzz).
	want+=(python3 python3-pytest clang libclang-rt-dev sqlite3 iproute2 openssh-server openssh-client procps
	       curl xz-utils samba smbclient nfs-ganesha nfs-ganesha-vfs libnfs-utils libnfs-dev
	       slurmd slurmctld munge slurm-client)
fi
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "renderfs: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
