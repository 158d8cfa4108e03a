# Sourced by scripts/cuda-build.sh and scripts/gpu-check.sh: puts nvcc and the CUDA headers
# on PATH for building runner with `--features cuda` on a machine without a CUDA toolkit
# (and without a GPU), from NVIDIA's PyPI wheels pinned to CUDA 13.0.x, so that the PTX
# candle embeds is accepted by every driver from 580 (CUDA 13.0) on: a newer nvcc writes a
# newer PTX ISA that older drivers refuse (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
# RUNNER_CUDA_TOOLKIT (default ~/.cache/runner/cuda-13.0) is where the wheels go (about
# 300 MB, once); CUDA_COMPUTE_CAP (default 90: H100/H200, built as sm_90a) the GPU
# generation the kernels are compiled for.
TOOLKIT="${RUNNER_CUDA_TOOLKIT:-$HOME/.cache/runner/cuda-13.0}"
if [ ! -x "$TOOLKIT/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$TOOLKIT"
fi
CUDA_ROOT="$("$TOOLKIT/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
if [ ! -x "$CUDA_ROOT/bin/nvcc" ] || [ ! -e "$CUDA_ROOT/include/cccl/cuda/std/cstdint" ]; then
  # All five pinned: nvcc's wheel would otherwise pull the newest crt/nvvm/runtime, and cccl
  # (thrust, cub, cuda/std, which candle's kernels include) is not one of its dependencies.
  "$TOOLKIT/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
fi
export CUDA_ROOT
export PATH="$CUDA_ROOT/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
echo "cuda: nvcc $("$CUDA_ROOT/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') from $CUDA_ROOT, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP" >&2
