#!/bin/bash
# pause3.sh stop|cont REASON: stop or continue run3.sh and its children, logged.
sig=$( [ "$1" = stop ] && echo STOP || echo CONT )
g=$(pgrep -f "^/bin/bash ./run3.sh" | head -1); [ -n "$g" ] && kill -$sig -- -$g
echo "$1 $(date -u +%FT%TZ) $2" >> /work/scale/logs/pauses.txt
