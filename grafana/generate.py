#!/usr/bin/env python3
"""Generates grafana/dashboards/*.json: edit the panels here, run `python3 grafana/generate.py`, commit both.

The JSON files are what Grafana loads and what the test suite checks (tests/it/observability.rs); this
script keeps their many panels consistent (selectors, units, datasource, layout).
"""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
DS = {"type": "prometheus", "uid": "${datasource}"}

# Selector fragments.
RAW = 'job=~"$job", instance=~"$instance"'
RAW_TT = 'job=~"$job", instance=~"$instance", task_type=~"$task_type"'
RR_TT = 'job=~"$job", task_type=~"$task_type"'

OUTCOME_COLORS = {
    "answered": "green",
    "no_answer": "yellow",
    "busy": "orange",
    "rejected": "purple",
    "cancelled": "blue",
    "failed": "red",
    "unknown": "text",
}


class Builder:
    def __init__(self):
        self.panels = []
        self.next_id = 1

    def add(self, panel, x, y, w, h):
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        self.panels.append(panel)
        return panel


def target(expr, legend="__auto", ref="A", instant=False, fmt="time_series", exemplar=False, interval=None):
    t = {
        "datasource": dict(DS),
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "format": fmt,
        "exemplar": exemplar,
        "refId": ref,
    }
    if interval:
        t["interval"] = interval
    return t


def thresholds(steps):
    """steps: list of (value or None, color)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def timeseries(title, desc, targets, unit, stack=False, min_=None, max_=None, overrides=None,
               draw="line", fill=10, decimals=None, legend_calcs=("mean", "max", "lastNotNull"),
               interpolation="linear", sort="desc"):
    custom = {
        "axisBorderShow": False,
        "axisCenteredZero": False,
        "axisColorMode": "text",
        "axisLabel": "",
        "axisPlacement": "auto",
        "barAlignment": 0,
        "drawStyle": draw,
        "fillOpacity": 60 if stack else fill,
        "gradientMode": "none",
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "insertNulls": False,
        "lineInterpolation": interpolation,
        "lineWidth": 1,
        "pointSize": 4,
        "scaleDistribution": {"type": "linear"},
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "off"},
    }
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "mappings": [],
        "thresholds": thresholds([(None, "green")]),
        "unit": unit,
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": dict(DS),
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {
                "calcs": list(legend_calcs),
                "displayMode": "table",
                "placement": "right" if len(legend_calcs) == 0 else "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": sort},
        },
        "targets": targets,
    }


def stat(title, desc, targets, unit, steps=((None, "green"),), mappings=None, decimals=None,
         graph="none", color_mode="value", text_mode="auto", no_value=None, orientation="auto"):
    defaults = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": thresholds(list(steps)),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if no_value is not None:
        defaults["noValue"] = no_value
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": dict(DS),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": color_mode,
            "graphMode": graph,
            "justifyMode": "auto",
            "orientation": orientation,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": text_mode,
            "wideLayout": True,
        },
        "targets": targets,
    }


def by_regex_color(regex, color):
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
    }


def by_name_color(name, color):
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
    }


def q_var(name, label, query, include_all, multi, refresh=2, sort=1):
    v = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DS),
        "definition": query,
        "query": query,
        "refresh": refresh,
        "regex": "",
        "sort": sort,
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "current": {},
        "options": [],
        "skipUrlSync": False,
    }
    if include_all:
        v["allValue"] = ".*"
    return v


DS_VAR = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "regex": "",
    "refresh": 1,
    "hide": 0,
    "includeAll": False,
    "multi": False,
    "current": {},
    "options": [],
    "skipUrlSync": False,
}

JOB_VAR = q_var("job", "Job", "label_values(cec_up, job)", False, False, refresh=1)
INSTANCE_VAR = q_var("instance", "Instance", 'label_values(cec_up{job=~"$job"}, instance)', True, True)
TASK_TYPE_VAR = q_var("task_type", "Task type", 'label_values(cec_calls_total{job=~"$job"}, task_type)', True, True)


def dashboard(uid, title, desc, tags, variables, panels, time_from="now-6h"):
    return {
        "annotations": {"list": []},
        "description": desc,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["cec-exporter"],
                "targetBlank": False,
                "title": "CEC dashboards",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "liveNow": False,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": tags,
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --------------------------------------------------------------------------------------------
# CEC call traffic
# --------------------------------------------------------------------------------------------

def calls_dashboard():
    b = Builder()
    calls = f"cec_calls_total{{{RAW_TT}}}"

    # Row 0: stats.
    b.add(stat(
        "Calls counted in the selected range",
        "Ended calls the exporter counted in the dashboard's time range, for the selected task types "
        "(sum of increase(cec_calls_total[$__range])). Each call is counted once, when CEC first shows it "
        "ended. An exporter restart without --state.path resets the counters: increase() then misses the "
        "calls counted before the restart.",
        [target(f"sum(increase({calls}[$__range]))", legend="calls", instant=True)],
        "short", decimals=0, graph="none"), 0, 0, 5, 4)
    b.add(stat(
        "Answered share in the selected range",
        "Share of the calls counted in the time range whose outcome is answered (the customer talked: "
        "talk time above zero).",
        [target(f'sum(increase(cec_calls_total{{{RAW_TT}, outcome="answered"}}[$__range]))\n'
                f"  / sum(increase({calls}[$__range]))", legend="answered", instant=True)],
        "percentunit", steps=((None, "red"), (0.3, "orange"), (0.5, "green")), decimals=1), 5, 0, 5, 4)
    b.add(stat(
        "Failed share in the selected range",
        "Share of the calls counted in the time range whose outcome is failed (page codes 2, 3, 6 and "
        "unknown codes; for ITA every Q.850 cause that is not a normal clearing, busy, no answer or "
        "rejection). Busy, rejected, no answer and cancelled calls are separate outcomes and not included.",
        [target(f'sum(increase(cec_calls_total{{{RAW_TT}, outcome="failed"}}[$__range]))\n'
                f"  / sum(increase({calls}[$__range]))", legend="failed", instant=True)],
        "percentunit", steps=((None, "green"), (0.05, "orange"), (0.2, "red")), decimals=1), 10, 0, 5, 4)
    b.add(stat(
        "Calls in progress",
        "Calls CEC currently shows not yet ended (state 0 to be called, 1 calling, 2 talking), summed over "
        "the selected task types, as of the exporter's last poll.",
        [target(f"sum(cec_calls_in_progress{{{RAW_TT}}})", legend="in progress")],
        "short", decimals=0, graph="area"), 15, 0, 4, 4)
    b.add(stat(
        "Freshness of CEC data",
        "Time since the end of the newest ended call the exporter has counted (time() - "
        "max(cec_last_call_end_timestamp_seconds)). It grows while no call ends, and also when CEC "
        "returns no new records or the exporter cannot poll: compare with the exporter health dashboard "
        "to tell quiet traffic from missing data. Thresholds assume steady traffic: adjust to yours.",
        [target(f"time() - max(cec_last_call_end_timestamp_seconds{{{RAW_TT}}})", legend="age", instant=True)],
        "s", steps=((None, "green"), (900, "orange"), (3600, "red")), decimals=0), 19, 0, 5, 4)

    # Row 1: traffic.
    b.add(timeseries(
        "Calls per second by task type and outcome",
        "Rate of ended calls counted, stacked by task type and outcome "
        "(sum by (task_type, outcome) (rate(cec_calls_total[$__rate_interval]))). Calls are counted when "
        "they end, so a burst here trails the calls' start by their duration.",
        [target(f"sum by (task_type, outcome) (rate({calls}[$__rate_interval]))",
                legend="{{task_type}} {{outcome}}")],
        "cps", stack=True, min_=0), 0, 4, 12, 9)
    b.add(timeseries(
        "Calls per second by outcome",
        "Rate of ended calls counted, stacked by outcome over all selected task types. answered: the "
        "customer talked; no_answer, busy, rejected, cancelled (hung up before the customer answered), "
        "failed, unknown (no reasonCode): see the README's Outcome table.",
        [target(f"sum by (outcome) (rate({calls}[$__rate_interval]))", legend="{{outcome}}")],
        "cps", stack=True, min_=0,
        overrides=[by_name_color(o, c) for o, c in OUTCOME_COLORS.items()]), 12, 4, 12, 9)

    # Row 2: ratios from the recording rules.
    b.add(timeseries(
        "Answer ratio by task type",
        "Answered calls / all calls, per task type, over 5 minutes: the recording rule "
        "job_task_type:cec_calls_answered:ratio_rate5m. Recording rules aggregate away the instance "
        "label, so the Instance selection does not apply here. No line while a task type had no calls "
        "in the last 5 minutes (0/0).",
        [target(f"job_task_type:cec_calls_answered:ratio_rate5m{{{RR_TT}}}", legend="{{task_type}}")],
        "percentunit", min_=0, max_=1), 0, 13, 12, 8)
    b.add(timeseries(
        "Failure ratio by task type",
        "Calls with outcome failed / all calls, per task type, over 5 minutes: the recording rule "
        "job_task_type:cec_calls_failed:ratio_rate5m (busy, rejected, no answer and cancelled are "
        "separate outcomes). Recording rules aggregate away the instance label, so the Instance "
        "selection does not apply here.",
        [target(f"job_task_type:cec_calls_failed:ratio_rate5m{{{RR_TT}}}", legend="{{task_type}}")],
        "percentunit", min_=0, max_=1,
        overrides=[]), 12, 13, 12, 8)

    # Row 3: end reasons.
    reasons = f"cec_call_end_reasons_total{{{RAW_TT}}}"
    b.add(timeseries(
        "Top end reasons over time",
        "The 10 most frequent call end reasons at each point in time, per task type "
        "(topk over rate(cec_call_end_reasons_total[$__rate_interval])). reason_code is CEC's reasonCode: "
        "page codes 0-6 for task types 1-3, Q.850 causes for ITA; none when a record has no reasonCode. "
        "Exemplars on this counter carry the call_serial_no of a recent call.",
        [target(f"topk(10, sum by (task_type, reason_code, reason) (rate({reasons}[$__rate_interval])))",
                legend="{{task_type}} {{reason}} ({{reason_code}})")],
        "cps", min_=0), 0, 21, 12, 9)
    b.add({
        "type": "bargauge",
        "title": "End reasons in the selected range",
        "description": "Calls counted in the dashboard's time range by task type and end reason, the 15 "
                       "largest (topk over increase(cec_call_end_reasons_total[$__range])).",
        "datasource": dict(DS),
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "palette-classic"},
                "decimals": 0,
                "mappings": [],
                "min": 0,
                "thresholds": thresholds([(None, "green")]),
                "unit": "short",
            },
            "overrides": [],
        },
        "options": {
            "displayMode": "gradient",
            "maxVizHeight": 300,
            "minVizHeight": 16,
            "minVizWidth": 8,
            "namePlacement": "auto",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
            "sizing": "auto",
            "valueMode": "color",
        },
        "targets": [target(
            f"sort_desc(topk(15, sum by (task_type, reason_code, reason) (increase({reasons}[$__range]))))",
            legend="{{task_type}} {{reason}} ({{reason_code}})", instant=True)],
    }, 12, 21, 12, 9)

    # Row 4: durations.
    def quantiles(metric, by, legend_prefix_fmt, extra=""):
        sel = f"{metric}_bucket{{{RAW_TT}{extra}}}"
        out = []
        for ref, q in zip("ABC", ("0.5", "0.9", "0.99")):
            p = {"0.5": "p50", "0.9": "p90", "0.99": "p99"}[q]
            out.append(target(
                f"histogram_quantile({q}, sum by (le, {by}) (rate({sel}[$__rate_interval])))",
                legend=legend_prefix_fmt.format(p=p), ref=ref, exemplar=(q == "0.99")))
        return out

    b.add(timeseries(
        "Talk duration percentiles",
        "p50, p90 and p99 of the customer talk time of answered calls, per task type "
        "(histogram_quantile over rate(cec_call_talk_duration_seconds_bucket[$__rate_interval]) by le, "
        "task_type). Buckets run from 5 s to 1 h, so values are interpolated within a bucket. No line "
        "while no answered call ended in the window.",
        quantiles("cec_call_talk_duration_seconds", "task_type", "{p} {{{{task_type}}}}"),
        "s", min_=0), 0, 30, 12, 9)
    b.add(timeseries(
        "Agent talk duration percentiles",
        "p50, p90 and p99 of the agent talk time (agentTalkDuration above zero), per task type "
        "(histogram_quantile over rate(cec_call_agent_talk_duration_seconds_bucket[$__rate_interval]) by "
        "le, task_type). Task types without an agent leg have no line.",
        quantiles("cec_call_agent_talk_duration_seconds", "task_type", "{p} {{{{task_type}}}}"),
        "s", min_=0), 12, 30, 12, 9)

    b.add({
        "type": "heatmap",
        "title": "Talk duration heatmap",
        "description": "Distribution of customer talk time of answered calls over time, for the selected "
                       "task types: the rate of each cec_call_talk_duration_seconds bucket (sum by (le)), "
                       "drawn by Grafana from the cumulative buckets (format heatmap). A cell's colour is "
                       "calls per second whose talk time falls in that bucket.",
        "datasource": dict(DS),
        "maxDataPoints": 100,
        "fieldConfig": {
            "defaults": {
                "custom": {
                    "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                    "scaleDistribution": {"type": "linear"},
                }
            },
            "overrides": [],
        },
        "options": {
            "calculate": False,
            "cellGap": 1,
            "cellValues": {"unit": "cps"},
            "color": {
                "exponent": 0.5,
                "fill": "dark-orange",
                "mode": "scheme",
                "reverse": False,
                "scale": "exponential",
                "scheme": "Oranges",
                "steps": 64,
            },
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-09},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
        },
        "targets": [target(
            f"sum by (le) (rate(cec_call_talk_duration_seconds_bucket{{{RAW_TT}}}[$__rate_interval]))",
            legend="{{le}}", fmt="heatmap", exemplar=True)],
    }, 0, 39, 12, 9)

    b.add({
        "type": "table",
        "title": "Calls in the selected range by task type and outcome",
        "description": "Calls counted in the dashboard's time range, one row per task type and one column "
                       "per outcome (increase(cec_calls_total[$__range]), pivoted).",
        "datasource": dict(DS),
        "fieldConfig": {
            "defaults": {
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "decimals": 0,
                "mappings": [],
                "thresholds": thresholds([(None, "green")]),
                "unit": "short",
            },
            "overrides": [],
        },
        "options": {
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": True},
            "showHeader": True,
            "sortBy": [],
        },
        "targets": [target(f"sum by (task_type, outcome) (increase({calls}[$__range]))",
                           legend="{{task_type}} {{outcome}}", instant=True, fmt="table")],
        "transformations": [
            {
                "id": "groupingToMatrix",
                "options": {
                    "columnField": "outcome",
                    "rowField": "task_type",
                    "valueField": "Value",
                    "emptyValue": "zero",
                },
            }
        ],
    }, 12, 39, 12, 9)

    # Row 5: answer delay.
    b.add(timeseries(
        "Answer delay percentiles by leg",
        "How long phones rang before someone answered: p50, p90 and p99 per leg over the selected task "
        "types (histogram_quantile over rate(cec_call_answer_delay_seconds_bucket[$__rate_interval]) by le, "
        "leg). customer: talkingTime - alertingTime; agent: agentTalkingTime - agentAlertingTime. Buckets "
        "run from 1 s to 2 min.",
        quantiles("cec_call_answer_delay_seconds", "leg", "{p} {{{{leg}}}}"),
        "s", min_=0), 0, 48, 12, 9)
    b.add(timeseries(
        "Answer delay p90 by task type and leg",
        "p90 of the answer delay per task type and leg (histogram_quantile(0.9) over "
        "rate(cec_call_answer_delay_seconds_bucket[$__rate_interval]) by le, task_type, leg).",
        [target(
            "histogram_quantile(0.9, sum by (le, task_type, leg) "
            f"(rate(cec_call_answer_delay_seconds_bucket{{{RAW_TT}}}[$__rate_interval])))",
            legend="{{task_type}} {{leg}}")],
        "s", min_=0), 12, 48, 12, 9)

    # Row 6: in progress, freshness.
    state_names = (("0", "to be called"), ("1", "calling"), ("2", "talking"))
    b.add(timeseries(
        "Calls in progress by task type and state",
        "Calls CEC shows not yet ended, stacked by task type and state (cec_calls_in_progress): state 0 to "
        "be called, 1 calling (ringing), 2 talking. As of each poll; a call leaves this gauge when it is "
        "counted as ended.",
        [target(
            f'sum by (task_type) (cec_calls_in_progress{{{RAW_TT}, state="{s}"}})',
            legend=f"{{{{task_type}}}} {name}", ref="ABC"[i])
         for i, (s, name) in enumerate(state_names)],
        "short", stack=True, min_=0, decimals=0), 0, 57, 12, 9)
    b.add(timeseries(
        "Age of the newest ended call by task type",
        "Time since the end of the newest ended call counted, per task type (time() - "
        "cec_last_call_end_timestamp_seconds). A task type with traffic whose line keeps rising has "
        "stopped producing records; if every line rises together, check the exporter health dashboard.",
        [target(f"time() - max by (task_type) (cec_last_call_end_timestamp_seconds{{{RAW_TT}}})",
                legend="{{task_type}}")],
        "s", min_=0), 12, 57, 12, 9)

    return dashboard(
        "cec-calls",
        "CEC call traffic",
        "Huawei Cloud CEC call-detail records as counted by cec-exporter: calls by task type and outcome, "
        "end reasons, talk and answer-delay distributions, calls in progress.",
        ["cec-exporter", "cec"],
        [DS_VAR, JOB_VAR, INSTANCE_VAR, TASK_TYPE_VAR],
        b.panels,
    )


# --------------------------------------------------------------------------------------------
# CEC exporter health
# --------------------------------------------------------------------------------------------

def health_dashboard():
    b = Builder()
    up_mappings = [{
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "DOWN"},
            "1": {"color": "green", "index": 1, "text": "UP"},
        },
    }]

    def m(name):
        return f"{name}{{{RAW}}}"

    # Row 0: stats.
    b.add(stat(
        "Up",
        "scrape: Prometheus' up for the exporter's target (1 when /metrics answered). poll: cec_up, 1 when "
        "the exporter's last background poll of CEC succeeded (0 after a failed poll or a failed state "
        "commit; the counters then keep their last committed values).",
        [target(f"up{{{RAW}}}", legend="scrape {{instance}}", ref="A"),
         target(f"cec_up{{{RAW}}}", legend="poll {{instance}}", ref="B")],
        "none", steps=((None, "red"), (1, "green")), mappings=up_mappings, color_mode="background",
        graph="none", text_mode="value_and_name"), 0, 0, 6, 4)
    b.add(stat(
        "Time since last successful poll",
        "time() - cec_exporter_last_successful_poll_timestamp_seconds. Polls run every --poll.interval "
        "(30 s by default); after a failure the exporter backs off, doubling up to 5 minutes. Orange after "
        "2 minutes, red after 5.",
        [target(f"time() - {m('cec_exporter_last_successful_poll_timestamp_seconds')}",
                legend="{{instance}}", instant=True)],
        "s", steps=((None, "green"), (120, "orange"), (300, "red")), decimals=0,
        color_mode="background"), 6, 0, 4, 4)
    b.add(stat(
        "Poll failures in range",
        "Polls that failed in the dashboard's time range (increase of cec_exporter_poll_failures_total). A "
        "failed poll commits nothing and is retried; the reason is in the exporter's log and in the API "
        "errors panel.",
        [target(f"sum(increase({m('cec_exporter_poll_failures_total')}[$__range]))", legend="failures",
                instant=True)],
        "short", steps=((None, "green"), (1, "orange")), decimals=0), 10, 0, 3, 4)
    b.add(stat(
        "State commit failures in range",
        "Commits to the --state.path store that failed in the time range (disk full, read-only file "
        "system): each such poll was undone and retried (increase of "
        "cec_exporter_state_commit_failures_total).",
        [target(f"sum(increase({m('cec_exporter_state_commit_failures_total')}[$__range]))",
                legend="commit failures", instant=True)],
        "short", steps=((None, "green"), (1, "red")), decimals=0), 13, 0, 3, 4)
    b.add(stat(
        "Incomplete reads in range",
        "Windows whose pages could not be made to cover CEC's answer after three reads "
        "(increase of cec_exporter_incomplete_reads_total): calls there may have been missed.",
        [target(f"sum(increase({m('cec_exporter_incomplete_reads_total')}[$__range]))",
                legend="incomplete reads", instant=True)],
        "short", steps=((None, "green"), (1, "red")), decimals=0), 16, 0, 4, 4)
    b.add(stat(
        "Catch-up skipped in range",
        "Outage time beyond --poll.max-catchup that was not read, in the time range (increase of "
        "cec_exporter_catchup_skipped_seconds_total): calls that started then are not counted.",
        [target(f"sum(increase({m('cec_exporter_catchup_skipped_seconds_total')}[$__range]))",
                legend="skipped", instant=True)],
        "s", steps=((None, "green"), (1, "red")), decimals=0), 20, 0, 4, 4)

    # Row 1: polls.
    b.add(timeseries(
        "Poll duration",
        "How long the last background poll took (cec_exporter_poll_duration_seconds, a gauge updated "
        "after each poll). Backfill and catch-up polls read many windows and take longer.",
        [target(m("cec_exporter_poll_duration_seconds"), legend="{{instance}}")],
        "s", min_=0), 0, 4, 8, 8)
    b.add(timeseries(
        "Polls and poll failures",
        "Polls attempted and polls failed per second (rate of cec_exporter_polls_total and "
        "cec_exporter_poll_failures_total). With the default 30 s interval a healthy exporter polls "
        "about 0.033 times a second.",
        [target(f"sum by (instance) (rate({m('cec_exporter_polls_total')}[$__rate_interval]))",
                legend="polls {{instance}}", ref="A"),
         target(f"sum by (instance) (rate({m('cec_exporter_poll_failures_total')}[$__rate_interval]))",
                legend="failures {{instance}}", ref="B")],
        "cps", min_=0,
        overrides=[by_regex_color("failures .*", "red")]), 8, 4, 8, 8)
    b.add(timeseries(
        "API requests of the last poll",
        "queryCallDetailRecord requests the last successful poll made (cec_exporter_last_poll_api_requests): "
        "the cost of a poll. In a steady state about one per 100 records in the window per task-type "
        "query, plus targeted re-reads of long calls.",
        [target(m("cec_exporter_last_poll_api_requests"), legend="{{instance}}")],
        "short", min_=0, decimals=0), 16, 4, 8, 8)

    # Row 2: API.
    b.add(timeseries(
        "API requests by endpoint and code",
        "HTTP requests to CEC per second by endpoint (token_by_ak_sk, query_call_detail_record) and HTTP "
        "status (none: no answer), from cec_exporter_api_requests_total.",
        [target(f"sum by (endpoint, code) (rate({m('cec_exporter_api_requests_total')}[$__rate_interval]))",
                legend="{{endpoint}} {{code}}")],
        "reqps", stack=True, min_=0), 0, 12, 12, 8)
    b.add(timeseries(
        "API errors by endpoint and error",
        "Failed exchanges with CEC per second by endpoint and kind (cec_exporter_api_errors_total): "
        "timeout, transport, unauthorized (401/403), rate_limited (429), server_error (5xx), http_status "
        "(other status), decode (not the documented JSON), ret_code (retCode other than 0 and 1). The "
        "counter has no series before the first error; until then a zero line \"all: none\" is drawn "
        "(while the exporter is scraped).",
        [target(
            f"sum by (endpoint, error) (rate({m('cec_exporter_api_errors_total')}[$__rate_interval]))\n"
            f'  or on() label_replace(label_replace(0 * max(cec_up{{{RAW}}}), "endpoint", "all", "", ""),'
            f' "error", "none", "", "")',
            legend="{{endpoint}}: {{error}}")],
        "reqps", stack=True, min_=0), 12, 12, 12, 8)

    # Row 3: records.
    b.add(timeseries(
        "Records fetched",
        "Call records fetched from CEC per second, re-reads of the lookback included "
        "(rate of cec_exporter_records_fetched_total).",
        [target(f"sum by (instance) (rate({m('cec_exporter_records_fetched_total')}[$__rate_interval]))",
                legend="{{instance}}")],
        "cps", min_=0), 0, 20, 8, 8)
    b.add(timeseries(
        "Rejected records by reason",
        "Records skipped because they cannot be counted, per second by reason "
        "(cec_exporter_records_rejected_total): not_an_object, missing_serial_no, invalid_serial_no, "
        "missing_state, invalid_state. Each fetch of a bad record counts (it is re-read while in the "
        "window).",
        [target(f"sum by (reason) (rate({m('cec_exporter_records_rejected_total')}[$__rate_interval]))",
                legend="{{reason}}")],
        "cps", stack=True, min_=0), 8, 20, 8, 8)
    b.add(timeseries(
        "Invalid fields by field",
        "Optional record fields with an unusable value, per second by the vendor's field name "
        "(cec_exporter_record_fields_invalid_total). The field reads as absent and the call still counts, "
        "but its outcome, durations or task type may be less precise.",
        [target(f"sum by (field) (rate({m('cec_exporter_record_fields_invalid_total')}[$__rate_interval]))",
                legend="{{field}}")],
        "cps", stack=True, min_=0), 16, 20, 8, 8)

    # Row 4: late records, tokens, memory.
    b.add(timeseries(
        "Late records and max lateness",
        "Left axis: calls first seen although they started before the previous poll's window end, per "
        "second (rate of cec_exporter_late_records_total). Right axis: the largest such lateness since "
        "start (cec_exporter_max_record_lateness_seconds). When max lateness nears --poll.lookback (5 m by "
        "default), later records would be missed: raise the lookback.",
        [target(f"sum by (instance) (rate({m('cec_exporter_late_records_total')}[$__rate_interval]))",
                legend="late records {{instance}}", ref="A"),
         target(f"max by (instance) ({m('cec_exporter_max_record_lateness_seconds')})",
                legend="max lateness {{instance}}", ref="B")],
        "cps", min_=0,
        overrides=[{
            "matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [
                {"id": "unit", "value": "s"},
                {"id": "custom.axisPlacement", "value": "right"},
                {"id": "custom.axisLabel", "value": "max lateness"},
                {"id": "custom.fillOpacity", "value": 0},
            ],
        }]), 0, 28, 8, 8)
    b.add(timeseries(
        "Token refreshes",
        "Bearer tokens fetched from tokenByAkSk per second (rate of cec_exporter_token_refreshes_total). "
        "Expect one per --cec.token-expire less the refresh margin (about one every 9 minutes with the "
        "default 600 s), plus one after an HTTP 401. Much more often points at a token rejected by CEC.",
        [target(f"sum by (instance) (rate({m('cec_exporter_token_refreshes_total')}[$__rate_interval]))",
                legend="{{instance}}")],
        "cps", min_=0), 8, 28, 8, 8)
    b.add(timeseries(
        "Remembered calls",
        "Counted calls the exporter keeps so re-reads are not counted twice (cec_exporter_remembered_calls): "
        "about a lookback's worth of calls plus the open ones. Steady growth means the floor is not "
        "rising (e.g. long open calls).",
        [target(m("cec_exporter_remembered_calls"), legend="{{instance}}")],
        "short", min_=0, decimals=0), 16, 28, 8, 8)

    # Row 5: up over time, build info.
    b.add(timeseries(
        "Scrape and poll status over time",
        "up (scrape) and cec_up (last poll succeeded) per instance over time: 1 is good.",
        [target(f"up{{{RAW}}}", legend="scrape {{instance}}", ref="A"),
         target(f"cec_up{{{RAW}}}", legend="poll {{instance}}", ref="B")],
        "short", min_=0, max_=1, decimals=0, interpolation="stepAfter",
        legend_calcs=("min", "lastNotNull")), 0, 36, 12, 7)
    b.add({
        "type": "table",
        "title": "Build info",
        "description": "Version and revision of each running exporter (cec_exporter_build_info).",
        "datasource": dict(DS),
        "fieldConfig": {
            "defaults": {
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "mappings": [],
                "thresholds": thresholds([(None, "green")]),
                "unit": "short",
            },
            "overrides": [],
        },
        "options": {
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True,
        },
        "targets": [target(m("cec_exporter_build_info"), legend="{{version}}", instant=True, fmt="table")],
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True},
                    "indexByName": {"job": 0, "instance": 1, "version": 2, "revision": 3},
                    "renameByName": {},
                },
            }
        ],
    }, 12, 36, 12, 7)

    # Row 6: durability and open calls.
    b.add(timeseries(
        "State store size",
        "Size of the --state.path store after the last commit (cec_exporter_state_bytes): about a lookback's "
        "worth of calls plus the open ones, some 18 bytes per remembered call. Absent without --state.path.",
        [target(m("cec_exporter_state_bytes"), legend="{{instance}}")],
        "bytes", min_=0), 0, 43, 8, 8)
    b.add(timeseries(
        "State commits",
        "Polls committed to the state store per second (rate of cec_exporter_state_commits_total) and the "
        "commits that failed (cec_exporter_state_commit_failures_total): a failed commit undoes its poll, "
        "which is retried; while commits fail no call is counted.",
        [target(f"sum by (instance) (rate({m('cec_exporter_state_commits_total')}[$__rate_interval]))",
                legend="commits {{instance}}", ref="A"),
         target(f"sum by (instance) (rate({m('cec_exporter_state_commit_failures_total')}[$__rate_interval]))",
                legend="failures {{instance}}", ref="B")],
        "cps", min_=0), 8, 43, 8, 8)
    b.add(stat(
        "Open calls given up in range",
        "Calls the exporter stopped waiting for because CEC never showed them ended within "
        "--poll.max-call-duration (increase of cec_exporter_open_calls_abandoned_total over the range).",
        [target(f"sum(increase({m('cec_exporter_open_calls_abandoned_total')}[$__range]))", instant=True)],
        "short", steps=((None, "green"), (1, "orange"))), 16, 43, 8, 8)

    return dashboard(
        "cec-exporter-health",
        "CEC exporter health",
        "Health of cec-exporter itself: polls, CEC API requests and errors, records fetched, rejected and "
        "late, token refreshes, state store commits, memory, build info.",
        ["cec-exporter", "cec"],
        [DS_VAR, JOB_VAR, INSTANCE_VAR],
        b.panels,
        time_from="now-3h",
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, d in (("cec-calls.json", calls_dashboard()), ("cec-exporter-health.json", health_dashboard())):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(d, f, indent=2)
            f.write("\n")
        print("wrote", name, len(d["panels"]), "panels")


if __name__ == "__main__":
    main()
