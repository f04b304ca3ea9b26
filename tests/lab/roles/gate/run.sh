#!/bin/sh
echo "gate: fail=$INTERLOCK_FAIL"
if [ "$INTERLOCK_FAIL" = true ]; then echo "gate: refusing, as told" >&2; exit 7; fi
echo '{"gate_passed": true}' > "$INTERLOCK_OUTPUTS"
