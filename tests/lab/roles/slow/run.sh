#!/bin/sh
set -eu
echo started >> /var/lib/interlock/slow.log
sleep 2
runs=$(wc -l < /var/lib/interlock/slow.log)
printf '{"slow_runs": %s}\n' "$runs" > "$INTERLOCK_OUTPUTS"
