#!/usr/bin/env python3
"""Builds the monitoring of cec-exporter from monitoring/config.yml, like a monitoring mixin.

Writes grafana/dashboards/*.json (with the Grafana Foundation SDK, grafana-foundation-sdk on PyPI), the
data source provisioning grafana/provisioning/datasources/prometheus.yml, and the Prometheus rules
prometheus/rules/cec-exporter.rules.yml (text assembled by monitoring/rules.py). Edit the configuration,
the panels here or the rules there, run `python3 grafana/generate.py`, commit everything together.
`python3 grafana/generate.py --check` writes nothing and exits 1, with a diff, when a committed file
is not what this script generates; the test suite runs it (tests/it/observability.rs), and also
checks every query of the dashboards and rules against the exporter and a real Prometheus.
`--config FILE --out DIR` builds a deployment's own files from its own configuration.

The SDK build is pinned in grafana/requirements.txt: another build may write other JSON, so the script
refuses to run with any other (`python3 -m pip install -r grafana/requirements.txt`).

Conventions the tests hold the dashboards to: every selector carries `job=~"$job"`, the exporter's
own metrics also `instance=~"$instance"`, its per-tenant ones (all but the process-wide build, web
server and reload families, and Prometheus' `up`) also `tenant=~"$tenant"`, the call metrics also
`task_type=~"$task_type"`; wherever a query keeps `instance` (`sum by`, legend) it keeps `tenant` too;
rates use `$__rate_interval`, "in the selected range" panels `increase(...[$__range])`; no `offset`.
Panel ids are part of operators' links (`viewPanel=N`): never renumber, give a new panel the next free
id of its dashboard. Rows have ids from 100 up.
"""
import argparse
import difflib
import importlib.metadata
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "monitoring"))
import rules as rules_mod  # noqa: E402  monitoring/rules.py

DEFAULT_CONFIG = os.path.join(ROOT, "monitoring", "config.yml")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
SDK = "grafana-foundation-sdk"
INSTALL_HINT = "python3 -m pip install -r grafana/requirements.txt"


def pinned_sdk_version():
    """The exact version grafana/requirements.txt pins (`grafana-foundation-sdk==VERSION`)."""
    with open(REQUIREMENTS) as f:
        for line in f:
            name, sep, version = line.split("#", 1)[0].strip().partition("==")
            if sep and name.strip().lower().replace("_", "-") == SDK:
                return version.strip()
    raise SystemExit(f"{REQUIREMENTS} pins no {SDK}==VERSION")


def sdk_problem():
    """Why the installed SDK cannot be used (None when it is the pinned build)."""
    want = pinned_sdk_version()
    try:
        have = importlib.metadata.version(SDK)
    except importlib.metadata.PackageNotFoundError:
        return f"{SDK} is not installed; it must be {want}: {INSTALL_HINT}"
    if have != want:
        return f"{SDK} {have} is installed, grafana/requirements.txt pins {want}: {INSTALL_HINT}"
    try:
        import yaml  # noqa: F401  monitoring/config.yml is YAML; only read, so any PyYAML 5.1+ writes the same bytes
    except ImportError:
        return f"PyYAML is not installed (it reads monitoring/config.yml): {INSTALL_HINT}"
    return None


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 with a diff when the committed JSON differs from the generated")
    mode.add_argument("--sdk-installed", action="store_true",
                      help="exit 0 when the pinned SDK build is installed, 1 (saying why) otherwise")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="the monitoring configuration (default: monitoring/config.yml, the shipped defaults)")
    p.add_argument("--out", default=ROOT,
                   help="directory the files are written to (or checked in), by their repository paths "
                        "(default: the repository)")
    return p.parse_args()


if __name__ == "__main__":
    ARGS = parse_args()
    PROBLEM = sdk_problem()
    if ARGS.sdk_installed:
        if PROBLEM:
            print(PROBLEM, file=sys.stderr)
        sys.exit(1 if PROBLEM else 0)
    if PROBLEM:
        print(f"grafana/generate.py: {PROBLEM}", file=sys.stderr)
        sys.exit(2)
    CONFIG_PATH = ARGS.config
else:
    CONFIG_PATH = DEFAULT_CONFIG

import yaml  # noqa: E402  after the check above, which says how to install it

with open(CONFIG_PATH) as _f:
    CFG = rules_mod.Config(yaml.safe_load(_f))

# Imported after the version check, so a missing or other SDK gives the hint above, not a traceback.
from grafana_foundation_sdk.builders import bargauge  # noqa: E402
from grafana_foundation_sdk.builders import common as cb  # noqa: E402
from grafana_foundation_sdk.builders import dashboard as db  # noqa: E402
from grafana_foundation_sdk.builders import heatmap  # noqa: E402
from grafana_foundation_sdk.builders import prometheus  # noqa: E402
from grafana_foundation_sdk.builders import stat  # noqa: E402
from grafana_foundation_sdk.builders import table  # noqa: E402
from grafana_foundation_sdk.builders import timeseries  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models import common as cm  # noqa: E402
from grafana_foundation_sdk.models import dashboard as dm  # noqa: E402
from grafana_foundation_sdk.models import heatmap as hm  # noqa: E402
from grafana_foundation_sdk.models import prometheus as pm  # noqa: E402

# Every panel and query reads the data source the `datasource` variable selects.
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Selector fragments: the configured selector, then the dashboard's variables. Recorded series carry
# the instance and tenant like raw ones (the rules never sum them away), so every query honours
# $instance and $tenant. A single-tenant exporter has no tenant label: the variable's All (`.*`) also
# matches the empty value, so its series show. PROC is for the series that are never per tenant
# (Prometheus' up, the process-wide build family): a tenant selection must not hide them.
_SEL = CFG.selector + ", " if CFG.selector else ""
PROC = _SEL + 'job=~"$job", instance=~"$instance"'
RAW = PROC + ', tenant=~"$tenant"'
RAW_TT = RAW + ', task_type=~"$task_type"'
RR_TT = 'job=~"$job", instance=~"$instance", tenant=~"$tenant", task_type=~"$task_type"'
# Firing alerts of the selected tenants, and those without a tenant (a down target, a refused reload):
# they concern every tenant of their exporter.
ALERTS_TENANT = 'tenant=~"${tenant}|"'

OUTCOME_COLORS = {
    "answered": "green",
    "no_answer": "yellow",
    "busy": "orange",
    "rejected": "purple",
    "cancelled": "blue",
    "failed": "red",
    "unknown": "text",
}


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def query(expr, legend="__auto", ref="A", instant=False, fmt=pm.PromQueryFormat.TIME_SERIES, exemplar=False):
    q = (
        prometheus.Dataquery()
        .datasource(DS)
        .editor_mode(pm.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .format(fmt)
        .exemplar(exemplar)
        .ref_id(ref)
    )
    return q.instant() if instant else q.range()


def thresholds(*steps):
    """steps: (value or None for the base, color), ascending."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def fixed_color(color):
    return [dm.DynamicConfigValue(id_val="color", value={"fixedColor": color, "mode": "fixed"})]


def last_value():
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def timeseries_panel(id_, title, desc, targets, unit, stack=False, min_=None, max_=None, decimals=None,
                     legend_calcs=("mean", "max", "lastNotNull"), interpolation=cm.LineInterpolation.LINEAR):
    p = (
        timeseries.Panel()
        .id(id_)
        .title(title)
        .description(desc)
        .datasource(DS)
        .targets(targets)
        .unit(unit)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(thresholds((None, "green")))
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_interpolation(interpolation)
        .line_width(1)
        .fill_opacity(60 if stack else 10)
        .gradient_mode(cm.GraphGradientMode.NONE)
        .show_points(cm.VisibilityMode.NEVER)
        .point_size(4)
        .span_nulls(False)
        .axis_placement(cm.AxisPlacement.AUTO)
        .stacking(cb.StackingConfig().group("A").mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE))
        .legend(
            cb.VizLegendOptions()
            .calcs(list(legend_calcs))
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if min_ is not None:
        p = p.min(min_)
    if max_ is not None:
        p = p.max(max_)
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def stat_panel(id_, title, desc, targets, unit, steps=((None, "green"),), mappings=None, decimals=None,
               graph=cm.BigValueGraphMode.NONE, color_mode=cm.BigValueColorMode.VALUE,
               text_mode=cm.BigValueTextMode.AUTO):
    p = (
        stat.Panel()
        .id(id_)
        .title(title)
        .description(desc)
        .datasource(DS)
        .targets(targets)
        .unit(unit)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(*steps))
        .mappings(mappings or [])
        .color_mode(color_mode)
        .graph_mode(graph)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(last_value())
        .show_percent_change(False)
        .text_mode(text_mode)
        .wide_layout(True)
    )
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def table_panel(id_, title, desc, targets, transformation, decimals=None, footer=False):
    p = (
        table.Panel()
        .id(id_)
        .title(title)
        .description(desc)
        .datasource(DS)
        .targets(targets)
        .unit("short")
        .thresholds(thresholds((None, "green")))
        .mappings([])
        .align(cm.FieldTextAlignment.AUTO)
        .cell_options(cm.TableAutoCellOptions())
        .inspect(False)
        .cell_height(cm.TableCellHeight.SM)
        .show_header(True)
        .footer(cb.TableFooterOptions().show(footer).reducer(["sum"]).count_rows(False))
        .with_transformation(transformation)
    )
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def row(id_, title):
    return db.Row(title).id(id_)


# The SDK lays panels out left to right, wrapping at 24 columns, each row below the tallest panel of
# the previous one: `layout` is a list of (row, [(panel, width, height), ...]).
def dashboard(uid, title, desc, variables, layout, time_from, annotation_queries=()):
    d = (
        db.Dashboard(title)
        .uid(uid)
        .description(desc)
        .tags(["cec-exporter", "cec"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .timezone("")
        .week_start("")
        .fiscal_year_start_month(0)
        .live_now(False)
        .refresh("30s")
        .version(1)
        .link(
            db.DashboardLink("CEC dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["cec-exporter"])
            .as_dropdown(False)
            .icon("external link")
            .include_vars(True)
            .keep_time(True)
            .target_blank(False)
            .tooltip("")
            .url("")
        )
        .variables(variables)
        .annotations(list(annotation_queries))
    )
    for r, panels in layout:
        d = d.with_row(r)
        for p, w, h in panels:
            d = d.with_panel(p.span(w).height(h))
    return d.build()


def datasource_variable():
    return (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .regex("")
        .hide(dm.VariableHide.DONT_HIDE)
        .include_all(False)
        .multi(False)
    )


def query_variable(name, label, q, include_all, multi, refresh):
    v = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(q)
        .refresh(refresh)
        .regex("")
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .hide(dm.VariableHide.DONT_HIDE)
        .include_all(include_all)
        .multi(multi)
    )
    return v.all_value(".*") if include_all else v


def job_variable():
    return query_variable("job", "Job", f"label_values({CFG.sel('cec_up')}, job)", False, False,
                          dm.VariableRefresh.ON_DASHBOARD_LOAD)


def instance_variable():
    return query_variable("instance", "Instance", f'label_values(cec_up{{{_SEL}job=~"$job"}}, instance)', True, True,
                          dm.VariableRefresh.ON_TIME_RANGE_CHANGED)


def tenant_variable():
    """The CEC tenants of a multi-tenant exporter (`--config.file`), from cec_up's `tenant` label. A
    single-tenant exporter has none: the variable then offers only All, whose `.*` matches it."""
    return query_variable("tenant", "Tenant", f'label_values(cec_up{{{PROC}}}, tenant)', True, True,
                          dm.VariableRefresh.ON_TIME_RANGE_CHANGED)


def task_type_variable():
    return query_variable("task_type", "Task type", f'label_values(cec_calls_total{{{RAW}}}, task_type)',
                          True, True, dm.VariableRefresh.ON_TIME_RANGE_CHANGED)



OBJ = float(CFG.answer["objective"])
_PAGE = next(b for b in CFG.answer["burn_rates"] if b["severity"] == "page")
ANSWER_OBJECTIVE = OBJ
ANSWER_PAGE_BELOW = round(1 - _PAGE["factor"] * (1 - OBJ), 6)
ANSWER_PAGE_WINDOWS = f"{_PAGE['long']} and {_PAGE['short']} windows"


def ratio_panel(id_, title, desc, outcome, baseline, threshold=None, steps=None):
    """outcome's share of the calls per instance, tenant and task type over $__rate_interval, with the recorded
    baseline (dashed) and threshold (dotted) of the alert rules, or fixed threshold lines (steps)."""
    calls = f"cec_calls_total{{{RAW_TT}}}"
    part = f'cec_calls_total{{{RAW_TT}, outcome="{outcome}"}}'
    targets = [
        query(f"sum by (instance, tenant, task_type) (rate({part}[$__rate_interval]))\n"
              f"  / (sum by (instance, tenant, task_type) (rate({calls}[$__rate_interval])) > 0)",
              legend="{{instance}} {{tenant}} {{task_type}}", ref="A"),
        query(f"{baseline}{{{RR_TT}}}", legend="usual {{instance}} {{tenant}} {{task_type}}", ref="B"),
    ]
    if threshold:
        targets.append(query(f"{threshold}{{{RR_TT}}}", legend="alert above {{instance}} {{tenant}} {{task_type}}", ref="C"))
    p = timeseries_panel(id_, title, desc, targets, "percentunit", min_=0, max_=1)
    p = p.override_by_query("B", [
        dm.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0)])
    if threshold:
        p = p.override_by_query("C", [
            dm.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [0, 10], "fill": "dot"}),
            dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            dm.DynamicConfigValue(id_val="color", value={"fixedColor": "red", "mode": "fixed"})])
    if steps:
        p = p.thresholds(thresholds(*steps)).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    return p


def annotations(rule_selector):
    """Firing CEC alerts and exporter restarts (a reset of its per-process poll counter), as markers."""
    return [
        db.AnnotationQuery()
        .name("CEC alerts")
        .datasource(DS)
        .enable(True)
        .hide(False)
        .icon_color("red")
        .expr(f'ALERTS{{alertname=~"CEC.*", alertstate="firing", {rule_selector}}}'),
        db.AnnotationQuery()
        .name("Exporter restarts")
        .datasource(DS)
        .enable(True)
        .hide(False)
        .icon_color("blue")
        .expr(f"resets(cec_exporter_polls_total{{{RAW}}}[$__rate_interval]) > 0"),
    ]

# --------------------------------------------------------------------------------------------
# CEC call traffic
# --------------------------------------------------------------------------------------------

def calls_dashboard():
    calls = f"cec_calls_total{{{RAW_TT}}}"
    reasons = f"cec_call_end_reasons_total{{{RAW_TT}}}"

    overview = [
        (stat_panel(
            1, "Calls counted in the selected range",
            "Ended calls the exporter counted in the dashboard's time range, for the selected task types "
            "(sum of increase(cec_calls_total[$__range])). Each call is counted once, when CEC first shows it "
            "ended. An exporter restart without --state.path resets the counters: increase() then misses the "
            "calls counted before the restart.",
            [query(f"sum(increase({calls}[$__range]))", legend="calls", instant=True)],
            "short", decimals=0), 5, 4),
        (stat_panel(
            2, "Answered share in the selected range",
            "Share of the calls counted in the time range whose outcome is answered (the customer talked: "
            "talk time above zero).",
            [query(f'sum(increase(cec_calls_total{{{RAW_TT}, outcome="answered"}}[$__range]))\n'
                   f"  / sum(increase({calls}[$__range]))", legend="answered", instant=True)],
            "percentunit", steps=((None, "red"), (0.3, "orange"), (0.5, "green")), decimals=1), 5, 4),
        (stat_panel(
            3, "Failed share in the selected range",
            "Share of the calls counted in the time range whose outcome is failed (page codes 2, 3, 6 and "
            "unknown codes; for ITA every Q.850 cause that is not a normal clearing, busy, no answer or "
            "rejection). Busy, rejected, no answer and cancelled calls are separate outcomes and not included.",
            [query(f'sum(increase(cec_calls_total{{{RAW_TT}, outcome="failed"}}[$__range]))\n'
                   f"  / sum(increase({calls}[$__range]))", legend="failed", instant=True)],
            "percentunit", steps=((None, "green"), (0.05, "orange"), (0.2, "red")), decimals=1), 5, 4),
        (stat_panel(
            4, "Calls in progress",
            "Calls CEC currently shows not yet ended (state 0 to be called, 1 calling, 2 talking), summed over "
            "the selected task types, as of the exporter's last poll.",
            [query(f"sum(cec_calls_in_progress{{{RAW_TT}}})", legend="in progress")],
            "short", decimals=0, graph=cm.BigValueGraphMode.AREA), 4, 4),
        (stat_panel(
            5, "Freshness of CEC data",
            "Time since the end of the newest ended call the exporter has counted (time() - "
            "max(cec_last_call_end_timestamp_seconds)). It grows while no call ends, and also when CEC "
            "returns no new records or the exporter cannot poll: compare with the exporter health dashboard "
            "to tell quiet traffic from missing data. Thresholds assume steady traffic: adjust to yours.",
            [query(f"time() - max(cec_last_call_end_timestamp_seconds{{{RAW_TT}}})", legend="age",
                   instant=True)],
            "s", steps=((None, "green"), (900, "orange"), (3600, "red")), decimals=0), 5, 4),
    ]

    by_outcome = timeseries_panel(
        7, "Calls per second by outcome",
        "Rate of ended calls counted, stacked by outcome over all selected task types. answered: the "
        "customer talked; no_answer, busy, rejected, cancelled (hung up before the customer answered), "
        "failed, unknown (no reasonCode): see the README's Outcome table.",
        [query(f"sum by (outcome) (rate({calls}[$__rate_interval]))", legend="{{outcome}}")],
        "cps", stack=True, min_=0)
    for outcome, color in OUTCOME_COLORS.items():
        by_outcome = by_outcome.override_by_name(outcome, fixed_color(color))
    traffic = [
        (timeseries_panel(
            6, "Calls per second by task type and outcome",
            "Rate of ended calls counted, stacked by task type and outcome "
            "(sum by (task_type, outcome) (rate(cec_calls_total[$__rate_interval]))). Calls are counted when "
            "they end, so a burst here trails the calls' start by their duration.",
            [query(f"sum by (task_type, outcome) (rate({calls}[$__rate_interval]))",
                   legend="{{task_type}} {{outcome}}")],
            "cps", stack=True, min_=0), 12, 9),
        (by_outcome, 12, 9),
        # Ratios computed over $__rate_interval per instance, tenant and task type (never summed across
        # them), overlaid with the alert rules' recorded baseline and threshold.
        (ratio_panel(
            8, "Answer ratio by task type",
            "Answered calls / all calls per instance, tenant and task type over $__rate_interval (solid), the usual "
            "answered share (dashed: instance_task_type:cec_calls_answered:ratio_baseline, yesterday's day) "
            f"and, as lines, the objective ({ANSWER_OBJECTIVE:.0%}) and the share under which "
            f"CECAnswerRatioBurnRate pages ({ANSWER_PAGE_BELOW:.0%}, over its {ANSWER_PAGE_WINDOWS}). No line "
            "while a task type had no calls in the window (0/0).",
            "answered", "instance_task_type:cec_calls_answered:ratio_baseline",
            steps=((None, "red"), (ANSWER_PAGE_BELOW, "orange"), (ANSWER_OBJECTIVE, "green"))), 12, 8),
        (ratio_panel(
            9, "Failure ratio by task type",
            "Calls with outcome failed / all calls per instance, tenant and task type over $__rate_interval (solid; busy, "
            "rejected, no answer and cancelled are outcomes of their own), the usual failed share (dashed: "
            "instance_task_type:cec_calls_failed:ratio_baseline, yesterday's day) and the share above which "
            "CECCallFailureRatioSpike fires (dotted: instance_task_type:cec_calls_failed:ratio_threshold, "
            f"over {CFG.failure['window']} with at least {CFG.failure['min_calls']} calls and "
            f"{CFG.failure['min_failed']} failed).",
            "failed", "instance_task_type:cec_calls_failed:ratio_baseline",
            threshold="instance_task_type:cec_calls_failed:ratio_threshold"), 12, 8),
        (table_panel(
            15, "Calls in the selected range by task type and outcome",
            "Calls counted in the dashboard's time range, one row per task type and one column "
            "per outcome (increase(cec_calls_total[$__range]), pivoted).",
            [query(f"sum by (task_type, outcome) (increase({calls}[$__range]))",
                   legend="{{task_type}} {{outcome}}", instant=True, fmt=pm.PromQueryFormat.TABLE)],
            dm.DataTransformerConfig(id_val="groupingToMatrix", options={
                "columnField": "outcome",
                "rowField": "task_type",
                "valueField": "Value",
                "emptyValue": "zero",
            }),
            decimals=0, footer=True).sort_by([]), 24, 8),
    ]

    rw = CFG.reasons["window"]
    share = f"instance_task_type_reason:cec_call_end_reasons:ratio{rw}{{{RR_TT}}}"
    usual = f"instance_task_type_reason:cec_call_end_reasons:ratio_baseline{{{RR_TT}}}"
    count = f"instance_task_type_reason:cec_call_end_reasons:increase{rw}{{{RR_TT}}}"
    end_reasons = [
        (timeseries_panel(
            10, "End reasons per second",
            "Ended calls per second by instance, tenant, task type and end reason "
            "(rate(cec_call_end_reasons_total[$__rate_interval])), every reason (no per-point top 10). "
            "reason_code is CEC's reasonCode: page codes 0-6 for task types 1-3, Q.850 causes for ITA; none "
            "when a record has no reasonCode. The dots are exemplars: each carries the call_serial_no of a "
            "recent call with that reason; click one to look the call up in CEC (the data source's "
            "call_serial_no link).",
            [query(f"sum by (instance, tenant, task_type, reason_code, reason) (rate({reasons}[$__rate_interval]))",
                   legend="{{instance}} {{tenant}} {{task_type}} {{reason}} ({{reason_code}})", exemplar=True)],
            "cps", min_=0), 12, 9),
        (timeseries_panel(
            20, "End reason share against its usual share",
            f"Each reason's share of its task type's calls over {rw} divided by its usual share (yesterday's "
            "day): 1 is usual. Normal clearing and hang-ups stay near 1 however the volume swings; "
            f"CECCallEndReasonSpike opens a ticket at {CFG.reasons['relative_rise']}x (the line) with at least "
            f"{CFG.reasons['min_calls']} such calls and {CFG.reasons['absolute_rise']:.0%} above the usual share. "
            "A reason without a usual share (new) has no line here: see the table.",
            [query(f"{share}\n  / {usual}", legend="{{instance}} {{tenant}} {{task_type}} {{reason}}")],
            "x", min_=0).thresholds(thresholds((None, "green"), (CFG.reasons["relative_rise"], "red")))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)), 12, 9),
        (table_panel(
            21, "End reason anomalies",
            f"Per instance, tenant, task type and end reason, now (the last {rw}): calls with that reason, their "
            "share of the task type's calls, the usual share (yesterday's day) and share / usual, largest "
            "first. A reason never seen before shows an empty usual share and an infinite ratio.",
            [query(count, legend="calls", ref="A", instant=True, fmt=pm.PromQueryFormat.TABLE),
             query(share, legend="share", ref="B", instant=True, fmt=pm.PromQueryFormat.TABLE),
             query(usual, legend="usual", ref="C", instant=True, fmt=pm.PromQueryFormat.TABLE),
             query(f"{share}\n  / {usual}\nor\n{share} * 0 + Inf", legend="ratio", ref="D",
                   instant=True, fmt=pm.PromQueryFormat.TABLE)],
            dm.DataTransformerConfig(id_val="merge", options={}),
            decimals=2)
         .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
             "excludeByName": {"Time": True, "job": True},
             "indexByName": {"instance": 0, "tenant": 1, "task_type": 2, "reason": 3, "reason_code": 4,
                             "Value #A": 5, "Value #B": 6, "Value #C": 7, "Value #D": 8},
             "renameByName": {"Value #A": f"calls ({rw})", "Value #B": "share", "Value #C": "usual share",
                              "Value #D": "share / usual"},
         }))
         .sort_by([cb.TableSortByFieldState().display_name("share / usual").desc(True)]), 24, 9),
        (bargauge.Panel()
         .id(11)
         .title("End reasons in the selected range")
         .description("Calls counted in the dashboard's time range by task type and end reason, the 15 "
                      "largest (topk over increase(cec_call_end_reasons_total[$__range])).")
         .datasource(DS)
         .targets([query(
             f"sort_desc(topk(15, sum by (task_type, reason_code, reason) (increase({reasons}[$__range]))))",
             legend="{{task_type}} {{reason}} ({{reason_code}})", instant=True)])
         .unit("short")
         .decimals(0)
         .min(0)
         .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
         .thresholds(thresholds((None, "green")))
         .mappings([])
         .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
         .value_mode(cm.BarGaugeValueMode.COLOR)
         .name_placement(cm.BarGaugeNamePlacement.AUTO)
         .orientation(cm.VizOrientation.HORIZONTAL)
         .show_unfilled(True)
         .sizing(cm.BarGaugeSizing.AUTO)
         .min_viz_height(16)
         .min_viz_width(8)
         .max_viz_height(300)
         .reduce_options(last_value()), 12, 9),
    ]

    def quantiles(metric, by, legend_fmt):
        """p50, p90 and p99 of a histogram by `by`; the p99 asks for exemplars (a call_serial_no)."""
        sel = f"{metric}_bucket{{{RAW_TT}}}"
        return [
            query(f"histogram_quantile({q}, sum by (le, {by}) (rate({sel}[$__rate_interval])))",
                  legend=legend_fmt.format(p=p), ref=ref, exemplar=(p == "p99"))
            for ref, q, p in (("A", "0.5", "p50"), ("B", "0.9", "p90"), ("C", "0.99", "p99"))
        ]

    talk_time = [
        (timeseries_panel(
            12, "Talk duration percentiles",
            "p50, p90 and p99 of the customer talk time of answered calls, per task type "
            "(histogram_quantile over rate(cec_call_talk_duration_seconds_bucket[$__rate_interval]) by le, "
            "task_type). Buckets run from 5 s to 1 h, so values are interpolated within a bucket. No line "
            "while no answered call ended in the window.",
            quantiles("cec_call_talk_duration_seconds", "task_type", "{p} {{{{task_type}}}}"),
            "s", min_=0), 12, 9),
        (timeseries_panel(
            13, "Agent talk duration percentiles",
            "p50, p90 and p99 of the agent talk time (agentTalkDuration above zero), per task type "
            "(histogram_quantile over rate(cec_call_agent_talk_duration_seconds_bucket[$__rate_interval]) by "
            "le, task_type). Task types without an agent leg have no line.",
            quantiles("cec_call_agent_talk_duration_seconds", "task_type", "{p} {{{{task_type}}}}"),
            "s", min_=0), 12, 9),
        (heatmap.Panel()
         .id(14)
         .title("Talk duration heatmap")
         .description("Distribution of customer talk time of answered calls over time, for the selected "
                      "task types: the rate of each cec_call_talk_duration_seconds bucket (sum by (le)), "
                      "drawn by Grafana from the cumulative buckets (format heatmap). A cell's colour is "
                      "calls per second whose talk time falls in that bucket.")
         .datasource(DS)
         .max_data_points(100)
         .targets([query(
             f"sum by (le) (rate(cec_call_talk_duration_seconds_bucket{{{RAW_TT}}}[$__rate_interval]))",
             legend="{{le}}", fmt=pm.PromQueryFormat.HEATMAP, exemplar=True)])
         .hide_from(cb.HideSeriesConfig().legend(False).tooltip(False).viz(False))
         .scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
         .calculate(False)
         .cell_gap(1)
         .cell_values(heatmap.CellValues().unit("cps"))
         .color(heatmap.HeatmapColorOptions()
                .mode(hm.HeatmapColorMode.SCHEME)
                .scheme("Oranges")
                .fill("dark-orange")
                .scale(hm.HeatmapColorScale.EXPONENTIAL)
                .exponent(0.5)
                .steps(64)
                .reverse(False))
         .exemplars_color("rgba(255,0,255,0.7)")
         .filter_values(heatmap.FilterValueRange().le(1e-09))
         .show_legend()
         .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.AUTO))
         .mode(cm.TooltipDisplayMode.SINGLE)
         .show_color_scale(False)
         .show_y_histogram()
         .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT).reverse(False).unit("s")), 24, 9),
    ]

    answer_delay = [
        (timeseries_panel(
            16, "Answer delay percentiles by leg",
            "How long phones rang before someone answered: p50, p90 and p99 per leg over the selected task "
            "types (histogram_quantile over rate(cec_call_answer_delay_seconds_bucket[$__rate_interval]) by "
            "le, leg). customer: talkingTime - alertingTime; agent: agentTalkingTime - agentAlertingTime. "
            "Buckets run from 1 s to 2 min.",
            quantiles("cec_call_answer_delay_seconds", "leg", "{p} {{{{leg}}}}"),
            "s", min_=0), 12, 9),
        (timeseries_panel(
            17, "Answer delay p90 by task type and leg",
            "p90 of the answer delay per task type and leg (histogram_quantile(0.9) over "
            "rate(cec_call_answer_delay_seconds_bucket[$__rate_interval]) by le, task_type, leg).",
            [query("histogram_quantile(0.9, sum by (le, task_type, leg) "
                   f"(rate(cec_call_answer_delay_seconds_bucket{{{RAW_TT}}}[$__rate_interval])))",
                   legend="{{task_type}} {{leg}}")],
            "s", min_=0), 12, 9),
    ]

    state_names = (("A", "0", "to be called"), ("B", "1", "calling"), ("C", "2", "talking"))
    in_progress = [
        (timeseries_panel(
            18, "Calls in progress by task type and state",
            "Calls CEC shows not yet ended, stacked by task type and state (cec_calls_in_progress): state 0 "
            "to be called, 1 calling (ringing), 2 talking. As of each poll; a call leaves this gauge when it "
            "is counted as ended.",
            [query(f'sum by (task_type) (cec_calls_in_progress{{{RAW_TT}, state="{s}"}})',
                   legend=f"{{{{task_type}}}} {name}", ref=ref)
             for ref, s, name in state_names],
            "short", stack=True, min_=0, decimals=0), 12, 9),
        (timeseries_panel(
            19, "Age of the newest ended call by task type",
            "Time since the end of the newest ended call counted, per task type (time() - "
            "cec_last_call_end_timestamp_seconds). A task type with traffic whose line keeps rising has "
            "stopped producing records; if every line rises together, check the exporter health dashboard.",
            [query(f"time() - max by (task_type) (cec_last_call_end_timestamp_seconds{{{RAW_TT}}})",
                   legend="{{task_type}}")],
            "s", min_=0), 12, 9),
    ]

    return dashboard(
        "cec-calls",
        "CEC call traffic",
        "Huawei Cloud CEC call-detail records as counted by cec-exporter: calls by task type and outcome, "
        "end reasons, talk and answer-delay distributions, calls in progress.",
        [datasource_variable(), job_variable(), instance_variable(), tenant_variable(), task_type_variable()],
        [
            (row(100, "Overview"), overview),
            (row(101, "Calls and outcomes"), traffic),
            (row(102, "End reasons"), end_reasons),
            (row(103, "Talk time"), talk_time),
            (row(104, "Answer delay"), answer_delay),
            (row(105, "Calls in progress and freshness"), in_progress),
        ],
        time_from="now-6h",
        annotation_queries=annotations(f'job=~"$job", instance=~"$instance", {ALERTS_TENANT}, task_type=~"$task_type"'),
    )


# --------------------------------------------------------------------------------------------
# CEC exporter health
# --------------------------------------------------------------------------------------------

def health_dashboard():
    def m(name):
        return f"{name}{{{RAW}}}"

    def increase_in_range(counter, legend="__auto"):
        """How much one of the exporter's counters grew over the dashboard's time range, all instances."""
        return query(f"sum(increase({m(counter)}[$__range]))", legend=legend, instant=True)

    def rate_by_instance(counter, legend, ref="A"):
        """Per-second rate of one of the exporter's counters, per exporter instance and tenant."""
        return query(f"sum by (instance, tenant) (rate({m(counter)}[$__rate_interval]))", legend=legend, ref=ref)

    up_mappings = [dm.ValueMap(options={
        "0": dm.ValueMappingResult(color="red", index=0, text="DOWN"),
        "1": dm.ValueMappingResult(color="green", index=1, text="UP"),
    })]

    overview = [
        (stat_panel(
            1, "Up",
            "scrape: Prometheus' up for the exporter's target (1 when /metrics answered). poll: cec_up, 1 when "
            "the exporter's last background poll of CEC succeeded (0 after a failed poll or a failed state "
            "commit; the counters then keep their last committed values).",
            [query(f"up{{{PROC}}}", legend="scrape {{instance}}", ref="A"),
             query(f"cec_up{{{RAW}}}", legend="poll {{instance}} {{tenant}}", ref="B")],
            "none", steps=((None, "red"), (1, "green")), mappings=up_mappings,
            color_mode=cm.BigValueColorMode.BACKGROUND, text_mode=cm.BigValueTextMode.VALUE_AND_NAME), 6, 4),
        (stat_panel(
            2, "Time since last successful poll",
            "time() - cec_exporter_last_successful_poll_timestamp_seconds. Polls run every --poll.interval "
            "(30 s by default); after a failure the exporter backs off, doubling up to 5 minutes. Orange after "
            "2 minutes, red after 5.",
            [query(f"time() - {m('cec_exporter_last_successful_poll_timestamp_seconds')}",
                   legend="{{instance}} {{tenant}}", instant=True)],
            "s", steps=((None, "green"), (120, "orange"), (300, "red")), decimals=0,
            color_mode=cm.BigValueColorMode.BACKGROUND), 4, 4),
        (stat_panel(
            3, "Poll failures in range",
            "Polls that failed in the dashboard's time range (increase of cec_exporter_poll_failures_total). A "
            "failed poll commits nothing and is retried; the reason is in the exporter's log and in the API "
            "errors panel.",
            [increase_in_range("cec_exporter_poll_failures_total", "failures")],
            "short", steps=((None, "green"), (1, "orange")), decimals=0), 3, 4),
        (stat_panel(
            4, "State commit failures in range",
            "Commits to the --state.path store that failed in the time range (disk full, read-only file "
            "system): each such poll was undone and retried (increase of "
            "cec_exporter_state_commit_failures_total).",
            [increase_in_range("cec_exporter_state_commit_failures_total", "commit failures")],
            "short", steps=((None, "green"), (1, "red")), decimals=0), 3, 4),
        (stat_panel(
            5, "Incomplete reads in range",
            "Windows whose pages could not be made to cover CEC's answer after three reads "
            "(increase of cec_exporter_incomplete_reads_total): calls there may have been missed.",
            [increase_in_range("cec_exporter_incomplete_reads_total", "incomplete reads")],
            "short", steps=((None, "green"), (1, "red")), decimals=0), 4, 4),
        (stat_panel(
            6, "Catch-up skipped in range",
            "Outage time beyond --poll.max-catchup that was not read, in the time range (increase of "
            "cec_exporter_catchup_skipped_seconds_total): calls that started then are not counted.",
            [increase_in_range("cec_exporter_catchup_skipped_seconds_total", "skipped")],
            "s", steps=((None, "green"), (1, "red")), decimals=0), 4, 4),
    ]

    polls = [
        (timeseries_panel(
            7, "Poll duration",
            "How long the last background poll took (cec_exporter_poll_duration_seconds, a gauge updated "
            "after each poll). Backfill and catch-up polls read many windows and take longer.",
            [query(m("cec_exporter_poll_duration_seconds"), legend="{{instance}} {{tenant}}")],
            "s", min_=0), 8, 8),
        (timeseries_panel(
            8, "Polls and poll failures",
            "Polls attempted and polls failed per second (rate of cec_exporter_polls_total and "
            "cec_exporter_poll_failures_total). With the default 30 s interval a healthy exporter polls "
            "about 0.033 times a second.",
            [rate_by_instance("cec_exporter_polls_total", "polls {{instance}} {{tenant}}", ref="A"),
             rate_by_instance("cec_exporter_poll_failures_total", "failures {{instance}} {{tenant}}", ref="B")],
            "cps", min_=0).override_by_regexp("failures .*", fixed_color("red")), 8, 8),
        (timeseries_panel(
            9, "API requests of the last poll",
            "queryCallDetailRecord requests the last successful poll made "
            "(cec_exporter_last_poll_api_requests): the cost of a poll. In a steady state about one per 100 "
            "records in the window per task-type query, plus targeted re-reads of long calls.",
            [query(m("cec_exporter_last_poll_api_requests"), legend="{{instance}} {{tenant}}")],
            "short", min_=0, decimals=0), 8, 8),
    ]

    api = [
        (timeseries_panel(
            10, "API requests by endpoint and code",
            "HTTP requests to CEC per second by endpoint (token_by_ak_sk, query_call_detail_record) and HTTP "
            "status (none: no answer), from cec_exporter_api_requests_total.",
            [query(f"sum by (endpoint, code) (rate({m('cec_exporter_api_requests_total')}[$__rate_interval]))",
                   legend="{{endpoint}} {{code}}")],
            "reqps", stack=True, min_=0), 12, 8),
        (timeseries_panel(
            11, "API errors by endpoint and error",
            "Failed exchanges with CEC per second by endpoint and kind (cec_exporter_api_errors_total): "
            "timeout, transport, unauthorized (401/403), rate_limited (429), server_error (5xx), http_status "
            "(other status), decode (not the documented JSON), ret_code (retCode other than 0 and 1). Every "
            "endpoint and error is exposed from 0; a zero line \"all: none\" is drawn as well (while the "
            "exporter is scraped), so the panel never shows \"No data\".",
            # `or` a zero series while the exporter is up: the panel shows 0, not "No data".
            [query(
                f"sum by (endpoint, error) (rate({m('cec_exporter_api_errors_total')}[$__rate_interval]))\n"
                f'  or on() label_replace(label_replace(0 * max(cec_up{{{RAW}}}), "endpoint", "all", "", ""),'
                f' "error", "none", "", "")',
                legend="{{endpoint}}: {{error}}")],
            "reqps", stack=True, min_=0), 12, 8),
    ]

    records = [
        (timeseries_panel(
            12, "Records fetched",
            "Call records fetched from CEC per second, re-reads of the lookback included "
            "(rate of cec_exporter_records_fetched_total).",
            [rate_by_instance("cec_exporter_records_fetched_total", "{{instance}} {{tenant}}")],
            "cps", min_=0), 8, 8),
        (timeseries_panel(
            13, "Rejected records by reason",
            "Records skipped because they cannot be counted, per second by reason "
            "(cec_exporter_records_rejected_total): not_an_object, missing_serial_no, invalid_serial_no, "
            "missing_state, invalid_state. Each fetch of a bad record counts (it is re-read while in the "
            "window).",
            [query(f"sum by (reason) (rate({m('cec_exporter_records_rejected_total')}[$__rate_interval]))",
                   legend="{{reason}}")],
            "cps", stack=True, min_=0), 8, 8),
        (timeseries_panel(
            14, "Invalid fields by field",
            "Optional record fields with an unusable value, per second by the vendor's field name "
            "(cec_exporter_record_fields_invalid_total). The field reads as absent and the call still counts, "
            "but its outcome, durations or task type may be less precise.",
            [query(f"sum by (field) (rate({m('cec_exporter_record_fields_invalid_total')}[$__rate_interval]))",
                   legend="{{field}}")],
            "cps", stack=True, min_=0), 8, 8),
    ]

    late_tokens_memory = [
        (timeseries_panel(
            15, "Late records and max lateness",
            "Left axis: calls first seen although they started before the previous poll's window end, per "
            "second (rate of cec_exporter_late_records_total). Right axis: the largest such lateness since "
            "start (cec_exporter_max_record_lateness_seconds). When max lateness nears --poll.lookback (5 m "
            "by default), later records would be missed: raise the lookback.",
            [rate_by_instance("cec_exporter_late_records_total", "late records {{instance}} {{tenant}}", ref="A"),
             query(f"max by (instance, tenant) ({m('cec_exporter_max_record_lateness_seconds')})",
                   legend="max lateness {{instance}} {{tenant}}", ref="B")],
            "cps", min_=0).override_by_query("B", [
                dm.DynamicConfigValue(id_val="unit", value="s"),
                dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                dm.DynamicConfigValue(id_val="custom.axisLabel", value="max lateness"),
                dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ]), 8, 8),
        (timeseries_panel(
            16, "Token refreshes",
            "Bearer tokens fetched from tokenByAkSk per second (rate of cec_exporter_token_refreshes_total). "
            "Expect one per --cec.token-expire less the refresh margin (about one every 9 minutes with the "
            "default 600 s), plus one after an HTTP 401. Much more often points at a token rejected by CEC.",
            [rate_by_instance("cec_exporter_token_refreshes_total", "{{instance}} {{tenant}}")],
            "cps", min_=0), 8, 8),
        (timeseries_panel(
            17, "Remembered calls",
            "Counted calls the exporter keeps so re-reads are not counted twice "
            "(cec_exporter_remembered_calls): about a lookback's worth of calls plus the open ones. Steady "
            "growth means the floor is not rising (e.g. long open calls).",
            [query(m("cec_exporter_remembered_calls"), legend="{{instance}} {{tenant}}")],
            "short", min_=0, decimals=0), 8, 8),
    ]

    status = [
        (timeseries_panel(
            18, "Scrape and poll status over time",
            "up (scrape, per target) and cec_up (last poll succeeded, per instance and tenant) over time: 1 "
            "is good.",
            [query(f"up{{{PROC}}}", legend="scrape {{instance}}", ref="A"),
             query(f"cec_up{{{RAW}}}", legend="poll {{instance}} {{tenant}}", ref="B")],
            "short", min_=0, max_=1, decimals=0, interpolation=cm.LineInterpolation.STEP_AFTER,
            legend_calcs=("min", "lastNotNull")), 12, 7),
        (table_panel(
            19, "Build info",
            "Version and revision of each running exporter (cec_exporter_build_info).",
            [query(f"cec_exporter_build_info{{{PROC}}}", legend="{{version}}", instant=True,
                   fmt=pm.PromQueryFormat.TABLE)],
            dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "Value": True, "__name__": True},
                "indexByName": {"job": 0, "instance": 1, "version": 2, "revision": 3},
                "renameByName": {},
            })), 12, 7),
    ]

    durability = [
        (timeseries_panel(
            20, "State store size",
            "Size of the --state.path store after the last commit (cec_exporter_state_bytes): about a "
            "lookback's worth of calls plus the open ones, some 18 bytes per remembered call. Absent without "
            "--state.path.",
            [query(m("cec_exporter_state_bytes"), legend="{{instance}} {{tenant}}")],
            "bytes", min_=0), 8, 8),
        (timeseries_panel(
            21, "State commits",
            "Polls committed to the state store per second (rate of cec_exporter_state_commits_total) and the "
            "commits that failed (cec_exporter_state_commit_failures_total): a failed commit undoes its poll, "
            "which is retried; while commits fail no call is counted.",
            [rate_by_instance("cec_exporter_state_commits_total", "commits {{instance}} {{tenant}}", ref="A"),
             rate_by_instance("cec_exporter_state_commit_failures_total", "failures {{instance}} {{tenant}}", ref="B")],
            "cps", min_=0), 8, 8),
        (stat_panel(
            22, "Open calls given up in range",
            "Calls the exporter stopped waiting for because CEC never showed them ended within "
            "--poll.max-call-duration (increase of cec_exporter_open_calls_abandoned_total over the range).",
            [increase_in_range("cec_exporter_open_calls_abandoned_total")],
            "short", steps=((None, "green"), (1, "orange"))), 8, 8),
    ]

    return dashboard(
        "cec-exporter-health",
        "CEC exporter health",
        "Health of cec-exporter itself: polls, CEC API requests and errors, records fetched, rejected and "
        "late, token refreshes, state store commits, memory, build info.",
        [datasource_variable(), job_variable(), instance_variable(), tenant_variable()],
        [
            (row(100, "Overview"), overview),
            (row(101, "Polls"), polls),
            (row(102, "CEC API"), api),
            (row(103, "Records"), records),
            (row(104, "Late records, tokens and remembered calls"), late_tokens_memory),
            (row(105, "Status and build"), status),
            (row(106, "State store"), durability),
        ],
        time_from="now-3h",
        annotation_queries=annotations(f'job=~"$job", instance=~"$instance", {ALERTS_TENANT}'),
    )


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def render(d):
    """Deterministic JSON: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(d, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def datasource_provisioning():
    """The data source: timeInterval is the exporter's scrape interval, so $__rate_interval spans four
    scrapes; the exemplar link turns a call_serial_no into a link to the call."""
    link = CFG.exemplar_link
    return f"""# Grafana datasource provisioning for the cec-exporter dashboards.
# GENERATED by `python3 grafana/generate.py` from monitoring/config.yml (scrape_interval, exemplar_link).
# Mount grafana/provisioning at /etc/grafana/provisioning (see grafana/README.md).
# Change `url` to where your Prometheus answers, as seen from the Grafana server.
apiVersion: 1

datasources:
  - name: Prometheus
    type: prometheus
    uid: prometheus
    access: proxy
    url: http://localhost:9090
    isDefault: true
    editable: true
    jsonData:
      httpMethod: POST
      # Prometheus' scrape interval for the exporter ({CFG.scrape_interval}, as in prometheus/prometheus.yml):
      # the dashboards' rate windows, Grafana's $__rate_interval, are at least 4 times it.
      timeInterval: {CFG.scrape_interval}
      # Exemplars (the exporter's call_serial_no on cec_call_end_reasons_total and every histogram
      # bucket) link to the call; Prometheus keeps them with --enable-feature=exemplar-storage.
      exemplarTraceIdDestinations:
        - name: call_serial_no
          urlDisplayLabel: {json.dumps(link["name"])}
          url: {json.dumps(link["url"])}
"""


def check_prometheus_yml():
    """prometheus/prometheus.yml is an example, not generated: it must agree with the configuration."""
    path = os.path.join(ROOT, "prometheus", "prometheus.yml")
    with open(path) as f:
        y = yaml.safe_load(f)
    problems = []
    if y["global"]["evaluation_interval"] != CFG.evaluation_interval:
        problems.append(f"evaluation_interval {y['global']['evaluation_interval']} != {CFG.evaluation_interval}")
    for job in y["scrape_configs"]:
        if job.get("scrape_interval") != CFG.scrape_interval:
            problems.append(f"job {job['job_name']}: scrape_interval {job.get('scrape_interval')} != {CFG.scrape_interval}")
    return [f"prometheus/prometheus.yml disagrees with {CONFIG_PATH}: {p}" for p in problems]


def generated():
    """{repository path: text} of every generated file."""
    return {
        "grafana/dashboards/cec-calls.json": render(calls_dashboard()),
        "grafana/dashboards/cec-exporter-health.json": render(health_dashboard()),
        "grafana/provisioning/datasources/prometheus.yml": datasource_provisioning(),
        "prometheus/rules/cec-exporter.rules.yml": rules_mod.rules_file(CFG),
    }


def check(files, out):
    """Exit status 1, with a short unified diff per stale file, when a committed file differs."""
    stale = 0
    for name, text in files.items():
        path = os.path.join(out, name)
        try:
            with open(path) as f:
                committed = f.read()
        except FileNotFoundError:
            committed = ""
        if committed == text:
            continue
        stale += 1
        diff = list(difflib.unified_diff(committed.splitlines(keepends=True), text.splitlines(keepends=True),
                                         f"committed {name}", f"generated {name}", n=2))
        shown = diff[:60]
        sys.stdout.writelines(shown)
        if len(diff) > len(shown):
            print(f"... {len(diff) - len(shown)} more diff lines")
    dash_dir = os.path.join(out, "grafana", "dashboards")
    for name in sorted(set(os.listdir(dash_dir) if os.path.isdir(dash_dir) else [])):
        if name.endswith(".json") and f"grafana/dashboards/{name}" not in files:
            stale += 1
            print(f"grafana/dashboards/{name} is not generated: add it to grafana/generate.py or remove it")
    mismatch = check_prometheus_yml() if out == ROOT else []
    for m in mismatch:
        print(m)
    if stale:
        print(f"{stale} file(s) differ from what grafana/generate.py generates: "
              "run `python3 grafana/generate.py` and commit the result.")
    if stale or mismatch:
        return 1
    print(f"{len(files)} files are what grafana/generate.py generates from monitoring/config.yml")
    return 0


def main():
    files = generated()
    if ARGS.check:
        return check(files, ARGS.out)
    for name, text in files.items():
        path = os.path.join(ARGS.out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        print("wrote " + name)
    for m in check_prometheus_yml() if ARGS.out == ROOT else []:
        print(m, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
