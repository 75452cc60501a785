#!/bin/bash
# The GPU machine's one command (scripts/gpu_check.py run): the bundle's CUDA library against its
# test vectors, and a tiny search on cuda vs cpu. Prepare the folder first, here:
#   python scripts/gpu_check.py prepare --run RUN --target cuda-sm90 --out build/gpu_check
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/gpu_check.py run "${1:-build/gpu_check}" --out "${OUT:-.}"
