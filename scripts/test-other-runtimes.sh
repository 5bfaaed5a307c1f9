#!/usr/bin/env bash
# Runs the whole test suite again under Node 22 and Node 24 (the machines have Node 20; pbsfs
# must run unchanged on all three). The runtimes are the official Linux builds as the npm
# registry ships them (package node-linux-<arch>), fetched once into .runtimes/ and pinned to
# the versions tested here. Why a whole second and third run: the first one on Node 22 and 24
# found a test that assumed one zstd backend, and two faults of Node 22's zstd (see
# native-shims/zstd-frames.ts) that no Node 20 run could show.
#
# PBSFS_OTHER_RUNTIMES="22.23.5 24.22.3" (the default) chooses the versions; "none" skips this.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${PBSFS_OTHER_RUNTIMES:-22.23.5 24.22.3}
[ "$versions" = none ] && { echo "other runtimes: skipped (PBSFS_OTHER_RUNTIMES=none)"; exit 0; }
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "other runtimes: no Node build for $(uname -m) on the npm registry" >&2; exit 1 ;;
esac

for v in $versions; do
  dir=.runtimes/node-$v
  if [ ! -x "$dir/bin/node" ]; then
    echo "other runtimes: fetching node-linux-$arch@$v from the npm registry"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if ! npm pack --silent "node-linux-$arch@$v" --pack-destination "$tmp" >/dev/null; then
      echo "other runtimes: cannot fetch node-linux-$arch@$v (is the npm registry reachable?)" >&2
      exit 1
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    tar xzf "$tmp"/*.tgz -C "$dir" --strip-components=1
    rm -rf "$tmp"
    trap - EXIT
  fi
  got=$("$dir/bin/node" --version)
  [ "$got" = "v$v" ] || { echo "other runtimes: $dir/bin/node is $got, expected v$v" >&2; exit 1; }
  echo "== the test suite on Node $got"
  PATH="$PWD/$dir/bin:$PATH" npx vitest run
done
