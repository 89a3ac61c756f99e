//! Ground truth: what a perfect exporter reports at a given moment, computed from the calls whose
//! ended record is visible by then (counts, end reasons, durations, answer delays, last end) and
//! from the visible calls still in progress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{task_type_label, CallSpec};

/// Ended calls per task type and outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    /// Task type label, e.g. `ita_bidirectional`.
    pub task_type: String,
    /// Outcome label, e.g. `no_answer`.
    pub outcome: String,
    /// Number of calls.
    pub count: u64,
}

/// Ended calls per task type and reasonCode (`"none"` when absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// Task type label.
    pub task_type: String,
    /// Decimal reason code, or `none`.
    pub reason_code: String,
    /// Number of calls.
    pub count: u64,
}

/// Count and sum (whole seconds) of a duration per task type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationSum {
    /// Task type label.
    pub task_type: String,
    /// Calls with the duration > 0.
    pub count: u64,
    /// Sum of the durations, seconds.
    pub sum: u64,
}

/// Count and sum (seconds, from ms/1000) of answer delays per task type and leg.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelaySum {
    /// Task type label.
    pub task_type: String,
    /// `customer` (talkingTime − alertingTime) or `agent` (agentTalkingTime − agentAlertingTime).
    pub leg: String,
    /// Calls with both times present and ordered.
    pub count: u64,
    /// Sum of the delays in seconds; summed in integer ms first, so it is exact to the ms.
    pub sum: f64,
}

/// Visible calls not yet visibly ended, per task type and the state their record shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// Task type label.
    pub task_type: String,
    /// `"0"`, `"1"` or `"2"`.
    pub state: String,
    /// Number of calls.
    pub count: u64,
}

/// Latest endTime among ended calls per task type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastEnd {
    /// Task type label.
    pub task_type: String,
    /// Epoch ms.
    pub value: i64,
}

/// What a perfect exporter would report for every call whose ENDED record is visible at `at_ms`.
/// Rows are sorted (task type 1..4, then the other labels) and only non-zero rows appear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// The simulator's clock when this was computed, epoch ms.
    pub at_ms: i64,
    /// Only calls with start ≥ this were counted (`None`: all calls).
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Calls whose state-3 record is visible.
    pub ended_calls: u64,
    /// Per task type and outcome.
    pub calls: Vec<CallCount>,
    /// Per task type and reason code.
    pub end_reasons: Vec<ReasonCount>,
    /// talkDuration of calls with talkDuration > 0.
    pub talk_duration: Vec<DurationSum>,
    /// agentTalkDuration of calls with agentTalkDuration > 0.
    pub agent_talk_duration: Vec<DurationSum>,
    /// Answer delays per leg.
    pub answer_delay: Vec<DelaySum>,
    /// Visible calls not yet visibly ended.
    pub in_progress: Vec<StateCount>,
    /// Latest endTime per task type.
    pub last_call_end_ms: Vec<LastEnd>,
}

impl Truth {
    /// Ended calls of `task_type` (label) with `outcome` (label); 0 when no row.
    pub fn calls_of(&self, task_type: &str, outcome: &str) -> u64 {
        self.calls.iter().find(|r| r.task_type == task_type && r.outcome == outcome).map_or(0, |r| r.count)
    }

    /// Ended calls of `task_type` with reason code `code` (`"none"` for absent); 0 when no row.
    pub fn reasons_of(&self, task_type: &str, code: &str) -> u64 {
        self.end_reasons.iter().find(|r| r.task_type == task_type && r.reason_code == code).map_or(0, |r| r.count)
    }

    /// In-progress calls of `task_type` showing `state`; 0 when no row.
    pub fn in_progress_of(&self, task_type: &str, state: u8) -> u64 {
        let state = state.to_string();
        self.in_progress.iter().find(|r| r.task_type == task_type && r.state == state).map_or(0, |r| r.count)
    }
}

/// Folds calls into a [`Truth`]; keys are task type numbers so rows sort in 1..4 order.
#[derive(Default)]
pub(crate) struct TruthBuilder {
    ended: u64,
    calls: BTreeMap<(u8, &'static str), u64>,
    reasons: BTreeMap<(u8, Option<u32>), u64>,
    talk: BTreeMap<u8, (u64, u64)>,
    agent_talk: BTreeMap<u8, (u64, u64)>,
    delay: BTreeMap<(u8, &'static str), (u64, i64)>,
    in_progress: BTreeMap<(u8, u8), u64>,
    last_end: BTreeMap<u8, i64>,
}

impl TruthBuilder {
    /// Accounts one call as seen at `now_ms`.
    pub(crate) fn add(&mut self, c: &CallSpec, now_ms: i64) {
        let t = c.task_type;
        match c.visible_state(now_ms) {
            None => {}
            Some(3) => {
                self.ended += 1;
                *self.calls.entry((t, c.outcome().label())).or_default() += 1;
                *self.reasons.entry((t, c.reason_code)).or_default() += 1;
                if c.talk_duration_s > 0 {
                    let e = self.talk.entry(t).or_default();
                    e.0 += 1;
                    e.1 += u64::from(c.talk_duration_s);
                }
                if let Some(a) = c.agent_talk_duration_s.filter(|&a| a > 0) {
                    let e = self.agent_talk.entry(t).or_default();
                    e.0 += 1;
                    e.1 += u64::from(a);
                }
                for (leg, from, to) in
                    [("agent", c.agent_alerting_ms, c.agent_talking_ms), ("customer", c.alerting_ms, c.talking_ms)]
                {
                    if let (Some(from), Some(to)) = (from, to) {
                        if to >= from {
                            let e = self.delay.entry((t, leg)).or_default();
                            e.0 += 1;
                            e.1 += to - from;
                        }
                    }
                }
                let last = self.last_end.entry(t).or_insert(c.end_ms);
                *last = (*last).max(c.end_ms);
            }
            Some(state) => *self.in_progress.entry((t, state)).or_default() += 1,
        }
    }

    pub(crate) fn finish(self, at_ms: i64, since_ms: Option<i64>) -> Truth {
        let label = |t: u8| task_type_label(t).unwrap_or("unknown").to_string();
        Truth {
            at_ms,
            since_ms,
            ended_calls: self.ended,
            calls: self
                .calls
                .into_iter()
                .map(|((t, o), count)| CallCount { task_type: label(t), outcome: o.to_string(), count })
                .collect(),
            end_reasons: self
                .reasons
                .into_iter()
                .map(|((t, r), count)| ReasonCount {
                    task_type: label(t),
                    reason_code: r.map_or_else(|| "none".to_string(), |r| r.to_string()),
                    count,
                })
                .collect(),
            talk_duration: sums(self.talk, label),
            agent_talk_duration: sums(self.agent_talk, label),
            answer_delay: self
                .delay
                .into_iter()
                .map(|((t, leg), (count, ms))| DelaySum {
                    task_type: label(t),
                    leg: leg.to_string(),
                    count,
                    sum: ms as f64 / 1_000.0,
                })
                .collect(),
            in_progress: self
                .in_progress
                .into_iter()
                .map(|((t, s), count)| StateCount { task_type: label(t), state: s.to_string(), count })
                .collect(),
            last_call_end_ms: self
                .last_end
                .into_iter()
                .map(|(t, value)| LastEnd { task_type: label(t), value })
                .collect(),
        }
    }
}

fn sums(m: BTreeMap<u8, (u64, u64)>, label: impl Fn(u8) -> String) -> Vec<DurationSum> {
    m.into_iter().map(|(t, (count, sum))| DurationSum { task_type: label(t), count, sum }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, SERIAL_BASE};
    use crate::testing::T0;

    #[test]
    fn hand_computed_truth() {
        let s = SERIAL_BASE;
        let calls = [
            // Answered CEC: agent rings 1 s, customer rings 2 s, talks 4 s; ends T0+7200.
            CallSpec::builder(s, 1, T0).agent_ring_ms(1_000).ring_ms(2_000).talk_ms(4_000).build(),
            // Voice notification no answer (5): rings 3 s, ends T0+3200.
            CallSpec::builder(s + 1, 3, T0).outcome(Outcome::NoAnswer).ring_ms(3_000).build(),
            // ITA busy: agent answers after 1 s, agent talk 1 s; ends T0+2200.
            CallSpec::builder(s + 2, 4, T0).outcome(Outcome::Busy).build(),
            // ITA unknown without reason code.
            CallSpec::builder(s + 3, 4, T0).outcome(Outcome::Unknown).build(),
            // Ended, but state 3 visible only an hour later: in progress (state 1, ringing).
            CallSpec::builder(s + 4, 2, T0).outcome(Outcome::Cancelled).latency_ms(0, 3_600_000).build(),
            // Not visible at all yet.
            CallSpec::builder(s + 5, 2, T0).latency_ms(3_600_000, 0).build(),
        ];
        let now = T0 + 60_000;
        let mut b = TruthBuilder::default();
        for c in &calls {
            b.add(c, now);
        }
        let t = b.finish(now, None);
        assert_eq!(t.ended_calls, 4);
        assert_eq!(t.calls_of("cec_bidirectional", "answered"), 1);
        assert_eq!(t.calls_of("voice_notification", "no_answer"), 1);
        assert_eq!(t.calls_of("ita_bidirectional", "busy"), 1);
        assert_eq!(t.calls_of("ita_bidirectional", "unknown"), 1);
        assert_eq!(t.calls.len(), 4);
        assert_eq!(t.reasons_of("cec_bidirectional", "1"), 1);
        assert_eq!(t.reasons_of("voice_notification", "5"), 1);
        assert_eq!(t.reasons_of("ita_bidirectional", "17"), 1);
        assert_eq!(t.reasons_of("ita_bidirectional", "none"), 1);
        assert_eq!(t.talk_duration, vec![DurationSum { task_type: "cec_bidirectional".into(), count: 1, sum: 4 }]);
        // CEC agent talks from T0+1200 (answer after queue 200 + ring 1000) to the end T0+7200.
        let cec_agent = t.agent_talk_duration.iter().find(|r| r.task_type == "cec_bidirectional").unwrap();
        assert_eq!((cec_agent.count, cec_agent.sum), (1, 6));
        let ita_agent = t.agent_talk_duration.iter().find(|r| r.task_type == "ita_bidirectional").unwrap();
        // Busy: agent talking T0+1200, end T0+2200 → 1 s. Unknown: agent talking T0+1200,
        // customer rings 1 s, end T0+2200 → 1 s.
        assert_eq!((ita_agent.count, ita_agent.sum), (2, 2));
        let delay = |tt: &str, leg: &str| {
            t.answer_delay.iter().find(|r| r.task_type == tt && r.leg == leg).map(|r| (r.count, r.sum))
        };
        assert_eq!(delay("cec_bidirectional", "customer"), Some((1, 2.0)));
        assert_eq!(delay("cec_bidirectional", "agent"), Some((1, 1.0)));
        assert_eq!(delay("ita_bidirectional", "agent"), Some((2, 2.0)));
        assert_eq!(delay("voice_notification", "customer"), None);
        assert_eq!(t.in_progress_of("anonymous_outbound", 1), 1);
        assert_eq!(t.in_progress.len(), 1);
        let last: Vec<_> = t.last_call_end_ms.iter().map(|r| (r.task_type.as_str(), r.value)).collect();
        assert_eq!(
            last,
            vec![
                ("cec_bidirectional", T0 + 7_200),
                ("voice_notification", T0 + 3_200),
                ("ita_bidirectional", T0 + 2_200),
            ]
        );
    }
}
