#!/bin/bash
# Issue 17's CPU benchmark targets, 2026-12-07, nothing else running: outputs in docs/results/scale/bench5/.
# Inputs: /tmp/benchjpg/pil from `shared/bench/gen_jpegs.py /tmp/benchjpg/pil 50`; /tmp/bp written by bench predict.
P=${P:-bin/protoherb}
B=docs/results/scale/bench5
S=/work/shared/bench/sgemm.py
mkdir -p $B
run() { local name=$1; shift; echo "== $name $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $B/index.txt
  echo "\$ $*" > $B/$name.txt; "$@" >> $B/$name.txt 2>&1; grep "median of\|search / SGEMM\|reaches\|takes" $B/$name.txt >> $B/index.txt; tail -1 $B/$name.txt >> $B/index.txt; }
run search $P bench search --repeat 5 --tries 1 --quiet-wait 2s --sgemm-script $S
run predict $P bench predict --dir /tmp/bp --sgemm-script $S
run embed-conv4 $P bench embed --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 10 --rounds 4
run embed-conv4-cl $P bench embed --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 10 --rounds 4 --channels-last
run embed-resnet18 $P bench embed --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --rounds 3
run embed-resnet18-cl $P bench embed --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --rounds 3 --channels-last
run embed-resnet50 $P bench embed --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 4 --warmup 1 --rounds 3
run embed-resnet50-cl $P bench embed --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 4 --warmup 1 --rounds 3 --channels-last
run decode $P bench decode --dir /tmp/benchjpg/pil --workers 2 --passes 3 --rounds 3 --quiet-wait 2s --tries 1
run search2 $P bench search --repeat 5 --tries 1 --quiet-wait 2s --sgemm-script $S
run predict2 $P bench predict --dir /tmp/bp --sgemm-script $S
echo ALLDONE >> $B/index.txt
