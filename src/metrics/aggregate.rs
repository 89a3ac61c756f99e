//! The call metrics as plain data: counters and histograms indexed by label enums, updated by
//! [`Aggregates::observe`] once per counted call. Plain data so that a poll can commit it together with
//! the ledger, and so that rendering is a walk over arrays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::classify::{is_known_reason, outcome, Outcome};
use crate::cec::record::{CallId, CallRecord, TaskType};

/// Upper bounds (seconds) of the talk-duration histograms: a few seconds to an hour.
pub const TALK_BUCKETS: &[f64] = &[5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0];
/// Upper bounds (seconds) of the answer-delay histograms: ring times from one second to two minutes.
pub const DELAY_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0];

/// The call behind a sample, so an operator can look it up in CEC.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    pub call: CallId,
    /// The observed value (seconds for histograms, 1 for counters).
    #[serde(deserialize_with = "f64_or_nan")]
    pub value: f64,
    /// When the call ended, epoch ms (absent when the record did not say).
    pub ts_ms: Option<i64>,
}

/// A histogram: per-bucket (not cumulative) counts, the last bucket being +Inf; one exemplar per bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The upper bounds the buckets were counted with, so a stored histogram says its own layout (absent
    /// in state format 1, which had only today's layouts).
    #[serde(default)]
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
    pub exemplars: Vec<Option<Exemplar>>,
    pub count: u64,
    /// Sum of observed values, seconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            buckets: vec![0; bounds.len() + 1],
            exemplars: vec![None; bounds.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }

    /// Counts `value`. A non-finite value is skipped (the parser's range checks keep it out; this is the
    /// last guard before the store, whose JSON has no `inf`), and the sum saturates at `f64::MAX`, so
    /// nothing non-finite is ever stored.
    pub fn observe(&mut self, bounds: &[f64], value: f64, exemplar: Exemplar) {
        if !value.is_finite() {
            return;
        }
        let i = bounds.partition_point(|&b| b < value);
        self.buckets[i] += 1;
        keep_newest(&mut self.exemplars[i], exemplar);
        self.count += 1;
        self.sum = (self.sum + value).clamp(f64::MIN, f64::MAX);
    }

    /// Whether the histogram is whole: a finite sum, finite exemplar values, and bucket counts adding
    /// up to `count`. A store written before the range checks may hold `null` (serde_json's `+Inf`).
    fn is_sound(&self) -> bool {
        self.sum.is_finite()
            && self.exemplars.iter().flatten().all(|e| e.value.is_finite())
            && self.buckets.iter().try_fold(0u64, |a, &b| a.checked_add(b)) == Some(self.count)
    }
}

/// Reads an `f64` that an older version may have stored as `null` (serde_json writes a non-finite
/// number so) as NaN, so the store still loads and [`Aggregates::conform_values`] can repair it.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Replaces the exemplar in `slot` unless it names a call that ended later: calls are admitted in CEC's
/// order, not by time, and Prometheus drops (and logs) an exemplar older than the one it has.
fn keep_newest(slot: &mut Option<Exemplar>, ex: Exemplar) {
    if slot.is_none_or(|old| ex.ts_ms >= old.ts_ms) {
        *slot = Some(ex);
    }
}

/// The `leg` label of the answer-delay histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// talkingTime − alertingTime.
    Customer = 0,
    /// agentTalkingTime − agentAlertingTime.
    Agent = 1,
}

impl Leg {
    pub const ALL: [Leg; 2] = [Leg::Customer, Leg::Agent];
    pub fn label(self) -> &'static str {
        match self {
            Leg::Customer => "customer",
            Leg::Agent => "agent",
        }
    }
}

/// A reason code as a map key; [`NO_REASON`] stands for a record without `reasonCode`.
pub type ReasonKey = u32;
/// The key of calls that ended without a `reasonCode` (`reason_code="none"`).
pub const NO_REASON: ReasonKey = u32::MAX;
/// The key of calls whose code is outside the known tables and came after the cap of such codes was
/// reached (`reason_code="other",reason="other"`). Codes are `u16`, so this never collides with one.
pub const OTHER_REASON: ReasonKey = u32::MAX - 1;
/// Default of `--metrics.max-unknown-reason-codes`.
pub const DEFAULT_MAX_UNKNOWN_REASON_CODES: usize = 32;

/// A counter with the exemplar of the latest call it counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExemplarCounter {
    pub count: u64,
    pub exemplar: Option<Exemplar>,
}

/// Every call metric, indexed by `TaskType::index()` (and `Outcome::index()`, `Leg`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// `cec_calls_total{task_type, outcome}`.
    pub calls: [[u64; Outcome::COUNT]; TaskType::COUNT],
    /// `cec_call_end_reasons_total{task_type, reason_code, reason}`, by reason code.
    pub end_reasons: [BTreeMap<ReasonKey, ExemplarCounter>; TaskType::COUNT],
    /// `cec_call_talk_duration_seconds{task_type}`.
    pub talk: [Histogram; TaskType::COUNT],
    /// `cec_call_agent_talk_duration_seconds{task_type}`.
    pub agent_talk: [Histogram; TaskType::COUNT],
    /// `cec_call_answer_delay_seconds{task_type, leg}`.
    pub answer_delay: [[Histogram; 2]; TaskType::COUNT],
    /// `cec_last_call_end_timestamp_seconds{task_type}`, epoch ms.
    pub last_call_end_ms: [Option<i64>; TaskType::COUNT],
    /// How many codes outside the known tables get their own series, per task type
    /// (`--metrics.max-unknown-reason-codes`). Not stored: which codes got one is (they are the keys of
    /// `end_reasons`), so the choice survives a restart whatever the cap is then.
    #[serde(skip, default = "default_reason_cap")]
    reason_cap: usize,
    /// `cec_calls_total{task_type, outcome, caller}` when the tenant lists calling numbers
    /// (`--metrics.callers`): one entry per listed number, then [`OTHER_CALLER`] for every other call
    /// (and every call counted before the list was given). Empty without a list. Always adds up to
    /// `calls` ([`Aggregates::set_callers`] keeps it so).
    #[serde(default)]
    pub by_caller: Vec<CallerCounts>,
    /// The keys of the listed numbers, in the order of `by_caller` (not stored: rebuilt from the list).
    #[serde(skip)]
    caller_keys: Vec<crate::cec::record::CallerKey>,
}

/// The `caller` label of the calls whose calling number is not listed (or unknown).
pub const OTHER_CALLER: &str = "other";

/// Ended calls of one calling number, by task type and outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerCounts {
    /// The listed number, or [`OTHER_CALLER`].
    pub caller: String,
    pub calls: [[u64; Outcome::COUNT]; TaskType::COUNT],
}

fn default_reason_cap() -> usize {
    DEFAULT_MAX_UNKNOWN_REASON_CODES
}

impl Default for Aggregates {
    fn default() -> Self {
        let talk = || std::array::from_fn(|_| Histogram::new(TALK_BUCKETS));
        Aggregates {
            calls: [[0; Outcome::COUNT]; TaskType::COUNT],
            end_reasons: Default::default(),
            talk: talk(),
            agent_talk: talk(),
            answer_delay: std::array::from_fn(|_| std::array::from_fn(|_| Histogram::new(DELAY_BUCKETS))),
            last_call_end_ms: [None; TaskType::COUNT],
            reason_cap: DEFAULT_MAX_UNKNOWN_REASON_CODES,
            by_caller: Vec::new(),
            caller_keys: Vec::new(),
        }
    }
}

impl Aggregates {
    /// Splits `cec_calls_total` by the calling numbers `callers` (`--metrics.callers`; empty: no split).
    /// A number listed before keeps its counts; a new one starts at 0; a number no longer listed is
    /// folded into [`OTHER_CALLER`], which holds every call not counted under a listed number (so the
    /// calls counted before the list was given are "other", and the split always adds up to the
    /// totals, whatever a restored store held).
    pub fn set_callers(&mut self, callers: &[String]) {
        if callers.is_empty() {
            self.by_caller.clear();
            self.caller_keys.clear();
            return;
        }
        let zero = [[0u64; Outcome::COUNT]; TaskType::COUNT];
        let mut next: Vec<CallerCounts> = callers
            .iter()
            .map(|c| {
                let kept = self.by_caller.iter().find(|e| e.caller == *c && c != OTHER_CALLER);
                CallerCounts { caller: c.clone(), calls: kept.map_or(zero, |e| e.calls) }
            })
            .collect();
        let mut other = self.calls;
        for e in &next {
            for (t, row) in e.calls.iter().enumerate() {
                for (o, n) in row.iter().enumerate() {
                    other[t][o] = other[t][o].saturating_sub(*n);
                }
            }
        }
        next.push(CallerCounts { caller: OTHER_CALLER.to_owned(), calls: other });
        self.caller_keys = callers.iter().map(|c| crate::cec::record::CallerKey::of(c)).collect();
        self.by_caller = next;
    }

    /// Counts one ended call. Called exactly once per call, by the ledger's admission.
    pub fn observe(&mut self, id: CallId, task_type: TaskType, record: &CallRecord) {
        // The parser reads a non-finite duration as absent; `Histogram::observe` would skip one anyway.
        debug_assert!(
            record.talk_s.is_none_or(f64::is_finite) && record.agent_talk_s.is_none_or(f64::is_finite),
            "a non-finite duration got past the parser"
        );
        let t = task_type.index();
        let ended = record.ended_at_ms();
        let ex = |value| Exemplar { call: id, value, ts_ms: ended };

        let o = outcome(task_type, record).index();
        self.calls[t][o] += 1;
        if let Some(other) = self.by_caller.len().checked_sub(1) {
            let slot = record.caller.and_then(|k| self.caller_keys.iter().position(|&c| c == k)).unwrap_or(other);
            self.by_caller[slot].calls[t][o] += 1;
        }

        let key = match record.reason_code {
            None => NO_REASON,
            Some(code) => self.reason_key(task_type, code),
        };
        let c = self.end_reasons[t].entry(key).or_default();
        c.count += 1;
        keep_newest(&mut c.exemplar, ex(1.0));

        if let Some(s) = record.customer_talk_seconds().filter(|&s| s > 0.0) {
            self.talk[t].observe(TALK_BUCKETS, s, ex(s));
        }
        if let Some(s) = record.agent_talk_seconds().filter(|&s| s > 0.0) {
            self.agent_talk[t].observe(TALK_BUCKETS, s, ex(s));
        }
        if let Some(d) = record.customer_answer_delay() {
            self.answer_delay[t][Leg::Customer as usize].observe(DELAY_BUCKETS, d, ex(d));
        }
        if let Some(d) = record.agent_answer_delay() {
            self.answer_delay[t][Leg::Agent as usize].observe(DELAY_BUCKETS, d, ex(d));
        }
        if let Some(end) = ended {
            let last = &mut self.last_call_end_ms[t];
            *last = Some(last.map_or(end, |l| l.max(end)));
        }
    }

    /// The key a call ending with `code` is counted under: its own unless it is outside the known tables,
    /// has no series yet, and the task type already has `reason_cap` such codes; then [`OTHER_REASON`].
    fn reason_key(&self, task_type: TaskType, code: u16) -> ReasonKey {
        let key = ReasonKey::from(code);
        let reasons = &self.end_reasons[task_type.index()];
        if is_known_reason(task_type, code)
            || reasons.contains_key(&key)
            || unknown_codes(task_type, reasons).count() < self.reason_cap
        {
            key
        } else {
            OTHER_REASON
        }
    }

    /// Sets the cap of codes outside the known tables with their own series, per task type. A restored
    /// state holding more of them than `cap` (a lowered flag) keeps the lowest `cap` codes and folds the
    /// others into [`OTHER_REASON`], counts and newest exemplar kept; returns the codes folded, for the log.
    pub fn set_reason_cap(&mut self, cap: usize) -> usize {
        self.reason_cap = cap;
        let mut folded = 0;
        for t in TaskType::ALL {
            let reasons = &mut self.end_reasons[t.index()];
            let excess: Vec<ReasonKey> = unknown_codes(t, reasons).skip(cap).collect();
            for key in excess {
                let c = reasons.remove(&key).expect("listed above");
                let other = reasons.entry(OTHER_REASON).or_default();
                other.count += c.count;
                if let Some(ex) = c.exemplar {
                    keep_newest(&mut other.exemplar, ex);
                }
                folded += 1;
            }
        }
        folded
    }

    /// Calls counted under `reason_code="other"` because of the cap, per task type
    /// (`cec_exporter_reason_codes_folded_total`).
    pub fn folded(&self, task_type: TaskType) -> u64 {
        self.end_reasons[task_type.index()].get(&OTHER_REASON).map_or(0, |c| c.count)
    }

    /// Every histogram with its metric name and the bucket layout this version uses.
    fn histograms_mut(&mut self) -> impl Iterator<Item = (&'static str, &'static [f64], &mut Histogram)> {
        let talk = self.talk.iter_mut().map(|h| ("cec_call_talk_duration_seconds", TALK_BUCKETS, h));
        let agent = self.agent_talk.iter_mut().map(|h| ("cec_call_agent_talk_duration_seconds", TALK_BUCKETS, h));
        let delay = self.answer_delay.iter_mut().flatten().map(|h| ("cec_call_answer_delay_seconds", DELAY_BUCKETS, h));
        talk.chain(agent).chain(delay)
    }

    /// Fits restored histograms to this version's bucket layouts. A histogram counted with other bounds
    /// cannot be re-bucketed exactly, so it starts over (Prometheus sees a counter reset of its series,
    /// which `rate()` handles); the names of the histograms that did are returned, for the log.
    pub fn conform_buckets(&mut self) -> Vec<&'static str> {
        let mut restarted = Vec::new();
        for (name, bounds, h) in self.histograms_mut() {
            if h.bounds != bounds || h.buckets.len() != bounds.len() + 1 || h.exemplars.len() != bounds.len() + 1 {
                *h = Histogram::new(bounds);
                if !restarted.contains(&name) {
                    restarted.push(name);
                }
            }
        }
        restarted
    }

    /// Starts over every restored histogram that is not whole (a non-finite sum or exemplar, stored by
    /// a version without range checks as `null`; buckets not adding up to the count): its true sum cannot
    /// be recovered, and a wrong one would lie forever, while a reset is a counter reset Prometheus's
    /// `rate()` handles. The names of the histograms that did are returned, for the log. Counter
    /// exemplars with a non-finite value are dropped.
    pub fn conform_values(&mut self) -> Vec<&'static str> {
        let mut restarted = Vec::new();
        for (name, bounds, h) in self.histograms_mut() {
            if !h.is_sound() {
                *h = Histogram::new(bounds);
                if !restarted.contains(&name) {
                    restarted.push(name);
                }
            }
        }
        for c in self.end_reasons.iter_mut().flat_map(|m| m.values_mut()) {
            if c.exemplar.is_some_and(|e| !e.value.is_finite()) {
                c.exemplar = None;
            }
        }
        restarted
    }

    /// Ended calls counted so far, all labels together.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().flatten().sum()
    }
}

/// The codes of `reasons` outside the known tables of `task_type` (in code order).
fn unknown_codes(
    task_type: TaskType,
    reasons: &BTreeMap<ReasonKey, ExemplarCounter>,
) -> impl Iterator<Item = ReasonKey> + '_ {
    reasons.keys().copied().filter(move |&k| u16::try_from(k).is_ok_and(|code| !is_known_reason(task_type, code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered_ita() -> CallRecord {
        CallRecord {
            reason_code: Some(16),
            start_ms: Some(1_000_000),
            alerting_ms: Some(1_002_000),
            talking_ms: Some(1_006_500),
            release_ms: Some(1_066_500),
            end_ms: Some(1_066_500),
            agent_alerting_ms: Some(1_000_500),
            agent_talking_ms: Some(1_001_500),
            agent_release_ms: Some(1_066_500),
            talk_s: Some(60.0),
            agent_talk_s: Some(65.0),
            ..Default::default()
        }
    }

    #[test]
    fn one_answered_call_feeds_every_metric_once() {
        let mut a = Aggregates::default();
        let ita = TaskType::ItaBidirectional;
        a.observe(CallId(42), ita, &answered_ita());
        let t = ita.index();
        assert_eq!(a.total_calls(), 1);
        assert_eq!(a.calls[t][Outcome::Answered.index()], 1);
        let reason = a.end_reasons[t][&16];
        assert_eq!(reason.count, 1);
        assert_eq!(reason.exemplar.unwrap().call, CallId(42));
        assert_eq!(reason.exemplar.unwrap().ts_ms, Some(1_066_500));
        // 60 s lands in the le=60 bucket (bounds are inclusive upper bounds).
        assert_eq!(a.talk[t].buckets[3], 1);
        assert_eq!((a.talk[t].count, a.talk[t].sum), (1, 60.0));
        assert_eq!((a.agent_talk[t].count, a.agent_talk[t].sum), (1, 65.0));
        assert_eq!(a.agent_talk[t].buckets[4], 1, "65 s is in le=120");
        let customer = &a.answer_delay[t][Leg::Customer as usize];
        assert_eq!((customer.count, customer.sum), (1, 4.5));
        assert_eq!(customer.buckets[3], 1, "4.5 s is in le=5");
        let agent = &a.answer_delay[t][Leg::Agent as usize];
        assert_eq!((agent.count, agent.sum), (1, 1.0));
        assert_eq!(agent.buckets[0], 1, "1 s is in le=1");
        assert_eq!(a.last_call_end_ms[t], Some(1_066_500));
    }

    #[test]
    fn unanswered_call_observes_no_duration() {
        let mut a = Aggregates::default();
        let rec = CallRecord {
            reason_code: Some(5),
            talk_s: Some(0.0),
            agent_talk_s: Some(0.0),
            alerting_ms: Some(10),
            ..Default::default()
        };
        a.observe(CallId(1), TaskType::CecBidirectional, &rec);
        let t = TaskType::CecBidirectional.index();
        assert_eq!(a.calls[t][Outcome::NoAnswer.index()], 1);
        assert_eq!(a.talk[t].count + a.agent_talk[t].count, 0);
        assert_eq!(a.answer_delay[t][0].count + a.answer_delay[t][1].count, 0);
        assert_eq!(a.last_call_end_ms[t], None);
    }

    #[test]
    fn missing_reason_code_is_its_own_key() {
        let mut a = Aggregates::default();
        a.observe(CallId(1), TaskType::Unknown, &CallRecord::default());
        assert_eq!(a.end_reasons[TaskType::Unknown.index()][&NO_REASON].count, 1);
    }

    #[test]
    fn bucket_beyond_the_last_bound_is_inf() {
        let mut h = Histogram::new(TALK_BUCKETS);
        let ex = Exemplar { call: CallId(1), value: 5000.0, ts_ms: None };
        h.observe(TALK_BUCKETS, 5000.0, ex);
        assert_eq!(h.buckets[TALK_BUCKETS.len()], 1);
    }

    #[test]
    fn last_call_end_keeps_the_newest() {
        let mut a = Aggregates::default();
        let t = TaskType::VoiceNotification;
        for end in [5_000, 9_000, 7_000] {
            let rec = CallRecord { end_ms: Some(end), ..Default::default() };
            a.observe(CallId(end as u64), t, &rec);
        }
        assert_eq!(a.last_call_end_ms[t.index()], Some(9_000));
    }

    #[test]
    fn a_histogram_restored_with_another_bucket_layout_starts_over_and_the_rest_stays() {
        let mut a = Aggregates::default();
        let rec =
            CallRecord { talk_s: Some(30.0), alerting_ms: Some(0), talking_ms: Some(2_000), ..Default::default() };
        a.observe(CallId(1), TaskType::CecBidirectional, &rec);
        let mut restored = a.clone();
        assert!(restored.conform_buckets().is_empty(), "same layouts: nothing changes");
        assert_eq!(restored, a);
        // As if written by a version whose talk buckets were different.
        restored.talk[0].bounds = vec![10.0, 100.0];
        restored.talk[0].buckets = vec![0, 1, 0];
        restored.talk[0].exemplars = vec![None; 3];
        assert_eq!(restored.conform_buckets(), vec!["cec_call_talk_duration_seconds"]);
        assert_eq!(restored.talk[0], Histogram::new(TALK_BUCKETS));
        assert_eq!(restored.calls, a.calls, "counters are kept");
        assert_eq!(restored.answer_delay, a.answer_delay, "other histograms are kept");
    }

    #[test]
    fn nothing_non_finite_reaches_a_histogram() {
        let mut h = Histogram::new(TALK_BUCKETS);
        let ex = |value| Exemplar { call: CallId(1), value, ts_ms: None };
        for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            h.observe(TALK_BUCKETS, v, ex(v));
        }
        assert_eq!(h, Histogram::new(TALK_BUCKETS), "non-finite values are skipped");
        // Two huge finite values would sum to +Inf: the sum saturates instead.
        h.observe(TALK_BUCKETS, 1e308, ex(1e308));
        h.observe(TALK_BUCKETS, 1e308, ex(1e308));
        assert_eq!((h.count, h.sum, h.buckets[TALK_BUCKETS.len()]), (2, f64::MAX, 2));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), h, "and it stores and loads as it is");
    }

    #[test]
    fn a_stored_null_sum_loads_and_only_that_histogram_starts_over() {
        let mut a = Aggregates::default();
        let rec = CallRecord { talk_s: Some(30.0), agent_talk_s: Some(40.0), ..Default::default() };
        a.observe(CallId(1), TaskType::CecBidirectional, &rec);
        a.observe(CallId(2), TaskType::CecBidirectional, &rec);
        // What a version without range checks stored after two `talkDuration: 1e308`: sum +Inf → null.
        let mut json: serde_json::Value = serde_json::to_value(&a).unwrap();
        json["talk"][0]["sum"] = serde_json::Value::Null;
        json["talk"][0]["exemplars"][2]["value"] = serde_json::Value::Null;
        json["agent_talk"][0]["exemplars"][3]["value"] = serde_json::Value::Null;
        let mut restored: Aggregates = serde_json::from_value(json).expect("a null where an f64 belongs still loads");
        assert!(restored.talk[0].sum.is_nan());
        assert_eq!(
            restored.conform_values(),
            vec!["cec_call_talk_duration_seconds", "cec_call_agent_talk_duration_seconds"]
        );
        assert_eq!(restored.talk[0], Histogram::new(TALK_BUCKETS));
        assert_eq!(restored.agent_talk[0], Histogram::new(TALK_BUCKETS));
        assert_eq!(restored.calls, a.calls, "counters are kept");
        assert_eq!(restored.end_reasons, a.end_reasons);
        // A sound state is left exactly as it is.
        let mut same = a.clone();
        assert!(same.conform_values().is_empty());
        assert_eq!(same, a);
        // Buckets that do not add up to the count are not sound either.
        same.answer_delay[1][0].count = 7;
        assert_eq!(same.conform_values(), vec!["cec_call_answer_delay_seconds"]);
        assert_eq!(same.talk, a.talk);
    }

    #[test]
    fn exemplars_only_move_forward_in_time() {
        let mut a = Aggregates::default();
        let t = TaskType::ItaBidirectional;
        for (id, end) in [(1, 5_000), (2, 9_000), (3, 7_000)] {
            let rec = CallRecord { reason_code: Some(16), talk_s: Some(20.0), end_ms: Some(end), ..Default::default() };
            a.observe(CallId(id), t, &rec);
        }
        let reason = a.end_reasons[t.index()][&16].exemplar.unwrap();
        assert_eq!((reason.call, reason.ts_ms), (CallId(2), Some(9_000)), "call 3 ended before call 2");
        assert_eq!(a.talk[t.index()].exemplars[2].unwrap().call, CallId(2));
        assert_eq!(a.end_reasons[t.index()][&16].count, 3, "every call still counts");
    }

    fn ended_with(code: u16, end_ms: i64) -> CallRecord {
        CallRecord { reason_code: Some(code), end_ms: Some(end_ms), ..Default::default() }
    }

    #[test]
    fn every_code_cec_can_send_gives_at_most_the_known_ones_plus_the_cap_per_task_type() {
        let mut a = Aggregates::default();
        for t in TaskType::ALL {
            for code in 0..=u16::MAX {
                a.observe(CallId(u64::from(code)), t, &ended_with(code, i64::from(code)));
            }
        }
        for t in TaskType::ALL {
            let known = (0..=u16::MAX).filter(|&c| is_known_reason(t, c)).count();
            let reasons = &a.end_reasons[t.index()];
            assert_eq!(reasons.len(), known + 32 + 1, "{t:?}: known codes, 32 others, and `other`");
            // The first 32 unknown codes CEC sent kept their series; every later one folded.
            let own: Vec<ReasonKey> = unknown_codes(t, reasons).collect();
            let first: Vec<ReasonKey> =
                (0..=u16::MAX).filter(|&c| !is_known_reason(t, c)).take(32).map(ReasonKey::from).collect();
            assert_eq!(own, first, "{t:?}");
            assert_eq!(a.folded(t), 65_536 - known as u64 - 32, "{t:?}");
            assert_eq!(reasons.values().map(|c| c.count).sum::<u64>(), 65_536, "{t:?}: every call still counts");
            // The folded series keeps the newest call as its exemplar.
            let ex = reasons[&OTHER_REASON].exemplar.unwrap();
            assert_eq!((ex.call, ex.value, ex.ts_ms), (CallId(65_535), 1.0, Some(65_535)));
        }
    }

    #[test]
    fn a_code_with_a_series_keeps_it_and_known_codes_never_fold() {
        let mut a = Aggregates::default();
        a.set_reason_cap(1);
        let t = TaskType::CecBidirectional;
        for (id, code) in [(1, 900), (2, 901), (3, 900), (4, 5), (5, 902)] {
            a.observe(CallId(id), t, &ended_with(code, id as i64));
        }
        let r = &a.end_reasons[t.index()];
        let counts: Vec<(ReasonKey, u64)> = r.iter().map(|(&k, c)| (k, c.count)).collect();
        assert_eq!(counts, vec![(5, 1), (900, 2), (OTHER_REASON, 2)]);
        assert_eq!(r[&OTHER_REASON].exemplar.unwrap().call, CallId(5));
        assert_eq!(a.folded(t), 2);
        assert_eq!(a.folded(TaskType::ItaBidirectional), 0);
    }

    #[test]
    fn a_lowered_cap_folds_the_excess_of_a_restored_state_and_loses_no_call() {
        let mut a = Aggregates::default();
        let t = TaskType::Unknown;
        for (id, code) in [(1, 700), (2, 800), (3, 900), (4, 900), (5, 3)] {
            a.observe(CallId(id), t, &ended_with(code, id as i64 * 10));
        }
        assert_eq!(a.set_reason_cap(32), 0, "under the cap: nothing to fold");
        assert_eq!(a.set_reason_cap(1), 2);
        let counts: Vec<(ReasonKey, u64)> = a.end_reasons[t.index()].iter().map(|(&k, c)| (k, c.count)).collect();
        assert_eq!(counts, vec![(3, 1), (700, 1), (OTHER_REASON, 3)]);
        assert_eq!(a.end_reasons[t.index()][&OTHER_REASON].exemplar.unwrap().call, CallId(4), "the newest");
        a.observe(CallId(6), t, &ended_with(800, 60));
        assert_eq!(a.folded(t), 4, "a folded code stays folded");
    }

    #[test]
    fn listed_callers_split_the_calls_and_always_add_up_to_the_totals() {
        use crate::cec::record::CallerKey;
        let ita = TaskType::ItaBidirectional;
        let (t, answered) = (ita.index(), Outcome::Answered.index());
        let from = |n: Option<&str>| CallRecord { caller: n.map(CallerKey::of), ..answered_ita() };
        let split = |a: &Aggregates| -> Vec<(String, u64)> {
            a.by_caller.iter().map(|e| (e.caller.clone(), e.calls[t][answered])).collect()
        };
        let mut a = Aggregates::default();
        // Two calls before any list: no split.
        a.observe(CallId(1), ita, &from(Some("4001")));
        a.observe(CallId(2), ita, &from(None));
        assert!(a.by_caller.is_empty());
        // Listing 4001 and 4002: the earlier calls are "other" (which number they came from was not kept).
        a.set_callers(&["4001".into(), "4002".into()]);
        assert_eq!(split(&a), [("4001".into(), 0), ("4002".into(), 0), ("other".into(), 2)]);
        a.observe(CallId(3), ita, &from(Some(" 4001")));
        a.observe(CallId(4), ita, &from(Some("4002")));
        a.observe(CallId(5), ita, &from(Some("4003")));
        a.observe(CallId(6), ita, &from(None));
        assert_eq!(split(&a), [("4001".into(), 1), ("4002".into(), 1), ("other".into(), 4)]);
        // Through the store and back with 4002 dropped and 4004 added: 4001 keeps its count, 4002's
        // goes to "other", 4004 starts at 0.
        let mut b: Aggregates = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        b.set_callers(&["4001".into(), "4004".into()]);
        assert_eq!(split(&b), [("4001".into(), 1), ("4004".into(), 0), ("other".into(), 5)]);
        b.observe(CallId(7), ita, &from(Some("4004")));
        assert_eq!(split(&b), [("4001".into(), 1), ("4004".into(), 1), ("other".into(), 5)]);
        assert_eq!(b.calls[t][answered], 7);
        // A store whose split does not add up (edited by hand) is brought back to the totals.
        b.by_caller[2].calls[t][answered] = 100;
        b.set_callers(&["4001".into(), "4004".into()]);
        assert_eq!(split(&b), [("4001".into(), 1), ("4004".into(), 1), ("other".into(), 5)]);
        // No list: no split, the totals as they were.
        b.set_callers(&[]);
        assert!(b.by_caller.is_empty());
        assert_eq!(b.calls[t][answered], 7);
    }
}
