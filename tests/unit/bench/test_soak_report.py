"""The soak's report from made-up observations: intervals, memory growth, table, plot."""

from __future__ import annotations

from pathlib import Path

from foldflow.bench.soak_report import (
    Sample,
    SoakSummary,
    intervals,
    markdown,
    plot,
    rss_growth,
)


def _samples(*, leak_mb_per_s: float = 0.0) -> list[Sample]:
    out = []
    for i in range(60):  # 10 s apart: 10 minutes
        t = i * 10.0
        pids = {"orchestrator": 100, "worker": 200 if t < 200 else 201}  # worker restarted
        rss = {"orchestrator": 80.0 + leak_mb_per_s * t, "worker": 50.0 + (i % 3)}
        out.append(Sample(t, rss, pids, {"wf.worker.builtin.echo": i % 4, "projector": 2}))
    return out


def test_intervals_count_rates_latency_memory_lag_and_kills() -> None:
    began = 1_000_000.0
    starts = {f"w{i}": began + i * 100.0 for i in range(1200)}  # 10/s for 120 s
    ends = {w: ms + 250.0 for w, ms in starts.items()}
    for slow in ("w0", "w1", "w2", "w3", "w4", "w5", "w6"):  # end in the first minute
        ends[slow] = starts[slow] + 5_000.0
    rows = intervals(began_ms=began, starts_ms=starts, ends_ms=ends, samples=_samples(),
                     kills=[(30.0, "worker"), (95.0, "gateway-2")], width_s=60, run_s=120)
    assert [(r.start_s, r.end_s) for r in rows] == [(0, 60), (60, 120)]
    assert [round(r.started_per_s, 1) for r in rows] == [10.0, 10.0]
    assert rows[0].p50_ms == 250.0 and rows[1].p99_ms == 250.0
    assert rows[0].p99_ms is not None and rows[0].p99_ms > 250.0
    assert rows[0].kills == ("worker",) and rows[1].kills == ("gateway-2",)
    assert rows[0].rss_mb == {"orchestrator": 80.0, "worker": 52.0}
    assert rows[0].lag == {"wf.worker.builtin.echo": 3, "projector": 2}


def test_an_interval_without_completions_has_no_latency() -> None:
    [row] = intervals(began_ms=0, starts_ms={}, ends_ms={}, samples=[], kills=[],
                      width_s=60, run_s=30)
    assert (row.completed_per_s, row.p50_ms, row.p99_ms) == (0, None, None)


def test_memory_growth_per_process_that_lived_long_enough() -> None:
    flat = {(g.instance, g.pid): g for g in rss_growth(_samples(), run_s=600)}
    # the first worker lived 190 s of 600 (< 40 %): not judged; its successor is
    assert set(flat) == {("orchestrator", 100), ("worker", 201)}
    assert all(g.flat for g in flat.values())

    leaking = {g.instance: g for g in rss_growth(_samples(leak_mb_per_s=0.1), run_s=600)}
    assert leaking["orchestrator"].growth_mb > 20 and not leaking["orchestrator"].flat


def test_markdown_and_plot(tmp_path: Path) -> None:
    samples = _samples()
    rows = intervals(began_ms=0, starts_ms={"a": 1000.0}, ends_ms={"a": 1500.0},
                     samples=samples, kills=[(30.0, "worker")], width_s=60, run_s=120)
    summary = SoakSummary(minutes=2, accepted=1, gave_up=0, ended_once=1, problems=[],
                          projection_problems=[], dlq=0, kills=1, context=["- a machine"])
    text = markdown(summary, rows, rss_growth(samples, run_s=120))
    assert "ended exactly once, completed: 1 (all)" in text
    assert "PostgreSQL equals wf.events: yes" in text
    assert "memory flat once steady: yes" in text
    assert "| 0.0-1.0 | 0.0 | 0.0 | 500 | 500 | 80 | 52 | 2 | 3 | worker |" in text
    png = tmp_path / "soak.png"
    plot(png, rows=rows, samples=samples, kills=[(30.0, "worker")], title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
