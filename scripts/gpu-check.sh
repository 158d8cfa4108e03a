#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, in one command: the tests of tests/gpu.rs and the
# speed against PyTorch (benches/gpu_throughput.rs).
#
#   scripts/gpu-check.sh build   # anywhere with Rust (no GPU needed): runner, the GPU tests and
#                                # the bench built with --features cuda into target/gpu-check/
#   scripts/gpu-check.sh run     # on the GPU machine, from the repository root, with
#                                # target/gpu-check/ copied there: needs the NVIDIA driver and
#                                # python3 (or $PYTHON) with torch for CUDA, which also brings
#                                # cuBLAS; writes tests.log, bench.log, diag.txt to $OUT
#                                # (default target/gpu-check/out). Exit 0 when all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE=target/gpu-check
case "${1:-}" in
build)
  set -e
  source scripts/cuda-env.sh
  mkdir -p "$BUNDLE"
  cargo build --release --features cuda
  # The test and bench executables, found in cargo's JSON messages.
  exe() { sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1; }
  tests="$(cargo test --release --features cuda --test gpu --no-run --message-format=json 2>/dev/null | exe)"
  bench="$(cargo bench --features cuda --bench gpu_throughput --no-run --message-format=json 2>/dev/null | exe)"
  [ -n "$tests" ] && [ -n "$bench" ] || { echo "gpu-check: the test or bench executable was not built" >&2; exit 1; }
  cp target/release/runner "$BUNDLE/runner"
  cp "$tests" "$BUNDLE/gpu-tests"
  cp "$bench" "$BUNDLE/gpu-bench"
  # What the bundle needs at run time besides the driver and cuBLAS: nothing CUDA.
  ldd "$BUNDLE/runner" | grep -E "cuda|cublas|curand|nvrtc" && { echo "gpu-check: runner links CUDA libraries" >&2; exit 1; }
  ls -la "$BUNDLE"
  ;;
run)
  OUT="${OUT:-$BUNDLE/out}"
  mkdir -p "$OUT"
  PY="${PYTHON:-python3}"
  for f in runner gpu-tests gpu-bench; do
    [ -x "$BUNDLE/$f" ] || chmod +x "$BUNDLE/$f" 2>/dev/null || { echo "gpu-check: $BUNDLE/$f missing: run '$0 build' first" >&2; exit 2; }
  done
  # cuBLAS, cuBLASLt and cuRAND from the nvidia-* wheels torch brought (runner dlopen()s
  # them by name); libcuda.so.1 comes with the driver.
  NVLIBS="$("$PY" - <<'PY' 2>/dev/null
import glob, os, site
roots = []
try:
    import nvidia
    roots += list(nvidia.__path__)
except Exception:
    pass
roots += [os.path.join(p, "nvidia") for p in site.getsitepackages()]
dirs = []
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "**", "lib"), recursive=True)):
        d = os.path.realpath(d)
        if d not in dirs and glob.glob(os.path.join(d, "lib*.so*")):
            dirs.append(d)
print(":".join(dirs))
PY
)"
  export LD_LIBRARY_PATH="${NVLIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export RUNNER_BIN="$PWD/$BUNDLE/runner" RUNNER_ROOT="$PWD" PYTHON="$PY"
  {
    date -u +%FT%TZ; uname -a
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv 2>&1 | head -3
    "$PY" -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd "$RUNNER_BIN"
  } > "$OUT/diag.txt" 2>&1
  cat "$OUT/diag.txt"
  "$BUNDLE/gpu-tests" --ignored --test-threads=1 --nocapture 2>&1 | tee "$OUT/tests.log"
  trc=${PIPESTATUS[0]}
  "$BUNDLE/gpu-bench" 2>&1 | tee "$OUT/bench.log"
  brc=${PIPESTATUS[0]}
  echo "gpu-check: tests exit $trc, bench exit $brc" | tee -a "$OUT/diag.txt"
  [ "$trc" -eq 0 ] && [ "$brc" -eq 0 ]
  ;;
*)
  echo "usage: $0 build|run (see the comment at its top)" >&2
  exit 2
  ;;
esac
