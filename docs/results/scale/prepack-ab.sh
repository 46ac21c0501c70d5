#!/bin/bash
# A/B of prepacked convolutions in protoherb alone (--prepack=false against true, alternating, same
# binary, PyTorch not run): output in docs/results/scale/bench9/prepack-ab.txt.
P=${P:-bin/protoherb}
O=docs/results/scale/bench9/prepack-ab.txt
: > $O
ab() { for r in 1 2 3; do for p in false true; do
  echo "\$ $P bench embed $* --prepack=$p --python \"\" (round $r; load $(cut -d' ' -f1-3 /proc/loadavg))" >> $O
  $P bench embed "$@" --prepack=$p --python "" 2>&1 | grep "^protoherb:" >> $O; done; done; }
ab --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 20 --warmup 2 --channels-last
ab --backbone conv4 --image-size 84 --batch 4 --threads 2 --iters 80 --warmup 5 --channels-last
ab --backbone conv4 --image-size 84 --batch 1 --threads 2 --iters 200 --warmup 10 --channels-last
ab --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --channels-last
ab --backbone resnet18 --image-size 224 --batch 1 --threads 2 --iters 30 --warmup 3 --channels-last
ab --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 3 --warmup 1 --channels-last
echo ALLDONE >> $O
