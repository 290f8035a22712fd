#!/usr/bin/env bash
# The GPU benchmarks of docs/benchmarks.md, unattended, in under 8 minutes on one H100/H200-class GPU.
#
#   bash nuwa/bench/gpu.sh [OUT.json]          (default: $OUT/gpu.json, else ./gpu.json)
#   bash nuwa/bench/gpu.sh --dry-run OUT.json  (toy sizes on the CPU: checks the script)
#
# Needs only python3 with torch. The repository's pure-Python dependencies (einops, tqdm, PyYAML)
# are taken from the environment, else from nuwa/bench/vendor/ (made by `bash nuwa/bench/vendor.sh`
# on a machine that has them; carry that folder along). Every section is written to the JSON as soon
# as it is done; a hard timeout of 470 s keeps the whole run under 8 minutes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dry=()
if [[ "${1:-}" == "--dry-run" ]]; then dry=(--dry-run); shift; fi
out="${1:-${OUT:-.}/gpu.json}"
py="${PYTHON:-python3}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import einops, tqdm, yaml" 2>/dev/null; then
    if [[ ! -d "$repo/nuwa/bench/vendor" ]]; then
        echo "error: einops, tqdm or yaml missing and no nuwa/bench/vendor/; run nuwa/bench/vendor.sh where they are installed" >&2
        exit 2
    fi
    export PYTHONPATH="$PYTHONPATH:$repo/nuwa/bench/vendor"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
mkdir -p "$(dirname "$out")"
cd "$repo"
exec timeout 470 "$py" -m nuwa.bench.gpu "${dry[@]}" --deadline 420 --json "$out"
