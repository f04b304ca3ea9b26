#!/bin/sh
# Inputs: INTERLOCK_CLUSTER_ADDRESS, INTERLOCK_NODE, INTERLOCK_API_ENDPOINT,
# INTERLOCK_CA_CERT, INTERLOCK_NODE_TOKEN, INTERLOCK_CLUSTER_POD_CIDR, INTERLOCK_PAUSE_IMAGE.
set -eu
addr=$INTERLOCK_CLUSTER_ADDRESS
node=$INTERLOCK_NODE
k=/var/lib/kubelet
mkdir -p "$k" /var/lib/kube-proxy /etc/kubernetes/pki /etc/cni/net.d
printf '%s\n' "$INTERLOCK_CA_CERT" > /etc/kubernetes/pki/ca.crt
umask 077
cat > "$k/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster: {server: "$INTERLOCK_API_ENDPOINT", certificate-authority: /etc/kubernetes/pki/ca.crt}
users:
- name: node
  user: {token: "$INTERLOCK_NODE_TOKEN"}
contexts:
- name: node
  context: {cluster: cluster, user: node}
current-context: node
KC
umask 022
driver=$(docker info -f '{{.CgroupDriver}}')
# Where no cgroup controller reaches the node (a container-like VM, as on the lab), QoS
# cgroups have nothing to set and kubelet fails on restart writing them: go without.
qos=true
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -z "$(cat /sys/fs/cgroup/cgroup.controllers)" ]; then
    qos=false
    echo "no cgroup controllers on this node: kubelet without QoS cgroups"
fi
cat > "$k/config.yaml" <<CONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: $driver
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
cgroupsPerQOS: $qos
enforceNodeAllocatable: $([ "$qos" = true ] && echo '[pods]' || echo '[]')
CONF
cat > /var/lib/kube-proxy/config.yaml <<CONF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $k/kubeconfig}
mode: iptables
clusterCIDR: $INTERLOCK_CLUSTER_POD_CIDR
hostnameOverride: $node
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
CONF
cat > /etc/systemd/system/kubelet.service <<UNIT
[Unit]
Description=kubelet (interlock)
After=docker.service
Requires=docker.service
[Service]
ExecStart=/usr/local/bin/kubelet --config=$k/config.yaml --kubeconfig=$k/kubeconfig \
 --container-runtime=docker --network-plugin=cni --cni-bin-dir=/usr/lib/cni \
 --cni-conf-dir=/etc/cni/net.d --pod-infra-container-image=$INTERLOCK_PAUSE_IMAGE \
 --node-ip=$addr --hostname-override=$node
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
UNIT
cat > /etc/systemd/system/kube-proxy.service <<UNIT
[Unit]
Description=kube-proxy (interlock)
After=network-online.target
[Service]
ExecStart=/usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/config.yaml
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
UNIT
sysctl -qw net.ipv4.ip_forward=1
systemctl daemon-reload
systemctl enable kubelet.service kube-proxy.service >/dev/null 2>&1
systemctl restart kubelet.service kube-proxy.service
kc="kubectl --kubeconfig=$k/kubeconfig"
tries=0
cidr=""
until [ -n "$cidr" ]; do
    cidr=$($kc get node "$node" -o 'jsonpath={.spec.podCIDR}' 2>/dev/null || true)
    tries=$((tries + 1))
    [ "$tries" -le 900 ] || { echo "$node never got a pod CIDR (registered?)" >&2; exit 4; }
    [ -n "$cidr" ] || sleep 0.1
done
cat > /etc/cni/net.d/10-interlock.conflist <<CNI
{
  "cniVersion": "0.4.0",
  "name": "interlock",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "subnet": "$cidr", "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
# Pods keep their addresses between nodes (routes, see pod-routes) and leave the cluster
# masqueraded; Docker's FORWARD policy (DROP) lets the cluster's pod traffic through.
cluster=$INTERLOCK_CLUSTER_POD_CIDR
rule() {  # $1: table, then the rule: added once
    table=$1; shift
    iptables -t "$table" -C "$@" 2>/dev/null || iptables -t "$table" -I "$@"
}
rule nat POSTROUTING -s "$cidr" ! -d "$cluster" -j MASQUERADE
rule filter FORWARD -s "$cluster" -j ACCEPT
rule filter FORWARD -d "$cluster" -j ACCEPT
tries=0
until [ "$($kc get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
    tries=$((tries + 1))
    [ "$tries" -le 1200 ] || { echo "$node never Ready" >&2; exit 4; }
    sleep 0.1
done
echo "$node Ready, pods on $cidr"
printf '{"pod_cidr": "%s", "node_address": "%s"}\n' "$cidr" "$addr" > "$INTERLOCK_OUTPUTS"
