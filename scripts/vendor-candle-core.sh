#!/usr/bin/env bash
# Remakes vendor/candle-core: the crates.io source of candle-core (the version Cargo.lock
# pins) with vendor/candle-core.patch applied, which switches its cudarc feature from
# "dynamic-linking" to "dynamic-loading" (README, "Training on NVIDIA GPUs"). Run it after
# changing candle's version; `--check` only says whether vendor/candle-core is that.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(awk '/^name = "candle-core"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[ -n "$version" ] || { echo "candle-core is not in Cargo.lock" >&2; exit 1; }
crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/candle-core-"$version".crate 2>/dev/null | head -1 || true)"
if [ -z "$crate" ]; then
  # Fetch it into cargo's cache without the patch in the way.
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && cargo init -q --name fetch && cargo add -q "candle-core@=$version" --no-default-features && cargo fetch -q)
  crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/candle-core-"$version".crate | head -1)"
fi
work="$(mktemp -d)"
tar -xzf "$crate" -C "$work"
rm -f "$work/candle-core-$version/.cargo-ok"
(cd "$work/candle-core-$version" && patch -s -p1 < "$OLDPWD/vendor/candle-core.patch")
if [ "${1:-}" = "--check" ]; then
  if diff -r "$work/candle-core-$version" vendor/candle-core > /dev/null; then
    echo "vendor/candle-core is candle-core $version from crates.io with vendor/candle-core.patch"
    rm -rf "$work"
  else
    diff -r "$work/candle-core-$version" vendor/candle-core | head -20 >&2
    rm -rf "$work"
    exit 1
  fi
else
  rm -rf vendor/candle-core
  mv "$work/candle-core-$version" vendor/candle-core
  rm -rf "$work"
  echo "vendor/candle-core: candle-core $version with vendor/candle-core.patch"
fi
