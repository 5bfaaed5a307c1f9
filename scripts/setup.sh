#!/usr/bin/env bash
# pbsfs setup: system packages, npm dependencies and the build. Idempotent: run it as often as
# you like; it installs only what is missing.
#
#   fuse             fusermount (unmounting, also of stale mounts). pbsfs speaks the kernel
#                    protocol itself and loads no FUSE library (docs/mount.md says why);
#                    libfuse2 still comes in, as a dependency of Debian's fuse package.
#                    Debian's fuse and fuse3 conflict; we use fuse (2.x) for fusermount.
#   attr, acl        getfattr/getfacl, used by the end-to-end tests to read xattrs and ACLs.
#   e2fsprogs, dosfstools  mkfs.ext4 / mkfs.vfat for the disk images of the demo and tests.
#   fdisk, lvm2, mtools, exfatprogs  sfdisk, LVM metadata, mcopy and mkfs.exfat: the partition
#                    tables, volumes and filesystems of the disk-image tests.
#   exfat-fuse       fills the exFAT test images through a loop device (the kernel has no exfat
#                    driver); it needs fuse 2, not fuse3.
#   sleuthkit        fls/icat: the independent reader the disk-image tests compare ours with.
#   util-linux-extra fincore, used by the tests to see which files the kernel page cache holds.
#   python3, make, g++     build tools for the zstd-napi addon (native-shims/zstd.ts says why it
#                    is used on every Node, not only where node:zlib lacks zstd) and for our
#                    fdpass addon (native-shims/fdpass/: receives the /dev/fuse descriptor from
#                    fusermount, which a mount by a normal user needs).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
for pkg in fuse attr acl e2fsprogs dosfstools fdisk lvm2 mtools exfatprogs exfat-fuse sleuthkit util-linux-extra python3 make g++ kmod; do
  have_pkg "$pkg" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages: ${need[*]} (run this script as root, or install them)" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# FUSE needs its device node; containers sometimes lack it although the kernel module exists.
if [ ! -e /dev/fuse ] && [ "$(id -u)" -eq 0 ]; then
  modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || mknod -m 666 /dev/fuse c 10 229 2>/dev/null || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
make -s -C native-shims/fdpass
chmod +x dist/src/cli/main.js
# Put `pbsfs` on PATH (what the demo and the README's commands call), pointing at this checkout.
if [ "$(id -u)" -eq 0 ] && [ -d /usr/local/bin ]; then
  ln -sfn "$PWD/dist/src/cli/main.js" /usr/local/bin/pbsfs
fi
echo "setup: done ($(node --version), $(node -e "import('./dist/native-shims/zstd.js').then(m=>console.log('zstd via '+m.zstdBackendName()))"))"
