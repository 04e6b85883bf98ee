#!/usr/bin/env bash
# The exact commands that produced the committed reports under docs/results/.
#
#   bash scripts/run_evaluation.sh            # everything (several hours on 2 cores)
#   JOBS=1 bash scripts/run_evaluation.sh     # one process
#
# Every step caches each (configuration, group) task in RESULTS_DIR/cache/ (with the
# presets' per-trace scores), so an interrupted run resumes where it stopped; the
# reports are rewritten at the end. The transfer relation shipped with the package
# (src/entropy_sentinel/estimator/data/transfer.json) is fitted on these runs by
# scripts/transfer_relation.py, and the honest interval report (leave-one-domain-out
# relations, the label loop) by scripts/interval_report.py.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
SENTINEL=(nice -n 10 .venv/bin/sentinel)

# ----------------------------------------------------------------- SmolLM2-135M
CORPUS=data/corpus/smollm2/corpus.parquet
OUT=docs/results/smollm2
# 1. Headline: the three presets (what `sentinel fit` ships) and the baselines (ATC and AC
#    on each of the paper's nine scores, DoC on lntp and mtp): every group with k = 1 (13)
#    and k = 2 (78), then a seeded sample of 12 groups per k for k = 3 and 4.
"${SENTINEL[@]}" evaluate "$CORPUS" --k 1-2 --baselines atc,ac,doc -o "$OUT" --jobs "$JOBS" --quiet
"${SENTINEL[@]}" evaluate "$CORPUS" --k 3-4 --max-groups 12 --baselines atc,ac,doc \
    -o "$OUT" --jobs "$JOBS" --quiet
# 2. One factor at a time around the paper's configuration (classifier family; feature
#    set, entropy mode; no calibration; no balancing): a seeded sample of 8 groups with
#    k = 2 plus the two named groups.
"${SENTINEL[@]}" evaluate "$CORPUS" --k 2 --max-groups 8 --presets paper \
    --families lr,rf,mlp,hgb --features profile10 --baselines none \
    --configs rf.profile.isotonic.bal,rf.sea.isotonic.bal,rf.profile+baselines.isotonic.bal,rf.profile10.uncal.bal,rf.profile10.isotonic.unbal,rf.profile10@topk_tail.isotonic.bal \
    -o "$OUT" --jobs "$JOBS" --quiet
"${SENTINEL[@]}" evaluate-report "$OUT" --title "SmolLM2-135M-Instruct, 13 domains" \
    --highlight paper,atc.max_entropy,sentinel,sentinel-entropy --notes "$OUT/notes.md"

# ------------------------------------------------------------- Phi-3.5 GSM8K
# One domain: derived slices (question-length and response-length quartiles, and a
# random partition as the no-shift control) play the role of domains. These traces carry
# entropies only: the presets that fit them are sentinel-entropy and paper.
SLICES=${TMPDIR:-/tmp}/phi35-gsm8k-slices.jsonl
.venv/bin/python scripts/phi35_slices.py ../shared/data/phi35-gsm8k/traces.jsonl.gz "$SLICES"
for DIM in qlen rlen random; do
    "${SENTINEL[@]}" evaluate "$SLICES" --by "$DIM" --k 1-3 --baselines atc,ac \
        -o "docs/results/phi35-gsm8k/$DIM" --jobs "$JOBS" --quiet
    "${SENTINEL[@]}" evaluate-report "docs/results/phi35-gsm8k/$DIM" \
        --title "Phi-3.5-mini GSM8K, in-domain slices by $DIM" \
        --highlight paper,atc.max_entropy,sentinel-entropy --notes docs/results/phi35-gsm8k/notes.md
done
# The estimator itself on Phi-3.5: AUROC, Brier, interval coverage, estimation errors.
nice -n 10 .venv/bin/python scripts/phi35_estimator_report.py --halves 10 --repeats 1 \
    --json docs/results/phi35-gsm8k/estimator.json > docs/results/phi35-gsm8k/estimator.md

# ------------------------------------------------- transfer relation, honest intervals
nice -n 10 .venv/bin/python scripts/transfer_relation.py "$CORPUS" "$OUT" \
    --phi35 "$SLICES" docs/results/phi35-gsm8k/qlen docs/results/phi35-gsm8k/rlen \
    docs/results/phi35-gsm8k/random
for PRESET in sentinel sentinel-entropy; do
    nice -n 10 .venv/bin/python scripts/interval_report.py "$CORPUS" "$OUT" \
        --phi35 "$SLICES" docs/results/phi35-gsm8k/qlen docs/results/phi35-gsm8k/rlen \
        docs/results/phi35-gsm8k/random --preset "$PRESET" --k 2 -o docs/results/intervals
done
nice -n 10 .venv/bin/python scripts/phi35_auroc.py --halves 10 \
    --json docs/results/phi35-gsm8k/auroc.json > docs/results/phi35-gsm8k/auroc.txt
