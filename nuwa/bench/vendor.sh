#!/usr/bin/env bash
# Copy the pure-Python packages nuwa/bench/gpu.sh needs besides torch (einops, tqdm, PyYAML without its
# C extension) from this environment into nuwa/bench/vendor/ (git-ignored; or the folder given), for a
# machine that has only torch.   bash nuwa/bench/vendor.sh [DEST]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-python3}"
dest="${1:-$repo/nuwa/bench/vendor}"
rm -rf "$dest" && mkdir -p "$dest"
for pkg in einops tqdm yaml; do
    src="$("$py" -c "import $pkg, os; print(os.path.dirname($pkg.__file__))")"
    cp -r "$src" "$dest/"
done
find "$dest" \( -name "__pycache__" -o -name "*.so" \) -prune -exec rm -rf {} +
echo "vendored into $dest: $(ls "$dest" | tr '\n' ' ')"
