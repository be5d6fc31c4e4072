"""Generated code for proto package flow (proto/generate.sh; do not edit)."""
