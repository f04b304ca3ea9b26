#!/bin/sh
# Inputs: INTERLOCK_CLUSTER_ADDRESS. Idempotent: an active swarm is kept.
set -eu
addr="$INTERLOCK_CLUSTER_ADDRESS"
state=$(docker info -f '{{.Swarm.LocalNodeState}}')
if [ "$state" != active ]; then
    # Its output holds the join token: not printed.
    docker swarm init --advertise-addr "$addr" --listen-addr "$addr:2377" >/dev/null
    echo "swarm started on $addr:2377"
else
    echo "swarm already active"
fi
token=$(docker swarm join-token -q worker)
node_id=$(docker info -f '{{.Swarm.NodeID}}')
printf '{"swarm_manager_address": "%s:2377", "swarm_worker_token": "%s", "swarm_node_id": "%s"}\n' \
    "$addr" "$token" "$node_id" > "$INTERLOCK_OUTPUTS"
