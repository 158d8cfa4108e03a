#!/usr/bin/env bash
# Remakes vendor/CRATE: the crates.io source of CRATE (the version Cargo.lock pins) with
# vendor/CRATE.patch applied. Two crates are vendored so (Cargo.toml's [patch.crates-io]):
#   candle-core: its cudarc feature "dynamic-linking" -> "dynamic-loading" (README,
#                "Training on NVIDIA GPUs"); without `cuda` it builds as the registry's.
#   plotters:    its ab_glyph text drawing places each glyph at its own bearing and
#                sub-pixel position (the registry's ignores both, so "-" and "." overlap
#                their neighbours in PNG charts).
# Run it after changing the crate's version; `CRATE --check` only says whether vendor/CRATE
# is that. With no CRATE, checks every vendored crate.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ] || [ "$1" = "--check" ]; then
  for c in candle-core plotters; do "$0" "$c" --check; done
  exit 0
fi
name="$1"
[ -f "vendor/$name.patch" ] || { echo "no vendor/$name.patch: vendored crates are candle-core and plotters" >&2; exit 2; }
version="$(awk -v n="name = \"$name\"" '$0 == n { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[ -n "$version" ] || { echo "$name is not in Cargo.lock" >&2; exit 1; }
crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version".crate 2>/dev/null | head -1 || true)"
if [ -z "$crate" ]; then
  # Fetch it into cargo's cache without the patch in the way.
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && cargo init -q --name fetch && cargo add -q "$name@=$version" --no-default-features && cargo fetch -q)
  crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version".crate | head -1)"
fi
work="$(mktemp -d)"
tar -xzf "$crate" -C "$work"
rm -f "$work/$name-$version/.cargo-ok"
(cd "$work/$name-$version" && patch -s -p1 < "$OLDPWD/vendor/$name.patch")
if [ "${2:-}" = "--check" ]; then
  if diff -r "$work/$name-$version" "vendor/$name" > /dev/null; then
    echo "vendor/$name is $name $version from crates.io with vendor/$name.patch"
    rm -rf "$work"
  else
    diff -r "$work/$name-$version" "vendor/$name" | head -20 >&2
    rm -rf "$work"
    exit 1
  fi
else
  rm -rf "vendor/$name"
  mv "$work/$name-$version" "vendor/$name"
  rm -rf "$work"
  echo "vendor/$name: $name $version with vendor/$name.patch"
fi
