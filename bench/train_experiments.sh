#!/usr/bin/env bash
# train_experiments.sh - issue 7's six training experiments, end to end with the slm CLI, on the
# repository's TinyStories text (data/calib/tinystories_train_1k.txt, decontaminated against
# the validation file first) and measured on data/eval/tinystories_val.txt, never trained on.
#
#   bench/train_experiments.sh                    # every experiment at full budget (~1.5 hours on 2 cores)
#   bench/train_experiments.sh --scale 0.05 -o /tmp/x   # a quick pass (minutes) that checks the pipeline
#   bench/train_experiments.sh --only "1 3 4"     # some of them (2-5 reuse experiment 1's model when present)
#
#   1  tokenizer (BPE) + stories-5m from scratch; validation PPL and bits per byte next to stories260K's
#   2  deep-thin-8m vs wide-shallow-8m: equal block parameters, equal tokens; validation losses
#      (--with-ls adds mobilellm-ls-8m: deep-thin's blocks each run twice, twice the compute)
#   3  a ~1M student distilled from (1) with fkl and with rkl vs the same student on hard labels
#   4  QAT vs post-training quantization at Q4_0 and ternary TQ2_0 on (1) (+ QAT self-distillation)
#   5  the compression grid (bench/compress_report.sh) on (1); prune -> distill -> quantize vs
#      quantize alone at about the same size
#   6  training tokens/s of a GPT-2-small-shaped model at llm.c's CPU settings (B 4, T 64)
#
# Writes OUT/results.md (the tables) and OUT/*.log; bench/TRAINING.md keeps a run's figures.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
slm=${SLM:-$here/build/bin/slm}
shared=${SLM_SHARED_DIR:-$here/../shared}
out=train-experiments
scale=1
only="1 2 3 4 5 6"
threads=0
vocab=2048
ls=

while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift 2 ;;
        --scale) scale=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        --vocab) vocab=$2; shift 2 ;;
        --with-ls) ls=mobilellm-ls-8m; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "train_experiments.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$slm" ] || { echo "train_experiments.sh: no slm binary at $slm (make build, or set SLM)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
results=$out/results.md
want() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
steps() { awk -v s="$1" -v k="$scale" 'BEGIN { n = int(s * k + 0.5); print (n < 2 ? 2 : n) }'; }
log() { echo "== $*" >&2; }
T=(-t "$threads")

val=data/eval/tinystories_val.txt
eval_chunks=$(awk -v k="$scale" 'BEGIN { n = int(2000 * k); print (n < 40 ? 40 : n) }')
# PPL and bits per byte of MODEL on the validation text, 128-token chunks (stories260K's context).
ppl() {
    local m=$1 name=$2
    "$slm" eval perplexity -m "$m" -f "$val" -c 128 --chunks "$eval_chunks" "${T[@]}" > "$out/ppl-$name.log" 2>&1
    local p b
    p=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' "$out/ppl-$name.log")
    b=$(sed -n 's/^bits per byte: \([0-9.]*\).*/\1/p' "$out/ppl-$name.log")
    echo "$p $b"
}
size_mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.2f", b / 1048576 }'; }
# The last "validation loss X" a train/distill run printed.
val_loss() { sed -n 's/.*validation \(loss\|cross-entropy\) \([0-9.]*\).*/\2/p' "$1" | tail -1; }
tok_s() { sed -n 's/.* \([0-9.]*\) tokens\/s$/\1/p' "$1" | tail -1; }

{
    echo "# Training experiments ($(date -u +%Y-%m-%d), scale $scale, $(nproc) cores, $("$slm" --version 2>/dev/null || echo slm))"
    echo
} > "$results"

# ---- data and tokenizer (every experiment uses them) --------------------------------------------
# The TinyStories training text of ../shared/data/corpora (1,102 stories in their case, then 5,544
# lower-cased ones, which repeat the first file's stories lower-cased: dedup keeps the first copy),
# or without ../shared the repository's copy of the first file.
train_txt=$out/train.txt
tok=$out/tok.gguf
if [ ! -f "$train_txt" ]; then
    corpora=$shared/data/corpora
    if [ -f "$corpora/tinystories_train_5k_lowercased.txt" ]; then
        cat "$corpora/tinystories_train_1k.txt" <(echo) "$corpora/tinystories_train_5k_lowercased.txt" > "$out/raw.txt"
    else
        cp data/calib/tinystories_train_1k.txt "$out/raw.txt"
    fi
    log "data: dedup, then decontaminate against the validation text"
    "$slm" data dedup "$out/raw.txt" -o "$out/dedup.txt" "${T[@]}" > "$out/dedup.log" 2>&1
    "$slm" data decontaminate "$out/dedup.txt" --eval "$val" -o "$train_txt" "${T[@]}" \
        > "$out/decontaminate.log" 2>&1
fi
if [ ! -f "$tok" ]; then
    log "tokenizer: BPE, $vocab tokens"
    "$slm" tokenizer train --vocab-size "$vocab" "$train_txt" -o "$tok" > "$out/tokenizer.log" 2>&1
fi
{
    echo "Data: $(grep '^read' "$out/dedup.log" | head -1); dedup $(grep '^kept' "$out/dedup.log" | tr -s ' '); decontamination against $(basename "$val") $(grep '^kept' "$out/decontaminate.log" | tr -s ' ')."
    echo "Tokenizer: $(grep '^vocab' "$out/tokenizer.log" | tr -s ' '); $(grep '^compression' "$out/tokenizer.log" | tr -s ' ')."
    echo
} >> "$results"

common=(--tokenizer "$tok" --data "$train_txt" --no-resume "${T[@]}")
m1=$out/exp1-stories5m.gguf

# ---- 1: from scratch -----------------------------------------------------------------------------
if want 1; then
    s=$(steps 1000)
    log "1: stories-5m from scratch, $s steps"
    "$slm" train --config configs/train/tinystories-5m.json "${common[@]}" --steps "$s" \
        --warmup "$(steps 100)" --val-every "$(steps 100)" --ckpt-every "$(steps 500)" -o "$m1" > "$out/exp1.log" 2>&1
    read -r p1 b1 < <(ppl "$m1" exp1)
    read -r p0 b0 < <(ppl models/stories260K/stories260K.gguf stories260K)
    {
        echo "## 1. From scratch: tokenizer + stories-5m"
        echo
        echo "| model | params | tokens trained | val PPL (own tokenizer) | bits per byte |"
        echo "|---|---|---|---|---|"
        echo "| stories-5m, $s steps | $(sed -n 's/.*, \([0-9]*\) parameters$/\1/p' "$out/exp1.log") | $(sed -n 's/^steps [0-9]*, tokens \([0-9]*\).*/\1/p' "$out/exp1.log") | $p1 | $b1 |"
        echo "| stories260K (Karpathy) | 260K | (full TinyStories) | $p0 | $b0 |"
        echo
        echo "Training: $(tail -4 "$out/exp1.log" | grep '^steps')"
        echo
    } >> "$results"
fi

# ---- 2: deep-thin vs wide-shallow ------------------------------------------------------------------
if want 2; then
    s=$(steps 300)
    echo "## 2. Deep-thin vs wide-shallow (equal block parameters, equal tokens: $s steps)" >> "$results"
    echo >> "$results"
    echo "| config | layers x width | params | val loss | val PPL | tokens/s |" >> "$results"
    echo "|---|---|---|---|---|---|" >> "$results"
    for c in deep-thin-8m wide-shallow-8m $ls; do
        log "2: $c, $s steps"
        "$slm" train --config configs/train/$c.json "${common[@]}" --steps "$s" --warmup "$(steps 50)" \
            --val-every "$(steps 100)" --ckpt-every "$(steps 250)" -o "$out/exp2-$c.gguf" > "$out/exp2-$c.log" 2>&1
        read -r p b < <(ppl "$out/exp2-$c.gguf" "exp2-$c")
        shape=$(sed -n 's/^model: [^,]*, \([0-9]*\) layers x \([0-9]*\) wide.*/\1 x \2/p' "$out/exp2-$c.log")
        np=$(sed -n 's/.*, \([0-9]*\) parameters$/\1/p' "$out/exp2-$c.log")
        echo "| $c | $shape | $np | $(val_loss "$out/exp2-$c.log") | $p | $(tok_s "$out/exp2-$c.log") |" >> "$results"
    done
    echo >> "$results"
fi

if { want 3 || want 4 || want 5; } && [ ! -f "$m1" ]; then
    echo "train_experiments.sh: experiments 3-5 need experiment 1's model $m1 (run --only 1 first)" >&2
    exit 2
fi

# ---- 3: distillation -------------------------------------------------------------------------------
if want 3; then
    s=$(steps 300)
    student=configs/train/student-1m.json
    echo "## 3. Distillation into a ~1M student ($s steps each, same data and batch)" >> "$results"
    echo >> "$results"
    echo "| student trained with | val PPL | bits per byte |" >> "$results"
    echo "|---|---|---|" >> "$results"
    log "3: hard labels"
    "$slm" train --config "$student" "${common[@]}" --steps "$s" -o "$out/exp3-hard.gguf" > "$out/exp3-hard.log" 2>&1
    read -r p b < <(ppl "$out/exp3-hard.gguf" exp3-hard)
    echo "| hard labels (cross-entropy) | $p | $b |" >> "$results"
    for loss in fkl rkl; do
        log "3: $loss"
        "$slm" distill --teacher "$m1" --student "$student" --loss "$loss" --data "$train_txt" --no-resume "${T[@]}" \
            --steps "$s" -o "$out/exp3-$loss.gguf" > "$out/exp3-$loss.log" 2>&1
        read -r p b < <(ppl "$out/exp3-$loss.gguf" "exp3-$loss")
        echo "| distilled, $loss | $p | $b |" >> "$results"
    done
    echo >> "$results"
fi

# ---- 4: QAT vs PTQ --------------------------------------------------------------------------------
if want 4; then
    s=$(steps 150)
    echo "## 4. QAT vs post-training quantization of (1) (QAT: $s steps from (1))" >> "$results"
    echo >> "$results"
    echo "| type | method | size MiB | val PPL | bits per byte |" >> "$results"
    echo "|---|---|---|---|---|" >> "$results"
    read -r p b < <(ppl "$m1" exp4-f32)
    echo "| F32 | (1) as trained | $(size_mib "$m1") | $p | $b |" >> "$results"
    log "4: F32, the same $s steps of plain training (the budget QAT gets)"
    "$slm" train --init "$m1" --data "$train_txt" --no-resume "${T[@]}" --steps "$s" --lr 2e-4 \
        --warmup "$(steps 20)" --wd 0 -o "$out/exp4-f32more.gguf" > "$out/exp4-f32more.log" 2>&1
    read -r p b < <(ppl "$out/exp4-f32more.gguf" exp4-f32more)
    echo "| F32 | (1) + $s steps | $(size_mib "$out/exp4-f32more.gguf") | $p | $b |" >> "$results"
    for type in Q4_0 TQ2_0; do
        "$slm" quantize --pure "$out/exp4-f32more.gguf" "$out/exp4-ptq2-$type.gguf" "$type" > "$out/exp4-ptq2-$type.log" 2>&1
        read -r p b < <(ppl "$out/exp4-ptq2-$type.gguf" "exp4-ptq2-$type")
        echo "| $type | (1) + $s steps, then round to nearest | $(size_mib "$out/exp4-ptq2-$type.gguf") | $p | $b |" >> "$results"
        log "4: $type PTQ"
        "$slm" quantize --pure "$m1" "$out/exp4-ptq-$type.gguf" "$type" > "$out/exp4-ptq-$type.log" 2>&1
        read -r p b < <(ppl "$out/exp4-ptq-$type.gguf" "exp4-ptq-$type")
        echo "| $type | post-training (round to nearest) | $(size_mib "$out/exp4-ptq-$type.gguf") | $p | $b |" >> "$results"
        log "4: $type QAT"
        "$slm" train --init "$m1" --data "$train_txt" --no-resume "${T[@]}" --qat "$type" --steps "$s" --lr 2e-4 \
            --warmup "$(steps 20)" --wd 0 -o "$out/exp4-qat-$type.gguf" > "$out/exp4-qat-$type.log" 2>&1
        read -r p b < <(ppl "$out/exp4-qat-$type.gguf" "exp4-qat-$type")
        echo "| $type | QAT (straight-through) | $(size_mib "$out/exp4-qat-$type.gguf") | $p | $b |" >> "$results"
        log "4: $type QAT self-distillation"
        "$slm" train --init "$m1" --data "$train_txt" --no-resume "${T[@]}" --qat "$type" --qat-distill --steps "$s" \
            --lr 2e-4 --warmup "$(steps 20)" --wd 0 -o "$out/exp4-qatkd-$type.gguf" > "$out/exp4-qatkd-$type.log" 2>&1
        read -r p b < <(ppl "$out/exp4-qatkd-$type.gguf" "exp4-qatkd-$type")
        echo "| $type | QAT + self-distillation (BitDistiller) | $(size_mib "$out/exp4-qatkd-$type.gguf") | $p | $b |" >> "$results"
    done
    echo >> "$results"
fi

# ---- 5: compression grid and P-KD-Q ----------------------------------------------------------------
if want 5; then
    log "5: compression grid"
    bash bench/compress_report.sh -m "$m1" -o "$out/exp5-grid" --chunks "$eval_chunks" -t "$threads" \
        --types "Q4_0 Q4_K Q3_K Q2_K" > "$out/exp5-grid.log" 2>&1
    s=$(steps 300)
    log "5: prune -> distill -> quantize"
    "$slm" prune "$m1" "$out/exp5-pruned.gguf" --structured ffn --ratio 0.5 -f "$train_txt" "${T[@]}" \
        > "$out/exp5-prune.log" 2>&1
    "$slm" distill --teacher "$m1" --student "$out/exp5-pruned.gguf" --loss fkl --data "$train_txt" --no-resume "${T[@]}" \
        --steps "$s" --lr 5e-4 -o "$out/exp5-pruned-kd.gguf" > "$out/exp5-kd.log" 2>&1
    "$slm" quantize --pure "$out/exp5-pruned-kd.gguf" "$out/exp5-pkdq-Q4_0.gguf" Q4_0 > "$out/exp5-q.log" 2>&1
    "$slm" quantize --pure "$out/exp5-pruned.gguf" "$out/exp5-pq-Q4_0.gguf" Q4_0 >> "$out/exp5-q.log" 2>&1
    {
        echo "## 5. Compression of (1)"
        echo
        echo "The grid (\`bench/compress_report.sh\`):"
        echo
        cat "$out/exp5-grid/report.md"
        echo
        echo "Prune -> distill -> quantize ($s distillation steps) vs quantize alone at about the same size:"
        echo
        echo "| pipeline | size MiB | val PPL | bits per byte |"
        echo "|---|---|---|---|"
    } >> "$results"
    for v in pkdq-Q4_0 pq-Q4_0; do
        read -r p b < <(ppl "$out/exp5-$v.gguf" "exp5-$v")
        case $v in pkdq-Q4_0) what="FFN pruned 50% -> distilled (fkl) -> Q4_0" ;; *) what="FFN pruned 50% -> Q4_0 (no distillation)" ;; esac
        echo "| $what | $(size_mib "$out/exp5-$v.gguf") | $p | $b |" >> "$results"
    done
    for type in Q3_K Q2_K; do
        "$slm" quantize "$m1" "$out/exp5-q-$type.gguf" "$type" >> "$out/exp5-q.log" 2>&1
        read -r p b < <(ppl "$out/exp5-q-$type.gguf" "exp5-q-$type")
        echo "| $type alone (llama.cpp mixture) | $(size_mib "$out/exp5-q-$type.gguf") | $p | $b |" >> "$results"
    done
    echo >> "$results"
fi

# ---- 6: training speed ---------------------------------------------------------------------------
if want 6; then
    log "6: gpt2-small, B 4, T 64"
    "$slm" train --config configs/train/gpt2-small-speed.json --data "$train_txt" --no-resume "${T[@]}" \
        --steps "$(steps 10)" > "$out/exp6.log" 2>&1
    {
        echo "## 6. Training speed, GPT-2-small shape (B 4, T 64, as llm.c's train_gpt2.c CPU demo)"
        echo
        echo "$(grep '^model:' "$out/exp6.log" | head -1)"
        echo
        echo "slm: $(tok_s "$out/exp6.log") tokens/s on $(nproc) cores ($(grep -c ^processor /proc/cpuinfo) logical)."
        echo
    } >> "$results"
fi

echo "wrote $results" >&2
