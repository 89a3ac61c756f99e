//! The call model: one call fully specified ahead of time (`CallSpec`), the builder that turns an
//! intended outcome into a consistent timeline, the outcome table the exporter classifies with, and
//! how a call's record looks on the wire at a given moment (state, fields present, number-or-string).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Serial number of the vendor's own sample record; generated serials start here.
pub const SERIAL_BASE: u64 = 1_037_058_396_471_308_289;

/// Serials must exceed this so that a client parsing them through a float loses precision.
pub const MIN_SERIAL: u64 = 1 << 53;

/// Task type 1: CEC bidirectional call task.
pub const TASK_CEC_BIDIRECTIONAL: u8 = 1;
/// Task type 2: anonymous outbound call task.
pub const TASK_ANONYMOUS_OUTBOUND: u8 = 2;
/// Task type 3: voice notification (no agent leg).
pub const TASK_VOICE_NOTIFICATION: u8 = 3;
/// Task type 4: ITA bidirectional call (Q.850 reason codes; excluded from taskType "0" queries).
pub const TASK_ITA_BIDIRECTIONAL: u8 = 4;

/// Metric label value of a task type (1..=4), as the exporter names it; `None` outside 1..=4.
pub fn task_type_label(task_type: u8) -> Option<&'static str> {
    match task_type {
        1 => Some("cec_bidirectional"),
        2 => Some("anonymous_outbound"),
        3 => Some("voice_notification"),
        4 => Some("ita_bidirectional"),
        _ => None,
    }
}

/// Whether a task type has an agent leg (agentAlertingTime … agentTalkDuration).
pub fn has_agent_leg(task_type: u8) -> bool {
    matches!(task_type, 1 | 2 | 4)
}

/// How a call ended, as the exporter classifies it (see [`classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// talkDuration > 0.
    Answered,
    /// ITA only: Q.850 cause 17.
    Busy,
    /// Nobody picked up: codes 4/5 (types 1–3) or 18/19 (ITA).
    NoAnswer,
    /// ITA only: Q.850 cause 21.
    Rejected,
    /// Hung up before the answer: codes 0/1 (types 1–3) or 16/31 (ITA) with talkDuration 0.
    Cancelled,
    /// Any other code.
    Failed,
    /// No reasonCode at all (or, for ITA, code 0) and no talk.
    Unknown,
}

impl Outcome {
    /// Every outcome, in label order of the truth tables.
    pub const ALL: [Outcome; 7] = [
        Outcome::Answered,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Rejected,
        Outcome::Cancelled,
        Outcome::Failed,
        Outcome::Unknown,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The exporter's classification table, applied to an ended record's fields. The truth uses exactly
/// this, so whatever a scripted spec contains, truth and a correct exporter agree.
pub fn classify(task_type: u8, talk_duration_s: u32, reason_code: Option<u32>) -> Outcome {
    if talk_duration_s > 0 {
        return Outcome::Answered;
    }
    if task_type == TASK_ITA_BIDIRECTIONAL {
        match reason_code {
            None | Some(0) => Outcome::Unknown,
            Some(17) => Outcome::Busy,
            Some(18 | 19) => Outcome::NoAnswer,
            Some(21) => Outcome::Rejected,
            Some(16 | 31) => Outcome::Cancelled,
            Some(_) => Outcome::Failed,
        }
    } else {
        match reason_code {
            None => Outcome::Unknown,
            Some(4 | 5) => Outcome::NoAnswer,
            Some(0 | 1) => Outcome::Cancelled,
            Some(_) => Outcome::Failed,
        }
    }
}

/// Why a [`CallSpec`] cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Serial at or below 2^53 (the vendor's serials never fit a float).
    #[error("call {0}: serial must be larger than 2^53")]
    SmallSerial(u64),
    /// Task type outside 1..=4.
    #[error("call {serial}: task_type {task_type} is not 1..=4")]
    TaskType {
        /// Serial of the offending call.
        serial: u64,
        /// The task type given.
        task_type: u8,
    },
    /// Timeline fields that contradict each other.
    #[error("call {serial}: {what}")]
    Timeline {
        /// Serial of the offending call.
        serial: u64,
        /// Which rule was broken.
        what: &'static str,
    },
    /// Serial already served.
    #[error("call {0}: serial already exists")]
    Duplicate(u64),
}

/// One call, fully specified ahead of time; times are absolute epoch milliseconds, durations whole
/// seconds. Build one with [`CallSpec::builder`]; the random generator uses the same builder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSpec {
    /// callSerialNo; unique, larger than 2^53. Serialized as a decimal string, accepted as either.
    #[serde(with = "serial_as_string")]
    pub serial: u64,
    /// 1..=4.
    pub task_type: u8,
    /// Calling number (the `caller` filter matches it exactly); empty = field omitted.
    #[serde(default)]
    pub caller: String,
    /// Called number; empty = field omitted.
    #[serde(default)]
    pub called: String,
    /// callerPresent; empty = field omitted.
    #[serde(default)]
    pub caller_present: String,
    /// agentPresent.
    #[serde(default)]
    pub agent_present: Option<String>,
    /// callData.
    #[serde(default)]
    pub call_data: Option<String>,
    /// startTime.
    pub start_ms: i64,
    /// alertingTime (customer leg).
    #[serde(default)]
    pub alerting_ms: Option<i64>,
    /// talkingTime (customer leg).
    #[serde(default)]
    pub talking_ms: Option<i64>,
    /// releaseTime (customer leg).
    #[serde(default)]
    pub release_ms: Option<i64>,
    /// talkDuration, seconds; 0 when the customer never talked.
    #[serde(default)]
    pub talk_duration_s: u32,
    /// agentAlertingTime.
    #[serde(default)]
    pub agent_alerting_ms: Option<i64>,
    /// agentTalkingTime.
    #[serde(default)]
    pub agent_talking_ms: Option<i64>,
    /// agentReleaseTime.
    #[serde(default)]
    pub agent_release_ms: Option<i64>,
    /// agentTalkDuration, seconds; `None` for voice notifications.
    #[serde(default)]
    pub agent_talk_duration_s: Option<u32>,
    /// endTime.
    pub end_ms: i64,
    /// reasonCode; `None` = field absent.
    #[serde(default)]
    pub reason_code: Option<u32>,
    /// The record is first returned at `start_ms + record_latency_ms`.
    #[serde(default)]
    pub record_latency_ms: u64,
    /// State 3 is first visible at `end_ms + end_latency_ms`; before that the record shows the
    /// state the call had just before its end.
    #[serde(default)]
    pub end_latency_ms: u64,
}

mod serial_as_string {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(u64),
            Str(String),
        }
        match Either::deserialize(d)? {
            Either::Num(n) => Ok(n),
            Either::Str(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

impl CallSpec {
    /// Starts a scripted call; see [`CallBuilder`] for the defaults.
    pub fn builder(serial: u64, task_type: u8, start_ms: i64) -> CallBuilder {
        CallBuilder::new(serial, task_type, start_ms)
    }

    /// The outcome the exporter must assign once it sees the ended record.
    pub fn outcome(&self) -> Outcome {
        classify(self.task_type, self.talk_duration_s, self.reason_code)
    }

    /// When the record is first returned.
    pub fn visible_at_ms(&self) -> i64 {
        self.start_ms.saturating_add(clamp_i64(self.record_latency_ms))
    }

    /// When the record first shows state 3 (never before it is visible at all).
    pub fn ended_visible_at_ms(&self) -> i64 {
        self.end_ms.saturating_add(clamp_i64(self.end_latency_ms)).max(self.visible_at_ms())
    }

    /// The state a query at `now_ms` sees, or `None` while the record is not returned yet.
    pub fn visible_state(&self, now_ms: i64) -> Option<u8> {
        if now_ms < self.visible_at_ms() {
            return None;
        }
        if now_ms >= self.ended_visible_at_ms() {
            return Some(3);
        }
        Some(self.live_state(self.effective_time(now_ms)))
    }

    /// The moment whose progress an in-progress record shows: the end itself stays hidden until
    /// the end latency has passed, so the record freezes just before it.
    fn effective_time(&self, now_ms: i64) -> i64 {
        now_ms.min(self.end_ms - 1)
    }

    fn live_state(&self, t: i64) -> u8 {
        if reached(self.talking_ms, t) {
            2
        } else if reached(self.alerting_ms, t) || reached(self.agent_alerting_ms, t) {
            1
        } else {
            0
        }
    }

    /// Checks the rules every served call obeys (serial, task type, ordered timeline).
    pub fn validate(&self) -> Result<(), SpecError> {
        let serial = self.serial;
        let bad = |what| Err(SpecError::Timeline { serial, what });
        if serial <= MIN_SERIAL {
            return Err(SpecError::SmallSerial(serial));
        }
        if task_type_label(self.task_type).is_none() {
            return Err(SpecError::TaskType { serial, task_type: self.task_type });
        }
        if self.end_ms < self.start_ms {
            return bad("end_ms before start_ms");
        }
        let times = [
            self.alerting_ms,
            self.talking_ms,
            self.release_ms,
            self.agent_alerting_ms,
            self.agent_talking_ms,
            self.agent_release_ms,
        ];
        if times.iter().flatten().any(|&t| t < self.start_ms || t > self.end_ms) {
            return bad("a leg time lies outside start_ms..=end_ms");
        }
        if self.talking_ms.is_some() && self.alerting_ms.is_none() {
            return bad("talking_ms without alerting_ms");
        }
        if self.agent_talking_ms.is_some() && self.agent_alerting_ms.is_none() {
            return bad("agent_talking_ms without agent_alerting_ms");
        }
        if ordered(self.alerting_ms, self.talking_ms).is_none()
            || ordered(self.talking_ms, self.release_ms).is_none()
            || ordered(self.agent_alerting_ms, self.agent_talking_ms).is_none()
            || ordered(self.agent_talking_ms, self.agent_release_ms).is_none()
        {
            return bad("leg times out of order");
        }
        if self.talk_duration_s > 0 && (self.talking_ms.is_none() || self.release_ms.is_none()) {
            return bad("talk_duration_s > 0 needs talking_ms and release_ms");
        }
        if self.task_type == TASK_VOICE_NOTIFICATION
            && (self.agent_alerting_ms.is_some()
                || self.agent_talking_ms.is_some()
                || self.agent_release_ms.is_some()
                || self.agent_talk_duration_s.is_some())
        {
            return bad("voice notifications have no agent leg");
        }
        if self.reason_code.is_some_and(|c| c > 65_535) {
            return bad("reason_code above 65535");
        }
        if self.caller.len() > 32 || self.called.len() > 32 || self.caller_present.len() > 32 {
            return bad("numbers are at most 32 characters");
        }
        if self.call_data.as_ref().is_some_and(|d| d.len() > 1024) {
            return bad("call_data is at most 1024 characters");
        }
        Ok(())
    }

    /// The record as a query at `now_ms` returns it, or `None` while it is not visible.
    /// Which values are numbers and which numeric strings is a fixed function of `seed`, serial and
    /// field, so repeated reads are identical and both forms appear across records.
    pub fn record_json(&self, now_ms: i64, seed: u64) -> Option<Value> {
        let state = self.visible_state(now_ms)?;
        let mut w = RecordWriter { map: Map::new(), seed, serial: self.serial };
        w.map.insert("callSerialNo".into(), Value::String(self.serial.to_string()));
        w.text("caller", &self.caller);
        w.text("called", &self.called);
        w.text("callerPresent", &self.caller_present);
        if let Some(p) = &self.agent_present {
            w.text("agentPresent", p);
        }
        if let Some(d) = &self.call_data {
            w.map.insert("callData".into(), Value::String(d.clone()));
        }
        w.num("startTime", 1, self.start_ms);
        w.num("state", 2, i64::from(state));
        let show_type = self.task_type != TASK_ITA_BIDIRECTIONAL || mix(seed, self.serial, 99) & 1 == 0;
        if show_type {
            w.num("taskType", 3, i64::from(self.task_type));
        }
        if state == 3 {
            w.opt("alertingTime", 4, self.alerting_ms);
            w.opt("talkingTime", 5, self.talking_ms);
            w.opt("releaseTime", 6, self.release_ms);
            w.num("talkDuration", 7, i64::from(self.talk_duration_s));
            w.opt("agentAlertingTime", 8, self.agent_alerting_ms);
            w.opt("agentTalkingTime", 9, self.agent_talking_ms);
            w.opt("agentReleaseTime", 10, self.agent_release_ms);
            w.opt("agentTalkDuration", 11, self.agent_talk_duration_s.map(i64::from));
            w.num("endTime", 12, self.end_ms);
            w.opt("reasonCode", 13, self.reason_code.map(i64::from));
        } else if state >= 1 {
            let t = self.effective_time(now_ms);
            let upto = |v: Option<i64>| v.filter(|&x| x <= t);
            w.opt("alertingTime", 4, upto(self.alerting_ms));
            w.opt("agentAlertingTime", 8, upto(self.agent_alerting_ms));
            if state == 2 {
                w.opt("talkingTime", 5, upto(self.talking_ms));
                w.opt("agentTalkingTime", 9, upto(self.agent_talking_ms));
            }
        }
        Some(Value::Object(w.map))
    }
}

struct RecordWriter {
    map: Map<String, Value>,
    seed: u64,
    serial: u64,
}

impl RecordWriter {
    fn text(&mut self, key: &str, v: &str) {
        if !v.is_empty() {
            self.map.insert(key.into(), Value::String(v.into()));
        }
    }

    fn num(&mut self, key: &str, field: u64, v: i64) {
        let as_string = mix(self.seed, self.serial, field) & 1 == 1;
        let value = if as_string { Value::String(v.to_string()) } else { Value::from(v) };
        self.map.insert(key.into(), value);
    }

    fn opt(&mut self, key: &str, field: u64, v: Option<i64>) {
        if let Some(v) = v {
            self.num(key, field, v);
        }
    }
}

fn reached(t: Option<i64>, now: i64) -> bool {
    t.is_some_and(|t| t <= now)
}

/// `Some(())` unless both are present and the second precedes the first.
fn ordered(a: Option<i64>, b: Option<i64>) -> Option<()> {
    match (a, b) {
        (Some(a), Some(b)) if b < a => None,
        _ => Some(()),
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// SplitMix64 finaliser over (seed, serial, salt): the one source of every per-record "coin flip",
/// so they are reproducible without storing them.
pub(crate) fn mix(seed: u64, serial: u64, salt: u64) -> u64 {
    let mut z = seed ^ serial.rotate_left(21) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD6E8_FEB8_6659_FD93;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How far a call got before it ended; decides which leg times exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Nothing ever rang.
    NoAlert,
    /// The agent's phone rang; the agent never answered.
    AgentRang,
    /// The agent answered; the customer was never alerted.
    AgentAnswered,
    /// The customer's phone rang; nobody talked.
    CustomerRang,
    /// The customer talked.
    Talked,
}

/// Builds a consistent [`CallSpec`] from an intended outcome and leg durations (milliseconds).
///
/// Defaults: outcome answered, queue 200 ms, each leg rings 1 000 ms, talk 3 000 ms, no latency,
/// fake numbers derived from the serial, reason code the usual one for the outcome (types 1–3:
/// answered 1, no_answer 5, cancelled 1, failed 3, unknown none; ITA: answered 16, busy 17,
/// no_answer 19, rejected 21, cancelled 31, failed 41, unknown none).
///
/// ```
/// # use cec_sim::{CallSpec, Outcome, SERIAL_BASE};
/// let call = CallSpec::builder(SERIAL_BASE + 1, 4, 1_700_000_000_000)
///     .outcome(Outcome::Busy)
///     .ring_ms(2_000)
///     .latency_ms(500, 1_000)
///     .build();
/// assert_eq!(call.reason_code, Some(17));
/// ```
#[derive(Clone, Debug)]
pub struct CallBuilder {
    serial: u64,
    task_type: u8,
    start_ms: i64,
    outcome: Outcome,
    reason_code: Option<Option<u32>>,
    queue_ms: i64,
    agent_ring_ms: i64,
    ring_ms: i64,
    talk_ms: i64,
    record_latency_ms: u64,
    end_latency_ms: u64,
    caller: Option<String>,
    called: Option<String>,
    call_data: Option<String>,
}

impl CallBuilder {
    fn new(serial: u64, task_type: u8, start_ms: i64) -> Self {
        Self {
            serial,
            task_type,
            start_ms,
            outcome: Outcome::Answered,
            reason_code: None,
            queue_ms: 200,
            agent_ring_ms: 1_000,
            ring_ms: 1_000,
            talk_ms: 3_000,
            record_latency_ms: 0,
            end_latency_ms: 0,
            caller: None,
            called: None,
            call_data: None,
        }
    }

    /// The intended outcome (busy and rejected exist only for ITA, type 4).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Overrides the reason code (`None` = field absent). The truth classifies whatever results.
    pub fn reason_code(mut self, code: Option<u32>) -> Self {
        self.reason_code = Some(code);
        self
    }

    /// Time from start to the first phone ringing.
    pub fn queue_ms(mut self, ms: i64) -> Self {
        self.queue_ms = ms.max(0);
        self
    }

    /// How long the agent's phone rings (before answering, or before giving up).
    pub fn agent_ring_ms(mut self, ms: i64) -> Self {
        self.agent_ring_ms = ms.max(0);
        self
    }

    /// How long the customer's phone rings; for calls that fail before ringing, time to the failure.
    pub fn ring_ms(mut self, ms: i64) -> Self {
        self.ring_ms = ms.max(0);
        self
    }

    /// Customer talk time; answered calls talk at least 1 000 ms so talkDuration ≥ 1.
    pub fn talk_ms(mut self, ms: i64) -> Self {
        self.talk_ms = ms.max(0);
        self
    }

    /// Record latency (start → first returned) and end latency (end → state 3 returned).
    pub fn latency_ms(mut self, record: u64, end: u64) -> Self {
        self.record_latency_ms = record;
        self.end_latency_ms = end;
        self
    }

    /// Calling number (what the `caller` query filter matches).
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    /// Called number.
    pub fn called(mut self, called: impl Into<String>) -> Self {
        self.called = Some(called.into());
        self
    }

    /// callData.
    pub fn call_data(mut self, data: impl Into<String>) -> Self {
        self.call_data = Some(data.into());
        self
    }

    fn default_reason(&self) -> Option<u32> {
        let ita = self.task_type == TASK_ITA_BIDIRECTIONAL;
        match (self.outcome, ita) {
            (Outcome::Answered, false) => Some(1),
            (Outcome::Answered, true) => Some(16),
            (Outcome::Busy, _) => Some(17),
            (Outcome::NoAnswer, false) => Some(5),
            (Outcome::NoAnswer, true) => Some(19),
            (Outcome::Rejected, _) => Some(21),
            (Outcome::Cancelled, false) => Some(1),
            (Outcome::Cancelled, true) => Some(31),
            (Outcome::Failed, false) if self.task_type == TASK_VOICE_NOTIFICATION => Some(6),
            (Outcome::Failed, false) => Some(3),
            (Outcome::Failed, true) => Some(41),
            (Outcome::Unknown, _) => None,
        }
    }

    fn progress(&self, reason: Option<u32>) -> Progress {
        if self.outcome == Outcome::Answered {
            return Progress::Talked;
        }
        let p = match (self.task_type, reason) {
            (TASK_ITA_BIDIRECTIONAL, None | Some(0 | 16 | 18 | 19 | 21 | 31)) => Progress::CustomerRang,
            (TASK_ITA_BIDIRECTIONAL, Some(_)) => Progress::AgentAnswered,
            (_, None | Some(0 | 1 | 5)) => Progress::CustomerRang,
            (_, Some(4)) => Progress::AgentRang,
            (_, Some(2 | 6)) => Progress::NoAlert,
            (_, Some(_)) => Progress::AgentAnswered,
        };
        // Without an agent leg, failing on the agent side means nothing rang at all.
        if !has_agent_leg(self.task_type) && matches!(p, Progress::AgentRang | Progress::AgentAnswered) {
            Progress::NoAlert
        } else {
            p
        }
    }

    /// The finished spec.
    ///
    /// # Panics
    /// On busy or rejected for a non-ITA task type: the outcome table has no such outcome there.
    pub fn build(self) -> CallSpec {
        let ita = self.task_type == TASK_ITA_BIDIRECTIONAL;
        assert!(
            ita || !matches!(self.outcome, Outcome::Busy | Outcome::Rejected),
            "{} is an ITA (task type 4) outcome",
            self.outcome.label()
        );
        let reason = self.reason_code.unwrap_or_else(|| self.default_reason());
        let progress = self.progress(reason);
        let agent = has_agent_leg(self.task_type);
        let s = self.serial;
        let mut c = CallSpec {
            serial: s,
            task_type: self.task_type,
            caller: self.caller.clone().unwrap_or_else(|| format!("8888{:04}", 9000 + s % 40)),
            called: self.called.clone().unwrap_or_else(|| format!("1{:010}", mix(0, s, 1) % 10_000_000_000)),
            caller_present: format!("64{:04}", s % 7),
            agent_present: agent.then(|| format!("6400{:02}", 60 + s % 9)),
            call_data: self.call_data.clone(),
            start_ms: self.start_ms,
            alerting_ms: None,
            talking_ms: None,
            release_ms: None,
            talk_duration_s: 0,
            agent_alerting_ms: None,
            agent_talking_ms: None,
            agent_release_ms: None,
            agent_talk_duration_s: None,
            end_ms: self.start_ms,
            reason_code: reason,
            record_latency_ms: self.record_latency_ms,
            end_latency_ms: self.end_latency_ms,
        };
        // Bidirectional calls ring the agent first and bridge the customer once the agent answers.
        let mut t = self.start_ms + self.queue_ms;
        let customer_leg_starts = if agent {
            if progress == Progress::NoAlert {
                false
            } else {
                c.agent_alerting_ms = Some(t);
                t += self.agent_ring_ms;
                if progress == Progress::AgentRang {
                    false
                } else {
                    c.agent_talking_ms = Some(t);
                    progress != Progress::AgentAnswered
                }
            }
        } else {
            progress != Progress::NoAlert
        };
        if customer_leg_starts {
            c.alerting_ms = Some(t);
            t += self.ring_ms;
            if progress == Progress::Talked {
                c.talking_ms = Some(t);
                let talk = self.talk_ms.max(1_000);
                t += talk;
                c.talk_duration_s = u32::try_from(talk / 1_000).unwrap_or(u32::MAX);
            }
        } else if progress != Progress::AgentRang {
            // Failing without ringing (or at the busy/unreachable customer) still takes a moment.
            t += self.ring_ms.min(2_000);
        }
        c.end_ms = t;
        c.release_ms = Some(t);
        if agent {
            c.agent_release_ms = Some(t);
            let agent_talk = c.agent_talking_ms.map_or(0, |a| (t - a) / 1_000);
            c.agent_talk_duration_s = Some(u32::try_from(agent_talk).unwrap_or(u32::MAX));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{num, T0};

    #[test]
    fn classification_table() {
        assert_eq!(classify(1, 5, Some(1)), Outcome::Answered);
        assert_eq!(classify(2, 0, Some(4)), Outcome::NoAnswer);
        assert_eq!(classify(3, 0, Some(5)), Outcome::NoAnswer);
        assert_eq!(classify(1, 0, Some(0)), Outcome::Cancelled);
        assert_eq!(classify(1, 0, Some(1)), Outcome::Cancelled);
        for code in [2, 3, 6, 1001, 17] {
            assert_eq!(classify(2, 0, Some(code)), Outcome::Failed, "code {code}");
        }
        assert_eq!(classify(3, 0, None), Outcome::Unknown);
        assert_eq!(classify(3, 0, Some(0)), Outcome::Cancelled);
        assert_eq!(classify(4, 9, Some(16)), Outcome::Answered);
        assert_eq!(classify(4, 0, Some(17)), Outcome::Busy);
        assert_eq!(classify(4, 0, Some(18)), Outcome::NoAnswer);
        assert_eq!(classify(4, 0, Some(19)), Outcome::NoAnswer);
        assert_eq!(classify(4, 0, Some(21)), Outcome::Rejected);
        assert_eq!(classify(4, 0, Some(16)), Outcome::Cancelled);
        assert_eq!(classify(4, 0, Some(31)), Outcome::Cancelled);
        assert_eq!(classify(4, 0, Some(0)), Outcome::Unknown);
        assert_eq!(classify(4, 0, None), Outcome::Unknown);
        for code in [1, 3, 5, 27, 34, 38, 41, 42, 47, 127] {
            assert_eq!(classify(4, 0, Some(code)), Outcome::Failed, "code {code}");
        }
    }

    #[test]
    fn builder_answered_bidirectional_timeline() {
        let c = CallSpec::builder(SERIAL_BASE, 1, T0)
            .queue_ms(100)
            .agent_ring_ms(2_000)
            .ring_ms(3_000)
            .talk_ms(12_345)
            .build();
        assert_eq!(c.agent_alerting_ms, Some(T0 + 100));
        assert_eq!(c.agent_talking_ms, Some(T0 + 2_100));
        assert_eq!(c.alerting_ms, Some(T0 + 2_100));
        assert_eq!(c.talking_ms, Some(T0 + 5_100));
        assert_eq!(c.end_ms, T0 + 17_445);
        assert_eq!(c.release_ms, Some(c.end_ms));
        assert_eq!(c.agent_release_ms, Some(c.end_ms));
        assert_eq!(c.talk_duration_s, 12);
        assert_eq!(c.agent_talk_duration_s, Some(15));
        assert_eq!(c.reason_code, Some(1));
        assert_eq!(c.outcome(), Outcome::Answered);
        c.validate().unwrap();
    }

    #[test]
    fn builder_outcomes_classify_back() {
        for task in 1..=4u8 {
            for o in Outcome::ALL {
                if task != 4 && matches!(o, Outcome::Busy | Outcome::Rejected) {
                    continue;
                }
                let c = CallSpec::builder(SERIAL_BASE + 7, task, T0).outcome(o).talk_ms(10).build();
                c.validate().unwrap();
                assert_eq!(c.outcome(), o, "task {task}");
                if o == Outcome::Answered {
                    assert_eq!(c.talk_duration_s, 1, "answered talks at least 1 s");
                }
            }
        }
    }

    #[test]
    fn voice_notification_has_no_agent_leg() {
        let c = CallSpec::builder(SERIAL_BASE, 3, T0).build();
        assert_eq!(c.agent_alerting_ms, None);
        assert_eq!(c.agent_talk_duration_s, None);
        assert_eq!(c.agent_present, None);
        let rec = c.record_json(c.end_ms, 1).unwrap();
        assert!(rec.get("agentTalkDuration").is_none());
        assert!(rec.get("agentPresent").is_none());
    }

    #[test]
    #[should_panic(expected = "busy is an ITA")]
    fn busy_needs_ita() {
        let _ = CallSpec::builder(SERIAL_BASE, 1, T0).outcome(Outcome::Busy).build();
    }

    #[test]
    fn validate_rejects() {
        let good = CallSpec::builder(SERIAL_BASE, 1, T0).build();
        let mut c = good.clone();
        c.serial = 5;
        assert_eq!(c.validate(), Err(SpecError::SmallSerial(5)));
        let mut c = good.clone();
        c.task_type = 5;
        assert!(matches!(c.validate(), Err(SpecError::TaskType { .. })));
        let mut c = good.clone();
        c.talking_ms = Some(c.end_ms + 1);
        assert!(c.validate().is_err());
        let mut c = good.clone();
        c.talking_ms = None;
        assert!(c.validate().is_err(), "talk > 0 without talking time");
        let mut c = good;
        c.end_ms = c.start_ms - 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn record_fields_follow_state_and_latency() {
        let c = CallSpec::builder(SERIAL_BASE, 1, T0)
            .queue_ms(1_000)
            .agent_ring_ms(1_000)
            .ring_ms(1_000)
            .talk_ms(2_000)
            .latency_ms(500, 700)
            .build();
        // Timeline: agent rings T0+1000, customer rings T0+2000, talks T0+3000, ends T0+5000.
        assert!(c.record_json(T0 + 499, 3).is_none());
        let r = c.record_json(T0 + 500, 3).unwrap();
        assert_eq!(num(&r["state"]), 0);
        assert_eq!(num(&r["startTime"]), T0);
        assert!(r.get("agentAlertingTime").is_none() && r.get("endTime").is_none());

        let r = c.record_json(T0 + 1_500, 3).unwrap();
        assert_eq!(num(&r["state"]), 1);
        assert_eq!(num(&r["agentAlertingTime"]), T0 + 1_000);
        assert!(r.get("alertingTime").is_none());
        assert!(r.get("agentTalkingTime").is_none());

        let r = c.record_json(T0 + 3_000, 3).unwrap();
        assert_eq!(num(&r["state"]), 2);
        assert_eq!(num(&r["talkingTime"]), T0 + 3_000);
        assert_eq!(num(&r["agentTalkingTime"]), T0 + 2_000);
        assert!(r.get("talkDuration").is_none() && r.get("reasonCode").is_none());

        // Ended at T0+5000 but state 3 only from T0+5700: still talking until then.
        assert_eq!(c.visible_state(T0 + 5_699), Some(2));
        let r = c.record_json(T0 + 5_700, 3).unwrap();
        assert_eq!(num(&r["state"]), 3);
        assert_eq!(num(&r["endTime"]), T0 + 5_000);
        assert_eq!(num(&r["talkDuration"]), 2);
        assert_eq!(num(&r["agentTalkDuration"]), 3);
        assert_eq!(num(&r["reasonCode"]), 1);
        assert_eq!(num(&r["releaseTime"]), T0 + 5_000);
        assert_eq!(num(&r["taskType"]), 1);
        assert_eq!(r["callSerialNo"], Value::String("1037058396471308289".into()));
    }

    #[test]
    fn record_seen_first_when_already_ended() {
        let c = CallSpec::builder(SERIAL_BASE, 2, T0).latency_ms(60_000, 0).build();
        assert_eq!(c.ended_visible_at_ms(), T0 + 60_000);
        assert_eq!(c.visible_state(T0 + 59_999), None);
        assert_eq!(c.visible_state(T0 + 60_000), Some(3));
    }

    #[test]
    fn number_or_string_mix_and_ita_task_type_omission() {
        let (mut nums, mut strs, mut ita_with, mut ita_without) = (0, 0, 0, 0);
        for i in 0..200 {
            let task = if i % 2 == 0 { 1 } else { 4 };
            let c = CallSpec::builder(SERIAL_BASE + i, task, T0).build();
            let r = c.record_json(c.end_ms, 42).unwrap();
            assert!(r["callSerialNo"].is_string());
            for k in ["startTime", "endTime", "state", "talkDuration", "reasonCode"] {
                match &r[k] {
                    Value::Number(_) => nums += 1,
                    Value::String(s) => {
                        assert!(s.parse::<i64>().is_ok());
                        strs += 1;
                    }
                    other => panic!("{k}: {other}"),
                }
            }
            // The same record reads the same every time.
            assert_eq!(c.record_json(c.end_ms + 5, 42).unwrap(), r);
            match (task, r.get("taskType")) {
                (1, t) => assert_eq!(num(t.unwrap()), 1),
                (_, Some(t)) => {
                    assert_eq!(num(t), 4);
                    ita_with += 1;
                }
                (_, None) => ita_without += 1,
            }
        }
        assert!(nums > 300 && strs > 300, "{nums} numbers, {strs} strings");
        assert!(ita_with > 30 && ita_without > 30, "{ita_with}/{ita_without}");
    }

    #[test]
    fn spec_serde_round_trip_serial_as_string() {
        let c = CallSpec::builder(SERIAL_BASE + 3, 4, T0).build();
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["serial"], Value::String("1037058396471308292".into()));
        let back: CallSpec = serde_json::from_value(j).unwrap();
        assert_eq!(back, c);
        let minimal: CallSpec =
            serde_json::from_str(r#"{"serial":1037058396471308300,"task_type":3,"start_ms":5,"end_ms":9}"#).unwrap();
        assert_eq!(minimal.serial, 1_037_058_396_471_308_300);
        assert_eq!(minimal.reason_code, None);
    }
}
