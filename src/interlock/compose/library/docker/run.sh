#!/bin/sh
# Inputs: INTERLOCK_DISTRO, INTERLOCK_IMAGES (one path per line). Writes docker_version.
set -eu
if ! command -v dockerd >/dev/null 2>&1; then
    case "$INTERLOCK_DISTRO" in
        ubuntu|debian) DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io ;;
        fedora|rhel|centos|rocky|almalinux|amzn) dnf install -y -q docker ;;
        *) echo "docker: no package recipe for $INTERLOCK_DISTRO" >&2; exit 3 ;;
    esac
fi
if [ "$(cat /proc/1/comm)" != systemd ]; then
    echo "docker: this node does not run systemd (PID 1 is $(cat /proc/1/comm))" >&2
    exit 3
fi
systemctl enable --now docker.service
tries=0
until docker info >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -le 300 ] || { echo "docker: the daemon never answered" >&2; exit 4; }
    sleep 0.1
done
printf '%s\n' "${INTERLOCK_IMAGES:-}" | while IFS= read -r image; do
    [ -n "$image" ] && docker load -q -i "$image"
done
version=$(docker version -f '{{.Server.Version}}')
printf '{"docker_version": "%s"}\n' "$version" > "$INTERLOCK_OUTPUTS"
