"""Generated protobuf and gRPC code for Hubble's API (proto/generate.sh; do not edit)."""
