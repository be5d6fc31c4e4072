#!/bin/sh
# Regenerates membrane/hubble/proto/ from proto/*.proto with the pinned grpcio-tools
# (grpcio-tools==1.85.1, protobuf==7.36.2). Run from anywhere: proto/generate.sh [python]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${1:-"$root/.venv/bin/python"}
out="$root/membrane/hubble/proto"
rm -rf "$out"
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I "$here" --python_out="$out" --pyi_out="$out" \
    --grpc_python_out="$out" \
    "$here/flow/flow.proto" "$here/relay/relay.proto" "$here/observer/observer.proto" \
    "$here/peer/peer.proto"
# The generated modules import each other as top-level packages (flow, relay, observer):
# make those imports absolute inside membrane.hubble.proto, and keep ruff off generated code.
rm -f "$out/flow/flow_pb2_grpc.py" "$out/relay/relay_pb2_grpc.py"
for f in $(find "$out" -name '*.py' -o -name '*.pyi' | sort); do
    sed -i -E \
        -e 's/^from (flow|relay|observer|peer) import /from membrane.hubble.proto.\1 import /' \
        "$f"
    sed -i '1i # ruff: noqa' "$f"
done
printf '"""Generated protobuf and gRPC code for Hubble'"'"'s API (proto/generate.sh; do not edit)."""\n' \
    > "$out/__init__.py"
for pkg in flow relay observer peer; do
    printf '"""Generated code for proto package %s (proto/generate.sh; do not edit)."""\n' "$pkg" \
        > "$out/$pkg/__init__.py"
done
