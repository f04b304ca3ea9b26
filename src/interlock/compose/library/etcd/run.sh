#!/bin/sh
# Inputs: INTERLOCK_DISTRO, INTERLOCK_NODE. Loopback only: nothing but the API server on
# this node talks to it, so no certificates are needed.
set -eu
if ! command -v etcd >/dev/null 2>&1; then
    case "$INTERLOCK_DISTRO" in
        ubuntu|debian) DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server ;;
        *) echo "etcd: no package recipe for $INTERLOCK_DISTRO" >&2; exit 3 ;;
    esac
fi
cat > /etc/default/etcd <<CONF
ETCD_NAME=$INTERLOCK_NODE
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:2379
ETCD_LISTEN_PEER_URLS=http://127.0.0.1:2380
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:2380
ETCD_INITIAL_CLUSTER=$INTERLOCK_NODE=http://127.0.0.1:2380
CONF
systemctl enable etcd.service
systemctl restart etcd.service
tries=0
until curl -fsS http://127.0.0.1:2379/health 2>/dev/null | grep -q '"health":"true"'; do
    tries=$((tries + 1))
    [ "$tries" -le 300 ] || { echo "etcd: never healthy" >&2; exit 4; }
    sleep 0.1
done
echo '{"etcd_endpoint": "http://127.0.0.1:2379"}' > "$INTERLOCK_OUTPUTS"
