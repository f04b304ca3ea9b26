#!/bin/sh
# Inputs: INTERLOCK_CLUSTER_ADDRESS, INTERLOCK_POD_CIDRS, INTERLOCK_NODE_ADDRESSES (one
# per line, in the same order).
set -eu
printf '%s\n' "$INTERLOCK_POD_CIDRS" > /tmp/interlock-cidrs
printf '%s\n' "$INTERLOCK_NODE_ADDRESSES" > /tmp/interlock-vias
count=0
while IFS=' ' read -r cidr via; do
    [ -n "$cidr" ] && [ "$via" != "$INTERLOCK_CLUSTER_ADDRESS" ] || continue
    if ip -4 route get "$via" | grep -q " via "; then
        echo "pod-routes: $via is not on this node's network: pods need an overlay there" >&2
        exit 3
    fi
    ip route replace "$cidr" via "$via"
    echo "route $cidr via $via"
    count=$((count + 1))
done <<ROUTES
$(paste -d ' ' /tmp/interlock-cidrs /tmp/interlock-vias)
ROUTES
rm -f /tmp/interlock-cidrs /tmp/interlock-vias
printf '{"routes": %s}\n' "$count" > "$INTERLOCK_OUTPUTS"
