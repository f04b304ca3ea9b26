#!/bin/sh
# Inputs: INTERLOCK_BINARIES (node paths, one per line), INTERLOCK_RELEASE_URL.
set -eu
dest=/usr/local/bin
names="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
if [ -n "${INTERLOCK_BINARIES:-}" ]; then
    printf '%s\n' "$INTERLOCK_BINARIES" | while IFS= read -r file; do
        [ -n "$file" ] || continue
        name=$(basename "$file" | sed 's/^[0-9a-f]\{16\}-//')
        install -m 0755 "$file" "$dest/$name.new" && mv "$dest/$name.new" "$dest/$name"
    done
elif [ -n "${INTERLOCK_RELEASE_URL:-}" ]; then
    for name in $names; do
        curl -fsSL -o "$dest/$name.new" "$INTERLOCK_RELEASE_URL/$name"
        chmod 0755 "$dest/$name.new" && mv "$dest/$name.new" "$dest/$name"
    done
else
    echo "kubernetes-binaries: give binaries (files) or release_url" >&2
    exit 3
fi
version=$("$dest/kubelet" --version | awk '{print $2}')
printf '{"kubernetes_version": "%s"}\n' "$version" > "$INTERLOCK_OUTPUTS"
