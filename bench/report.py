"""Rendering a :class:`~foldflow.bench.results.BenchResult`: a rich table and a JSON document
(pure).

Both come from the same :func:`~foldflow.bench.results.build_figures` lines, so what the table
says (met/missed, by how much, the ratio to raw Kafka) is exactly what the JSON holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from foldflow.bench.figures import Figure
from foldflow.bench.lines import build_figures
from foldflow.bench.results import BenchResult

__all__ = [
    "Previous",
    "change_text",
    "figures_table",
    "format_value",
    "load_previous",
    "render",
    "to_json",
    "to_json_text",
]

SCHEMA = "foldflow-bench/1"


def format_value(value: float | None, unit: str) -> str:
    """A figure for a table cell: thousands separators, sensible precision, its unit."""
    if value is None:
        return "—"
    if unit == "/s":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:,.4g} {unit}".strip()


def _target_text(figure: Figure) -> str:
    target = figure.target
    if target is None:
        return ""
    sign = "≥" if target.better == "higher" else "≤"
    text = f"{sign} {format_value(target.limit, figure.unit)}"
    return f"{text} ({target.note})" if target.note else text


def _ratio_text(figure: Figure) -> str:
    r = figure.ratio
    if r is None:
        return ""
    shown = f"{r:.2f}x" if r < 10 else f"{r:.0f}x"
    base = format_value(figure.baseline, figure.unit)
    return f"{shown} · {base}" + (f" ({figure.baseline_label})" if figure.baseline_label else "")


def _verdict_cell(figure: Figure) -> Text:
    verdict = figure.verdict
    if verdict is None:
        return Text("—" if figure.target is not None else "", style="dim")
    return Text(verdict.text, style="green" if verdict.met else "red")


@dataclass(frozen=True)
class Previous:
    """A figure of an earlier run (from its ``--json``): value and ratio to its raw Kafka."""

    value: float | None
    ratio: float | None


def load_previous(doc: Mapping[str, Any]) -> dict[str, Previous]:
    """The figures of an earlier run's JSON document, by key."""
    return {
        f["key"]: Previous(f.get("value"), f.get("ratio_to_raw_kafka"))
        for f in doc.get("figures", [])
        if isinstance(f, dict) and "key" in f
    }


def change_text(figure: Figure, previous: Previous | None) -> str:
    """How a figure moved since an earlier run: by its raw-Kafka ratio when both runs have
    one (that survives a different machine load), else by its value."""
    if previous is None:
        return ""
    now_ratio, then_ratio = figure.ratio, previous.ratio
    if now_ratio is not None and then_ratio:
        return f"ratio {then_ratio:.3g} → {now_ratio:.3g} ({now_ratio / then_ratio - 1:+.0%})"
    if figure.value is not None and previous.value:
        before = format_value(previous.value, figure.unit)
        return f"{before} → now ({figure.value / previous.value - 1:+.0%})"
    return ""


def figures_table(result: BenchResult, *, previous: Mapping[str, Previous] | None = None
                  ) -> Table:
    """The main table: figure, value, target, verdict, ratio to raw Kafka (and, given an
    earlier run, how each figure moved); one section per load."""
    table = Table(title=f"foldflow bench {result.run_id}: {result.steps}-step no-op workflows",
                  title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("verdict")
    table.add_column("vs raw Kafka, same run", style="cyan")
    if previous is not None:
        table.add_column("since the earlier run", style="magenta")
    blank = [""] * (5 if previous is None else 6)
    load = None
    for figure in build_figures(result):
        if figure.load != load:
            load = figure.load
            if table.row_count:
                table.add_section()
            table.add_row(Text(load, style="bold"), *blank[1:])
        cells: list[str | Text] = [
            "  " + figure.label,
            format_value(figure.value, figure.unit),
            _target_text(figure),
            _verdict_cell(figure),
            _ratio_text(figure),
        ]
        if previous is not None:
            cells.append(change_text(figure, previous.get(figure.key)))
        table.add_row(*cells)
    return table


def _context_table(result: BenchResult) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    m = result.machine
    load = f"{m.cpus} CPUs; load average {m.loadavg_before[0]:.2f} before, " \
           f"{m.loadavg_after[0]:.2f} after"
    if m.busy_share is not None:
        load += f"; CPU busy {m.busy_share:.0%} during the phases"
        if m.ours_share is not None:
            load += f" ({m.ours_share:.0%} ours, {max(0.0, m.busy_share - m.ours_share):.0%} " \
                    "everyone else)"
    table.add_row("machine", load)
    if result.code:
        table.add_row("code", result.code)
    if m.process_cores:
        table.add_row("CPU (cores)", ", ".join(f"{name} {cores:.2f}"
                                               for name, cores in m.process_cores.items()))
    for label, spent in (("CPU ms per workflow, closed loop", m.closed_loop_cpu_ms_per_workflow),
                         ("CPU ms per workflow, both phases", m.cpu_ms_per_workflow)):
        if spent:
            table.add_row(label, ", ".join(f"{name} {ms:.2f}" for name, ms in spent.items()))
    b = result.baseline
    if b is not None:
        raw = (f"{b.messages:,} msgs of {b.message_bytes} B: produce {b.produce_per_s:,.0f}/s, "
               f"produce+consume {b.produce_consume_per_s:,.0f}/s")
        if b.hop_ms is not None:
            raw += f"; one hop (produce→consumed) p50 {b.hop_ms.p50:.1f} ms, " \
                   f"p99 {b.hop_ms.p99:.1f} ms"
        if b.ack_ms is not None:
            raw += f"; ack p99 {b.ack_ms.p99:.1f} ms"
        if b.transactional_hop_ms is not None:
            raw += (f"; one transactional hop (produce→committed→consumed) p50 "
                    f"{b.transactional_hop_ms.p50:.1f} ms, p99 {b.transactional_hop_ms.p99:.1f} ms")
        if b.commit_ms is not None:
            raw += f" (offsets + commit p50 {b.commit_ms.p50:.1f} ms)"
        table.add_row("raw Kafka", raw)
    for p in result.phases:
        agent = ""
        if p.agent is not None and p.agent.mean_ms is not None:
            agent = (f"; orchestrator {p.agent.inputs_per_s:,.0f} inputs/s, "
                     f"{p.agent.mean_ms:.1f} ms each, {p.agent.in_flight:.1f} in hand")
        if p.workers is not None and p.workers.mean_ms is not None:
            agent += (f"; workers {p.workers.inputs_per_s:,.0f} tasks/s, "
                      f"{p.workers.mean_ms:.1f} ms each, {p.workers.in_flight:.1f} in hand")
        table.add_row(
            f"phase {p.name}",
            f"{p.mode}, {p.seconds:.1f}s: {p.started:,} started, {p.completed:,} completed"
            + (f", {p.failed:,} did not complete" if p.failed else "") + agent,
        )
    for note in result.notes:
        table.add_row("note", note)
    return table


def _profile_table(result: BenchResult) -> Table | None:
    prof = result.profile
    if prof is None:
        return None
    table = Table(title=f"where the orchestrator's time goes (py-spy, {prof.seconds:.0f}s, "
                        f"{prof.samples:,} samples; {prof.file})", title_justify="left")
    table.add_column("component (leaf frame)")
    table.add_column("share", justify="right")
    table.add_column("function (self)")
    table.add_column("share", justify="right")
    table.add_column("Foldflow function (inclusive)")
    table.add_column("share", justify="right")
    rows = max(len(prof.by_component), len(prof.top_self), len(prof.top_inclusive))
    for i in range(rows):
        cells: list[str] = []
        for items in (prof.by_component, prof.top_self, prof.top_inclusive):
            if i < len(items):
                cells += [items[i][0], f"{items[i][1]:.0%}"]
            else:
                cells += ["", ""]
        table.add_row(*cells)
    return table


def _profile_threads(result: BenchResult) -> Text | None:
    prof = result.profile
    if prof is None or not prof.threads:
        return None
    busy = ", ".join(f"{name} {share:.0%}" for name, share in prof.threads)
    return Text(f"orchestrator threads busy (share of wall time, the rest is waiting): {busy}")


def render(result: BenchResult, *, previous: Mapping[str, Previous] | None = None
           ) -> RenderableType:
    """The whole report as one rich renderable (context, figures, profile); ``previous``
    (from :func:`load_previous`) adds how each figure moved since an earlier run."""
    parts: list[RenderableType] = [_context_table(result),
                                   figures_table(result, previous=previous)]
    missed = [f.label for f in build_figures(result) if f.verdict is not None and
              not f.verdict.met]
    if missed:
        parts.append(Text(f"{len(missed)} target(s) missed: {', '.join(missed)}", style="red"))
    else:
        parts.append(Text("every target measured in this run was met", style="green"))
    profile = _profile_table(result)
    if profile is not None:
        parts.append(profile)
    threads = _profile_threads(result)
    if threads is not None:
        parts.append(threads)
    return Group(*parts)


def to_json(result: BenchResult) -> dict[str, Any]:
    """The run as a JSON-ready dict: the raw record plus the judged figures."""
    figures = []
    for f in build_figures(result):
        verdict = f.verdict
        figures.append({
            "key": f.key,
            "label": f.label,
            "value": f.value,
            "unit": f.unit,
            "load": f.load,
            "target": asdict(f.target) if f.target is not None else None,
            "met": verdict.met if verdict is not None else None,
            "margin": verdict.margin if verdict is not None else None,
            "verdict": verdict.text if verdict is not None else None,
            "baseline": f.baseline,
            "baseline_label": f.baseline_label,
            "ratio_to_raw_kafka": f.ratio,
        })
    return {"schema": SCHEMA, **asdict(result), "figures": figures}


def to_json_text(result: BenchResult) -> str:
    """:func:`to_json` as indented text."""
    return json.dumps(to_json(result), indent=2, ensure_ascii=False)
