#!/usr/bin/env bash
# Builds runner with `--features cuda` on a machine without a CUDA toolkit (and without a
# GPU): nvcc and the headers from NVIDIA's PyPI wheels (scripts/cuda-env.sh says which and
# why). With a CUDA toolkit of your own, plain `cargo build --release --features cuda` is
# enough.
#
#   scripts/cuda-build.sh                        # cargo build --release --features cuda
#   CUDA_COMPUTE_CAP=80 scripts/cuda-build.sh    # kernels for an A100
#   scripts/cuda-build.sh --features cudnn       # extra cargo arguments are passed on
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-env.sh
exec cargo build --release --features cuda "$@"
