#!/bin/bash
# Issue 17's forward passes with prepacked convolutions (2026-12-07, nothing else running): outputs in
# docs/results/scale/bench9/. Each run times protoherb's default inference path (folded, prepacked)
# against PyTorch three ways in every round: eager (folded by torch.fx's fuse), the same prepacked
# convolutions (torch.fx rewrite), and torch.jit.optimize_for_inference. B, M and R override the
# output folder, the PyTorch modes and the rounds (bench10/: B=docs/results/scale/bench10
# M="--torch-mode eager" R=5).
P=${P:-bin/protoherb}
B=${B:-docs/results/scale/bench9}
mkdir -p $B
run() { local name=$1; shift; echo "== $name $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $B/index.txt
  echo "\$ $*" > $B/$name.txt; "$@" >> $B/$name.txt 2>&1; grep "median of" $B/$name.txt >> $B/index.txt; tail -1 $B/$name.txt >> $B/index.txt; }
M=${M:---torch-mode eager,prepacked,ofi}
R=${R:-3}
run embed-conv4-cl $P bench embed --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 10 --warmup 1 --rounds $R --channels-last $M
run embed-conv4 $P bench embed --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 10 --warmup 1 --rounds $R $M
run embed-conv4-cl-b4 $P bench embed --backbone conv4 --image-size 84 --batch 4 --threads 2 --iters 40 --warmup 4 --rounds $R --channels-last $M
run embed-resnet18-cl $P bench embed --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --rounds $R --channels-last $M
run embed-resnet18 $P bench embed --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --rounds $R $M
run embed-resnet50-cl $P bench embed --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 3 --warmup 1 --rounds $R --channels-last $M
run embed-resnet50 $P bench embed --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 3 --warmup 1 --rounds $R $M
echo ALLDONE >> $B/index.txt
