#!/bin/sh
# One GPU run (issue 25): train on a lent GPU for a few minutes and time the generation step there,
# in one command, with everything it needs carried in .gpu/ (git-ignored through .git/info/exclude).
#
# Here, once:   sh training/gpu_run.sh pack CORPUS_DIR [INIT_MODEL_DIR]
#   packs the built corpus (xz), the model to start from (default trained_models/clara-notewise) and
#   the wheels the GPU machine's Python 3.12 lacks (mido, symusic and its needs) into .gpu/.
# There:        sh training/gpu_run.sh run MINUTES [--set SECTION.KEY=VALUE ...]
#   (device tool: carry [".gpu"], timeout_s above MINUTES plus ~3) installs the wheels, unpacks the
#   corpus, trains on cuda for MINUTES (SIGTERM then: the trainer checkpoints and writes model/),
#   and writes under $OUT: weights.pt (float16), config.json, splits.json, metrics.jsonl, train.log
#   and step.json (benchmarks/engine_step.py on the GPU, batch 1 and 16).
# On a CPU, to test it:  GPU_RUN_DEVICE=cpu OUT=/tmp/gpu-out sh training/gpu_run.sh run 1 --set model.emb_size=16 ...
set -eu
cd "$(dirname "$0")/.."
GPU=.gpu
case "${1:-}" in
pack)
    corpus=${2:?usage: gpu_run.sh pack CORPUS_DIR [INIT_MODEL_DIR]}
    init=${3:-trained_models/clara-notewise}
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    rm -rf "$GPU" && mkdir -p "$GPU/wheels" "$GPU/init"
    tar -C "$corpus" -cJf "$GPU/corpus.tar.xz" .
    cp "$init"/config.json "$init"/weights.pt "$GPU/init/"
    [ -f "$init/splits.json" ] && cp "$init/splits.json" "$GPU/init/"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$GPU/wheels" symusic==0.6.0 mido==1.3.3 pySmartDL platformdirs
    du -sh "$GPU"
    ;;
run)
    minutes=${2:?usage: gpu_run.sh run MINUTES [--set ...]}
    shift 2
    out=${OUT:?OUT: where the results go}
    device=${GPU_RUN_DEVICE:-cuda}
    python=${GPU_RUN_PYTHON:-python3}
    if ! $python -c "import mido, symusic" 2>/dev/null; then
        $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$GPU"/wheels/*.whl
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
    rm -rf /tmp/gpu-corpus /tmp/gpu-run && mkdir -p /tmp/gpu-corpus "$out"
    tar -C /tmp/gpu-corpus -xJf "$GPU/corpus.tar.xz"
    status=0
    timeout -s TERM "$((minutes * 60))" $python -m clara_live train --corpus /tmp/gpu-corpus --out /tmp/gpu-run \
        --init "$GPU/init" --set training.device="$device" --set training.batch_size=256 --set training.lr=0.003 \
        --set training.epochs=50 --set training.eval_tokens=400000 --set training.checkpoint_every=500 "$@" \
        > "$out/train.log" 2>&1 || status=$?
    echo "train exit $status (124 or 130: stopped at its time, checkpoint and model/ written)" >> "$out/train.log"
    $python - /tmp/gpu-run/model "$out" <<'PY'
import shutil, sys, torch
src, out = sys.argv[1], sys.argv[2]
state = torch.load(f"{src}/weights.pt", map_location="cpu", weights_only=True)
torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, f"{out}/weights.pt")
for name in ("config.json", "splits.json"):
    try:
        shutil.copy(f"{src}/{name}", f"{out}/{name}")
    except FileNotFoundError:
        pass
PY
    cp /tmp/gpu-run/metrics.jsonl "$out/" 2>/dev/null || true
    $python benchmarks/engine_step.py --model /tmp/gpu-run/model --device "$device" --json "$out/step.json" \
        >> "$out/train.log" 2>&1
    tail -5 "$out/train.log"
    ;;
*)
    echo "usage: gpu_run.sh pack CORPUS_DIR [INIT_MODEL_DIR] | run MINUTES [--set ...]" >&2
    exit 2
    ;;
esac
