#!/usr/bin/env bash
# The device run owed by issue 21 (Accelerators), prepared to run once on one GPU in under 10 minutes.
#
#   bash bench/gpu_check.sh            # from the repository root; writes into $OUT (default: a new temporary folder)
#
# 1. facts: the tree sent (git HEAD may be stale on the device; the tree's diff is kept), JAX,
#    the GPU, and which optional packages are missing (the suite skips their rows with the reason);
# 2. the gradient suite (default profile: feval, gradient, sharding, memory at n = 1e6),
#    then the derivative, V-curve and descent suites, each a `calcjax bench --device gpu` run
#    whose raw JSON lands in $OUT/results/<run>/raw.json (plain pytest if the CLI cannot start);
# 3. probe: the batch the accelerator rule picks per gradient problem and n, and the compiled
#    bytes it measured, against 1/16 of the device's memory (compiles only; nothing is timed);
# 4. the target: jax-vmap-naive time / fd-central time at every n >= 1000 (>= 0.95 wanted) and
#    the memory suite's peak at n = 1e6 against 1/16 of the device's memory.
#
# Name the sender's commit, so the copied tree is proved by its source hash (its .git may be stale:
# without it, `calcjax bench` refuses a tree that differs from the stale HEAD):
#   CALCJAX_SOURCE_COMMIT=<git rev-parse HEAD on the sender> bash bench/gpu_check.sh
# For a smoke test on a CPU: DEVICE=cpu BENCH_ARGS="--profile ci" bash bench/gpu_check.sh
# Copy $OUT/results/<run>/ into results/ and rebuild the tables with `calcjax report`;
# compare with the newest CPU default run: `calcjax report --compare CPU_RUN GPU_RUN`.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$(mktemp -d -t gpu-check.XXXX)}"
PY="${PYTHON:-python}"
DEVICE="${DEVICE:-gpu}"
read -r -a BENCH_ARGS <<< "${BENCH_ARGS:-}"  # extra documented flags, e.g. --profile ci for a smoke test
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/results"
TOTAL_S="${TOTAL_S:-570}"  # the whole script stays under this (the device allows 600 s a command)
left() { local l=$((TOTAL_S - SECONDS)); [ "$l" -lt "$1" ] && echo "$((l > 10 ? l : 10))" || echo "$1"; }
say() { printf '\n=== %s (%s s)\n' "$*" "$SECONDS"; }

say "facts"
{
  echo "stamp: $STAMP"
  echo "git HEAD (may be stale on a device copy): $(git rev-parse HEAD 2>/dev/null || echo none)"
  echo "sender's commit (CALCJAX_SOURCE_COMMIT): ${CALCJAX_SOURCE_COMMIT:-not given}"
  echo "tree: files changed against HEAD: $(git status --porcelain 2>/dev/null | wc -l)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
  timeout 120 "$PY" - <<'EOF'
import importlib.util, jax
print("jax", jax.__version__, "devices", jax.devices())
missing = [m for m in ("pytest_benchmark", "pandas", "numpy", "scipy", "tqdm", "rich", "jinja2",
                       "numdifftools", "matplotlib", "tabulate", "dask", "optax", "hypothesis")
           if importlib.util.find_spec(m) is None]
print("optional packages missing (their rows are skipped with the reason):", ", ".join(missing) or "none")
EOF
} 2>&1 | tee "$OUT/facts.txt"
git diff HEAD > "$OUT/tree.diff" 2>/dev/null || true

# calcjax bench if its CLI starts here, else the same suite through plain pytest (needs only
# pytest-benchmark and JAX). Default profile, float64 timings, as the committed H100 runs.
if timeout 120 "$PY" -m calcjax bench --help > /dev/null 2>&1; then USE_CLI=1; else USE_CLI=0; fi
suite() {  # suite NAME SECONDS K-EXPRESSION
  local name=$1 expr=$3 run="$STAMP-$DEVICE-$1" limit
  limit=$(left "$2")
  # pytest stops starting tests 40 s before the hard limit, so its JSON and the reports are still written.
  local keep=(-p calcjax._pytest_budget --time-budget "$((limit > 60 ? limit - 40 : 20))")
  say "suite $name (-k \"$expr\", at most $limit s)"
  if [ "$USE_CLI" = 1 ]; then
    timeout "$limit" "$PY" -m calcjax bench --device "$DEVICE" "${BENCH_ARGS[@]}" --out "$OUT/results" \
      --run-id "$run" -- -k "$expr" "${keep[@]}" > "$OUT/$name.log" 2>&1
  else
    mkdir -p "$OUT/results/$run"
    timeout "$limit" "$PY" -m pytest bench -p no:cacheprovider -rs --benchmark-only --benchmark-quiet \
      --benchmark-json="$OUT/results/$run/raw.json" --device="$DEVICE" "${BENCH_ARGS[@]}" -k "$expr" \
      "${keep[@]}" > "$OUT/$name.log" 2>&1
  fi
  echo "exit status $? ; raw JSON: $(ls "$OUT/results/$run/raw.json" 2>/dev/null || echo MISSING)"
  tail -n 4 "$OUT/$name.log"
}
suite gradient 330 "test_gradient.py"
suite derivative-vcurve 120 "test_derivative.py or test_vcurve"
suite descent 90 "test_descent.py"

say "probe: the batch the accelerator rule picks"
timeout "$(left 150)" "$PY" - "$OUT/probe.json" <<'EOF' 2>&1 | tee "$OUT/probe.txt"
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import calcjax
from calcjax import _batching
from calcjax._problems import get_problem

device = jax.devices()[0]
limit = _batching.device_memory(device)
share = None if limit is None else int(limit * _batching.ACCELERATOR_MEMORY_SHARE)
print(f"device {device.device_kind}: bytes_limit {limit}, share {share}")
rows, choose, measure = [], _batching.choose_batch, _batching.compiled_bytes
seen = {}

def spy_choose(n, **kw):
    b = choose(n, **kw)
    seen["pick"] = (n, b)
    return b

def spy_measure(fn, args):
    got = measure(fn, args)
    seen.setdefault("measured", {})[int(args[-1].shape[0])] = got
    return got

_batching.choose_batch, _batching.compiled_bytes = spy_choose, spy_measure
cases = [(p, n) for p in ("quadratic", "rosenbrock", "logistic", "mlp") for n in (1000, 10000)]
cases += [("quadratic", 1_000_000), ("rosenbrock", 1_000_000)]
for name, n in cases:
    seen.clear()
    inst = get_problem(name).instance(n, "float64")
    grad = jax.jit(lambda x, data: calcjax.gradient(lambda z: inst.f_data(z, data), x))
    start = time.perf_counter()
    try:
        grad.lower(inst.x0, inst.data).compile()
        err = None
    except Exception as e:  # report and go on: the suites below say more
        err = f"{type(e).__name__}: {str(e)[:200]}"
    row = {"problem": name, "n": n, "pick": seen.get("pick"), "measured": seen.get("measured"),
           "compile_s": round(time.perf_counter() - start, 2), "error": err, "share": share}
    rows.append(row)
    print(row, flush=True)
json.dump({"bytes_limit": limit, "share": share, "rows": rows}, open(sys.argv[1], "w"), indent=1, default=str)
EOF

say "target: jax-vmap-naive / fd-central at n >= 1000 (>= 0.95 wanted); peak at n = 1e6 (<= 1/16 of memory)"
"$PY" - "$OUT" "$STAMP-$DEVICE-gradient" <<'EOF' 2>&1 | tee "$OUT/target.txt"
import json, pathlib, sys
out, run = pathlib.Path(sys.argv[1]), sys.argv[2]
raw = out / "results" / run / "raw.json"
if not raw.is_file():
    sys.exit(f"no gradient run: {raw} is missing (see {out}/gradient.log)")
try:
    share = json.load(open(out / "probe.json"))["share"]
except (OSError, ValueError, KeyError):
    share = None
times, peaks = {}, []
for b in json.load(open(raw))["benchmarks"]:
    e = b["extra_info"]
    if e.get("suite") == "gradient" and e.get("n", 0) >= 1000:
        times[(e["problem"], e["n"], e["dtype"], e["method"])] = b["stats"]["median"]
    if e.get("suite") == "memory":
        peaks.append((e["problem"], e["n"], e["method"], e.get("peak_bytes"), e.get("batch")))
met = True
print(f"{'problem':<11} {'n':>8} {'dtype':<8} {'naive vmap':>12} {'fd-central':>12} {'ratio':>7}")
for (problem, n, dtype, method), fd in sorted(times.items()):
    if method != "fd-central":
        continue
    naive = times.get((problem, n, dtype, "jax-vmap-naive"))
    if naive is None:
        print(f"{problem:<11} {n:>8} {dtype:<8} {'(no row)':>12} {fd * 1e6:>10.1f}us")
        continue
    ratio = naive / fd
    met &= ratio >= 0.95
    flag = "" if ratio >= 0.95 else "  < 0.95"
    print(f"{problem:<11} {n:>8} {dtype:<8} {naive * 1e6:>10.1f}us {fd * 1e6:>10.1f}us {ratio:>7.2f}{flag}")
for problem, n, method, peak, batch in peaks:
    within = None if (peak is None or share is None) else peak <= share
    met &= within is not False
    print(f"memory {problem} n={n} {method}: peak {peak} bytes, share {share}: "
          f"{'within' if within else 'OVER' if within is False else 'unknown'}")
print("TARGET MET" if met and times else "TARGET NOT MET (or no rows)")
EOF
say "done; files in $OUT"
ls -R "$OUT" | head -50
