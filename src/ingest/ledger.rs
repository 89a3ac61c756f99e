//! What must be remembered to count every call exactly once, and the one place where a record is
//! admitted: the set of counted calls (kept while any future window can return them), the open calls
//! (states 0–2, counted when they end), and the poll cursor. [`State`] pairs the ledger with the
//! aggregates so that one poll updates both, in memory, with no I/O and no failure path.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::plan::{PollPlan, Read};
use crate::cec::record::{CallId, CallState, TaskQuery, TaskType};
use crate::cec::wire::ParsedRecord;
use crate::metrics::aggregate::Aggregates;

/// A call seen in state 0, 1 or 2 and not yet counted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenCall {
    /// `startTime`, epoch ms, when the record gave one.
    pub start_ms: Option<i64>,
    /// Until when it can still be re-read: its start, or for a record without `startTime` the end of
    /// the window that returned it (its start is no later than that).
    pub key_ms: i64,
    pub state: CallState,
    pub task_type: TaskType,
    /// The query that returned it; targeted re-reads use the same filter.
    pub query: TaskQuery,
}

/// How the ledger took a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Ended and not counted before: counted now.
    Counted,
    /// Not ended yet: tracked (first sight or a state change).
    Tracked,
    /// Already counted (a re-read, an overlap, a duplicate across pages).
    AlreadyCounted,
    /// Older than every window that could have shown it before and not tracked: it may have been
    /// counted and forgotten, so it is not counted again.
    BeforeHorizon,
}

/// Counted ids, open calls and the cursor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// Counted calls → the key (start, epoch ms) after which no window can return them.
    counted: HashMap<CallId, i64>,
    open: HashMap<CallId, OpenCall>,
    /// End of the last committed main window, epoch ms.
    cursor_ms: Option<i64>,
}

impl Ledger {
    pub fn cursor_ms(&self) -> Option<i64> {
        self.cursor_ms
    }

    /// Calls counted and still remembered.
    pub fn counted_len(&self) -> usize {
        self.counted.len()
    }

    pub fn open_calls(&self) -> impl Iterator<Item = (&CallId, &OpenCall)> {
        self.open.iter()
    }

    /// `(query, start)` of each open call whose start is known, for planning targeted re-reads.
    pub fn open_starts(&self) -> impl Iterator<Item = (TaskQuery, i64)> + '_ {
        self.open.values().filter_map(|o| Some((o.query, o.start_ms?)))
    }

    /// Open calls per task type and state (`cec_calls_in_progress`), indexed like the label enums.
    pub fn in_progress(&self) -> [[u64; 3]; TaskType::COUNT] {
        let mut out = [[0; 3]; TaskType::COUNT];
        for o in self.open.values() {
            out[o.task_type.index()][o.state as usize] += 1;
        }
        out
    }
}

/// The ledger and the aggregates: everything a poll changes and a later issue persists atomically.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub ledger: Ledger,
    pub aggregates: Aggregates,
}

/// What one poll did, for its log line and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollSummary {
    pub counted: u64,
    pub tracked: u64,
    pub already_counted: u64,
    pub before_horizon: u64,
    /// Open calls given up (see [`State::apply`]).
    pub abandoned: u64,
    /// Calls first seen although they started before the previous poll's window end: CEC returned
    /// them late (or a shifting page skipped them once).
    pub late: u64,
    /// The largest such gap, ms: how much of `--poll.lookback` late records used.
    pub max_lateness_ms: i64,
}

/// Limits of what the ledger keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Each poll re-reads this far before the cursor, ms (the planner's `lookback_ms`).
    pub lookback_ms: i64,
    /// An open call older than this (from its start) is given up: CEC never ended it.
    pub max_call_ms: i64,
}

impl State {
    /// Admits one record returned by `read` of a poll whose main window starts at `horizon_ms`;
    /// `seen_until_ms` is the end of the previous poll's main window (a record first seen now whose call
    /// started before it came late). Tallies what happened in `summary`.
    pub fn admit(
        &mut self,
        rec: &ParsedRecord,
        read: &Read,
        horizon_ms: i64,
        seen_until_ms: Option<i64>,
        summary: &mut PollSummary,
    ) -> Admission {
        let ledger = &mut self.ledger;
        if ledger.counted.contains_key(&rec.id) {
            summary.already_counted += 1;
            return Admission::AlreadyCounted;
        }
        let tracked = ledger.open.get(&rec.id).copied();
        let start = rec.record.start_ms.or(tracked.and_then(|o| o.start_ms));
        // A record the ledger cannot vouch for: older than the horizon, or of unknown start outside
        // the main window, and not an open call it is waiting for.
        let vouched = match start {
            Some(s) => s >= horizon_ms,
            None => !read.targeted,
        };
        if tracked.is_none() {
            if !vouched {
                summary.before_horizon += 1;
                return Admission::BeforeHorizon;
            }
            if let (Some(s), Some(seen)) = (start, seen_until_ms) {
                if s < seen {
                    summary.late += 1;
                    summary.max_lateness_ms = summary.max_lateness_ms.max(seen - s);
                }
            }
        }
        let task_type = match tracked {
            // The query that first returned it decides; a later record may add a missing taskType.
            Some(o) if o.task_type != TaskType::Unknown => o.task_type,
            _ => read.query.attribute(rec.record.task_type),
        };
        let key_ms = start.unwrap_or(read.window.end_ms).max(tracked.map_or(i64::MIN, |o| o.key_ms));
        if rec.state == CallState::Ended {
            ledger.open.remove(&rec.id);
            ledger.counted.insert(rec.id, key_ms);
            self.aggregates.observe(rec.id, task_type, &rec.record);
            summary.counted += 1;
            Admission::Counted
        } else {
            let query = tracked.map_or(read.query, |o| o.query);
            ledger.open.insert(rec.id, OpenCall { start_ms: start, key_ms, state: rec.state, task_type, query });
            Admission::Tracked
        }
    }

    /// Applies a whole poll: admits every record in the order read, moves the cursor to the end of the
    /// main window, forgets counted calls no future window can return, and gives up open calls older
    /// than `retention.max_call_ms` (or, without a start time, no longer reachable). Infallible: the
    /// caller only calls it once every read of the poll has succeeded.
    pub fn apply<'a>(
        &mut self,
        plan: &PollPlan,
        reads: impl IntoIterator<Item = (&'a Read, &'a [ParsedRecord])>,
        now_ms: i64,
        retention: Retention,
    ) -> PollSummary {
        let mut s = PollSummary::default();
        let horizon = plan.main.start_ms;
        let seen_until = self.ledger.cursor_ms;
        for (read, records) in reads {
            for rec in records {
                self.admit(rec, read, horizon, seen_until, &mut s);
            }
        }
        let ledger = &mut self.ledger;
        let cursor = ledger.cursor_ms.map_or(plan.main.end_ms, |c| c.max(plan.main.end_ms));
        ledger.cursor_ms = Some(cursor);
        let next_horizon = cursor - retention.lookback_ms;
        ledger.counted.retain(|_, key| *key >= next_horizon);
        let before = ledger.open.len();
        let oldest = now_ms - retention.max_call_ms;
        ledger.open.retain(|_, o| match o.start_ms {
            Some(start) => start >= oldest,
            None => o.key_ms >= next_horizon,
        });
        s.abandoned = (before - ledger.open.len()) as u64;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::record::CallRecord;
    use crate::ingest::plan::{plan, PlanConfig, Window, MAX_WINDOW_MS};
    use crate::metrics::classify::Outcome;

    const T0: i64 = 1_800_000_000_000;
    const RET: Retention = Retention { lookback_ms: 120_000, max_call_ms: 24 * 3_600_000 };
    const CFG: PlanConfig = PlanConfig {
        backfill_ms: 3_600_000,
        lookback_ms: RET.lookback_ms,
        pad_ms: 1_000,
        max_window_ms: MAX_WINDOW_MS,
    };

    fn rec(id: u64, state: CallState, start: i64) -> ParsedRecord {
        ParsedRecord {
            id: CallId(id),
            state,
            record: CallRecord {
                start_ms: Some(start),
                reason_code: (state == CallState::Ended).then_some(16),
                talk_s: (state == CallState::Ended).then_some(30.0),
                ..Default::default()
            },
        }
    }

    /// Runs one poll at `now` over `pages` (each a query's records) the way the poller does.
    fn poll(state: &mut State, now: i64, pages: &[(TaskQuery, Vec<ParsedRecord>)]) -> PollSummary {
        let queries = [TaskQuery::ALL_BUT_ITA, TaskQuery::ITA];
        let p = plan(&CFG, now, state.ledger.cursor_ms(), &queries, state.ledger.open_starts());
        let reads: Vec<(Read, Vec<ParsedRecord>)> = pages
            .iter()
            .map(|(q, recs)| {
                let read = *p.reads.iter().find(|r| r.query == *q).expect("query planned");
                (read, recs.clone())
            })
            .collect();
        state.apply(&p, reads.iter().map(|(r, v)| (r, v.as_slice())), now, RET)
    }

    fn ita_answered(state: &State) -> u64 {
        state.aggregates.calls[TaskType::ItaBidirectional.index()][Outcome::Answered.index()]
    }

    #[test]
    fn an_ended_call_seen_on_two_pages_and_three_polls_counts_once() {
        let mut s = State::default();
        let r = rec(7, CallState::Ended, T0 - 10_000);
        let sum = poll(&mut s, T0, &[(TaskQuery::ITA, vec![r.clone(), r.clone()])]);
        assert_eq!((sum.counted, sum.already_counted), (1, 1));
        poll(&mut s, T0 + 30_000, &[(TaskQuery::ITA, vec![r.clone()])]);
        poll(&mut s, T0 + 60_000, &[(TaskQuery::ITA, vec![r])]);
        assert_eq!(ita_answered(&s), 1);
        assert_eq!(s.aggregates.total_calls(), 1);
    }

    #[test]
    fn an_open_call_is_tracked_then_counted_when_it_ends() {
        let mut s = State::default();
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(1, CallState::Calling, T0 - 5_000)])]);
        assert_eq!(s.ledger.in_progress()[TaskType::ItaBidirectional.index()], [0, 1, 0]);
        poll(&mut s, T0 + 30_000, &[(TaskQuery::ITA, vec![rec(1, CallState::Talking, T0 - 5_000)])]);
        assert_eq!(s.ledger.in_progress()[TaskType::ItaBidirectional.index()], [0, 0, 1]);
        assert_eq!(s.aggregates.total_calls(), 0);
        poll(&mut s, T0 + 60_000, &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 5_000)])]);
        assert_eq!(ita_answered(&s), 1);
        assert_eq!(s.ledger.in_progress()[TaskType::ItaBidirectional.index()], [0, 0, 0]);
    }

    #[test]
    fn a_long_call_is_counted_hours_later_through_its_targeted_window() {
        let mut s = State::default();
        let start = T0 - 1_000;
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(9, CallState::Talking, start)])]);
        // Hours of polls later, the main window no longer reaches its start.
        let later = T0 + 3 * 3_600_000;
        poll(&mut s, later - 30_000, &[]);
        let p =
            plan(&CFG, later, s.ledger.cursor_ms(), &[TaskQuery::ALL_BUT_ITA, TaskQuery::ITA], s.ledger.open_starts());
        let targeted: Vec<&Read> = p.reads.iter().filter(|r| r.targeted).collect();
        assert_eq!(targeted.len(), 1);
        assert_eq!(targeted[0].query, TaskQuery::ITA);
        assert_eq!(targeted[0].window, Window { start_ms: start - 1_000, end_ms: start + 1_000 });
        // The targeted read returns the ended call and an old neighbour that was counted long ago.
        let neighbour = rec(8, CallState::Ended, start + 500);
        let recs = vec![rec(9, CallState::Ended, start), neighbour];
        let sum = s.apply(&p, [(targeted[0], recs.as_slice())], later, RET);
        assert_eq!(sum.late, 0, "an open call seen again is not late");
        assert_eq!((sum.counted, sum.before_horizon), (1, 1));
        assert_eq!(ita_answered(&s), 1);
    }

    #[test]
    fn a_late_record_inside_the_lookback_counts_once() {
        let mut s = State::default();
        poll(&mut s, T0, &[]);
        // Started before the previous window's end, shows up only now.
        let late = rec(5, CallState::Ended, T0 - 20_000);
        let sum = poll(&mut s, T0 + 30_000, &[(TaskQuery::ALL_BUT_ITA, vec![late.clone()])]);
        assert_eq!((sum.late, sum.max_lateness_ms), (1, 20_000));
        let sum = poll(&mut s, T0 + 60_000, &[(TaskQuery::ALL_BUT_ITA, vec![late])]);
        assert_eq!((sum.late, sum.already_counted), (0, 1));
        assert_eq!(s.aggregates.total_calls(), 1);
    }

    #[test]
    fn counted_calls_are_forgotten_once_no_window_can_return_them() {
        let mut s = State::default();
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000)])]);
        assert_eq!(s.ledger.counted_len(), 1);
        poll(&mut s, T0 + 60_000, &[]);
        assert_eq!(s.ledger.counted_len(), 1, "still inside the next poll's lookback");
        poll(&mut s, T0 + 150_000, &[]);
        assert_eq!(s.ledger.counted_len(), 0);
        // Returned again anyway (CEC selecting differently than documented): not counted twice.
        let sum = poll(&mut s, T0 + 180_000, &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000)])]);
        assert_eq!(sum.before_horizon, 1);
        assert_eq!(s.aggregates.total_calls(), 1);
    }

    #[test]
    fn state_three_then_a_stale_state_two_never_uncounts() {
        let mut s = State::default();
        let sum = poll(
            &mut s,
            T0,
            &[(TaskQuery::ITA, vec![rec(3, CallState::Ended, T0 - 1_000), rec(3, CallState::Talking, T0 - 1_000)])],
        );
        assert_eq!((sum.counted, sum.already_counted), (1, 1));
        assert_eq!(s.ledger.in_progress()[TaskType::ItaBidirectional.index()], [0, 0, 0]);
    }

    #[test]
    fn a_task_type_seen_once_is_kept_when_a_later_record_omits_it() {
        let mut s = State::default();
        let mut r = rec(4, CallState::Calling, T0 - 1_000);
        r.record.task_type = Some(TaskType::VoiceNotification);
        poll(&mut s, T0, &[(TaskQuery::ALL_BUT_ITA, vec![r])]);
        let mut ended = rec(4, CallState::Ended, T0 - 1_000);
        ended.record.task_type = None;
        poll(&mut s, T0 + 1_000, &[(TaskQuery::ALL_BUT_ITA, vec![ended])]);
        let voice = TaskType::VoiceNotification.index();
        assert_eq!(s.aggregates.calls[voice][Outcome::Answered.index()], 1);
        assert_eq!(s.aggregates.calls[TaskType::Unknown.index()].iter().sum::<u64>(), 0);
    }

    #[test]
    fn an_open_call_older_than_the_limit_is_given_up() {
        let mut s = State::default();
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(2, CallState::Talking, T0 - 1_000)])]);
        let sum = poll(&mut s, T0 + 25 * 3_600_000, &[]);
        assert_eq!(sum.abandoned, 1);
        assert_eq!(s.ledger.open_calls().count(), 0);
    }
}
