//! The sample producers, one per data source, each listing the families it fills (in exposition
//! order) with the function that writes their samples: [`Calls`] from what the poller published
//! (call counters and histograms from the committed aggregates, open calls from the ledger) and
//! [`SelfTelemetry`] from the exporter's own telemetry and build. Collectors supply label values and
//! numbers only; names, types and label names come from [`super::families`].

use super::aggregate::{Leg, NO_REASON, OTHER_REASON};
use super::classify::{reason_name, Outcome};
use super::expose::{BuildInfo, Published, Samples, Value};
use super::families::{self as f, Family};
use super::telemetry::TelemetryData;
use crate::cec::record::{CallState, TaskType};
use crate::cec::wire::{Field, RejectReason};
use crate::cec::{Endpoint, ErrorKind};

/// Writes one family's samples from a collector's source (of any lifetime).
pub type Produce<C> = for<'a, 's> fn(&'s <C as Collector>::Source<'a>, &mut Samples<'_>);

/// A producer of samples for some of the families of [`f::ALL`], from one kind of source.
pub trait Collector: 'static {
    /// What the samples are read from.
    type Source<'a>;
    /// The families this collector fills, in exposition order, each with the function writing its
    /// samples (for any lifetime of the source, hence the higher-ranked type).
    const FAMILIES: &'static [(&'static Family, Produce<Self>)];
}

/// The call metrics: from the aggregates a poll committed and the calls the ledger sees open.
pub struct Calls;

impl Collector for Calls {
    type Source<'a> = Published;
    const FAMILIES: &'static [(&'static Family, Produce<Self>)] = &[
        (&f::CALLS, |c, s| {
            for t in TaskType::ALL {
                for o in Outcome::ALL {
                    let labels = [t.label(), o.label()];
                    if c.aggregates.by_caller.is_empty() {
                        s.sample(&labels, Value::U(c.aggregates.calls[t.index()][o.index()]));
                    }
                    // With --metrics.callers, each listed number and "other": they add up to the totals.
                    for e in &c.aggregates.by_caller {
                        s.sample_split(&labels, ("caller", &e.caller), Value::U(e.calls[t.index()][o.index()]));
                    }
                }
            }
        }),
        (&f::CALL_END_REASONS, |c, s| {
            let mut code_buf = itoa::Buffer::new();
            for t in TaskType::ALL {
                for (&code, n) in &c.aggregates.end_reasons[t.index()] {
                    let (code, name) = if code == NO_REASON {
                        ("none", "none")
                    } else if code == OTHER_REASON {
                        // Folded codes: the same `reason` as any code outside the tables.
                        ("other", "other")
                    } else {
                        (code_buf.format(code), reason_name(t, code as u16))
                    };
                    s.sample_with_exemplar(&[t.label(), code, name], Value::U(n.count), n.exemplar.as_ref());
                }
            }
        }),
        (&f::CALL_TALK_DURATION, |c, s| {
            for t in TaskType::ALL {
                s.histogram(&[t.label()], &c.aggregates.talk[t.index()]);
            }
        }),
        (&f::CALL_AGENT_TALK_DURATION, |c, s| {
            for t in TaskType::ALL {
                s.histogram(&[t.label()], &c.aggregates.agent_talk[t.index()]);
            }
        }),
        (&f::CALL_ANSWER_DELAY, |c, s| {
            for t in TaskType::ALL {
                for leg in Leg::ALL {
                    s.histogram(&[t.label(), leg.label()], &c.aggregates.answer_delay[t.index()][leg as usize]);
                }
            }
        }),
        (&f::CALLS_IN_PROGRESS, |c, s| {
            for t in TaskType::ALL {
                for state in CallState::OPEN {
                    s.sample(&[t.label(), state.label()], Value::U(c.in_progress[t.index()][state as usize]));
                }
            }
        }),
        (&f::LAST_CALL_END, |c, s| {
            for t in TaskType::ALL {
                if let Some(ms) = c.aggregates.last_call_end_ms[t.index()] {
                    s.sample(&[t.label()], Value::F(ms as f64 / 1000.0));
                }
            }
        }),
        // Read from the aggregates (the `other` series' count), hence here and persisted with them.
        (&f::REASON_CODES_FOLDED, |c, s| {
            for t in TaskType::ALL {
                s.sample(&[t.label()], Value::U(c.aggregates.folded(t)));
            }
        }),
    ];
}

/// The exporter's own health: from its telemetry, its build, and the ledger's size.
pub struct SelfTelemetry;

/// The source of [`SelfTelemetry`].
pub struct Own<'a> {
    pub telemetry: &'a TelemetryData,
    pub build: &'a BuildInfo,
    /// Counted calls the ledger still remembers (published with the aggregates).
    pub remembered_calls: u64,
}

impl Collector for SelfTelemetry {
    type Source<'a> = Own<'a>;
    const FAMILIES: &'static [(&'static Family, Produce<Self>)] = &[
        (&f::UP, |c, s| s.sample(&[], Value::U(u64::from(up_at(c.telemetry, crate::ingest::poller::now_ms()))))),
        (&f::BUILD_INFO, |c, s| s.sample(&[c.build.version, c.build.revision], Value::U(1))),
        (&f::LAST_SUCCESSFUL_POLL, |c, s| {
            if let Some(ms) = c.telemetry.last_success_ms {
                s.sample(&[], Value::F(ms as f64 / 1000.0));
            }
        }),
        (&f::POLL_DURATION, |c, s| s.sample(&[], Value::F(c.telemetry.last_poll_seconds))),
        (&f::POLLS, |c, s| s.sample(&[], Value::U(c.telemetry.polls))),
        (&f::POLL_FAILURES, |c, s| s.sample(&[], Value::U(c.telemetry.poll_failures))),
        (&f::LAST_POLL_API_REQUESTS, |c, s| s.sample(&[], Value::U(c.telemetry.last_poll_requests))),
        (&f::API_REQUESTS, |c, s| {
            let mut status_buf = itoa::Buffer::new();
            for (&(ep, status), &n) in &c.telemetry.api_requests {
                let code = match status {
                    crate::events::CODE_NONE => "none",
                    crate::events::CODE_OTHER => "other",
                    _ => status_buf.format(status),
                };
                s.sample(&[ep.label(), code], Value::U(n));
            }
        }),
        (&f::API_ERRORS, |c, s| {
            // Every combination from zero, so the first error is an increase Prometheus can see.
            for ep in Endpoint::ALL {
                for kind in ErrorKind::ALL {
                    let n = c.telemetry.api_errors.get(&(ep, kind)).copied().unwrap_or(0);
                    s.sample(&[ep.label(), kind.label()], Value::U(n));
                }
            }
        }),
        (&f::RECORDS_FETCHED, |c, s| s.sample(&[], Value::U(c.telemetry.records_fetched))),
        (&f::RECORDS_REJECTED, |c, s| {
            for r in RejectReason::ALL {
                s.sample(&[r.label()], Value::U(c.telemetry.records_rejected.get(&r).copied().unwrap_or(0)));
            }
        }),
        (&f::RECORD_FIELDS_INVALID, |c, s| {
            for field in Field::ALL {
                s.sample(&[field.name()], Value::U(c.telemetry.fields_invalid.get(&field).copied().unwrap_or(0)));
            }
        }),
        (&f::TOKEN_REFRESHES, |c, s| s.sample(&[], Value::U(c.telemetry.token_refreshes))),
        (&f::OPEN_CALLS_ABANDONED, |c, s| s.sample(&[], Value::U(c.telemetry.open_calls_abandoned))),
        (&f::OPEN_CALLS_EVICTED, |c, s| s.sample(&[], Value::U(c.telemetry.open_calls_evicted))),
        (&f::STATE_COMMITS, |c, s| s.sample(&[], Value::U(c.telemetry.state_commits))),
        (&f::STATE_COMMIT_FAILURES, |c, s| s.sample(&[], Value::U(c.telemetry.state_commit_failures))),
        (&f::STATE_BYTES, |c, s| {
            if let Some(b) = c.telemetry.state_bytes {
                s.sample(&[], Value::U(b));
            }
        }),
        (&f::CATCHUP_SKIPPED, |c, s| s.sample(&[], Value::F(c.telemetry.catchup_skipped_seconds))),
        (&f::CATCHUP_REMAINING, |c, s| s.sample(&[], Value::F(c.telemetry.catchup_remaining_seconds))),
        (&f::INCOMPLETE_READS, |c, s| s.sample(&[], Value::U(c.telemetry.incomplete_reads))),
        (&f::LATE_RECORDS, |c, s| s.sample(&[], Value::U(c.telemetry.late_records))),
        (&f::MAX_RECORD_LATENESS, |c, s| s.sample(&[], Value::F(c.telemetry.max_lateness_seconds))),
        (&f::REMEMBERED_CALLS, |c, s| s.sample(&[], Value::U(c.remembered_calls))),
        (&f::HTTP_ACCEPT_ERRORS, |c, s| s.sample(&[], Value::U(c.telemetry.accept_errors))),
        (&f::WEB_CONFIG_RELOADS, |c, s| {
            // Both results from zero, so the first failure is an increase Prometheus can see.
            s.sample(&["success"], Value::U(c.telemetry.web_config_reloads));
            s.sample(&["failure"], Value::U(c.telemetry.web_config_reload_failures));
        }),
        (&f::WEB_CONFIG_LAST_RELOAD_SUCCESSFUL, |c, s| {
            s.sample(&[], Value::U(u64::from(!c.telemetry.web_config_last_reload_failed)))
        }),
        // Set once by the poller from its configuration; alerts compare record lateness with it.
        (&f::LOOKBACK, |c, s| {
            if let Some(secs) = c.telemetry.lookback_seconds {
                s.sample(&[], Value::F(secs));
            }
        }),
        (&f::CONFIG_RELOADS, |c, s| {
            s.sample(&["success"], Value::U(c.telemetry.config_reloads));
            s.sample(&["failure"], Value::U(c.telemetry.config_reload_failures));
        }),
        (&f::CONFIG_LAST_RELOAD_SUCCESSFUL, |c, s| {
            s.sample(&[], Value::U(u64::from(!c.telemetry.config_last_reload_failed)))
        }),
    ];
}

/// `cec_up` at the wall-clock time `now_ms`: the last poll succeeded, and the next one is not overdue
/// (no success for longer than `overdue_after_ms`). Read at scrape time, so a poll that never ends shows
/// as down although the poller, stuck in it, reports nothing.
pub fn up_at(t: &TelemetryData, now_ms: i64) -> bool {
    let overdue = match (t.overdue_after_ms, t.last_success_ms) {
        (Some(allowed), Some(last)) => now_ms.saturating_sub(last) > allowed,
        _ => false,
    };
    t.up && !overdue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cec_up_is_0_once_the_last_success_is_older_than_allowed() {
        let t = TelemetryData {
            up: true,
            last_success_ms: Some(1_000_000),
            overdue_after_ms: Some(60_000),
            ..Default::default()
        };
        assert!(up_at(&t, 1_060_000), "exactly the allowed age");
        assert!(!up_at(&t, 1_060_001), "overdue");
        assert!(!up_at(&TelemetryData { up: false, ..t.clone() }, 1_000_000), "a failed poll");
        assert!(up_at(&TelemetryData { overdue_after_ms: None, ..t.clone() }, i64::MAX), "no limit set");
        // Rendered: the poller's `up` is stale (it is stuck in a poll), the scrape says 0.
        let stale = TelemetryData { last_success_ms: Some(crate::ingest::poller::now_ms() - 120_000), ..t };
        let build = super::super::expose::BuildInfo { version: "v", revision: "r" };
        let mut out = Vec::new();
        super::super::expose::render(
            &mut out,
            super::super::negotiate::Format::Text,
            &super::super::expose::Published::default(),
            &stale,
            &build,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\ncec_up 0\n"), "{text}");
    }

    /// Together the collectors fill every family of the table, each once, in the table's order; the
    /// renderer walks them in this order, so nothing in the table can be left unrendered.
    #[test]
    fn collectors_cover_the_table_in_order() {
        let rendered: Vec<&str> = Calls::FAMILIES
            .iter()
            .map(|(f, _)| f.name)
            .chain(SelfTelemetry::FAMILIES.iter().map(|(f, _)| f.name))
            .collect();
        let table: Vec<&str> = f::ALL.iter().map(|f| f.name).collect();
        assert_eq!(rendered, table);
    }
}
