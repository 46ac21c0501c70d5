#!/bin/bash
# Herbarium 2020 shape end to end on this machine (issue 17). Each stage timed with /usr/bin/time -v.
set -euo pipefail
P=/work/scale/protoherb
D=/work/scale/data
L=/work/scale/logs
mkdir -p $L
stage() { local name=$1; shift; echo "=== $name $(date -u +%FT%TZ)" >> $L/stages.txt
  /usr/bin/time -v -o $L/$name.time "$@" > $L/$name.log 2>&1
  echo "=== $name done $(date -u +%FT%TZ)" >> $L/stages.txt
  df -B1 --output=used /work | tail -1 >> $L/$name.time; }
[ -e /work/scale/model ] || stage model-pretrain $P pretrain --data /tmp/synthtest --run-dir /work/scale/model --steps 300 --image-size 84 --channels-last --eval-every 0 --quiet --threads 2 --seed 1
[ -e $D/solution.csv ] || stage synth $P synth --out $D --species 32094 --genera 3678 --families 310 --max-per-class 1800 --alpha 0.74 --test-per-class 10 --test-fraction 0.3 --size 160 --workers 2
du -sb $D > $L/du-data.txt; find $D -type f | wc -l >> $L/du-data.txt
stage stats-train $P data stats --data $D --split train --quiet
stage stats-test $P data stats --data $D --split test --quiet
for i in 0 1 2 3; do
  JOB_COMPLETION_INDEX=$i stage protos-shard$i $P prototypes --model /work/scale/model --data $D --shards 4 --out /work/scale/protos.safetensors --threads 2 --workers 2 --batch 64 --quiet
done
ls /work/scale/ > $L/ls.txt
stage merge $P prototypes merge --out /work/scale/protos.safetensors /work/scale/protos.shard-*-of-4.safetensors
stage predict $P predict --model /work/scale/model --prototypes /work/scale/protos.safetensors --data $D --out /work/scale/submission.csv --topk-out /work/scale/topk.csv --threads 2 --workers 2 --batch 64 --quiet
stage evaluate $P evaluate --data $D --pred /work/scale/submission.csv --truth $D/solution.csv --topk-file /work/scale/topk.csv --report /work/scale/report
echo ALLDONE >> $L/stages.txt
