#!/usr/bin/env bash
# Install everything interlock and its lab need on Debian 12 (as root), then run
# the main job on the embedded lab. Idempotent: a second run only checks.
#   ./install.sh            install, then bring the lab up and show its sites
#   ./install.sh --no-demo  install only (what CI and `make` use)
set -euo pipefail
cd "$(dirname "$0")"

DEBS=(python3 python3-venv python3-dev gcc libc6-dev make openssh-server openssh-client
      iproute2 util-linux sudo openssl procps ca-certificates nftables
      mariadb-server mariadb-client rabbitmq-server tini  # these four: the lab's OpenStack
      systemd dbus docker.io busybox-static  # nodes that boot systemd; Docker in them
      golang-go etcd-server containernetworking-plugins  # Kubernetes on lab nodes
      chromium chromium-driver  # the web UI's tests run in a real browser
      postgresql-15)  # the state store of several workers (tests and bench start their own)
PY=${PYTHON:-python3}

need=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  new_docker=
  if [[ " ${need[*]} " == *" docker.io "* || " ${need[*]} " == *" etcd-server "* ||
        " ${need[*]} " == *" postgresql-15 "* ]]; then
    new_docker=1
    # Docker and etcd are for the lab's nodes only: they must never start on this host
    # (Docker's daemon would flip the host's ip_forward). Nor Debian's main PostgreSQL cluster:
    # tests and bench start servers of their own (interlock_lab.postgres). policy-rc.d
    # (exit 101) keeps package scripts from starting services; an existing one is the admin's
    # and stays as it is.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n# written by interlock install.sh: no service starts on install\nexit 101\n' \
        > /usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
    fi
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ -n "$new_docker" ]; then
    # Nor at the host's next boot (nodes enable Docker themselves, in their own disk).
    systemctl disable docker.service docker.socket containerd.service etcd.service \
      postgresql.service >/dev/null 2>&1 || true
  fi
fi
# The lab runs its own sshd in every node; the host's own sshd is not needed.
# Nodes that boot systemd share root's inotify allowance with this host (128 by default):
# a few dozen exhaust it and the next one stalls at boot. The lab raises it when it
# starts; this keeps it across reboots (as kind and k3d ask their users to).
if [ ! -f /etc/sysctl.d/60-interlock-lab.conf ]; then
  printf '%s\n' '# interlock lab: systemd nodes share root'"'"'s inotify allowance' \
    'fs.inotify.max_user_instances = 8192' 'fs.inotify.max_user_watches = 524288' \
    > /etc/sysctl.d/60-interlock-lab.conf
  sysctl -q -p /etc/sysctl.d/60-interlock-lab.conf || true
fi

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$PY" -m venv .venv
fi
# Versions are those CI tested: constraints.txt pins every package (and pip).
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "installing Python packages into .venv"
  .venv/bin/pip install -q -c constraints.txt pip
  .venv/bin/pip install -q -c constraints.txt -e '.[lab,dev]'
  touch "$stamp"
fi

# The lab's OpenStack (Keystone, Nova, Neutron, Glance, Placement from PyPI) in a venv of
# its own, with the lab's Nova and Neutron drivers (lab-openstack/).
if [ ! -x .venv-openstack/bin/python ]; then
  echo "creating .venv-openstack"
  "$PY" -m venv .venv-openstack
fi
ostamp=.venv-openstack/.installed
if [ ! -f "$ostamp" ] || [ -n "$(find lab-openstack -newer "$ostamp" -type f -print -quit)" ]; then
  echo "installing OpenStack into .venv-openstack (about a minute)"
  .venv-openstack/bin/pip install -q -c lab-openstack/constraints.txt pip
  .venv-openstack/bin/pip install -q -c lab-openstack/constraints.txt -r lab-openstack/requirements.txt
  .venv-openstack/bin/pip install -q --no-deps --force-reinstall ./lab-openstack
  touch "$ostamp"
fi

# Kubernetes for lab nodes: built once from Debian's source package with Debian's Go
# (minutes), then cached in /var/cache/interlock/kubernetes; found there every later run.
.venv/bin/interlock lab kubernetes

if [ "${1:-}" != "--no-demo" ]; then
  il=.venv/bin/interlock
  $il lab up
  # The main job: one secured node on every lab site, with what each site needed fixed.
  for site in $($il sites --json | .venv/bin/python -c 'import json,sys; print(*(s["site"] for s in json.load(sys.stdin)))'); do
    $il down "demo-$site" >/dev/null 2>&1 || true
    echo
    echo "== interlock up demo-$site --site $site"
    $il up "demo-$site" --site "$site" || true
  done
  echo
  $il ls
  echo
  # Then every lab site scored on behavioural interoperability against the aws site.
  echo "== interlock conform run"
  $il conform run || true
  echo
  echo "Web UI:       .venv/bin/interlock serve, then http://127.0.0.1:8750"
  echo "              (sign in with the token .venv/bin/interlock serve --show-token prints)"
  echo "Log in:       .venv/bin/interlock ssh demo-aws-1"
  echo "Release:      .venv/bin/interlock down --all"
  echo "Stop the lab: .venv/bin/interlock lab down"
fi
