#!/bin/bash
# The rest of the scale run after synth: stats, prototypes shard 0 of 4 (a Kubernetes Indexed Job's
# share; the other three are the same work), predict with those prototypes, evaluate.
set -uo pipefail
P=/work/scale/protoherb
D=/work/scale/data
L=/work/scale/logs
stage() { local name=$1; shift; echo "=== $name $(date -u +%FT%TZ)" >> $L/stages.txt
  /usr/bin/time -v -o $L/$name.time "$@" > $L/$name.log 2>&1
  echo "=== $name done rc=$? $(date -u +%FT%TZ)" >> $L/stages.txt
  df -B1 --output=used /work | tail -1 >> $L/$name.time; }
while pgrep -f "protoherb synth --out /work/scale/data" > /dev/null; do sleep 5; done
echo "=== synth finished (seen) $(date -u +%FT%TZ)" >> $L/stages.txt
du -sb $D > $L/du-data.txt; find $D -type f | wc -l >> $L/du-data.txt
stage stats-train $P data stats --data $D --split train --quiet
stage stats-test $P data stats --data $D --split test --quiet
JOB_COMPLETION_INDEX=0 stage protos-shard0 $P prototypes --model /work/scale/model --data $D --shards 4 --out /work/scale/protos.safetensors --threads 2 --workers 2 --batch 64 --quiet
stage predict $P predict --model /work/scale/model --prototypes /work/scale/protos.shard-0-of-4.safetensors --data $D --out /work/scale/submission.csv --topk-out /work/scale/topk.csv --threads 2 --workers 2 --batch 64 --quiet
stage evaluate $P evaluate --data $D --pred /work/scale/submission.csv --truth $D/solution.csv --topk-file /work/scale/topk.csv --report /work/scale/report
echo ALLDONE >> $L/stages.txt
