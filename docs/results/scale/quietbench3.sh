#!/bin/bash
# Issue 17's CPU benchmark targets with the scale run paused and no other job; outputs in /work/scale/bench3/.
P=/tmp/ph
B=/work/scale/bench3
S=/work/shared/bench/sgemm.py
cd /work/main
run() { local name=$1; shift; echo "== $name $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $B/index.txt
  echo "\$ $*" > $B/$name.txt; "$@" >> $B/$name.txt 2>&1; grep "median of\|search / SGEMM\|reaches\|takes" $B/$name.txt >> $B/index.txt; tail -1 $B/$name.txt >> $B/index.txt; }
/work/scale/pause3.sh stop "quietbench3"
run embed-conv4 $P bench embed --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 10 --rounds 4
run embed-conv4-cl $P bench embed --backbone conv4 --image-size 84 --batch 32 --threads 2 --iters 10 --rounds 4 --channels-last
run embed-resnet18 $P bench embed --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --rounds 3
run embed-resnet18-cl $P bench embed --backbone resnet18 --image-size 224 --batch 32 --threads 2 --iters 4 --warmup 1 --rounds 3 --channels-last
run embed-resnet50 $P bench embed --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 4 --warmup 1 --rounds 3
run embed-resnet50-cl $P bench embed --backbone resnet50 --image-size 224 --batch 16 --threads 2 --iters 4 --warmup 1 --rounds 3 --channels-last
run decode $P bench decode --dir /tmp/benchjpg/pil --workers 2 --passes 3 --rounds 3 --quiet-wait 2s --tries 1
run search $P bench search --repeat 5 --tries 1 --quiet-wait 2s --sgemm-script $S
run search-1600 $P bench search --dim 1600 --classes 21962 --repeat 3 --tries 1 --quiet-wait 2s --sgemm-script $S
run predict /usr/bin/time -v $P bench predict --dir /tmp/phfix --sgemm-script $S
/work/scale/pause3.sh cont "quietbench3 done"
echo ALLDONE >> $B/index.txt
