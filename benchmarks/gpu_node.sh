#!/usr/bin/env bash
# The GPU node's measurements (issue #34) as one prepared command, from the repository root:
#
#   OUT=/path/for/results bash benchmarks/gpu_node.sh            # stages: bench ci (default)
#   STAGES="bench" DEVICE=cpu SMALL=1 bash benchmarks/gpu_node.sh # what CI runs (make ci-device): small, on CPU
#   STAGES="study" STUDY_MIN=8 bash benchmarks/gpu_node.sh        # one walltime piece of the GPU study
#
# Stages (each writes under $OUT and appends its wall time to $OUT/stages.txt):
#   bench  benchmarks/gpu_md.py: ms/step of one 160- and one 640-atom trajectory per architecture (harness vs the
#          bare ASE loop, MTK NPT) and the throughput of 1, 8, 32, 128 batched 160-atom trajectories per engine
#          (ase, torchsim; Langevin NVT) vs one at a time -> $OUT/gpu_md.json, $OUT/gpu_md.log
#   ci     the ci sweep on the device (`harness sweep run protocols/sweeps/ci.yaml --device $DEVICE`) and its
#          report -> $OUT/ci-sweep.log, $OUT/ci-report/
#   study  a piece of protocols/sweeps/study.yaml under --walltime-min $STUDY_MIN (resumable) -> $OUT/study.log
# ARCHS: mace and/or deepmd (default both); ENGINES: ase and/or torchsim (default both).
# WHEELS: a folder of wheels to install first, offline (pip --no-index), for a node that lacks the harness's
# dependencies (`make device-wheels`: device-wheels/mace with TorchSim, device-wheels/deepmd for the ase engine,
# each small enough to travel with this tree); PY: the Python to use (default: .venv/bin/python if present, else
# python3).
# Targets on one H100 (issue #34): one trajectory <= 1.05 x the bare loop; 32 batched >= 20 x one at a time with
# TorchSim (>= 8 x accepted for the ase engine).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-node}
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" -r "$WHEELS/requirements.txt"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the harness from this tree, not installed
fi
DEVICE=${DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
STAGES=${STAGES:-bench ci}
echo "gpu_node: device $DEVICE, stages $STAGES, out $OUT" | tee "$OUT/stages.txt"
"$PY" - <<'EOF' >> "$OUT/stages.txt" 2>&1 || true
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
try:
    from importlib.metadata import version
    print("torch-sim-atomistic", version("torch-sim-atomistic"))
except Exception as exc:
    print("torch-sim-atomistic: not installed", exc)
EOF
stage() { local t=$SECONDS rc=0; "$@" || rc=$?; echo "$1 $2: $((SECONDS - t)) s, exit $rc" >> "$OUT/stages.txt"; return $rc; }
for s in $STAGES; do
  case $s in
    bench)
      if [ "${SMALL:-0}" = 1 ]; then
        # the demo's shipped members (no training or model building: a smoke test of the paths, not timings)
        args=(--steps 3 --batches 1 2 --sizes 160 --preset mini --threads 2
              --mace-model models/demo/mace-OPLS/member-0-seed0
              --deepmd-model models/demo/deepmd-OPLS/member-0-seed0)
      else
        args=(--steps 200 --batches 1 8 32 128 --sizes 160 640 --dtype float32)
      fi
      archs=${ARCHS:-mace deepmd}
      [[ " $archs " == *" mace "* ]] || args+=(--no-mace)
      [[ " $archs " == *" deepmd "* ]] || args+=(--no-deepmd)
      args+=(--engines ${ENGINES:-ase torchsim})
      stage "$PY" benchmarks/gpu_md.py --device "$DEVICE" "${args[@]}" --json "$OUT/gpu_md.json" \
        2>&1 | tee "$OUT/gpu_md.log" | grep -E "atoms|x [0-9]" ;;
    ci)
      stage "$PY" -m harness.cli.main sweep run protocols/sweeps/ci.yaml -w "$OUT/ci-ws" --device "$DEVICE" \
        > "$OUT/ci-sweep.log" 2>&1
      stage "$PY" -m harness.cli.main report --workspace "$OUT/ci-ws" --output "$OUT/ci-report" >> "$OUT/ci-sweep.log" 2>&1
      tail -3 "$OUT/ci-sweep.log" ;;
    study)
      rc=0
      stage "$PY" -m harness.cli.main sweep run protocols/sweeps/study.yaml -w "${STUDY_WS:-$OUT/study-ws}" \
        --device "$DEVICE" --walltime-min "${STUDY_MIN:-8}" > "$OUT/study.log" 2>&1 || rc=$?
      [ $rc -eq 0 ] || [ $rc -eq 3 ] || { tail -20 "$OUT/study.log"; exit $rc; }  # 3: the walltime left work
      tail -3 "$OUT/study.log" ;;
    *) echo "gpu_node: unknown stage $s (bench, ci, study)"; exit 2 ;;
  esac
done
cat "$OUT/stages.txt"
