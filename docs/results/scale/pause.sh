#!/bin/bash
# pause.sh stop|cont REASON: stop or continue the scale run (process group 12854, and run2.sh's), logged.
sig=$( [ "$1" = stop ] && echo STOP || echo CONT )
kill -$sig -- -12854 2>/dev/null
g=$(pgrep -f "^/bin/bash ./run2.sh" | head -1); [ -n "$g" ] && kill -$sig -- -$g
echo "$1 $(date -u +%FT%TZ) $2" >> /work/scale/logs/pauses.txt
