#!/usr/bin/env bash
# The GPU check of issue 34, in one go, on a machine with an NVIDIA GPU and CuPy (no internet
# needed): tests/test_gpu.py, then a short benchmarks/bench_gpu.py, about 8 minutes in all.
#
#     bash benchmarks/gpu_check.sh                 # from the repository root
#     OUT=/some/folder bash benchmarks/gpu_check.sh
#
# Writes into $OUT (default runs/gpu_check): environment.txt (the GPU, the versions, which
# modules are missing), test_gpu.txt and test_gpu.xml (the tests, with their "measured:"
# lines), bench_gpu.txt and bench_gpu.json (the benchmark). It installs nothing from the
# network: WHEELS=folder installs the missing packages from wheels in that folder first
# (pip install --no-index --find-links). Each part has its own time limit, so one that hangs
# cannot take the rest; the exit status is the tests' (0: all passed; 3: no GPU, nothing checked).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
PYTHON="${PYTHON:-python3}"
TEST_SECONDS="${TEST_SECONDS:-240}"
BENCH_SECONDS="${BENCH_SECONDS:-210}"
mkdir -p "$OUT"

modules="numpy cupy torch pandas sklearn matplotlib tqdm PIL joblib pooch threadpoolctl pytest"
missing=$("$PYTHON" - $modules <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ] && [ -n "${WHEELS:-}" ]; then
    declare -A package=([sklearn]=scikit-learn [PIL]=pillow)
    wanted=""
    for m in $missing; do wanted="$wanted ${package[$m]:-$m}"; done
    "$PYTHON" -m pip install --no-index --find-links "$WHEELS" $wanted 2>&1 | tail -3
    missing=$("$PYTHON" - $modules <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
)
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    "$PYTHON" - <<'EOF'
import platform
print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "pandas", "sklearn"):
    try:
        module = __import__(name)
        print(name, module.__version__)
    except Exception as err:  # noqa: BLE001
        print(name, "not importable:", err)
from layers.arraylib import gpu_missing
print("gpu_missing:", gpu_missing() or "nothing: CuPy finds a CUDA device")
EOF
    echo "missing modules: ${missing:-none}"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
no_gpu=$("$PYTHON" -c "from layers.arraylib import gpu_missing; print(gpu_missing())" 2>&1)
if [ -n "$no_gpu" ]; then
    echo "no GPU to check: $no_gpu"
    exit 3
fi

echo "== tests/test_gpu.py (at most ${TEST_SECONDS} s)"
timeout "$TEST_SECONDS" "$PYTHON" -m pytest tests/test_gpu.py -q -s -rs -p no:cacheprovider \
    --junitxml="$OUT/test_gpu.xml" > "$OUT/test_gpu.txt" 2>&1
tests=$?
tail -40 "$OUT/test_gpu.txt"
grep "measured:" "$OUT/test_gpu.txt"
[ "$tests" = 124 ] && echo "tests/test_gpu.py: stopped at its limit of ${TEST_SECONDS} s"

echo "== benchmarks/bench_gpu.py (at most ${BENCH_SECONDS} s)"
timeout "$BENCH_SECONDS" "$PYTHON" benchmarks/bench_gpu.py --steps 10 --warmup 3 \
    --tta mnist --precision float32 mixed --tta-budget 45 --out "$OUT/bench_gpu.json" \
    > "$OUT/bench_gpu.txt" 2>&1
bench=$?
cat "$OUT/bench_gpu.txt"
[ "$bench" = 124 ] && echo "bench_gpu.py: stopped at its limit of ${BENCH_SECONDS} s (the JSON holds the parts done)"
echo "== exit status: tests $tests, benchmark $bench"
exit "$tests"
