"""The Prometheus rules of cec-exporter, written from monitoring/config.yml.

grafana/generate.py calls `rules_file(config)` and writes the text to prometheus/rules/cec-exporter.rules.yml
(or compares it, with --check). The text is assembled here rather than dumped from a data structure so the
rule file keeps its comments: an on-call reading it sees why each threshold is what it is.

Every expression aggregates `by` the configured labels (job, instance, tenant by default), never across them.
"""
import re

# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------

_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def seconds(d):
    """A Prometheus duration ("1h30m", "1w") in seconds."""
    d = str(d)
    parts = re.findall(r"(\d+)(w|d|h|m|s)", d)
    if not parts or "".join(n + u for n, u in parts) != d:
        raise SystemExit(f"monitoring config: {d!r} is not a duration like 30s, 10m, 1h, 1d, 1w")
    return sum(int(n) * dict(_UNITS)[u] for n, u in parts)


def duration(secs):
    """Seconds as the shortest Prometheus duration: 604800 -> 1w, 601200 -> 6d23h."""
    out = ""
    for unit, size in _UNITS:
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out or "0s"


def num(x):
    """A number as PromQL writes it: 0.1, 3, 0.25."""
    s = repr(round(float(x), 10))
    return s[:-2] if s.endswith(".0") else s


def pct(x):
    return f"{round(float(x) * 100, 4):g} %"


# --------------------------------------------------------------------------------------------
# The configuration, checked
# --------------------------------------------------------------------------------------------

class Config:
    """monitoring/config.yml, with every value checked once so a typo fails generation, not Prometheus."""

    def __init__(self, raw):
        self.raw = raw
        self.selector = (raw.get("selector") or "").strip()
        self.labels = list(raw["aggregation_labels"])
        for required in ("job", "instance"):
            if required not in self.labels:
                raise SystemExit(f"monitoring config: aggregation_labels must contain {required}")
        self.scrape_interval = raw["scrape_interval"]
        self.evaluation_interval = raw["evaluation_interval"]
        seconds(self.scrape_interval)
        seconds(self.evaluation_interval)
        self.runbook_url = raw["runbook_url"].rstrip("/")
        self.grafana_url = raw["grafana_url"].rstrip("/")
        self.exemplar_link = raw["exemplar_link"]
        self.sev = raw["severities"]
        self.baseline = raw["baseline"]
        self.failure = raw["failure_ratio"]
        self.reasons = raw["end_reasons"]
        self.stopped = raw["calls_stopped"]
        self.answer = raw["answer_ratio"]
        self.exporter = raw["exporter"]
        objective = float(self.answer["objective"])
        if not 0 < objective < 1:
            raise SystemExit("monitoring config: answer_ratio.objective must be between 0 and 1")
        for b in self.answer["burn_rates"]:
            if b["factor"] * (1 - objective) >= 1:
                raise SystemExit(
                    f"monitoring config: burn rate factor {b['factor']} can never fire: the largest burn rate "
                    f"is 1 / (1 - objective) = {1 / (1 - objective):.3g}")
            if seconds(b["short"]) >= seconds(b["long"]):
                raise SystemExit("monitoring config: a burn rate's short window must be shorter than its long one")
            if b["severity"] not in self.sev:
                raise SystemExit(f"monitoring config: severity {b['severity']!r} is not in severities")
        if len(self.stopped["compare_with"]) < 1:
            raise SystemExit("monitoring config: calls_stopped.compare_with needs at least one offset")
        for o in self.stopped["compare_with"]:
            if seconds(o) <= 3600:
                raise SystemExit("monitoring config: calls_stopped.compare_with offsets must be longer than 1h")

    @property
    def by(self):
        return ", ".join(self.labels)

    def sel(self, metric, *matchers):
        """metric{matchers..., selector}: every raw series read carries the configured selector."""
        ms = [m for m in (*matchers, self.selector) if m]
        return f"{metric}{{{', '.join(ms)}}}" if ms else metric


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------

def indent(text, n):
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.strip("\n").split("\n"))


def comment(text, n):
    return indent("\n".join("# " + line if line else "#" for line in text.strip("\n").split("\n")), n)


def record(name, expr, why=None):
    out = ""
    if why:
        out += comment(why, 6) + "\n"
    out += f"      - record: {name}\n        expr: |\n{indent(expr, 10)}\n"
    return out


def q(s):
    """A YAML double-quoted scalar."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alert(name, expr, for_, severity, summary, description, runbook, dashboard, why,
          keep_firing_for=None, labels=None):
    out = comment(why, 6) + "\n"
    out += f"      - alert: {name}\n        expr: |\n{indent(expr, 10)}\n"
    if for_:
        out += f"        for: {for_}\n"
    if keep_firing_for:
        out += f"        keep_firing_for: {keep_firing_for}\n"
    out += "        labels:\n"
    out += f"          severity: {severity}\n"
    for k, v in (labels or {}).items():
        out += f"          {k}: {q(v)}\n"
    out += "        annotations:\n"
    out += f"          summary: {q(summary)}\n"
    out += f"          description: >-\n{indent(description, 12)}\n"
    out += f"          runbook_url: {q(runbook)}\n"
    out += f"          dashboard_url: {q(dashboard)}\n"
    return out


# --------------------------------------------------------------------------------------------
# The rule file
# --------------------------------------------------------------------------------------------

def rules_file(c: Config):
    by = c.by
    calls = c.sel("cec_calls_total")
    failed = c.sel("cec_calls_total", 'outcome="failed"')
    answered = c.sel("cec_calls_total", 'outcome="answered"')
    reasons = c.sel("cec_call_end_reasons_total")
    page, ticket = c.sev["page"], c.sev["ticket"]

    fw = c.failure["window"]
    rw = c.reasons["window"]
    sw = c.stopped["window"]
    burn = c.answer["burn_rates"]
    objective = float(c.answer["objective"])
    budget = 1 - objective
    windows = sorted({fw, sw, *[b["long"] for b in burn], *[b["short"] for b in burn]}, key=seconds)

    base = c.baseline
    b_off, b_fall, b_min = base["offset"], base["fallback_offset"], base["min_calls"]

    def rb(alertname):
        return f"{c.runbook_url}#{alertname.lower()}"

    # The dashboards' tenant variable is selected only where the alert has a tenant (a multi-tenant
    # exporter's, or a target label): an alert of a single-tenant exporter leaves it at All.
    tenant_var = "{{ with $labels.tenant }}&var-tenant={{ . }}{{ end }}"
    calls_dash = (f"{c.grafana_url}/d/cec-calls/cec-call-traffic?var-job={{{{ $labels.job }}}}"
                  f"&var-instance={{{{ $labels.instance }}}}{tenant_var}")
    calls_dash_tt = calls_dash + "&var-task_type={{ $labels.task_type }}"
    health_dash = (f"{c.grafana_url}/d/cec-exporter-health/cec-exporter-health?var-job={{{{ $labels.job }}}}"
                   f"&var-instance={{{{ $labels.instance }}}}{tenant_var}")
    where = "{{ $labels.instance }}{{ with $labels.tenant }} (tenant {{ . }}){{ end }}"

    def query_value(metric, labels, fmt):
        """A template reading another series of the same instance and task type (for descriptions)."""
        matchers = ",".join(f"{l}=%q" for l in labels)
        args = " ".join(f"$labels.{l}" for l in labels)
        return (f'{{{{ with printf "{metric}{{{matchers}}}" {args} | query }}}}'
                f"{{{{ . | first | value | {fmt} }}}}{{{{ else }}}}none{{{{ end }}}}")

    out = []
    out.append(f"""# Recording and alerting rules for cec-exporter (Huawei Cloud CEC call-detail records).
#
# GENERATED by `python3 grafana/generate.py` from monitoring/config.yml: edit the configuration (or
# monitoring/rules.py), regenerate, commit both. `python3 grafana/generate.py --check` (run by the test
# suite) fails when this file differs from what the configuration generates.
#
#   promtool check rules prometheus/rules/cec-exporter.rules.yml
#   promtool test rules prometheus/tests/cec-exporter.test.yml
#
# Written for Prometheus 2.42 or newer (keep_firing_for). Every rule keeps the labels {c.labels}:
# each exporter (one CEC tenant) is judged on its own traffic, never summed with others.
# Selector on every exporter series: {c.selector or "(none: any target serving the exporter's metrics)"}.
#
# Severities: {page} pages (customers are affected, or every call alert is blind), {ticket} is for working
# hours (slow burns, exporter hygiene). Each alert's runbook_url points at its section of RUNBOOK.md,
# dashboard_url at the dashboard with the alert's job and instance selected.

groups:
  # Counts and ratios over the alert windows, per {by} and task type. Counts (increase), not
  # rates: the alerts' floors are numbers of calls, which mean the same for a small and a big tenant.
  # A ratio has no series (rather than NaN) while its window has no call.
  - name: cec-exporter.recording
    rules:
""")
    for w in windows:
        out.append(record(f"instance_task_type:cec_calls:increase{w}",
                          f"sum by ({by}, task_type) (increase({calls}[{w}]))"))
    out.append(record(f"instance_task_type:cec_calls_failed:increase{fw}",
                      f"sum by ({by}, task_type) (increase({failed}[{fw}]))"))
    out.append(record(
        f"instance_task_type:cec_calls_failed:ratio{fw}",
        f"instance_task_type:cec_calls_failed:increase{fw}\n"
        f"  / (instance_task_type:cec_calls:increase{fw} > 0)",
        "Share of ended calls with outcome failed (busy, rejected, no answer and cancelled are outcomes of\n"
        "their own: the called party's doing, not a failure to set the call up)."))
    for w in sorted({b["long"] for b in burn} | {b["short"] for b in burn}, key=seconds):
        out.append(record(
            f"instance_task_type:cec_calls_answered:ratio{w}",
            f"sum by ({by}, task_type) (increase({answered}[{w}]))\n"
            f"  / (instance_task_type:cec_calls:increase{w} > 0)"))
    out.append(record(
        f"instance_task_type_reason:cec_call_end_reasons:increase{rw}",
        f"sum by ({by}, task_type, reason_code, reason) (increase({reasons}[{rw}]))",
        "End reasons: a reason's series appears at its first call (the exporter does not pre-expose them),\n"
        "so a reason never seen before has this count but no baseline."))
    out.append(record(
        f"instance_task_type_reason:cec_call_end_reasons:ratio{rw}",
        f"instance_task_type_reason:cec_call_end_reasons:increase{rw}\n"
        f"  / on ({by}, task_type) group_left ()\n"
        f"(sum by ({by}, task_type) (instance_task_type_reason:cec_call_end_reasons:increase{rw}) > 0)",
        "A reason's share of the task type's ended calls: shares, not rates, so the daily swing in volume\n"
        "moves nothing."))

    # ---------------------------------------------------------------------------------- baselines
    g = f"{by}, task_type"

    def day_share(num_sel, den_sel, num_by, off, floor):
        o = f" offset {off}" if off else ""
        den = f"sum by ({g}) (increase({den_sel}[1d]{o}))"
        return (f"sum by ({num_by}) (increase({num_sel}[1d]{o}))\n"
                f"  / on ({g}) group_left ()\n"
                f"({den} {floor})")

    def baseline(num_sel, den_sel, num_by):
        def share(off, floor):
            return f"(\n{indent(day_share(num_sel, den_sel, num_by, off, floor), 2)}\n)"
        y = share(b_off, f">= {b_min}")
        h = share(b_fall, f">= {b_min}")
        n = share(None, "> 0")
        return (f"{y}\nor\n(\n{indent(h, 2)}\n  unless on ({g})\n{indent(y, 2)}\n)\n"
                f"or\n(\n{indent(n, 2)}\n  unless on ({g})\n  (\n{indent(y, 4)}\n    or\n{indent(h, 4)}\n  )\n)")

    out.append(f"""
  # The usual value of each ratio: the same ratio over the day that ended {b_off} ago, so an incident
  # that lasts hours never becomes "usual" (a baseline over the last day would absorb it: a rise from
  # 6 % to 24 % resolved after 2 h 45 m while still broken). The fallbacks apply per task type, never
  # per reason, so a reason that did not exist {b_off} ago has no baseline (usual share 0):
  #  - that day had fewer than {b_min} calls of the task type (a new deployment): the day up to
  #    {b_fall} ago;
  #  - less than {b_fall} of history: the last day including now. An incident then raises its own
  #    baseline, so only large rises fire in a deployment's first hour.
  # Volume-weighted (ratios of day-long increases): a quiet night counts for its few calls.
  - name: cec-exporter.baselines
    rules:
""")
    out.append(record("instance_task_type:cec_calls_failed:ratio_baseline", baseline(failed, calls, g)))
    fr = c.failure
    out.append(record(
        "instance_task_type:cec_calls_failed:ratio_threshold",
        f"clamp_min(\n"
        f"  (\n"
        f"    instance_task_type:cec_calls_failed:ratio_baseline * {num(fr['relative_rise'])}\n"
        f"      <= instance_task_type:cec_calls_failed:ratio_baseline + {num(fr['absolute_rise'])}\n"
        f"  )\n"
        f"  or instance_task_type:cec_calls_failed:ratio_baseline + {num(fr['absolute_rise'])},\n"
        f"  {num(fr['min_ratio'])}\n"
        f")",
        f"The failed share above which CECCallFailureRatioSpike fires: the lower of {num(fr['relative_rise'])}x the\n"
        f"baseline and the baseline + {pct(fr['absolute_rise'])} (so 6 % -> 18 % and 35 % -> 50 % both count), never\n"
        f"below {pct(fr['min_ratio'])}. The dashboards draw it over the failure ratio."))
    out.append(record("instance_task_type:cec_calls_answered:ratio_baseline", baseline(answered, calls, g),
                      "Usual answered share (drawn on the dashboards under the answer ratio)."))
    out.append(record("instance_task_type_reason:cec_call_end_reasons:ratio_baseline",
                      baseline(reasons, reasons, f"{g}, reason_code, reason")))

    # Calls stopped: the usual count now and 30-60 minutes later, at the compared offsets.
    st = c.stopped
    mu = st["min_usual_calls"]

    def flows(off):
        after = duration(seconds(off) - 3600)
        return (f"sum by ({g}) (increase({calls}[{sw}] offset {off})) >= {mu}\n"
                f"and on ({g})\n"
                f"sum by ({g}) (increase({calls}[30m] offset {after})) >= {mu}")

    def history(off):
        return f"group by ({g}) (present_over_time({calls}[1h] offset {off}))"

    parts = []
    for i, off in enumerate(st["compare_with"]):
        p = f"(\n{indent(flows(off), 2)}\n)"
        for earlier in st["compare_with"][:i]:
            p = f"(\n{indent(p, 2)}\n  unless on ({g})\n{indent(history(earlier), 2)}\n)"
        parts.append(p)
    usual = "\n or\n".join(parts)
    offsets = " and ".join(st["compare_with"])
    out.append(record(
        f"instance_task_type:cec_calls:usual_increase{sw}",
        usual,
        f"Calls of a task type that ended in the same {sw} window {st['compare_with'][0]} ago, where at least {mu}\n"
        f"did then AND at least {mu} in the 30-60 minutes after it (traffic usually flows now and goes on\n"
        f"flowing: at a usual closing time the later window is empty, so closing stays silent). Offsets are\n"
        f"tried in order ({offsets}); a later one only where the earlier has no history at all (the first\n"
        f"week of a deployment compares with yesterday)."))

    # ------------------------------------------------------------------------------------ targets
    ex = c.exporter
    out.append(f"""
  # Which scrape targets are cec-exporters, whatever their job is called: a down target serves
  # nothing but Prometheus' up = 0, so remember the targets that served cec_exporter_build_info.
  - name: cec-exporter.targets
    rules:
""")
    out.append(record(
        "job_instance:cec_exporter_build_info:known",
        f"max without (version, revision) (max_over_time({c.sel('cec_exporter_build_info')}[{ex['remember']}]))\n"
        f"or on (job, instance)\n"
        f"(job_instance:cec_exporter_build_info:known and on (job, instance) {c.sel('up')})",
        f"1 per target that served cec_exporter_build_info in the last {ex['remember']}, and afterwards for as long\n"
        f"as it stays a scrape target (has an `up` series): the rule reads its own previous value, so a\n"
        f"target down for days stays known and CECExporterDown keeps firing. A target removed from the\n"
        f"scrape configuration is forgotten {ex['remember']} after its last good scrape (and never alerts: it has\n"
        f"no `up`). A Prometheus without any cec-exporter has no such series: nothing can fire."))

    # ------------------------------------------------------------------------------------- alerts
    out.append("""
  - name: cec-exporter.alerts
    rules:
      # --- Calls -------------------------------------------------------------------------------
""")
    out.append(alert(
        "CECCallFailureRatioSpike",
        f"instance_task_type:cec_calls_failed:ratio{fw}\n"
        f"  > on ({g}) instance_task_type:cec_calls_failed:ratio_threshold\n"
        f"and on ({g}) instance_task_type:cec_calls:increase{fw} >= {fr['min_calls']}\n"
        f"and on ({g}) instance_task_type:cec_calls_failed:increase{fw} >= {fr['min_failed']}",
        fr["for"], page,
        "{{ $labels.task_type }} calls are failing on " + where,
        "{{ $value | humanizePercentage }} of {{ $labels.task_type }} calls on " + where
        + f" ended failed in the last {fw}, against a usual\n"
        + query_value("instance_task_type:cec_calls_failed:ratio_baseline", [*c.labels, "task_type"],
                      "humanizePercentage")
        + " (alert above "
        + query_value("instance_task_type:cec_calls_failed:ratio_threshold", [*c.labels, "task_type"],
                      "humanizePercentage")
        + ").",
        rb("CECCallFailureRatioSpike"), calls_dash_tt,
        f"Customers are not reached: the share of a task type's calls that failed (outcome failed) over\n"
        f"{fw} is above instance_task_type:cec_calls_failed:ratio_threshold (relative or absolute rise over\n"
        f"the baseline, see above), with at least {fr['min_calls']} calls and {fr['min_failed']} failed calls in the window.\n"
        f"Counts, not rates: a tenant at 0.15 calls/s whose every call fails has 90 failed calls in 10 minutes\n"
        f"and pages; one failed call at night does not. Held {fr['for']}; keeps firing {fr['keep_firing_for']} after the\n"
        f"condition clears, so a ratio hovering at the threshold pages once, not every few minutes.",
        keep_firing_for=fr["keep_firing_for"]))

    rs = c.reasons
    zero_fill = (f"(instance_task_type_reason:cec_call_end_reasons:ratio_baseline"
                 f" or instance_task_type_reason:cec_call_end_reasons:ratio{rw} * 0)")
    out.append(alert(
        "CECCallEndReasonSpike",
        f"instance_task_type_reason:cec_call_end_reasons:ratio{rw}\n"
        f"  >= {num(rs['relative_rise'])} * {zero_fill}\n"
        f"and\n"
        f"instance_task_type_reason:cec_call_end_reasons:ratio{rw}\n"
        f"  - {zero_fill}\n"
        f"  >= {num(rs['absolute_rise'])}\n"
        f"and\n"
        f"instance_task_type_reason:cec_call_end_reasons:increase{rw} >= {rs['min_calls']}",
        rs["for"], ticket,
        "{{ $labels.task_type }} calls end with {{ $labels.reason }} far more often than usual on " + where,
        "{{ $value | humanizePercentage }} of {{ $labels.task_type }} calls on " + where
        + " ended with {{ $labels.reason }}\n(reason code {{ $labels.reason_code }}) in the last "
        + f"{rw}, against a usual "
        + query_value("instance_task_type_reason:cec_call_end_reasons:ratio_baseline",
                      [*c.labels, "task_type", "reason_code"], "humanizePercentage")
        + ".",
        rb("CECCallEndReasonSpike"), calls_dash_tt,
        f"One end reason's share of a task type's calls over {rw} is at least {num(rs['relative_rise'])}x its usual share and\n"
        f"{pct(rs['absolute_rise'])} above it, with at least {rs['min_calls']} such calls. A reason that did not exist (its\n"
        f"series appears at its first call) has a usual share of 0. The big normal reasons (hang-ups, normal\n"
        f"clearing at 30-65 %) cannot triple; a rare cause that does is a change. A ticket: it names the\n"
        f"cause, CECCallFailureRatioSpike or CECAnswerRatioBurnRate page for the effect.",
        keep_firing_for=rs["keep_firing_for"]))

    hours_cond = ""
    ch = st.get("calling_hours")
    if ch:
        off = ch["utc_offset"]
        sign = -1 if off.startswith("-") else 1
        hh, mm = off.lstrip("+-").split(":")
        off_s = sign * (int(hh) * 3600 + int(mm) * 60)
        local = f"vector(time() + {off_s})"
        sh, sm = (int(x) for x in ch["start"].split(":"))
        eh, em = (int(x) for x in ch["end"].split(":"))
        start_min, last_min = sh * 60 + sm, eh * 60 + em - 60
        days = " or ".join(f"day_of_week({local}) == {d}" for d in ch["weekdays"])
        hours_cond = (f"\nand on () (hour({local}) * 60 + minute({local}) >= {start_min})"
                      f"\nand on () (hour({local}) * 60 + minute({local}) < {last_min})"
                      f"\nand on () ({days})")
    out.append(alert(
        "CECCallsStopped",
        f"instance_task_type:cec_calls:increase{sw} == 0\n"
        f"and on ({g}) instance_task_type:cec_calls:usual_increase{sw}\n"
        f"and on ({by}) (time() - {c.sel('cec_exporter_last_successful_poll_timestamp_seconds')}) < {seconds(ex['stale_after'])}"
        + hours_cond,
        st["for"], page,
        "No {{ $labels.task_type }} call has ended on " + where + f" for {duration(seconds(sw) + seconds(st['for']))}",
        "No {{ $labels.task_type }} call ended on " + where + f" in the last {sw} (held {st['for']}), although\n"
        + query_value(f"instance_task_type:cec_calls:usual_increase{sw}", [*c.labels, "task_type"],
                      'printf "%.0f"')
        + f" ended in the same window at the compared time ({offsets} ago) and traffic went on\nafterwards; "
        "the exporter is polling CEC successfully.",
        rb("CECCallsStopped"), calls_dash_tt,
        f"Calls of a task type stopped ending although they usually flow now and keep flowing: no call in\n"
        f"{sw} (held {st['for']}) while instance_task_type:cec_calls:usual_increase{sw} says the same time {offsets}\n"
        f"had at least {mu} calls then and {mu} more in the 30-60 minutes after. Outbound tasks run in calling\n"
        f"windows: at a usual closing time the later window is empty and this stays silent; a tenant with no\n"
        f"history at the compared times never fires. The exporter must have polled CEC in the last\n"
        f"{ex['stale_after']} (\"no calls\", not \"no data\": that is CECExporterStale or CECExporterDown)."
        + ("\nAlso restricted to the configured calling hours." if ch else "")))

    for b in burn:
        long_, short, factor = b["long"], b["short"], b["factor"]
        out.append(alert(
            "CECAnswerRatioBurnRate",
            f"(1 - instance_task_type:cec_calls_answered:ratio{long_}) / {num(budget)} > {num(factor)}\n"
            f"and\n"
            f"(1 - instance_task_type:cec_calls_answered:ratio{short}) / {num(budget)} > {num(factor)}\n"
            f"and\n"
            f"instance_task_type:cec_calls:increase{long_} >= {b['min_calls']}",
            b["for"], c.sev[b["severity"]],
            "{{ $labels.task_type }} calls are answered far below the objective on " + where,
            f"Over the last {long_} only\n"
            + query_value(f"instance_task_type:cec_calls_answered:ratio{long_}", [*c.labels, "task_type"],
                          "humanizePercentage")
            + " of {{ $labels.task_type }} calls on " + where
            + f" were answered (objective {pct(objective)}):\n"
            "the unanswered budget burns at {{ $value | printf \"%.2f\" }}x"
            + f" (alert above {num(factor)}x over {long_} and {short}).",
            rb("CECAnswerRatioBurnRate"), calls_dash_tt,
            f"Answered-share objective {pct(objective)} per task type (answer_ratio.objective): the budget is the\n"
            f"{pct(budget)} of calls that may go unanswered; the burn rate is the unanswered share / {num(budget)}. The largest\n"
            f"possible burn rate is {1 / budget:.3g} (no call answered), so the SRE book's 14.4x/6x cannot fire. This\n"
            f"rule ({b['severity']}): above {num(factor)}x (answered below {pct(1 - factor * budget)}) over {long_} and over {short} (the short window\n"
            f"resolves it soon after recovery), with at least {b['min_calls']} calls in {long_}. From 60 % answered to none at\n"
            f"1 call/s the {long_} window crosses after about {round(seconds(long_) / 60 * (factor * budget - 0.4) / 0.6)} minutes.",
            labels={"long_window": long_}))

    out.append("""
      # --- The exporter ---------------------------------------------------------------------------
""")
    # The tenants a down target polled: its `up` has no exporter labels, so the description reads the
    # tenants of its last cec_up series (none for a single-tenant exporter, and a target with its own
    # `tenant` label names it already: the sentence is left out).
    blind_tenants = (
        '{{ if not $labels.tenant }}{{ with printf "group by (tenant) (last_over_time(cec_up{job=%q,instance=%q,tenant!=\\"\\"}['
        + ex["remember"] + ']))" $labels.job $labels.instance | query }} Its tenants:'
        '{{ range sortByLabel "tenant" . }} {{ .Labels.tenant }}{{ end }}.{{ end }}{{ end }}')
    out.append(alert(
        "CECExporterDown",
        f"{c.sel('up')} == 0 and on (job, instance) job_instance:cec_exporter_build_info:known",
        ex["down_for"], page,
        "Prometheus cannot scrape cec-exporter " + where,
        "The cec-exporter target " + where + " of job {{ $labels.job }} has been down for "
        + f"{ex['down_for']}; call metrics\nand call alerts for it are blind." + blind_tenants,
        rb("CECExporterDown"), health_dash,
        f"A target that served cec_exporter_build_info (any job name) answers no scrape for {ex['down_for']}. Every\n"
        f"call alert of that exporter is blind, hence a page. A Prometheus without any cec-exporter never\n"
        f"fires it (no absent()); a target that never served the exporter's metrics is not known. One alert\n"
        f"per target, not per tenant (a down process blinds all its tenants at once): the description lists\n"
        f"the tenants it served (its cec_up series of the last {ex['remember']})."))
    stale = seconds(ex["stale_after"])
    out.append(alert(
        "CECExporterStale",
        f"time() - {c.sel('cec_exporter_last_successful_poll_timestamp_seconds')} > {stale}\n"
        f"or\n"
        f"({c.sel('cec_up')} == 0 unless {c.sel('cec_exporter_last_successful_poll_timestamp_seconds')})",
        ex["stale_for"], page,
        "cec-exporter " + where + " is not getting call records from CEC",
        "cec-exporter " + where + " has had no successful poll of CEC\n"
        "{{ if gt $value 0.0 }}for {{ $value | humanizeDuration }}{{ else }}since it started{{ end }}; "
        "call metrics are frozen and the call alerts are blind.",
        rb("CECExporterStale"), health_dash,
        f"No successful poll for {ex['stale_after']} (held {ex['stale_for']}): failing polls retry after 30 s, 1, 2, 4 and then every\n"
        f"5 minutes, so this is several failures in a row. Also fires when no poll succeeded since start.\n"
        f"The Alertmanager example inhibits it while CECAuthenticationFailing fires for the same exporter."))
    unauthorized = c.sel("cec_exporter_api_errors_total", 'error="unauthorized"')
    out.append(alert(
        "CECAuthenticationFailing",
        f"sum by ({by}, endpoint) (increase({unauthorized}[15m])) > 0\n"
        f"and on ({by}) {c.sel('cec_up')} == 0",
        "5m", page,
        "CEC rejects the credentials of cec-exporter " + where + " ({{ $labels.endpoint }})",
        "{{ $labels.endpoint }} answered unauthorized (HTTP 401/403) to cec-exporter " + where
        + " about\n{{ $value | printf \"%.0f\" }} times in the last 15 minutes, and its polls fail.",
        rb("CECAuthenticationFailing"), health_dash,
        "CEC rejected the credentials in the last 15 minutes and the last poll failed. The error series exist\n"
        "from 0, so the first unauthorized answer is an increase. A 401 cured by a token refresh is not\n"
        "counted; a glitch followed by a good poll (cec_up 1) stays quiet."))
    hygiene = [
        ("CECRecordsRejected", "cec_exporter_records_rejected_total", "reason", "15m",
         "rejects CEC call records ({{ $labels.reason }})",
         "skipped about {{ $value | printf \"%.0f\" }} record reads with {{ $labels.reason }} in the last 15 minutes;\n"
         "those calls are not counted.",
         "Records without a usable callSerialNo or state were skipped: calls missing from the counts. A bad\n"
         "record counts on every re-read while it is in the window."),
        ("CECRecordFieldsInvalid", "cec_exporter_record_fields_invalid_total", "field", "1h",
         "reads unusable {{ $labels.field }} values from CEC",
         "read about {{ $value | printf \"%.0f\" }} unusable {{ $labels.field }} values in the last hour; those calls\n"
         "count, without that field.",
         "Optional fields with unusable values: the calls count, the field reads as absent. A CEC format\n"
         "change shows here first."),
    ]
    for name, metric, label, win, summary, desc, why in hygiene:
        out.append(alert(
            name,
            f"sum by ({by}, {label}) (increase({c.sel(metric)}[{win}])) > 0",
            None, ticket, "cec-exporter " + where + " " + summary,
            "cec-exporter " + where + " " + desc, rb(name), health_dash, why))
    for name, metric, summary, desc, why in [
        ("CECStateCommitFailing", "cec_exporter_state_commit_failures_total",
         "cannot write its state store",
         "failed to commit its state about {{ $value | printf \"%.0f\" }} times in the last 15 minutes; those\n"
         "polls were undone and are retried.",
         "A commit to the --state.path store failed (disk full, read-only): the poll was undone and is\n"
         "retried; CECExporterStale follows if it persists."),
    ]:
        out.append(alert(name, f"increase({c.sel(metric)}[15m]) > 0", None, ticket,
                         "cec-exporter " + where + " " + summary, "cec-exporter " + where + " " + desc,
                         rb(name), health_dash, why))
    ev = ex["event_window"]
    out.append(alert(
        "CECIncompleteReads",
        f"increase({c.sel('cec_exporter_incomplete_reads_total')}[{ev}]) > 0",
        None, ticket, "cec-exporter " + where + " could not read every CEC record",
        "cec-exporter " + where + " left about {{ $value | printf \"%.0f\" }} windows incompletely read in the\n"
        f"last {ev}; calls in them may be missing from the counts.",
        rb("CECIncompleteReads"), health_dash,
        f"A window could not be read completely after three tries (its answer changed while paged, paging brought\n"
        f"nothing new, or the page limit was hit: the warning says which)\n"
        f"in the last {ev}; calls there may be missed. Resolves by itself {ev} later."))
    out.append(alert(
        "CECOpenCallsEvicted",
        f"increase({c.sel('cec_exporter_open_calls_evicted_total')}[{ev}]) > 0",
        None, ticket, "cec-exporter " + where + " gave up open calls beyond --poll.max-open-calls",
        "cec-exporter " + where + " gave up about {{ $value | printf \"%.0f\" }} open calls in the last " + ev + "\n"
        "because it remembered more than --poll.max-open-calls; if they end later they may not be counted.",
        rb("CECOpenCallsEvicted"), health_dash,
        f"More calls were open at once than --poll.max-open-calls: the oldest were given up. Either the\n"
        f"tenant really has that many calls in progress (raise the cap) or CEC serves invented open calls.\n"
        f"Resolves by itself {ev} later."))
    out.append(alert(
        "CECWebConfigReloadFailing",
        f"{c.sel('cec_exporter_web_config_last_reload_successful')} == 0",
        "5m", ticket, "cec-exporter " + where + " cannot apply its changed --web.config.file",
        "cec-exporter " + where + " found its changed --web.config.file unusable and still serves with the\n"
        "previous TLS and basic-auth settings.",
        rb("CECWebConfigReloadFailing"), health_dash,
        "The last re-read of --web.config.file failed: the previous configuration stays in force (a rotated\n"
        "certificate or a new password is not in use yet). Resolves when a re-read succeeds."))

    out.append(alert(
        "CECConfigReloadFailing",
        f"{c.sel('cec_exporter_config_last_reload_successful')} == 0",
        "5m", ticket, "cec-exporter " + where + " cannot apply its changed --config.file",
        "cec-exporter " + where + " could not apply its changed --config.file on SIGHUP (its log says why);\n"
        "the tenants in force keep polling.",
        rb("CECConfigReloadFailing"), health_dash,
        "The last re-read of --config.file (SIGHUP) failed: an invalid file changes nothing (an added tenant\n"
        "is not polled, a removed one still is); a tenant of a valid file that could not start is not polled.\n"
        "Process-wide (no tenant label). Resolves when a re-read succeeds."))

    def event(metric, cond):
        """`cond` on the metric, when it rose in the last event window or its series is younger than it.

        The metric only grows within a process and drops on a restart (a counter, or a maximum since
        start): increase() sees its rises and treats a restart's drop as a reset, so a restart alone never
        fires. A series younger than the window (the first poll after a long outage can skip before the
        first scrape: no earlier sample to compare with) fires while its value is above everything seen
        before the window, which also keeps an old value restored from the state store quiet."""
        m = c.sel(metric)
        return (f"{cond}\n"
                f"and\n"
                f"(\n"
                f"  increase({m}[{ev}]) > 0\n"
                f"  or\n"
                f"  ({m} unless {m} <= max_over_time({m}[1d] offset {ev}))\n"
                f")")

    out.append(alert(
        "CECCatchupSkipped",
        event("cec_exporter_catchup_skipped_seconds_total",
              f"{c.sel('cec_exporter_catchup_skipped_seconds_total')} > 0"),
        None, ticket, "cec-exporter " + where + " skipped part of an outage",
        "cec-exporter " + where + " has skipped {{ $value | humanizeDuration }} of call records since it started,\n"
        f"the latest within the last {ev}, after an outage longer than --poll.max-catchup; calls of that stretch\n"
        "are not counted.",
        rb("CECCatchupSkipped"), health_dash,
        f"An outage longer than --poll.max-catchup was cut short: its calls are never counted. An event, not\n"
        f"a state: fires for {ev} after the skip and resolves by itself; an exporter restart (the counter is\n"
        f"per process) never fires it."))
    share = num(ex["lateness_share_of_lookback"])
    lateness = c.sel("cec_exporter_max_record_lateness_seconds")
    out.append(alert(
        "CECLateRecordsNearLookback",
        event("cec_exporter_max_record_lateness_seconds",
              f"{lateness} > {share} * {c.sel('cec_exporter_lookback_seconds')}"),
        None, ticket, "CEC returns records late enough to risk missing calls on " + where,
        "cec-exporter " + where + " saw a record {{ $value | humanizeDuration }} late (in the last "
        f"{ev}), more than\n{pct(ex['lateness_share_of_lookback'])} of its --poll.lookback of "
        + query_value("cec_exporter_lookback_seconds", list(c.labels), "humanizeDuration") + ".",
        rb("CECLateRecordsNearLookback"), health_dash,
        f"A record CEC returned late used more than {pct(ex['lateness_share_of_lookback'])} of the exporter's own --poll.lookback\n"
        f"(cec_exporter_lookback_seconds, so the alert follows each deployment's flag): a record later than\n"
        f"the lookback is not counted. The gauge is a maximum since start; fires for {ev} after a new maximum\n"
        f"and resolves by itself."))
    return "".join(out)
