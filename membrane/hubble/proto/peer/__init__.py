"""Generated code for proto package peer (proto/generate.sh; do not edit)."""
