#!/bin/sh
# Inputs: INTERLOCK_CLUSTER_ADDRESS, INTERLOCK_MANAGER_ADDRESS, INTERLOCK_JOIN_TOKEN.
set -eu
state=$(docker info -f '{{.Swarm.LocalNodeState}}')
if [ "$state" != active ]; then
    docker swarm join --token "$INTERLOCK_JOIN_TOKEN" \
        --advertise-addr "$INTERLOCK_CLUSTER_ADDRESS" "$INTERLOCK_MANAGER_ADDRESS"
else
    echo "already in a swarm"
fi
node_id=$(docker info -f '{{.Swarm.NodeID}}')
printf '{"swarm_node_id": "%s"}\n' "$node_id" > "$INTERLOCK_OUTPUTS"
