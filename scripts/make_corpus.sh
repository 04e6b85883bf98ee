#!/usr/bin/env bash
# Regenerate the committed SmolLM2-135M-Instruct corpus (data/corpus/smollm2/).
#
#   bash scripts/make_corpus.sh            # collect (resumable), then pack
#
# The collector starts the local llama.cpp server (1 CPU thread), appends graded traces
# to $TRACES (resumable: rerun this script to continue an interrupted run); they are then
# graded again into ${TRACES%.jsonl}.graded.jsonl and packed into
# data/corpus/smollm2/corpus.parquet. Raise LIMIT to add items per domain: the
# first LIMIT items of each domain's seeded sample are the same for any larger LIMIT.
set -euo pipefail
cd "$(dirname "$0")/.."

TRACES=${TRACES:-/tmp/smollm2-corpus/traces.jsonl}
LIMIT=${LIMIT:-150}
DOMAINS=synth_mul_1d,synth_add_1d,synth_add_10,synth_sub_1d,synth_mul_10,synth_mul_2x1,synth_add_2d,synth_add_2x1,mmlu_stem,aqua,asdiv,svamp,gsm8k
SENTINEL=${SENTINEL:-.venv/bin/sentinel}

"$SENTINEL" collect \
    --benchmarks "$DOMAINS" --limit "$LIMIT" --seed 0 \
    --temperature 0.5 --top-logprobs 20 --max-tokens 320 \
    --concurrency 2 --n-threads 1 \
    -o "$TRACES"

# grade (again) with the graders of this checkout, so the labels never depend on the
# version that happened to run the collection
"$SENTINEL" grade "$TRACES" -o "${TRACES%.jsonl}.graded.jsonl"

"$SENTINEL" pack "${TRACES%.jsonl}.graded.jsonl" -o data/corpus/smollm2/corpus.parquet \
    --meta "model_file=$(.venv/bin/python -c 'from entropy_sentinel.collect.model_server import find_smollm2_gguf as f; print(f().name)')" \
    --meta "model_sha256=$(.venv/bin/python -c 'from entropy_sentinel.collect.model_server import find_smollm2_gguf as f, sha256; print(sha256(f()))')" \
    --meta "domains=$DOMAINS" --meta "limit=$LIMIT" --meta "seed=0" \
    --meta "temperature=0.5" --meta "top_logprobs=20" --meta "max_tokens=320" \
    --meta "n_threads=1" --meta "command=bash scripts/make_corpus.sh"
