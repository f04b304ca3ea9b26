#!/bin/sh
# Inputs: INTERLOCK_CLUSTER_ADDRESS, INTERLOCK_PUBLIC_ADDRESS, INTERLOCK_HOSTNAME,
# INTERLOCK_ETCD_ENDPOINT, INTERLOCK_POD_CIDR, INTERLOCK_SERVICE_CIDR.
# Idempotent: certificates and tokens are made once and kept.
set -eu
pki=/etc/kubernetes/pki
mkdir -p "$pki" /etc/kubernetes /var/lib/kubernetes
chmod 700 "$pki"
addr=$INTERLOCK_CLUSTER_ADDRESS
public=$INTERLOCK_PUBLIC_ADDRESS
first_service_ip=$(python3 -c "import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))" "$INTERLOCK_SERVICE_CIDR")

if [ ! -f "$pki/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=interlock-kubernetes-ca" \
        -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
fi
if [ ! -f "$pki/apiserver.key" ] || ! openssl x509 -in "$pki/apiserver.crt" -noout -text \
        | grep -q "IP Address:$public"; then
    cat > "$pki/apiserver.cnf" <<CNF
[req]
distinguished_name = dn
[dn]
[ext]
subjectAltName = IP:$addr,IP:$public,IP:127.0.0.1,IP:$first_service_ip,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$INTERLOCK_HOSTNAME
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
CNF
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$pki/apiserver.key" \
        -out "$pki/apiserver.csr" 2>/dev/null
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 3650 -extfile "$pki/apiserver.cnf" -extensions ext \
        -out "$pki/apiserver.crt" 2>/dev/null
fi
if [ ! -f "$pki/kubelet-client.key" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
        -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
    openssl x509 -req -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 3650 -out "$pki/kubelet-client.crt" 2>/dev/null
fi
[ -f "$pki/sa.key" ] || openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
tokens=/etc/kubernetes/tokens.csv
if [ ! -f "$tokens" ]; then
    admin=$(openssl rand -hex 24)
    node=$(openssl rand -hex 24)
    umask 077
    printf '%s,admin,1,"system:masters"\n%s,system:node:interlock,2,"system:nodes"\n' \
        "$admin" "$node" > "$tokens"
    umask 022
fi
admin=$(sed -n 1p "$tokens" | cut -d, -f1)
node=$(sed -n 2p "$tokens" | cut -d, -f1)

kubeconfig() {  # $1: file, $2: token
    umask 077
    cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: $pki/ca.crt}
users:
- name: admin
  user: {token: "$2"}
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC
    umask 022
}
kubeconfig /etc/kubernetes/admin.conf "$admin"

unit() {  # $1: name, $2: command line
    cat > "/etc/systemd/system/$1.service" <<UNIT
[Unit]
Description=$1 (interlock)
After=network-online.target
[Service]
ExecStart=$2
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
UNIT
}
unit kube-apiserver "/usr/local/bin/kube-apiserver \
 --advertise-address=$addr --bind-address=0.0.0.0 --secure-port=6443 \
 --etcd-servers=$INTERLOCK_ETCD_ENDPOINT \
 --service-cluster-ip-range=$INTERLOCK_SERVICE_CIDR \
 --tls-cert-file=$pki/apiserver.crt --tls-private-key-file=$pki/apiserver.key \
 --client-ca-file=$pki/ca.crt --token-auth-file=$tokens \
 --kubelet-client-certificate=$pki/kubelet-client.crt --kubelet-client-key=$pki/kubelet-client.key \
 --kubelet-preferred-address-types=InternalIP,Hostname \
 --service-account-key-file=$pki/sa.pub --service-account-signing-key-file=$pki/sa.key \
 --service-account-issuer=https://kubernetes.default.svc.cluster.local \
 --authorization-mode=RBAC --enable-admission-plugins=NamespaceLifecycle,ServiceAccount \
 --allow-privileged=true"
unit kube-controller-manager "/usr/local/bin/kube-controller-manager \
 --kubeconfig=/etc/kubernetes/admin.conf --bind-address=127.0.0.1 \
 --service-account-private-key-file=$pki/sa.key --root-ca-file=$pki/ca.crt \
 --cluster-signing-cert-file=$pki/ca.crt --cluster-signing-key-file=$pki/ca.key \
 --allocate-node-cidrs=true --cluster-cidr=$INTERLOCK_POD_CIDR --node-cidr-mask-size=24 \
 --service-cluster-ip-range=$INTERLOCK_SERVICE_CIDR --use-service-account-credentials=true \
 --leader-elect=false"
unit kube-scheduler "/usr/local/bin/kube-scheduler \
 --kubeconfig=/etc/kubernetes/admin.conf --bind-address=127.0.0.1 --leader-elect=false"
systemctl daemon-reload
for s in kube-apiserver kube-controller-manager kube-scheduler; do
    systemctl enable "$s.service" >/dev/null 2>&1
    systemctl restart "$s.service"
done
kc="kubectl --kubeconfig=/etc/kubernetes/admin.conf"
tries=0
until $kc get --raw=/readyz >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -le 600 ] || { echo "kube-apiserver never ready" >&2; exit 4; }
    sleep 0.1
done
# The nodes' token: kubelet's and kube-proxy's rights.
$kc apply -f - >/dev/null <<RBAC
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: interlock-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: interlock-node-proxier}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-proxier}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}]
RBAC
echo "control plane ready on $addr:6443"
# Tokens through the environment, never on a command line (ps shows those).
ADDR=$addr PUBLIC=$public NODE_TOKEN=$node ADMIN_TOKEN=$admin CA=$pki/ca.crt python3 - <<'PY'
import json, os
e = os.environ
out, addr, public, node, admin = (e["INTERLOCK_OUTPUTS"], e["ADDR"], e["PUBLIC"],
                                  e["NODE_TOKEN"], e["ADMIN_TOKEN"])
ca, pods = e["CA"], e["INTERLOCK_POD_CIDR"]
json.dump({
    "api_endpoint": f"https://{addr}:6443", "public_endpoint": f"https://{public}:6443",
    "ca_cert": open(ca).read(), "node_token": node, "admin_token": admin,
    "cluster_pod_cidr": pods,
}, open(out, "w"))
PY
