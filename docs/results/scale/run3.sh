#!/bin/bash
# The rest of the prototypes at the full shape: shards 1..3 of 4 (Kubernetes Indexed Job shares),
# then `prototypes merge` of the four. Same binary and flags as shard 0 (run2.sh).
set -uo pipefail
P=/work/scale/protoherb
D=/work/scale/data
L=/work/scale/logs
stage() { local name=$1; shift; echo "=== $name $(date -u +%FT%TZ)" >> $L/stages.txt
  /usr/bin/time -v -o $L/$name.time "$@" > $L/$name.log 2>&1
  echo "=== $name done rc=$? $(date -u +%FT%TZ)" >> $L/stages.txt
  df -B1 --output=used /work | tail -1 >> $L/$name.time; }
for i in 1 2 3; do
  JOB_COMPLETION_INDEX=$i stage protos-shard$i $P prototypes --model /work/scale/model --data $D --shards 4 --out /work/scale/protos.safetensors --threads 2 --workers 2 --batch 64 --quiet
done
stage merge $P prototypes merge /work/scale/protos.shard-{0,1,2,3}-of-4.safetensors --out /work/scale/protos.safetensors
echo ALLDONE3 >> $L/stages.txt
