#!/bin/bash
# After run3.sh (shards 1-3 and the merge): predict against all 32,094 species' prototypes and
# evaluate, with the binary of this session's HEAD (the search unchanged since shard 0's predict).
set -uo pipefail
P=/work/scale/protoherb-new
D=/work/scale/data
L=/work/scale/logs
stage() { local name=$1; shift; echo "=== $name $(date -u +%FT%TZ)" >> $L/stages.txt
  /usr/bin/time -v -o $L/$name.time "$@" > $L/$name.log 2>&1
  echo "=== $name done rc=$? $(date -u +%FT%TZ)" >> $L/stages.txt
  df -B1 --output=used /work | tail -1 >> $L/$name.time; }
while ! grep -q ALLDONE3 $L/stages.txt; do sleep 10; done
stage predict-all $P predict --model /work/scale/model --prototypes /work/scale/protos.safetensors --data $D --out /work/scale/submission-all.csv --topk-out /work/scale/topk-all.csv --threads 2 --workers 2 --batch 64 --quiet
stage evaluate-all $P evaluate --data $D --pred /work/scale/submission-all.csv --truth $D/solution.csv --topk-file /work/scale/topk-all.csv --report /work/scale/report-all
echo ALLDONE4 >> $L/stages.txt
