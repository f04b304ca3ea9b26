"""A site's conformance over runs: verdict counts and time to SSH-ready, and the chart of
them (an SVG drawn on the server by pygal: no script, no request leaves the page)."""

from __future__ import annotations

import time

from pydantic import BaseModel

VERDICTS = ("YES", "PARTIAL", "NO", "NOT RUN")


class Point(BaseModel):
    run: str
    started: float
    verdict: str  # the site's: pass | fail
    counts: dict[str, int]  # capabilities by verdict
    ssh_ready_s: float | None  # request to login, where the run measured it

    @property
    def when(self) -> str:
        return time.strftime("%m-%d %H:%M", time.gmtime(self.started))


def site_history(site: str, last: int = 20) -> list[Point]:
    """The site's last runs, oldest first."""
    from interlock.services import conform

    points = []
    with conform.results() as store:
        for run in conform.history():
            if site not in run["sites"]:
                continue
            report = store.get(run["id"])["sites"][site]
            caps = report["capabilities"]
            counts = {v: sum(c["verdict"] == v for c in caps.values()) for v in VERDICTS}
            ready = next((ch.get("seconds") for ch in caps.get("ssh-ready", {}).get("checks", [])
                          if ch.get("seconds") is not None), None)  # fmt: skip
            points.append(Point(run=run["id"], started=run["started"], verdict=report["verdict"],
                                counts=counts, ssh_ready_s=ready))  # fmt: skip
            if len(points) == last:
                break
    return points[::-1]


def history_svg(site: str, points: list[Point]) -> str:
    """Verdict counts per run (lines) and seconds to SSH-ready (on the secondary axis);
    nothing without runs."""
    if not points:
        return ""
    import pygal
    from pygal.style import Style

    style = Style(background="transparent", plot_background="transparent",
                  colors=("#2e7d32", "#f9a825", "#c62828", "#9e9e9e", "#1565c0"),
                  font_family="system-ui, sans-serif")  # fmt: skip
    chart = pygal.Line(
        js=[],  # pygal's tooltips script comes from the internet: none
        style=style, height=260, width=640, show_dots=True, dots_size=3,
        legend_at_bottom=True, legend_at_bottom_columns=5, x_label_rotation=0,
        show_minor_x_labels=False, x_labels_major_every=max(1, len(points) // 6) or None,
        title=f"{site}: capabilities by verdict, and seconds to SSH-ready",
        print_values=False, explicit_size=False,
    )  # fmt: skip
    chart.x_labels = [p.when for p in points]
    for v in VERDICTS:
        chart.add(v, [p.counts[v] for p in points])
    if any(p.ssh_ready_s is not None for p in points):
        chart.add("SSH-ready s", [p.ssh_ready_s for p in points], secondary=True)
    return str(chart.render(is_unicode=True))
