"""Choosing flavor, image and network from a request's traits, with reasons."""

from __future__ import annotations

from interlock.errors import ExitCode, InterlockError
from interlock.model import Choice, Fixup, Flavor, Image, Metadata, Network, Traits
from interlock.providers.normalize import version_key, version_matches


class NoMatch(InterlockError):
    """Nothing on the site fits the request (a bad request, not a failure)."""


def pick_flavor(site: str, flavors: tuple[Flavor, ...], traits: Traits, image: Image) -> Flavor:
    fits = [
        f
        for f in flavors
        if not image.only_flavors or f.id in image.only_flavors
        if f.vcpus >= traits.cpus
        and f.ram_mib >= traits.memory_gib * 1024
        and f.arch == traits.arch
    ]
    if not fits:
        raise NoMatch(
            f"{site}: no flavor with ≥{traits.cpus} vCPU and ≥{traits.memory_gib:g} GiB "
            f"({traits.arch}) for {image.name}",
            ExitCode.BAD_INPUT,
        )
    # The smallest that fits: fewest vCPUs, then least memory, then least disk, then name.
    return min(fits, key=lambda f: (f.vcpus, f.ram_mib, f.gpus, f.disk_gib, f.name))


def pick_image(site: str, images: tuple[Image, ...], traits: Traits) -> Image:
    fits = [
        i
        for i in images
        if i.distro == traits.distro
        and version_matches(traits.version, i.version)
        and i.arch == traits.arch
    ]
    if not fits:
        raise NoMatch(f"{site}: no image of {traits.os} ({traits.arch})", ExitCode.BAD_INPUT)
    return max(fits, key=lambda i: (version_key(i.version), i.created, i.name))


def pick_network(
    networks: tuple[Network, ...], declared: str | None
) -> tuple[Network | None, bool, str]:
    """The network to boot on, whether a floating IP is needed, and why."""
    if declared is not None:
        for n in networks:
            if declared in (n.id, n.name):
                return n, False, f"network {n.name}: declared public in the site's profile"
    for n in networks:
        if n.role == "public":
            return n, False, f"network {n.name} gives a public address ({n.evidence})"
    for n in networks:
        if n.role == "private" and n.reaches_outside:
            return n, True, f"network {n.name} needs a floating IP ({n.evidence})"
    if any(n.role == "private" for n in networks):
        closed = ", ".join(n.name for n in networks if n.role == "private")
        return None, True, f"no network reaches the outside ({closed}): the site's default"
    return None, True, "no network listed: the site's default, with a floating IP"


def choose(
    site: str,
    meta: Metadata,
    traits: Traits,
    declared_network: str | None = None,
    floating: bool | None = None,
) -> Choice:
    """Flavor, image and network for `traits`, and whether a floating IP is needed: the
    one place that decides it (`floating`: what the site's profile declares or learned,
    which wins over the network's role)."""
    image = pick_image(site, meta.images, traits)
    flavor = pick_flavor(site, meta.flavors, traits, image)
    network, by_role, why = pick_network(meta.networks, declared_network)
    if floating is not None:
        why += f"; a floating IP {'always' if floating else 'never'}: the site's profile"
    choice = Choice(
        flavor=flavor,
        image=image,
        network=network,
        needs_floating_ip=by_role if floating is None else floating,
        reasons=(
            f"flavor {flavor.name}: the smallest with ≥{traits.cpus} vCPU, "
            f"≥{traits.memory_gib:g} GiB ({flavor.vcpus} vCPU, {flavor.ram_mib} MiB)",
            f"image {image.name}: the newest {image.distro} {image.version}",
            why,
        ),
    )
    return choice.model_copy(update={"fixups": _fixups(meta, network)})


# Words in network names that claim a role (what users would go by, and clouds get wrong).
PUBLIC_WORDS = ("public", "external", "internet", "wan")
PRIVATE_WORDS = ("private", "internal", "tenant", "lan")


def _fixups(meta: Metadata, chosen: Network | None) -> tuple[Fixup, ...]:
    """Where picking the network took more than reading labels: a name that says the
    opposite of the network's role, or several bootable networks told apart by routers."""
    out = []
    for n in meta.networks:
        name = n.name.lower()
        says_public = any(w in name for w in PUBLIC_WORDS)
        says_private = any(w in name for w in PRIVATE_WORDS)
        usable_out = n.role in ("public", "external-usable")
        if (says_public and not usable_out) or (says_private and n.role == "public"):
            out.append(
                Fixup(
                    step="selection", text=f"network {n.name!r} is {n.role} whatever its name says"
                )
            )
    bootable = [n for n in meta.networks if n.role in ("public", "private")]
    if chosen is not None and len(bootable) > 1 and chosen.router is not None:
        out.append(Fixup(step="selection", text=f"network {chosen.name} told apart by its router"))
    return tuple(out)
