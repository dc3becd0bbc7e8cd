#!/usr/bin/env bash
# One GPU, about 8 minutes: packed-training throughput (K = 1, 4, 16, 64; vmap and loop), the
# fraction of the device's peak FLOP/s the best pack reaches, the projected time of the full
# study from this fresh measurement, the data at device speed (a pack's batches drawn on the
# host vs gathered from the dataset's grid in the device's memory) and the validation of the
# precision and execution options against fp32 (bench/precision_check.py, within a time
# budget). Run from a clone with the project installed:
#
#     bash bench/gpu_check.sh                 # on the GPU machine; writes bench/results/
#     bash bench/gpu_check.sh --device cpu    # dry mode on a CPU: same path, tiny sizes, writes
#                                             # to a temporary folder, not bench/results/
#
# Writes bench/results/gpu_<device name>.txt (everything printed) and merges the rows into
# bench/results/throughput.json, which `benchmark run SPEC --dry-run --estimate` reads.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
if [[ $# -gt 0 ]]; then
    if [[ $# -eq 2 && $1 == --device && ($2 == cuda || $2 == cpu) ]]; then
        device=$2
    else
        echo "usage: bash bench/gpu_check.sh [--device cuda|cpu]" >&2
        exit 2
    fi
fi
py=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [[ $device == cuda ]]; then
    if ! name=$("$py" -c "import torch, sys; torch.cuda.is_available() or sys.exit(1); print(torch.cuda.get_device_name(0))" 2>/dev/null); then
        echo "error: no CUDA device visible to torch (torch.cuda.is_available() is False); run this on a GPU machine, or pass --device cpu for a dry run" >&2
        exit 2
    fi
    kind="cuda:$name"
    packs=1,4,16,64 steps=20 warmup=5 strategies=vmap,loop
    data_pack=64 data_opts="--seconds 1"
    precision="--steps 300 --options tf32,cudagraphs,bf16,channels_last --budget-s 200"
    results=bench/results
else
    name=cpu kind=cpu-1thread
    packs=1,2 steps=2 warmup=1 strategies=loop
    data_pack=2 data_opts="--seconds 0.05 --small-grid"
    precision="--steps 4 --window 2 --methods beta_vae --options bf16"
    results=$(mktemp -d)
fi
table=$results/throughput.json
slug=$(tr -c 'A-Za-z0-9._-' '_' <<<"$name" | sed 's/_*$//')
report=$results/gpu_$slug.txt

{
    echo "# bash bench/gpu_check.sh --device $device   $(date -u +%Y-%m-%dT%H:%MZ)  commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "# $name; torch $("$py" -c 'import torch; print(torch.__version__)'); $(getconf _NPROCESSORS_ONLN) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "## packed training (bench/train_speed.py --pack $packs --device $device --strategies $strategies)"
    "$py" bench/train_speed.py --pack "$packs" --device "$device" --strategies "$strategies" \
        --steps "$steps" --warmup "$warmup" --out "$table"
    echo
    echo "## fraction of peak"
    best_k=$("$py" - "$table" "$kind" "$name" <<'EOF'
import sys
from benchmark.cost import load_throughput, peak_report
text, k = peak_report(load_throughput(sys.argv[1]), sys.argv[2], sys.argv[3])
print(text, file=sys.stderr)  # to the report; stdout carries only K
print(k)
EOF
    )
    echo
    echo "## projected full study (benchmark run study_specs/unsupervised.yaml --dry-run --estimate --pack $best_k)"
    "$py" -m benchmark.cli run study_specs/unsupervised.yaml --dry-run --estimate --pack "$best_k" \
        --throughput "$table" --gpus 1 --cpus-per-gpu "$(getconf _NPROCESSORS_ONLN)"
    echo
    echo "## data at device speed (bench/data_speed.py --device $device --pack $data_pack $data_opts)"
    # shellcheck disable=SC2086  # data_opts is a list of options
    "$py" bench/data_speed.py --device "$device" --pack "$data_pack" $data_opts
    echo
    echo "## precision and execution options against fp32 (bench/precision_check.py $precision)"
    # shellcheck disable=SC2086  # $precision is a list of arguments
    "$py" bench/precision_check.py --device "$device" $precision --out "$results/precision_$slug.txt"
} 2>&1 | tee "$report"
echo "wrote $report, $results/precision_$slug.txt and $table"
