"""A tiny container image for tests and demos, built without dockerd or a registry.

`interlock-lab/busybox:1` is Debian's static busybox (/bin/busybox, /bin/sh linked to
it) serving /www on port 80 with `busybox httpd`: a static index page, and
/cgi-bin/hostname answering with the container's hostname (which replica answered).
`write_archive` writes it in `docker save` format (manifest.json, the image config
with its layer's diff id, one layer tar), for `docker load` on a node with no
registry in reach. The archive is the same byte for byte on every run.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

from interlock.errors import ExitCode, InterlockError

TAG = "interlock-lab/busybox:1"
# The same layer as a pod's infrastructure container (kubelet's --pod-infra-container-image):
# it only holds the pod's namespaces, so it sleeps.
PAUSE_TAG = "interlock-lab/pause:1"
PAUSE_CMD = ["/bin/busybox", "sleep", "2147483647"]
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
# -v: each request's client and status on stderr, so `docker logs`/`kubectl logs` show them.
CMD = ["/bin/busybox", "httpd", "-f", "-v", "-p", "80", "-h", "/www"]
CREATED = "2026-01-01T00:00:00Z"
INDEX = """\
<!doctype html>
<html><head><title>interlock-lab/busybox:1</title></head>
<body><h1>interlock-lab/busybox:1</h1>
<p>Served by busybox httpd. This page is static: it does not know the hostname of the
container serving it (<a href="/cgi-bin/hostname">/cgi-bin/hostname</a> does).</p>
</body></html>
"""
HOSTNAME_CGI = """\
#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
/bin/busybox hostname
"""


class ImageError(InterlockError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.ENVIRONMENT)


@dataclass(frozen=True)
class Archive:
    path: Path
    tag: str
    image_id: str  # sha256:<config digest>, as `docker images --no-trunc` shows it
    diff_id: str
    bytes: int


def _static_elf(data: bytes) -> bool:
    """An ELF64 executable with no program interpreter (statically linked)?"""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    order = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(order + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def _busybox() -> bytes:
    try:
        data = BUSYBOX.read_bytes()
    except OSError as e:
        raise ImageError(
            f"{BUSYBOX}: {e.strerror}; install Debian's busybox-static (./install.sh)"
        ) from None
    if not _static_elf(data):
        raise ImageError(f"{BUSYBOX} is not statically linked: install busybox-static")
    return data


def _add(tar: tarfile.TarFile, name: str, mode: int, data: bytes | None = None,
         link: str | None = None) -> None:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        tar.addfile(info)
    elif data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def layer() -> bytes:
    """The image's one layer, as a tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in ("bin", "etc", "tmp", "www", "www/cgi-bin"):
            _add(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add(tar, "bin/busybox", 0o755, _busybox())
        _add(tar, "bin/sh", 0o777, link="busybox")
        _add(tar, "etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n")
        _add(tar, "etc/group", 0o644, b"root:x:0:\n")
        _add(tar, "www/index.html", 0o644, INDEX.encode())
        _add(tar, "www/cgi-bin/hostname", 0o755, HOSTNAME_CGI.encode())
    return buf.getvalue()


def config(diff_id: str, tag: str = TAG, cmd: list[str] = CMD) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": cmd,
            **({"ExposedPorts": {"80/tcp": {}}} if tag == TAG else {}),
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": tag},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "interlock lab image (busybox-static)"}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_archive(out: Path) -> Archive:
    """Write the image as a `docker load`-able archive at `out`."""
    data = layer()
    layer_hex = hashlib.sha256(data).hexdigest()
    diff_id = f"sha256:{layer_hex}"
    configs = [(t, config(diff_id, t, c)) for t, c in ((TAG, CMD), (PAUSE_TAG, PAUSE_CMD))]
    manifest = [
        {"Config": f"{hashlib.sha256(c).hexdigest()}.json", "RepoTags": [t],
         "Layers": [f"{layer_hex}/layer.tar"]}
        for t, c in configs
    ]  # fmt: skip
    cfg_hex = hashlib.sha256(configs[0][1]).hexdigest()
    legacy = {"id": layer_hex, "created": CREATED, "os": "linux"}
    files = [
        *((f"{hashlib.sha256(c).hexdigest()}.json", c) for _, c in configs),
        (f"{layer_hex}/VERSION", b"1.0"),
        (f"{layer_hex}/json", json.dumps(legacy, sort_keys=True).encode()),
        (f"{layer_hex}/layer.tar", data),
        ("manifest.json", json.dumps(manifest, separators=(",", ":")).encode()),
        (
            "repositories",
            json.dumps(
                {r: {v: layer_hex} for r, v in (t.rsplit(":", 1) for t, _ in configs)}
            ).encode(),
        ),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, layer_hex, 0o755)
        for name, body in files:
            _add(tar, name, 0o644, body)
    tmp.rename(out)
    return Archive(out, TAG, f"sha256:{cfg_hex}", diff_id, out.stat().st_size)
