//! Ingest: deciding which windows a poll reads ([`plan`]), remembering what has been counted so every
//! call is counted once ([`ledger`]), and the background loop that fetches, admits and commits
//! ([`poller`]).

pub mod ledger;
pub mod plan;
pub mod poller;

/// What the ledger's and the store's tests share: a time, the retention and planning they poll with, and
/// a record maker.
#[cfg(test)]
pub(crate) mod testing {
    use super::ledger::Retention;
    use super::plan::PlanConfig;
    use crate::cec::record::{CallId, CallRecord, CallState};
    use crate::cec::window::MAX_WINDOW_MS;
    use crate::cec::wire::ParsedRecord;

    pub const T0: i64 = 1_800_000_000_000;
    pub const RET: Retention = Retention { lookback_ms: 120_000, max_call_ms: 24 * 3_600_000, max_open_calls: 1_000 };
    pub const CFG: PlanConfig = PlanConfig {
        backfill_ms: 3_600_000,
        lookback_ms: RET.lookback_ms,
        pad_ms: 1_000,
        max_window_ms: MAX_WINDOW_MS,
        page_size: 100,
    };

    /// A record of call `id` in `state` that started at `start`; ended calls were answered (Q.850 16, 30 s).
    pub fn rec(id: u64, state: CallState, start: i64) -> ParsedRecord {
        let ended = state == CallState::Ended;
        ParsedRecord {
            id: CallId(id),
            state,
            record: CallRecord {
                start_ms: Some(start),
                reason_code: ended.then_some(16),
                talk_s: ended.then_some(30.0),
                ..Default::default()
            },
            invalid: Default::default(),
        }
    }
}
