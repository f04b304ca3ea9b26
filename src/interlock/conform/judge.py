"""Judging: each check of a guideline against one site's observation (a table from check
kind to the function that judges it), each capability's verdict, each site's pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from interlock.conform.guideline import Capability, Check, Guideline
from interlock.conform.observe import Observation
from interlock.model import STEPS

Status = Literal["pass", "fixup", "fail", "not-run", "error", "waived"]
Verdict = Literal["YES", "PARTIAL", "NO", "NOT RUN", "ERROR"]


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


def _step(check: Check, obs: Observation) -> CheckResult:
    """One of the eight steps worked as is, with a fix-up (PARTIAL), or failed."""
    failed = obs.failed_step()
    node = obs.node
    step = "selection" if check.kind == "selected" else str(check.params["step"])
    expected = f"{step} works without a fix-up"
    if failed == step:
        return CheckResult(check, "fail", obs.error(), expected, evidence={"error": obs.error()})
    if failed is not None and STEPS.index(step) > STEPS.index(failed):
        return CheckResult(check, "not-run", f"{failed} failed first", expected)
    if check.kind == "selected":
        chosen = f"{node.flavor_label} / {node.image_label}" if node else "chosen"
        return CheckResult(check, "pass", chosen, "a flavor and an image fit the request")
    wanted = [str(w) for w in check.params.get("fixups", [])]
    fixups = [
        f.text
        for f in (node.fixups if node else [])
        if f.step == step and (not wanted or any(w in f.text for w in wanted))
    ]
    if fixups:
        return CheckResult(check, "fixup", "; ".join(fixups), expected, fixups=fixups)
    return CheckResult(check, "pass", "worked as is", expected)


def _login_consistent(check: Check, obs: Observation) -> CheckResult:
    node = obs.node
    expected = "one login account for every image of the distribution"
    if node is None or node.login_user is None:
        return CheckResult(check, "not-run", "the requested node never logged in", expected)
    users = {node.image_label: node.login_user}
    users.update({v: u for v, u in obs.logins.items() if u is not None})
    shown = "; ".join(f"{k}: {u}" for k, u in users.items())
    if len(users) == 1 and None in obs.logins.values():
        return CheckResult(check, "not-run", "the other images' nodes failed", expected)
    status: Status = "pass" if len(set(users.values())) == 1 else "fail"
    return CheckResult(check, status, shown, expected, evidence={"logins": users})


def _post_provisioning(check: Check, obs: Observation) -> CheckResult:
    if obs.post is None:
        return CheckResult(check, "not-run", "no node to look at", "boot-finished, hostname")
    ok = obs.post["boot_finished"] and bool(obs.post["hostname"])
    shown = f"boot-finished {'present' if obs.post['boot_finished'] else 'missing'}, "
    shown += f"hostname {obs.post['hostname'] or '(none)'}"
    return CheckResult(
        check, "pass" if ok else "fail", shown, "boot-finished, hostname", evidence=obs.post
    )


def _released(check: Check, obs: Observation) -> CheckResult:
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


def _ssh_ready(check: Check, obs: Observation) -> CheckResult:
    limit = float(check.params.get("max_seconds", 120))
    times = obs.node.timeline if obs.node else {}
    if "login" not in times or "request" not in times:
        return CheckResult(check, "not-run", "never answered SSH", f"≤ {limit:g} s")
    took = round(times["login"] - times["request"], 2)
    timed: Status = "pass" if took <= limit else "fail"
    return CheckResult(check, timed, f"{took} s", f"≤ {limit:g} s", seconds=took)


def _not_implemented(check: Check, obs: Observation) -> CheckResult:
    return CheckResult(
        check, "not-run", "not run", "-", evidence={"why": check.params.get("reason")}
    )


JUDGES: dict[str, Callable[[Check, Observation], CheckResult]] = {
    "step": _step,
    "selected": _step,
    "login-consistent": _login_consistent,
    "post-provisioning": _post_provisioning,
    "released": _released,
    "ssh-ready": _ssh_ready,
    "not-implemented": _not_implemented,
}


def judge(check: Check, obs: Observation) -> CheckResult:
    """One check against one site's observation."""
    how = JUDGES.get(check.kind)
    if how is None:
        return CheckResult(check, "error", f"unknown check kind {check.kind}", "-")
    return how(check, obs)


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
