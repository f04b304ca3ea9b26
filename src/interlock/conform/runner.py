"""Running a guideline against sites: the same providers and steps as `interlock up`, on
real nodes, observed; then each check judged and each capability given a verdict.

Each run has a home of its own (keys, store, durable workflows), so what interlock
learned elsewhere (a login account, say) does not hide what a site does by itself.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncssh

from interlock import config, deploy
from interlock.allocate import access, workflow
from interlock.allocate.workflow import Engine
from interlock.conform.guideline import Capability, Check, Guideline
from interlock.errors import InterlockError
from interlock.model import STEPS, Traits
from interlock.providers.base import ProviderError
from interlock.providers.normalize import version_matches
from interlock.selection import NoMatch
from interlock.store import NodeRecord, Store

Status = Literal["pass", "fixup", "fail", "not-run", "error", "waived"]
Verdict = Literal["YES", "PARTIAL", "NO", "NOT RUN", "ERROR"]


@dataclass
class Observation:
    """What happened to one site's node, from request to release."""

    site: str
    node: NodeRecord | None = None
    refused: str | None = None  # the request failed its check before anything was made
    refused_step: str | None = None
    post: dict[str, Any] | None = None
    released: dict[str, Any] | None = None
    # The login account of each other version of the requested distribution (None: that
    # node did not come up), beside the requested one's.
    logins: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0

    def failed_step(self) -> str | None:
        if self.refused_step is not None:
            return self.refused_step
        if self.node is None or self.node.status == "ready":
            return None
        return self.node.failed_step or "request"

    def error(self) -> str:
        """Why the site's attempt failed, in one line ("" if it did not)."""
        if self.refused:
            return self.refused
        if self.node is None or self.node.status == "ready":
            return ""
        if self.node.attempts:
            return self.node.attempts[-1]["why"]
        return self.node.error or ""


@dataclass
class CheckResult:
    check: Check
    status: Status
    observed: str
    expected: str
    fixups: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    waived: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "uuid": str(self.check.uuid),
            "name": self.check.name,
            "aliases": self.check.aliases,
            "status": self.status,
            "observed": self.observed,
            "expected": self.expected,
            "fixups": self.fixups,
            "seconds": self.seconds,
            "waived": self.waived,
            "evidence": self.evidence,
        }


def judge(check: Check, obs: Observation) -> CheckResult:
    """One check against one site's observation."""
    failed = obs.failed_step()
    node = obs.node
    p = check.params
    if check.kind == "not-implemented":
        return CheckResult(check, "not-run", "not run", "-", evidence={"why": p.get("reason")})
    if check.kind == "step" or check.kind == "selected":
        step = "selection" if check.kind == "selected" else str(p["step"])
        expected = f"{step} works without a fix-up"
        if failed == step:
            return CheckResult(
                check, "fail", obs.error(), expected, evidence={"error": obs.error()}
            )
        if failed is not None and STEPS.index(step) > STEPS.index(failed):
            return CheckResult(check, "not-run", f"{failed} failed first", expected)
        if check.kind == "selected":
            chosen = f"{_flavor(node)} / {_image(node)}" if node else "chosen"
            return CheckResult(check, "pass", chosen, "a flavor and an image fit the request")
        wanted = [str(w) for w in p.get("fixups", [])]
        fixups = [
            f.split(": ", 1)[1]
            for f in (node.fixups if node else [])
            if f.startswith(f"{step}:") and (not wanted or any(w in f for w in wanted))
        ]
        if fixups:
            return CheckResult(check, "fixup", "; ".join(fixups), expected, fixups=fixups)
        return CheckResult(check, "pass", "worked as is", expected)
    if check.kind == "login-consistent":
        expected = "one login account for every image of the distribution"
        if node is None or node.login_user is None:
            return CheckResult(check, "not-run", "the requested node never logged in", expected)
        users = {_image(node): node.login_user}
        users.update({v: u for v, u in obs.logins.items() if u is not None})
        shown = "; ".join(f"{k}: {u}" for k, u in users.items())
        if len(users) == 1 and None in obs.logins.values():
            return CheckResult(check, "not-run", "the other images' nodes failed", expected)
        status: Status = "pass" if len(set(users.values())) == 1 else "fail"
        return CheckResult(check, status, shown, expected, evidence={"logins": users})
    if check.kind == "post-provisioning":
        if obs.post is None:
            return CheckResult(check, "not-run", "no node to look at", "boot-finished, hostname")
        ok = obs.post["boot_finished"] and bool(obs.post["hostname"])
        shown = f"boot-finished {'present' if obs.post['boot_finished'] else 'missing'}, "
        shown += f"hostname {obs.post['hostname'] or '(none)'}"
        return CheckResult(
            check, "pass" if ok else "fail", shown, "boot-finished, hostname", evidence=obs.post
        )
    if check.kind == "released":
        if obs.released is None:
            return CheckResult(check, "not-run", "nothing was released", "nothing left")
        left = [k for k, v in obs.released.items() if v]
        return CheckResult(
            check,
            "fail" if left else "pass",
            f"left: {', '.join(left)}" if left else "nothing left",
            "nothing left",
            evidence=obs.released,
        )
    if check.kind == "ssh-ready":
        limit = float(p.get("max_seconds", 120))
        times = node.timeline if node else {}
        if "login" not in times or "request" not in times:
            return CheckResult(check, "not-run", "never answered SSH", f"≤ {limit:g} s")
        took = round(times["login"] - times["request"], 2)
        timed: Status = "pass" if took <= limit else "fail"
        return CheckResult(check, timed, f"{took} s", f"≤ {limit:g} s", seconds=took)
    return CheckResult(check, "error", f"unknown check kind {check.kind}", "-")


def named(name: str | None, ident: str | None) -> str:
    """What a site calls a thing, with its id where that differs: people read names."""
    if name and ident and name != ident:
        return f"{name} ({ident})"
    return name or ident or "?"


def _image(node: NodeRecord) -> str:
    return named(node.image_name, node.image)


def _flavor(node: NodeRecord) -> str:
    return named(node.flavor_name, node.flavor)


def verdict(results: list[CheckResult]) -> tuple[Verdict, list[str]]:
    """A capability's verdict from its checks, with the fix-ups a PARTIAL needed."""
    counted = [r for r in results if r.status != "waived"]
    statuses = {r.status for r in counted}
    fixups = [f for r in counted for f in r.fixups]
    if not counted:
        return "YES", []
    if "error" in statuses:
        return "ERROR", []
    if "fail" in statuses:
        return "NO", []
    if "not-run" in statuses:
        return "NOT RUN", []
    if "fixup" in statuses:
        return "PARTIAL", fixups
    return "YES", []


@dataclass
class CapabilityResult:
    capability: Capability
    verdict: Verdict
    fixups: list[str]
    checks: list[CheckResult]


def grade(guideline: Guideline, obs: Observation) -> list[CapabilityResult]:
    out = []
    for cap in guideline.capabilities:
        if cap.status == "removed":
            continue
        results = []
        for check in cap.checks:
            r = judge(check, obs)
            flag = guideline.waived(check)
            if flag is not None and r.status in ("fail", "error"):
                r.waived, r.status = f"{flag.reason} ({flag.date})", "waived"
            results.append(r)
        v, fixups = verdict(results)
        out.append(CapabilityResult(cap, v, fixups, results))
    return out


def site_passes(results: list[CapabilityResult]) -> bool:
    """Every required capability is YES or PARTIAL."""
    return all(
        r.verdict in ("YES", "PARTIAL") for r in results if r.capability.status == "required"
    )


# -- observing ---------------------------------------------------------------------


def conform_engine(run_id: str) -> Engine:
    """An engine with a home of its own for one run, on the user's sites file."""
    sites = config.load_sites(config.sites_path())
    home = config.home() / "conform" / "runs" / run_id
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Engine(sites, Store(home / "state.db"), home)


async def observe(e: Engine, site: str, guideline: Guideline) -> Observation:
    obs = Observation(site)
    deployment = f"conform-{site}"
    start = time.monotonic()

    traits = guideline.request.traits()
    others = asyncio.ensure_future(_other_versions(e, site, traits))
    try:
        nodes = await deploy.up(e, deployment, 1, [site], traits, lambda _: None)
    except NoMatch as err:
        obs.refused, obs.refused_step = str(err), "selection"
    except ProviderError as err:
        obs.refused, obs.refused_step = str(err), "metadata"
    except InterlockError as err:
        obs.refused, obs.refused_step = str(err), "metadata"
    else:
        obs.node = nodes[0]
        if obs.node.status == "ready" and obs.node.public_ip:
            obs.post = await _post_provisioning(obs.node.public_ip, e.platform[0])
        obs.released = await _release(e, deployment, site, obs.node.name)
    obs.logins = await others
    obs.seconds = round(time.monotonic() - start, 2)
    return obs


async def _other_versions(e: Engine, site: str, traits: Traits) -> dict[str, str | None]:
    """A node of every other version of the requested distribution, at once: its login
    account (for login consistency), then released."""
    try:
        meta = await e.metadata(site)
    except ProviderError:
        return {}
    versions = sorted(
        {
            i.version
            for i in meta.images
            if i.distro == traits.distro
            and i.arch == traits.arch
            and not version_matches(traits.version, i.version)
        }
    )

    async def one(version: str) -> tuple[str, str | None]:
        deployment = f"conform-{site}-v{version.replace('.', '-')}"
        wanted = traits.model_copy(update={"os": f"{traits.distro}-{version}"})
        try:
            (node,) = await deploy.up(e, deployment, 1, [site], wanted, lambda _: None)
        except InterlockError:
            return f"{traits.distro}-{version}", None
        await deploy.down(e, deployment)
        label = _image(node) if node.image else f"{traits.distro}-{version}"
        return label, node.login_user if node.status == "ready" else None

    return dict(await asyncio.gather(*(one(v) for v in versions)))


async def _post_provisioning(ip: str, platform_key: Path) -> dict[str, Any]:
    key = asyncssh.read_private_key(platform_key)
    async with access.connect(ip, "root", key) as conn:
        done = await conn.run(
            "test -f /var/lib/cloud/instance/boot-finished && echo present || echo missing;"
            " hostname",
            check=False,
        )
    lines = str(done.stdout).split("\n")
    return {"boot_finished": lines[0].strip() == "present", "hostname": lines[1].strip()}


async def _release(e: Engine, deployment: str, site: str, name: str) -> dict[str, Any]:
    await deploy.down(e, deployment)
    provider = e.site(site).provider
    server = await e.call(site, provider.find_node, name)
    key = await e.call(site, provider.key_exists, workflow.site_key_ref(name))
    return {"server": server, "site_key": key}


@dataclass
class Run:
    id: str
    started: float
    guideline: Guideline
    baseline: str | None
    observations: dict[str, Observation]
    results: dict[str, list[CapabilityResult]]


async def run(sites: list[str], guideline: Guideline, baseline: str | None) -> Run:
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    e = conform_engine(run_id)
    deploy.check_sites(e, sites)
    started = time.time()
    workflow.start(e)
    try:
        found = await asyncio.gather(*(observe(e, s, guideline) for s in sites))
    finally:
        workflow.stop()
        shutil.rmtree(e.home, ignore_errors=True)
    observations = {o.site: o for o in found}
    results = {s: grade(guideline, o) for s, o in observations.items()}
    return Run(run_id, started, guideline, baseline, observations, results)
