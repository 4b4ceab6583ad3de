"""capacity.probe's table and PNG plot."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from ..procedures.probe import ProbeReport, Step
from .console import err, out, print_json


def step_line(step: Step) -> None:
    """Progress: one line per step on stderr."""
    hot = max(step.metrics.items(), key=lambda kv: kv[1], default=("-", 0.0))
    err.print(Text(f"[probe] {step.rate:.0f}/s: {step.accepted}/{step.sent} accepted, "
                   f"p99 {step.p99_ms:.0f} ms, busiest {hot[0]} {hot[1]:.0%}"
                   + ("" if step.ok else "  <- breaks"), style="" if step.ok else "red"))


def show(report: ProbeReport, png: Path | None, as_json: bool = False) -> None:
    """The ramp as a table, the verdict, and where the plot is."""
    if as_json:
        print_json({"steps": [s.__dict__ for s in report.steps], "sustained": report.sustained,
                    "breaking_point": report.breaking_point,
                    "first_saturated": report.first_saturated,
                    "first_saturated_at": report.first_saturated_at,
                    "plot": str(png) if png else None})
        return
    names = sorted({k for s in report.steps for k in s.metrics})
    table = Table(title="capacity probe", title_justify="left")
    for col in ("rate/s", "achieved/s", "failed", "p99 ms", *names):
        table.add_column(col, justify="right")
    for s in report.steps:
        table.add_row(f"{s.rate:.0f}", f"{s.achieved:.0f}", str(s.failed), f"{s.p99_ms:.0f}",
                      *(f"{s.metrics.get(n, 0):.0%}" for n in names),
                      style="" if s.ok else "red")
    out.print(table)
    out.print(f"sustained: {report.sustained:.0f} events/s; breaking point: "
              f"{report.breaking_point or 'not reached'}"
              f"{' events/s' if report.breaking_point else ''}; first to saturate: "
              f"{report.first_saturated or 'nothing'}"
              + (f" (at {report.first_saturated_at:.0f}/s)" if report.first_saturated_at
                 else ""), markup=False)
    if png:
        out.print(f"plot: {png}", markup=False)


def plot(report: ProbeReport, path: Path) -> Path | None:
    """events/s per step and the saturating metric, as a PNG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        err.print("matplotlib is not installed: no plot (pip install 'sentryfab[plot]')")
        return None
    x = list(range(1, len(report.steps) + 1))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(x, [s.rate for s in report.steps], "o--", label="offered events/s")
    ax.plot(x, [s.achieved for s in report.steps], "o-", label="accepted events/s")
    ax.set_xlabel("step")
    ax.set_ylabel("events/s")
    ax2 = ax.twinx()
    metric = report.first_saturated
    if metric:
        ax2.plot(x, [100 * s.metrics.get(metric, 0) for s in report.steps], "s-", color="red",
                 label=f"{metric} (% of limit)")
    ax2.set_ylabel("% of limit")
    ax2.set_ylim(0, max(110, *(100 * s.metrics.get(metric or "", 0) for s in report.steps)))
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    ax.set_title(f"capacity probe: sustained {report.sustained:.0f}/s, "
                 f"first to saturate: {metric or '-'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
