//! The typed call record and its vocabulary (task types, call states), as the exporter uses them after
//! lenient parsing. A `CallRecord` holds only what counting and aggregation need: no phone numbers and no
//! free text are ever kept (privacy, and they must never reach a label).

use std::fmt;

/// A call's identity: CEC's `callSerialNo`, a decimal string larger than 2^53, parsed exactly (never
/// through a float) into a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The task type of a call, as it becomes the `task_type` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum TaskType {
    /// Code 1: CEC bidirectional (two-way callback) call.
    CecBidirectional = 0,
    /// Code 2: anonymous outbound call.
    AnonymousOutbound = 1,
    /// Code 3: voice notification.
    VoiceNotification = 2,
    /// Code 4: ITA bidirectional call (only returned by a taskType `"4"` query).
    ItaBidirectional = 3,
    /// No task type could be determined (a record of a taskType `"0"` query without `taskType`).
    Unknown = 4,
}

impl TaskType {
    /// Every label value, in exposition order.
    pub const ALL: [TaskType; 5] = [
        TaskType::CecBidirectional,
        TaskType::AnonymousOutbound,
        TaskType::VoiceNotification,
        TaskType::ItaBidirectional,
        TaskType::Unknown,
    ];
    /// Number of label values (array dimension for per-type aggregates).
    pub const COUNT: usize = 5;

    /// The task type for a documented code 1–4; `None` for anything else (0 means "all but ITA" in a
    /// query, not a type).
    pub fn from_code(code: u64) -> Option<TaskType> {
        match code {
            1 => Some(TaskType::CecBidirectional),
            2 => Some(TaskType::AnonymousOutbound),
            3 => Some(TaskType::VoiceNotification),
            4 => Some(TaskType::ItaBidirectional),
            _ => None,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            TaskType::CecBidirectional => "cec_bidirectional",
            TaskType::AnonymousOutbound => "anonymous_outbound",
            TaskType::VoiceNotification => "voice_notification",
            TaskType::ItaBidirectional => "ita_bidirectional",
            TaskType::Unknown => "unknown",
        }
    }

    /// Index into per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The `state` of a call record: 0 to be called, 1 calling, 2 talking, 3 ended (final).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum CallState {
    ToBeCalled = 0,
    Calling = 1,
    Talking = 2,
    Ended = 3,
}

impl CallState {
    /// The open (not yet ended) states, in exposition order.
    pub const OPEN: [CallState; 3] = [CallState::ToBeCalled, CallState::Calling, CallState::Talking];

    pub fn from_code(code: u64) -> Option<CallState> {
        match code {
            0 => Some(CallState::ToBeCalled),
            1 => Some(CallState::Calling),
            2 => Some(CallState::Talking),
            3 => Some(CallState::Ended),
            _ => None,
        }
    }

    /// The label value: the documented code as a decimal string.
    pub fn label(self) -> &'static str {
        match self {
            CallState::ToBeCalled => "0",
            CallState::Calling => "1",
            CallState::Talking => "2",
            CallState::Ended => "3",
        }
    }
}

/// The task-type filter of one `queryCallDetailRecord` query: `"0"` (every type except ITA) or one
/// type `"1"`–`"4"`. Kept with every record it returned, because a record of a `"4"` query is an ITA
/// call even when the record itself has no `taskType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TaskQuery(u8);

impl TaskQuery {
    /// Every type except ITA.
    pub const ALL_BUT_ITA: TaskQuery = TaskQuery(0);
    /// ITA bidirectional calls only.
    pub const ITA: TaskQuery = TaskQuery(4);

    /// A query filter for code 0–4; `None` otherwise.
    pub fn new(code: u8) -> Option<TaskQuery> {
        (code <= 4).then_some(TaskQuery(code))
    }

    /// The value sent as `taskType`.
    pub fn code(self) -> u8 {
        self.0
    }

    /// The task type of a record returned by this query: a one-type query decides it; for `"0"` the
    /// record's own `taskType` does (ITA excluded by definition of the query, but trusted if stated).
    pub fn attribute(self, record_type: Option<TaskType>) -> TaskType {
        match TaskType::from_code(u64::from(self.0)) {
            Some(t) => t,
            None => record_type.unwrap_or(TaskType::Unknown),
        }
    }
}

impl fmt::Display for TaskQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The details of one call record after lenient parsing (identity and state live in
/// [`ParsedRecord`](super::wire::ParsedRecord)).
/// Every field is optional, as the vendor documents. Times are epoch milliseconds; durations are seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallRecord {
    /// The record's own `taskType` (1–4), if it had a valid one.
    pub task_type: Option<TaskType>,
    /// `reasonCode`, 0–65535.
    pub reason_code: Option<u16>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub alerting_ms: Option<i64>,
    pub talking_ms: Option<i64>,
    pub release_ms: Option<i64>,
    pub agent_alerting_ms: Option<i64>,
    pub agent_talking_ms: Option<i64>,
    pub agent_release_ms: Option<i64>,
    /// `talkDuration`, seconds (the customer's talk time).
    pub talk_s: Option<f64>,
    /// `agentTalkDuration`, seconds.
    pub agent_talk_s: Option<f64>,
    /// `caller`, the calling (presented) number, as its key: only compared with the numbers a tenant
    /// lists (`--metrics.callers`), never kept or shown.
    pub caller: Option<CallerKey>,
}

/// A calling number as a 64-bit FNV-1a hash of its text (surrounding whitespace removed): what the
/// parser keeps of a record's `caller`, without allocating, to compare with the numbers a tenant lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallerKey(pub u64);

impl CallerKey {
    /// The key of `number`.
    pub fn of(number: &str) -> CallerKey {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in number.trim().as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        CallerKey(h)
    }
}

impl CallRecord {
    /// The customer's talk time in seconds: `talkDuration`, or when it is missing the span from
    /// `talkingTime` to `releaseTime` (or `endTime`). `None` when neither is known.
    pub fn customer_talk_seconds(&self) -> Option<f64> {
        self.talk_s.or_else(|| {
            let end = self.release_ms.or(self.end_ms)?;
            let talking = self.talking_ms?;
            (end >= talking).then(|| (end - talking) as f64 / 1000.0)
        })
    }

    /// The agent's talk time in seconds: `agentTalkDuration`, or the span from `agentTalkingTime` to
    /// `agentReleaseTime` (or `endTime`).
    pub fn agent_talk_seconds(&self) -> Option<f64> {
        self.agent_talk_s.or_else(|| {
            let end = self.agent_release_ms.or(self.end_ms)?;
            let talking = self.agent_talking_ms?;
            (end >= talking).then(|| (end - talking) as f64 / 1000.0)
        })
    }

    /// Seconds from the customer's phone ringing to the customer answering, when both times are known
    /// and ordered.
    pub fn customer_answer_delay(&self) -> Option<f64> {
        delay(self.alerting_ms, self.talking_ms)
    }

    /// Seconds from the agent's phone ringing to the agent answering, when both are known and ordered.
    pub fn agent_answer_delay(&self) -> Option<f64> {
        delay(self.agent_alerting_ms, self.agent_talking_ms)
    }

    /// When the call ended: `endTime`, else the later of the release times.
    pub fn ended_at_ms(&self) -> Option<i64> {
        self.end_ms.or_else(|| match (self.release_ms, self.agent_release_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
    }
}

fn delay(from: Option<i64>, to: Option<i64>) -> Option<f64> {
    let (from, to) = (from?, to?);
    (to >= from).then(|| (to - from) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_four_makes_ita_even_without_task_type() {
        assert_eq!(TaskQuery::ITA.attribute(None), TaskType::ItaBidirectional);
        assert_eq!(TaskQuery::ITA.attribute(Some(TaskType::CecBidirectional)), TaskType::ItaBidirectional);
    }

    #[test]
    fn query_zero_trusts_the_record_or_says_unknown() {
        let q = TaskQuery::ALL_BUT_ITA;
        assert_eq!(q.attribute(Some(TaskType::VoiceNotification)), TaskType::VoiceNotification);
        assert_eq!(q.attribute(None), TaskType::Unknown);
    }

    #[test]
    fn single_type_query_decides_the_type() {
        let q = TaskQuery::new(2).unwrap();
        assert_eq!(q.attribute(None), TaskType::AnonymousOutbound);
        assert!(TaskQuery::new(5).is_none());
    }

    #[test]
    fn talk_seconds_fall_back_to_timestamps() {
        let r = CallRecord { talking_ms: Some(1_000), release_ms: Some(27_500), ..Default::default() };
        assert_eq!(r.customer_talk_seconds(), Some(26.5));
        let r =
            CallRecord { talk_s: Some(26.0), talking_ms: Some(1_000), release_ms: Some(99_000), ..Default::default() };
        assert_eq!(r.customer_talk_seconds(), Some(26.0));
    }

    #[test]
    fn answer_delay_needs_both_times_in_order() {
        let r = CallRecord {
            alerting_ms: Some(10_000),
            talking_ms: Some(13_250),
            agent_alerting_ms: Some(5_000),
            agent_talking_ms: Some(4_000),
            ..Default::default()
        };
        assert_eq!(r.customer_answer_delay(), Some(3.25));
        assert_eq!(r.agent_answer_delay(), None);
        assert_eq!(CallRecord::default().customer_answer_delay(), None);
    }
}
