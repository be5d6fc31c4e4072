"""Generated code for proto package relay (proto/generate.sh; do not edit)."""
