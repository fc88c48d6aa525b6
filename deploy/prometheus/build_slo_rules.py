# ruff: noqa: E501  (PromQL queries read best on one line each)
"""Writes deploy/prometheus/slo.yml: the SLO recording rules and burn-rate alerts.

    .venv/bin/python deploy/prometheus/build_slo_rules.py [--output FILE]

The objectives are settings (``FOLDFLOW_SLO_*``, docs/slo.md); the committed file holds
the defaults, and a unit test checks it is what this script writes with them. Four
service level indicators, each recorded as an error ratio over the windows the alerts
need, in ``foldflow:slo_errors:ratio_rate<window>{slo="..."}``:

- ``workflow_success``: ended workflows that failed by Foldflow's fault (cause timeout,
  error or deadline of ``foldflow_workflow_outcomes_total``) over all that ended;
- ``api_availability``: ``/v1`` requests answered 5xx over all ``/v1`` requests;
- ``api_latency``: ``/v1`` requests (long-polls aside) slower than the threshold;
- MTTR, the mean time a Foldflow service that went down took to be back up
  (``foldflow:mttr_seconds:<window>``), from ``up``.

Alerts follow the multi-window, multi-burn-rate pattern of the Google SRE workbook
("Alerting on SLOs"), for a 30-day objective: page (severity critical) when 2% of the
budget burns in 1 h or 5% in 6 h, ticket (severity warning) for 10% in 1 or 3 days; each
long window is confirmed by a short one (1/12 of it) so an alert stops soon after the
burn does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from foldflow.observability.metrics import HTTP_REQUEST_DURATION  # noqa: E402
from foldflow.observability.outcomes import AGAINST_OBJECTIVE  # noqa: E402
from foldflow.settings import Settings  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "slo.yml"
RUNBOOK = "docs/runbook.md"
PERIOD = "30d"
#: The windows an error ratio is recorded over (PERIOD from the 5m ratio, the rest from rates).
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class Burn:
    """One window pair of a multi-window burn-rate alert."""

    severity: str
    long: str
    short: str
    factor: float


#: SRE workbook, table 5-8: budget consumed 2% in 1h, 5% in 6h (page), 10% in 1d and 3d.
BURNS = (
    Burn("critical", "1h", "5m", 14.4),
    Burn("critical", "6h", "30m", 6.0),
    Burn("warning", "1d", "2h", 3.0),
    Burn("warning", "3d", "6h", 1.0),
)

API = 'route=~"/v1/.*"'
API_TIMED = 'route=~"/v1/.*",route!~".*[?]wait_for"'
#: Interval of the rule group sampling `up` for MTTR: one sample is this many seconds down.
MTTR_SAMPLE_S = 10


def _go_float(value: float) -> str:
    """A bucket bound as prometheus_client writes it in ``le``."""
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(value))


@dataclass(frozen=True)
class Indicator:
    """One SLI: its name, what it measures, and its error ratio over a window."""

    slo: str
    title: str
    objective: float
    bad: str  # PromQL of the bad events' rate over the window $W
    total: str  # PromQL of all events' rate over the window $W
    alert: str

    def ratio(self, window: str) -> str:
        bad, total = self.bad.replace("$W", window), self.total.replace("$W", window)
        return f"({bad} or vector(0)) / {total}"


def indicators(settings: Settings) -> list[Indicator]:
    """The SLIs with the objectives of ``settings``."""
    bounds = [b for b in HTTP_REQUEST_DURATION._upper_bounds if b != float("inf")]
    threshold = settings.slo_api_latency_threshold_s
    if threshold not in bounds:
        raise SystemExit(
            f"slo_api_latency_threshold_s={threshold} is not a bucket bound of "
            f"foldflow_http_request_duration_seconds (one of {', '.join(map(str, bounds))})"
        )
    causes = "|".join(sorted(AGAINST_OBJECTIVE))
    le = _go_float(threshold)
    return [
        Indicator(
            "workflow_success", "end-to-end workflow success", settings.slo_workflow_success,
            f'sum(rate(foldflow_workflow_outcomes_total{{cause=~"{causes}"}}[$W]))',
            "sum(rate(foldflow_workflow_outcomes_total[$W]))",
            "FoldflowWorkflowSuccessBudgetBurn",
        ),
        Indicator(
            "api_availability", "API availability", settings.slo_api_availability,
            f'sum(rate(foldflow_http_requests_total{{{API},status=~"5.."}}[$W]))',
            f"sum(rate(foldflow_http_requests_total{{{API}}}[$W]))",
            "FoldflowApiAvailabilityBudgetBurn",
        ),
        Indicator(
            "api_latency", f"API requests within {threshold:g} s", settings.slo_api_latency,
            f"(sum(rate(foldflow_http_request_duration_seconds_count{{{API_TIMED}}}[$W])) - "
            f'sum(rate(foldflow_http_request_duration_seconds_bucket{{{API_TIMED},le="{le}"}}[$W])))',
            f"sum(rate(foldflow_http_request_duration_seconds_count{{{API_TIMED}}}[$W]))",
            "FoldflowApiLatencyBudgetBurn",
        ),
    ]


def _anchor(alert: str) -> str:
    return alert.lower()


def _recording(sli: Indicator) -> list[dict[str, Any]]:
    labels = {"slo": sli.slo}
    rules: list[dict[str, Any]] = [
        {"record": "foldflow:slo_objective:ratio", "expr": f"vector({sli.objective:g})",
         "labels": labels},
    ]
    rules += [
        {"record": f"foldflow:slo_errors:ratio_rate{w}", "expr": sli.ratio(w), "labels": labels}
        for w in WINDOWS
    ]
    rules.append({
        "record": f"foldflow:slo_errors:ratio_rate{PERIOD}",
        "expr": f'avg_over_time(foldflow:slo_errors:ratio_rate5m{{slo="{sli.slo}"}}[{PERIOD}])',
        "labels": labels,
    })
    rules.append({
        "record": "foldflow:slo_error_budget_remaining:ratio",
        "expr": (f'1 - foldflow:slo_errors:ratio_rate{PERIOD}{{slo="{sli.slo}"}}'
                 f' / {1 - sli.objective:.6g}'),
        "labels": labels,
    })
    return rules


def _alerts(sli: Indicator) -> list[dict[str, Any]]:
    budget = 1 - sli.objective
    rules: list[dict[str, Any]] = []
    for severity in ("critical", "warning"):
        pairs = [b for b in BURNS if b.severity == severity]
        expr = "\n  or\n".join(
            f'(\n  foldflow:slo_errors:ratio_rate{b.long}{{slo="{sli.slo}"}} > {b.factor * budget:.6g}\n'
            f'  and\n  foldflow:slo_errors:ratio_rate{b.short}{{slo="{sli.slo}"}} > {b.factor * budget:.6g}\n)'
            for b in pairs
        )
        windows = " or ".join(f"{b.long}/{b.short} at {b.factor:g}x" for b in pairs)
        rules.append({
            "alert": sli.alert,
            "expr": expr + "\n",
            "labels": {"severity": severity, "slo": sli.slo},
            "annotations": {
                "summary": (f"{sli.title}: the error budget of the {sli.objective:.4g} objective "
                            f"burns too fast ({windows})"),
                "description": ("Error ratio over the long window: {{ $value | humanizePercentage }}"
                                f" (the objective allows {budget:.4g})."),
                "runbook_url": f"{RUNBOOK}#{_anchor(sli.alert)}",
            },
        })
    return rules


def _mttr(settings: Settings) -> list[dict[str, Any]]:
    sample = {
        "name": "foldflow-slo-mttr-samples",
        "interval": f"{MTTR_SAMPLE_S}s",
        "rules": [{
            "record": "foldflow:service_down_seconds",
            "expr": f'{MTTR_SAMPLE_S} * max by (job) (1 - up{{job=~"foldflow-.*"}})',
        }],
    }

    def mttr(window: str) -> list[dict[str, Any]]:
        return [
            {"record": f"foldflow:outages_recovered:{window}",
             "expr": f"sum(resets(foldflow:service_down_seconds[{window}]))"},
            {"record": f"foldflow:mttr_seconds:{window}",
             "expr": (f"sum(sum_over_time(foldflow:service_down_seconds[{window}]))"
                      f" / (sum(resets(foldflow:service_down_seconds[{window}])) > 0)")},
        ]

    short = {"name": "foldflow-slo-mttr", "interval": f"{MTTR_SAMPLE_S}s",
             "rules": [*mttr("1h"),
                       {"record": "foldflow:slo_objective:seconds",
                        "expr": f"vector({settings.slo_mttr_s:g})", "labels": {"slo": "mttr"}}]}
    long = {"name": "foldflow-slo-mttr-long", "interval": "1m",
            "rules": [*mttr("1d"), *mttr(PERIOD), {
                "alert": "FoldflowMttrAboveObjective",
                "expr": f"foldflow:mttr_seconds:{PERIOD} > {settings.slo_mttr_s:g}\n",
                "for": "1h",
                "labels": {"severity": "warning", "slo": "mttr"},
                "annotations": {
                    "summary": ("Foldflow services took {{ $value | humanizeDuration }} on "
                                f"average to come back over {PERIOD} (objective "
                                f"{settings.slo_mttr_s:g}s)"),
                    "runbook_url": f"{RUNBOOK}#{_anchor('FoldflowMttrAboveObjective')}",
                },
            }]}
    return [sample, short, long]


def rules(settings: Settings) -> dict[str, Any]:
    """The rule file's content for the objectives of ``settings``."""
    slis = indicators(settings)
    latency = {
        "name": "foldflow-slo-latency",
        "rules": [
            {"record": "foldflow:api_latency_seconds:mean_rate5m",
             "expr": (f"sum(rate(foldflow_http_request_duration_seconds_sum{{{API_TIMED}}}[5m]))"
                      f" / sum(rate(foldflow_http_request_duration_seconds_count{{{API_TIMED}}}[5m]))")},
            {"record": "foldflow:api_latency_seconds:p99_rate5m",
             "expr": ("histogram_quantile(0.99, sum by (le) (rate("
                      f"foldflow_http_request_duration_seconds_bucket{{{API_TIMED}}}[5m])))")},
        ],
    }
    groups = [
        {"name": f"foldflow-slo-{sli.slo.replace('_', '-')}", "rules": _recording(sli) + _alerts(sli)}
        for sli in slis
    ]
    return {"groups": [*groups, latency, *_mttr(settings)]}


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors, multi-line PromQL as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data,
                                   style="|" if "\n" in data else None)


_Dumper.add_representer(str, _text)


def render(settings: Settings) -> str:
    """The YAML text of the rule file."""
    head = (
        "# GENERATED by deploy/prometheus/build_slo_rules.py from the FOLDFLOW_SLO_* settings\n"
        "# (docs/slo.md): edit the script or the settings, not this file.\n"
    )
    return head + yaml.dump(rules(settings), Dumper=_Dumper, sort_keys=False, width=200)


def main(argv: list[str] | None = None) -> int:
    """Write the rule file (``--output``, default deploy/prometheus/slo.yml)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(Settings())
    if not args.output.exists() or args.output.read_text() != text:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
