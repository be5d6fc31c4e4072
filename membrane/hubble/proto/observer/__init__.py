"""Generated code for proto package observer (proto/generate.sh; do not edit)."""
