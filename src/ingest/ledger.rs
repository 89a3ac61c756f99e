//! What must be remembered to count every call exactly once, and the one place where a record is
//! admitted: the counted calls (kept while any future read could return them), the open calls (states
//! 0–2, counted when they end), the poll cursor, and the *floor*: the ledger remembers every counted
//! call whose start is at or after the floor, and never counts a new call that started before it. That
//! one invariant makes double counting impossible whatever the windows, pages or clocks do; windows only
//! decide what is read. A record whose start lies outside the window that returned it by more than the
//! lookback is not admitted at all ([`start_in_window`]).
//!
//! At most `--poll.max-open-calls` open calls are remembered: beyond it the oldest (by the latest their
//! start can be) are given up ([`Ledger::cap_open`]: by every [`State::finish`], within a poll by
//! [`State::admit_page`] once the map holds twice the cap, and by the poller on restore), as calls older than `--poll.max-call-duration` are, so a gateway inventing open calls cannot
//! grow memory or the store without limit. A given-up call is simply no longer remembered: if it later
//! shows up ended, it is admitted like a call never seen — counted once if its start is still at or after
//! the floor, else not at all ([`Admission::BeforeFloor`]). It was never counted before, so giving up can
//! lose a call but never counts one twice, and calls within the cap are counted exactly as without it.
//!
//! [`State`] pairs the ledger with the aggregates so that one poll updates both, in memory, with no I/O
//! and no failure path.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::plan::{PollPlan, Read};
use crate::cec::record::{CallId, CallState, TaskQuery, TaskType};
use crate::cec::wire::ParsedRecord;
use crate::metrics::aggregate::Aggregates;

/// A call seen in state 0, 1 or 2 and not yet counted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenCall {
    /// Its start lies in `[lo_ms, hi_ms]`, epoch ms: its `startTime` when a record gave one (`lo == hi`),
    /// otherwise the windows that returned it.
    pub lo_ms: i64,
    pub hi_ms: i64,
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
    /// Started before the floor and not tracked: it may have been counted and forgotten, so it is not
    /// counted again.
    BeforeFloor,
}

/// The ledger's scalar bookkeeping, persisted with every commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scalars {
    /// End of the last committed main window, epoch ms.
    pub cursor_ms: Option<i64>,
    /// See the module header; only rises.
    pub floor_ms: i64,
    /// Start of the first committed main window: call starts from here to the cursor have been read.
    pub covered_from_ms: Option<i64>,
    /// The latest `startTime` any record carried: CEC's own clock, which bounds the floor so that a
    /// forward jump of this host's clock cannot make the ledger forget calls it may be shown again.
    pub newest_start_ms: Option<i64>,
}

impl Default for Scalars {
    fn default() -> Self {
        Scalars { cursor_ms: None, floor_ms: i64::MIN, covered_from_ms: None, newest_start_ms: None }
    }
}

/// Counted ids, open calls, the cursor and the floor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    /// Counted calls → the latest their start can be (epoch ms); kept while that is at or after the floor.
    counted: HashMap<CallId, i64>,
    open: HashMap<CallId, OpenCall>,
    s: Scalars,
    /// Calls counted since the last commit (what the store must add).
    fresh: Vec<(CallId, i64)>,
}

impl Ledger {
    /// A ledger as a store saved it.
    pub fn restore(
        counted: impl IntoIterator<Item = (CallId, i64)>,
        open: impl IntoIterator<Item = (CallId, OpenCall)>,
        s: Scalars,
    ) -> Ledger {
        Ledger { counted: counted.into_iter().collect(), open: open.into_iter().collect(), s, fresh: Vec::new() }
    }

    pub fn scalars(&self) -> Scalars {
        self.s
    }

    pub fn cursor_ms(&self) -> Option<i64> {
        self.s.cursor_ms
    }

    /// Moves the cursor forward to `cursor_ms` without reading what lies between (catch-up beyond
    /// `--poll.max-catchup`); returns the stretch skipped, if any.
    pub fn skip_to(&mut self, cursor_ms: i64) -> Option<(i64, i64)> {
        let from = self.s.cursor_ms?;
        (cursor_ms > from).then(|| {
            self.s.cursor_ms = Some(cursor_ms);
            // Nothing before the new cursor was read: a call found there later is not "late".
            self.s.covered_from_ms = Some(cursor_ms);
            (from, cursor_ms)
        })
    }

    /// The floor, epoch ms (`i64::MIN` before the first poll).
    pub fn floor_ms(&self) -> i64 {
        self.s.floor_ms
    }

    /// Calls counted since the last commit, with their keys.
    pub fn fresh(&self) -> &[(CallId, i64)] {
        &self.fresh
    }

    /// Records a remembered call as fresh, so the next commit writes it (rewriting a store).
    pub fn mark_fresh(&mut self, id: CallId, hi: i64) {
        self.counted.insert(id, hi);
        self.fresh.push((id, hi));
    }

    /// Every remembered counted call and its key.
    pub fn counted(&self) -> impl Iterator<Item = (CallId, i64)> + '_ {
        self.counted.iter().map(|(&id, &hi)| (id, hi))
    }

    /// Calls counted and still remembered.
    pub fn counted_len(&self) -> usize {
        self.counted.len()
    }

    pub fn open_calls(&self) -> impl Iterator<Item = (&CallId, &OpenCall)> {
        self.open.iter()
    }

    /// `(query, lo, hi)` of each open call: where its start lies, for planning targeted re-reads.
    pub fn open_spans(&self) -> impl Iterator<Item = (TaskQuery, i64, i64)> + '_ {
        self.open.values().map(|o| (o.query, o.lo_ms, o.hi_ms))
    }

    /// Open calls per task type and state (`cec_calls_in_progress`), indexed like the label enums. Its sum
    /// is every open call remembered ([`Ledger::open_len`]), what `--poll.max-open-calls` caps.
    pub fn in_progress(&self) -> [[u64; 3]; TaskType::COUNT] {
        let mut out = [[0; 3]; TaskType::COUNT];
        for o in self.open.values() {
            out[o.task_type.index()][o.state as usize] += 1;
        }
        out
    }

    /// Open calls remembered.
    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Gives up the oldest open calls (by the latest their start can be; ties by serial number) until at
    /// most `max` remain, exactly as [`State::finish`] gives up calls older than `--poll.max-call-duration`:
    /// they are forgotten, never counted. Returns how many were given up. Linear in the open calls (a
    /// selection, not a sort), and releases the map's memory when most of it is no longer needed.
    pub fn cap_open(&mut self, max: usize) -> u64 {
        let excess = self.open.len().saturating_sub(max);
        if excess == 0 {
            return 0;
        }
        let mut by_age: Vec<(i64, CallId)> = self.open.iter().map(|(&id, o)| (o.hi_ms, id)).collect();
        by_age.select_nth_unstable(excess - 1);
        for (_, id) in &by_age[..excess] {
            self.open.remove(id);
        }
        // A flood of invented calls must not pin its capacity once it is given up.
        if self.open.capacity() > 2 * self.open.len().max(1024) {
            self.open.shrink_to_fit();
        }
        excess as u64
    }
}

/// The ledger and the aggregates: everything a poll changes, committed to the store in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub ledger: Ledger,
    pub aggregates: Aggregates,
}

/// What a poll may change besides adding counted calls, kept to undo a poll whose reads or commit
/// failed (its pages were admitted as they arrived).
#[derive(Debug)]
pub struct Checkpoint {
    aggregates: Aggregates,
    open: HashMap<CallId, OpenCall>,
    s: Scalars,
}

/// What one poll did, for its log line and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollSummary {
    pub counted: u64,
    /// Records of open calls taken (first sight or a later state).
    pub tracked: u64,
    /// Of those, calls seen open for the first time (not remembered before).
    pub first_seen_open: u64,
    pub already_counted: u64,
    pub before_floor: u64,
    /// Open calls given up because they may have started more than `--poll.max-call-duration` ago (see
    /// [`State::finish`]).
    pub abandoned: u64,
    /// Open calls given up because more than `--poll.max-open-calls` were open (the oldest first, see
    /// [`Ledger::cap_open`]); not included in `abandoned`.
    pub evicted: u64,
    /// Calls first seen although their start lies in a stretch earlier polls had already read: CEC
    /// returned them late (or a shifting page skipped them once).
    pub late: u64,
    /// The largest distance from such a call's start to the end of what had been read, ms: how much of
    /// `--poll.lookback` late records used.
    pub max_lateness_ms: i64,
    /// Records skipped because their `startTime` lies outside the window read by more than
    /// `--poll.lookback` (see [`start_in_window`]).
    pub out_of_window: u64,
    /// Counted records whose `talkDuration` was longer than `--poll.max-call-duration` (read as absent).
    pub talk_too_long: u64,
    /// The same for `agentTalkDuration`.
    pub agent_talk_too_long: u64,
}

/// Whether `rec`'s start (when it has one) lies in the window `read` asked for, give or take
/// `lookback_ms`. CEC answers a window with the calls that started in it; a record far outside is not an
/// answer to the question (a gateway's or clock's bug, or a `startTime` in the year 2200) and is rejected
/// as `start_out_of_window`: admitted, it would move `newest_start_ms` (and with it the floor's bound) or
/// stay open and be re-read until `--poll.max-call-duration` after a start that never comes. Checked here,
/// where the window is known, rather than in the page parser, which stays a pure function of the bytes.
pub fn start_in_window(rec: &ParsedRecord, read: &Read, lookback_ms: i64) -> bool {
    rec.record.start_ms.is_none_or(|s| {
        read.window.start_ms.saturating_sub(lookback_ms) <= s && s <= read.window.end_ms.saturating_add(lookback_ms)
    })
}

/// Gives back a map's memory once it holds less than half of what it has room for (a backfill's
/// calls forgotten below the floor, a failed poll's calls uncounted): hashbrown never shrinks by itself.
fn shrink_when_sparse<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if m.capacity() > 2 * m.len().max(1_024) {
        m.shrink_to_fit();
    }
}

/// Limits of what the ledger keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Each poll re-reads this far before the cursor, ms (the planner's `lookback_ms`).
    pub lookback_ms: i64,
    /// An open call whose start is older than this is given up: CEC never ended it.
    pub max_call_ms: i64,
    /// At most this many open calls are remembered (`--poll.max-open-calls`); the oldest beyond it are
    /// given up.
    pub max_open_calls: usize,
}

impl State {
    /// Admits one record returned by `read`, tallying what happened in `summary`.
    pub fn admit(&mut self, rec: &ParsedRecord, read: &Read, summary: &mut PollSummary) -> Admission {
        let ledger = &mut self.ledger;
        // One hash of the serial number for the check and, when it ends, the insert.
        let hashbrown::hash_map::Entry::Vacant(slot) = ledger.counted.entry(rec.id) else {
            summary.already_counted += 1;
            return Admission::AlreadyCounted;
        };
        let tracked = if ledger.open.is_empty() { None } else { ledger.open.get(&rec.id).copied() };
        // Where the call's start lies: its startTime, else narrowed by every window that returned it.
        let (lo, hi) = match (rec.record.start_ms, tracked) {
            (Some(s), _) => (s, s),
            (None, Some(o)) if o.lo_ms == o.hi_ms => (o.lo_ms, o.hi_ms),
            (None, Some(o)) => {
                let (lo, hi) = (o.lo_ms.max(read.window.start_ms), o.hi_ms.min(read.window.end_ms));
                if lo <= hi {
                    (lo, hi)
                } else {
                    (o.lo_ms, o.hi_ms)
                }
            }
            (None, None) => (read.window.start_ms, read.window.end_ms),
        };
        if tracked.is_none() {
            if lo < ledger.s.floor_ms {
                summary.before_floor += 1;
                return Admission::BeforeFloor;
            }
            if let (Some(s), Some(from), Some(until)) =
                (rec.record.start_ms, ledger.s.covered_from_ms, ledger.s.cursor_ms)
            {
                if from <= s && s < until {
                    summary.late += 1;
                    summary.max_lateness_ms = summary.max_lateness_ms.max(until - s);
                }
            }
        }
        if let Some(s) = rec.record.start_ms {
            ledger.s.newest_start_ms = Some(ledger.s.newest_start_ms.map_or(s, |n| n.max(s)));
        }
        let task_type = match tracked {
            // The query that first returned it decides; a later record may add a missing taskType.
            Some(o) if o.task_type != TaskType::Unknown => o.task_type,
            _ => read.query.attribute(rec.record.task_type),
        };
        if rec.state == CallState::Ended {
            if tracked.is_some() {
                ledger.open.remove(&rec.id);
            }
            slot.insert(hi);
            ledger.fresh.push((rec.id, hi));
            self.aggregates.observe(rec.id, task_type, &rec.record);
            summary.counted += 1;
            Admission::Counted
        } else {
            let query = tracked.map_or(read.query, |o| o.query);
            ledger.open.insert(rec.id, OpenCall { lo_ms: lo, hi_ms: hi, state: rec.state, task_type, query });
            summary.tracked += 1;
            summary.first_seen_open += u64::from(tracked.is_none());
            Admission::Tracked
        }
    }

    /// Admits one page of records returned by `read`, in the order read: a record whose start lies
    /// outside its window is skipped (see [`start_in_window`]), and a talk time longer than
    /// `retention.max_call_ms` is read as absent (no call lasts longer than the exporter waits for it to
    /// end). `invalid` is handed each admitted record that has unusable fields (a re-read's included:
    /// each fetch counts). The poller calls this for each page as it arrives and keeps no page, so a
    /// poll's memory is the calls it remembers, not the records it read; [`State::rollback`] undoes a
    /// poll that then fails.
    pub fn admit_page(
        &mut self,
        read: &Read,
        records: &[ParsedRecord],
        retention: Retention,
        s: &mut PollSummary,
        mut invalid: impl FnMut(&ParsedRecord),
    ) {
        let max_s = retention.max_call_ms as f64 / 1000.0;
        for rec in records {
            if !start_in_window(rec, read, retention.lookback_ms) {
                s.out_of_window += 1;
                continue;
            }
            if !rec.invalid.is_empty() {
                invalid(rec);
            }
            let talk_too_long = rec.record.talk_s.is_some_and(|t| t > max_s);
            let agent_too_long = rec.record.agent_talk_s.is_some_and(|t| t > max_s);
            if !(talk_too_long || agent_too_long) || rec.state != CallState::Ended {
                self.admit(rec, read, s);
                continue;
            }
            let mut fixed = rec.clone();
            if talk_too_long {
                fixed.record.talk_s = None;
                s.talk_too_long += 1;
            }
            if agent_too_long {
                fixed.record.agent_talk_s = None;
                s.agent_talk_too_long += 1;
            }
            // Counted only when admitted: a call already counted (a re-read) is not flagged again.
            if self.admit(&fixed, read, s) != Admission::Counted {
                s.talk_too_long -= u64::from(talk_too_long);
                s.agent_talk_too_long -= u64::from(agent_too_long);
            }
        }
        // The cap holds within a poll too, give or take the cap: pages of invented open calls (every
        // targeted read may bring a read's worth) cannot grow the map until the poll ends.
        if self.ledger.open.len() > retention.max_open_calls.saturating_mul(2).max(1_024) {
            s.evicted += self.ledger.cap_open(retention.max_open_calls);
        }
    }

    /// Ends a poll whose every read was admitted ([`State::admit_page`]): moves the cursor to the end
    /// of the main window, raises the floor to a lookback before what has been read (bounded by the
    /// newest start CEC has shown), gives up open calls that may have started more than
    /// `retention.max_call_ms` ago, then the oldest open calls beyond `retention.max_open_calls`
    /// ([`Ledger::cap_open`]). Counted calls below the floor are forgotten by [`State::committed`], once
    /// the poll is durable.
    pub fn finish(&mut self, plan: &PollPlan, now_ms: i64, retention: Retention, s: &mut PollSummary) {
        let l = &mut self.ledger;
        l.s.cursor_ms = Some(plan.main.end_ms);
        l.s.covered_from_ms = Some(l.s.covered_from_ms.map_or(plan.main.start_ms, |c| c.min(plan.main.start_ms)));
        let read_up_to = l.s.newest_start_ms.map_or(plan.main.end_ms, |n| n.min(plan.main.end_ms));
        l.s.floor_ms = l.s.floor_ms.max(read_up_to.saturating_sub(retention.lookback_ms));
        let before = l.open.len();
        let oldest = now_ms.saturating_sub(retention.max_call_ms);
        l.open.retain(|_, o| o.hi_ms >= oldest);
        s.abandoned = (before - l.open.len()) as u64;
        s.evicted += l.cap_open(retention.max_open_calls);
    }

    /// A whole poll at once: [`State::admit_page`] for every read in order, then [`State::finish`].
    pub fn apply<'a>(
        &mut self,
        plan: &PollPlan,
        reads: impl IntoIterator<Item = (&'a Read, &'a [ParsedRecord])>,
        now_ms: i64,
        retention: Retention,
    ) -> PollSummary {
        let mut s = PollSummary::default();
        for (read, records) in reads {
            self.admit_page(read, records, retention, &mut s, |_| {});
        }
        self.finish(plan, now_ms, retention, &mut s);
        s
    }

    /// What [`State::rollback`] needs to undo the next poll.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { aggregates: self.aggregates.clone(), open: self.ledger.open.clone(), s: self.ledger.s }
    }

    /// Undoes everything since `cp` (a poll whose reads or commit failed): the calls it counted are
    /// uncounted, so the next poll counts them again, once.
    pub fn rollback(&mut self, cp: Checkpoint) {
        let l = &mut self.ledger;
        // Taken, not drained: a failed catch-up poll must not pin its capacity.
        for (id, _) in std::mem::take(&mut l.fresh) {
            l.counted.remove(&id);
        }
        shrink_when_sparse(&mut l.counted);
        l.open = cp.open;
        l.s = cp.s;
        self.aggregates = cp.aggregates;
    }

    /// The poll is durable: forget counted calls below the floor, and start the next set of fresh ones.
    pub fn committed(&mut self) {
        let l = &mut self.ledger;
        // Dropped, not cleared: a backfill's million fresh calls must not pin their capacity.
        l.fresh = Vec::new();
        let floor = l.s.floor_ms;
        l.counted.retain(|_, hi| *hi >= floor);
        shrink_when_sparse(&mut l.counted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::window::Window;
    use crate::ingest::plan::plan;
    use crate::ingest::testing::{rec, CFG, RET, T0};
    use crate::metrics::classify::Outcome;

    fn startless(id: u64, state: CallState) -> ParsedRecord {
        let mut r = rec(id, state, 0);
        r.record.start_ms = None;
        r
    }

    /// Runs one poll at `now` over `pages` (each a query's records) the way the poller does.
    fn poll(state: &mut State, now: i64, pages: &[(TaskQuery, Vec<ParsedRecord>)]) -> PollSummary {
        poll_with(state, now, pages, RET)
    }

    /// [`poll`] with other limits.
    fn poll_with(state: &mut State, now: i64, pages: &[(TaskQuery, Vec<ParsedRecord>)], ret: Retention) -> PollSummary {
        let queries = [TaskQuery::ALL_BUT_ITA, TaskQuery::ITA];
        let p = plan(&CFG, now, state.ledger.cursor_ms(), &queries, state.ledger.open_spans(), |_| None);
        let reads: Vec<(Read, Vec<ParsedRecord>)> = pages
            .iter()
            .map(|(q, recs)| {
                let read = *p.reads.iter().find(|r| r.query == *q).expect("query planned");
                (read, recs.clone())
            })
            .collect();
        let summary = state.apply(&p, reads.iter().map(|(r, v)| (r, v.as_slice())), now, ret);
        state.committed();
        summary
    }

    fn open_ids(state: &State) -> Vec<u64> {
        let mut ids: Vec<u64> = state.ledger.open_calls().map(|(id, _)| id.0).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn beyond_the_cap_the_oldest_open_calls_are_given_up_and_every_call_still_counts_once() {
        let ret = Retention { max_open_calls: 3, ..RET };
        let mut s = State::default();
        // Calls 1..=5 started a second apart, 1 the oldest; all still talking.
        let talking: Vec<_> = (1..=5).map(|i| rec(i, CallState::Talking, T0 - 6_000 + i as i64 * 1_000)).collect();
        let sum = poll_with(&mut s, T0, &[(TaskQuery::ITA, talking.clone())], ret);
        assert_eq!((sum.tracked, sum.evicted, sum.abandoned), (5, 2, 0));
        assert_eq!(open_ids(&s), [3, 4, 5]);
        assert_eq!(s.ledger.open_len(), 3);
        assert_eq!(s.ledger.in_progress()[TaskType::ItaBidirectional.index()], [0, 0, 3]);
        // Seen again still open: 1 and 2 come back as new open calls and push out the oldest again.
        let sum = poll_with(&mut s, T0 + 1_000, &[(TaskQuery::ITA, talking)], ret);
        assert_eq!((sum.tracked, sum.evicted), (5, 2));
        assert_eq!(open_ids(&s), [3, 4, 5]);
        // All five end. 3, 4, 5 are counted as the open calls they were; 1 and 2, given up, as calls seen
        // for the first time (their start is above the floor): each exactly once.
        let ended: Vec<_> = (1..=5).map(|i| rec(i, CallState::Ended, T0 - 6_000 + i as i64 * 1_000)).collect();
        let sum = poll_with(&mut s, T0 + 2_000, &[(TaskQuery::ITA, ended.clone())], ret);
        assert_eq!((sum.counted, sum.evicted, sum.before_floor), (5, 0, 0));
        let sum = poll_with(&mut s, T0 + 3_000, &[(TaskQuery::ITA, ended)], ret);
        assert_eq!((sum.counted, sum.already_counted), (0, 5));
        assert_eq!(ita_answered(&s), 5);
        assert_eq!(s.ledger.open_len(), 0);
    }

    #[test]
    fn a_given_up_call_that_ends_after_its_start_fell_below_the_floor_is_never_counted() {
        let ret = Retention { max_open_calls: 1, ..RET };
        let mut s = State::default();
        let old = rec(1, CallState::Talking, T0 - 2_000);
        let sum = poll_with(&mut s, T0, &[(TaskQuery::ITA, vec![old, rec(2, CallState::Talking, T0 - 1_000)])], ret);
        assert_eq!((sum.evicted, open_ids(&s)), (1, vec![2]));
        // Ten minutes on, call 1's start lies below the floor: when it shows up ended it is not counted
        // (it may have been counted and forgotten, as far as the ledger knows); call 2 is.
        let later = T0 + 600_000;
        let recs = vec![rec(1, CallState::Ended, T0 - 2_000), rec(2, CallState::Ended, T0 - 1_000)];
        poll_with(&mut s, later - 30_000, &[(TaskQuery::ITA, vec![rec(3, CallState::Ended, later - 1_000)])], ret);
        assert!(s.ledger.floor_ms() > T0 - 2_000);
        let p = plan(&CFG, later, s.ledger.cursor_ms(), &[TaskQuery::ITA], s.ledger.open_spans(), |_| None);
        let targeted = p.reads.iter().find(|r| r.targeted).expect("call 2 is followed");
        let sum = s.apply(&p, [(targeted, recs.as_slice())], later, ret);
        s.committed();
        assert_eq!((sum.counted, sum.before_floor), (1, 1));
        assert_eq!(ita_answered(&s), 2, "calls 2 and 3");
    }

    #[test]
    fn a_page_of_invented_open_calls_is_capped_within_the_poll() {
        let ret = Retention { max_open_calls: 1_000, ..RET };
        let mut s = State::default();
        let queries = [TaskQuery::ITA];
        let p = plan(&CFG, T0, None, &queries, std::iter::empty(), |_| None);
        let mut sum = PollSummary::default();
        for page in 0..3u64 {
            let flood: Vec<_> = (0..1_500).map(|i| rec(page * 10_000 + i, CallState::Calling, T0 - 1_000)).collect();
            s.admit_page(&p.reads[0], &flood, ret, &mut sum, |_| {});
            assert!(s.ledger.open_len() <= 2_000, "page {page}: {} open", s.ledger.open_len());
        }
        // 1 500, then 3 000 → capped to 1 000, then 2 500 → capped to 1 000.
        assert_eq!((sum.tracked, sum.first_seen_open, sum.evicted, s.ledger.open_len()), (4_500, 4_500, 3_500, 1_000));
        s.finish(&p, T0, ret, &mut sum);
        assert_eq!((sum.evicted, s.ledger.open_len()), (3_500, 1_000));
    }

    #[test]
    fn capping_keeps_the_newest_by_latest_possible_start_and_restores_above_the_cap() {
        let open = |lo: i64, hi: i64| OpenCall {
            lo_ms: lo,
            hi_ms: hi,
            state: CallState::Calling,
            task_type: TaskType::ItaBidirectional,
            query: TaskQuery::ITA,
        };
        // A store saved with a higher cap: ten open calls, one of them without a start time whose span
        // reaches the newest start; two share a start (ties go by serial number).
        let mut calls: Vec<(CallId, OpenCall)> =
            (1..=8).map(|i| (CallId(i), open(T0 + i as i64, T0 + i as i64))).collect();
        calls.push((CallId(9), open(T0 - 3_600_000, T0 + 100)));
        calls.push((CallId(10), open(T0 + 8, T0 + 8)));
        let mut l = Ledger::restore(std::iter::empty(), calls, Scalars::default());
        assert_eq!(l.cap_open(10), 0, "at the cap nothing is given up");
        assert_eq!(l.cap_open(4), 6);
        let mut kept: Vec<u64> = l.open_calls().map(|(id, _)| id.0).collect();
        kept.sort_unstable();
        assert_eq!(kept, [7, 8, 9, 10]);
        assert_eq!(l.cap_open(1), 3);
        assert_eq!(l.open_calls().map(|(id, _)| id.0).collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn a_flood_of_open_calls_stays_at_the_cap_poll_after_poll_and_frees_its_memory() {
        let ret = Retention { max_open_calls: 1_000, ..RET };
        let mut s = State::default();
        for poll_no in 0..5u64 {
            let now = T0 + poll_no as i64 * 2_000;
            let flood: Vec<_> =
                (0..5_000).map(|i| rec(poll_no * 10_000 + i, CallState::Calling, now - 1_000)).collect();
            let sum = poll_with(&mut s, now, &[(TaskQuery::ITA, flood)], ret);
            assert_eq!((sum.tracked, sum.evicted), (5_000, if poll_no == 0 { 4_000 } else { 5_000 }));
            assert_eq!(s.ledger.open_len(), 1_000);
            assert!(s.ledger.open.capacity() <= 2 * 1_024 + 1_024, "capacity {}", s.ledger.open.capacity());
        }
        // The newest poll's calls are the ones kept.
        assert!(s.ledger.open_calls().all(|(id, _)| id.0 >= 40_000));
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
        let sum = poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(1, CallState::Calling, T0 - 5_000)])]);
        assert_eq!((sum.tracked, sum.counted), (1, 0));
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
        let neighbour = rec(8, CallState::Ended, start + 500);
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(9, CallState::Talking, start), neighbour.clone()])]);
        // Hours of polls later, with new calls since, the main window no longer reaches its start.
        let later = T0 + 3 * 3_600_000;
        poll(&mut s, later - 30_000, &[(TaskQuery::ITA, vec![rec(10, CallState::Ended, later - 40_000)])]);
        let p = plan(
            &CFG,
            later,
            s.ledger.cursor_ms(),
            &[TaskQuery::ALL_BUT_ITA, TaskQuery::ITA],
            s.ledger.open_spans(),
            |_| None,
        );
        let targeted: Vec<&Read> = p.reads.iter().filter(|r| r.targeted).collect();
        assert_eq!(targeted.len(), 1);
        assert_eq!(targeted[0].query, TaskQuery::ITA);
        assert_eq!(targeted[0].window, Window { start_ms: start - 1_000, end_ms: start + 1_000 });
        // The targeted read returns the ended call and its neighbour, counted hours ago and forgotten.
        let recs = vec![rec(9, CallState::Ended, start), neighbour];
        let sum = s.apply(&p, [(targeted[0], recs.as_slice())], later, RET);
        s.committed();
        assert_eq!(sum.late, 0, "an open call seen again is not late");
        assert_eq!((sum.counted, sum.before_floor), (1, 1));
        assert_eq!(ita_answered(&s), 3);
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
        poll(&mut s, T0 + 60_000, &[(TaskQuery::ITA, vec![rec(2, CallState::Ended, T0 + 50_000)])]);
        assert_eq!(s.ledger.counted_len(), 2, "both inside the next poll's lookback");
        poll(&mut s, T0 + 150_000, &[(TaskQuery::ITA, vec![rec(3, CallState::Ended, T0 + 140_000)])]);
        assert_eq!(s.ledger.floor_ms(), T0 + 20_000);
        assert_eq!(s.ledger.counted_len(), 2, "call 1 started before the floor");
        // Returned again anyway (CEC selecting differently than documented): not counted twice.
        let sum = poll(&mut s, T0 + 180_000, &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000)])]);
        assert_eq!(sum.before_floor, 1);
        assert_eq!(s.aggregates.total_calls(), 3);
    }

    #[test]
    fn the_floor_waits_for_new_calls_so_a_quiet_tenant_forgets_nothing_it_may_see_again() {
        let mut s = State::default();
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000)])]);
        poll(&mut s, T0 + 3_600_000, &[]);
        assert_eq!(s.ledger.floor_ms(), T0 - 121_000);
        assert_eq!(s.ledger.counted_len(), 1);
    }

    #[test]
    fn a_clock_jumping_forward_and_back_loses_nothing_and_counts_nothing_twice() {
        let mut s = State::default();
        let a = rec(1, CallState::Ended, T0 - 1_000);
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![a.clone()])]);
        // The host clock jumps an hour ahead for one poll; CEC's answers are those of real time.
        let sum = poll(&mut s, T0 + 3_600_000, &[(TaskQuery::ITA, vec![a.clone()])]);
        assert_eq!(sum.already_counted, 1);
        // Corrected: the next poll reads from the corrected clock, and still remembers call A.
        let b = rec(2, CallState::Ended, T0 + 20_000);
        let sum = poll(&mut s, T0 + 30_000, &[(TaskQuery::ITA, vec![a, b])]);
        assert_eq!((sum.counted, sum.already_counted), (1, 1));
        assert_eq!(s.aggregates.total_calls(), 2);
    }

    #[test]
    fn a_clock_stepping_back_rereads_old_calls_without_counting_them_again() {
        let mut s = State::default();
        let a = rec(1, CallState::Ended, T0 - 200_000);
        poll(&mut s, T0 - 190_000, &[(TaskQuery::ITA, vec![a.clone()])]);
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(2, CallState::Ended, T0 - 1_000)])]);
        assert!(s.ledger.floor_ms() > T0 - 200_000, "call 1 is forgotten");
        // The clock steps back: the window covers call 1's start again.
        let sum = poll(&mut s, T0 - 180_000, &[(TaskQuery::ITA, vec![a])]);
        assert_eq!(sum.before_floor, 1);
        assert_eq!(s.aggregates.total_calls(), 2);
    }

    #[test]
    fn an_open_call_without_start_time_is_followed_over_its_span_until_it_ends() {
        let mut s = State::default();
        poll(&mut s, T0, &[(TaskQuery::ALL_BUT_ITA, vec![startless(6, CallState::Talking)])]);
        let span: Vec<_> = s.ledger.open_spans().collect();
        assert_eq!(span, vec![(TaskQuery::ALL_BUT_ITA, T0 - 3_600_000, T0)]);
        // Returned again by the next main window: its start lies in the overlap of both windows.
        poll(&mut s, T0 + 30_000, &[(TaskQuery::ALL_BUT_ITA, vec![startless(6, CallState::Talking)])]);
        let span: Vec<_> = s.ledger.open_spans().collect();
        assert_eq!(span, vec![(TaskQuery::ALL_BUT_ITA, T0 - 120_000, T0)]);
        // An hour later only a targeted read over that span can return it.
        let later = T0 + 3_600_000;
        poll(&mut s, later - 30_000, &[]);
        let p = plan(&CFG, later, s.ledger.cursor_ms(), &[TaskQuery::ALL_BUT_ITA], s.ledger.open_spans(), |_| None);
        let t = p.reads.iter().find(|r| r.targeted).expect("a targeted read");
        assert_eq!(t.window, Window { start_ms: T0 - 121_000, end_ms: T0 + 1_000 });
        let recs = [startless(6, CallState::Ended), startless(6, CallState::Ended)];
        let sum = s.apply(&p, [(t, &recs[..])], later, RET);
        s.committed();
        assert_eq!((sum.counted, sum.already_counted, sum.abandoned), (1, 1, 0));
        assert_eq!(s.aggregates.total_calls(), 1);
    }

    #[test]
    fn a_new_record_without_start_time_from_a_window_reaching_below_the_floor_is_not_counted() {
        let mut s = State::default();
        poll(&mut s, T0, &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000)])]);
        poll(&mut s, T0 + 600_000, &[(TaskQuery::ITA, vec![rec(2, CallState::Ended, T0 + 590_000)])]);
        let below = Read { query: TaskQuery::ITA, window: Window { start_ms: T0 - 5_000, end_ms: T0 }, targeted: true };
        let mut sum = PollSummary::default();
        assert_eq!(s.admit(&startless(1, CallState::Ended), &below, &mut sum), Admission::BeforeFloor);
        let above = Read {
            query: TaskQuery::ITA,
            window: Window { start_ms: T0 + 500_000, end_ms: T0 + 600_000 },
            targeted: false,
        };
        assert_eq!(s.admit(&startless(7, CallState::Ended), &above, &mut sum), Admission::Counted);
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
        let sum = poll(&mut s, T0 + 24 * 3_600_000 - 2_000, &[]);
        assert_eq!(sum.abandoned, 0);
        let sum = poll(&mut s, T0 + 24 * 3_600_000, &[]);
        assert_eq!(sum.abandoned, 1);
        assert_eq!(s.ledger.open_calls().count(), 0);
    }

    #[test]
    fn a_rolled_back_poll_leaves_no_trace_and_its_calls_count_once_later() {
        let mut s = State::default();
        poll(
            &mut s,
            T0,
            &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000), rec(2, CallState::Talking, T0 - 500)])],
        );
        let before = s.clone();
        let cp = s.checkpoint();
        let p = plan(&CFG, T0 + 30_000, s.ledger.cursor_ms(), &[TaskQuery::ITA], s.ledger.open_spans(), |_| None);
        let recs = vec![
            rec(2, CallState::Ended, T0 - 500),
            rec(3, CallState::Calling, T0 + 10_000),
            rec(4, CallState::Ended, T0 + 20_000),
        ];
        let sum = s.apply(&p, [(&p.reads[0], recs.as_slice())], T0 + 30_000, RET);
        assert_eq!((sum.counted, sum.tracked), (2, 1));
        assert_eq!(s.ledger.fresh().len(), 2);
        s.rollback(cp);
        assert_eq!(s, before, "the failed poll left no trace");
        let sum = poll(&mut s, T0 + 31_000, &[(TaskQuery::ITA, recs)]);
        assert_eq!((sum.counted, sum.tracked), (2, 1));
        assert_eq!(s.aggregates.total_calls(), 3);
    }

    #[test]
    fn a_restored_ledger_is_the_ledger_that_was_saved() {
        let mut s = State::default();
        poll(
            &mut s,
            T0,
            &[(TaskQuery::ITA, vec![rec(1, CallState::Ended, T0 - 1_000), rec(2, CallState::Talking, T0 - 500)])],
        );
        let back =
            Ledger::restore(s.ledger.counted(), s.ledger.open_calls().map(|(id, o)| (*id, *o)), s.ledger.scalars());
        assert_eq!(back, s.ledger);
    }

    #[test]
    fn skipping_ahead_moves_the_cursor_and_reports_the_stretch() {
        let mut s = State::default();
        assert_eq!(s.ledger.skip_to(T0), None, "nothing to skip before the first poll");
        poll(&mut s, T0, &[]);
        assert_eq!(s.ledger.skip_to(T0 + 10), Some((T0, T0 + 10)));
        assert_eq!(s.ledger.cursor_ms(), Some(T0 + 10));
        assert_eq!(s.ledger.skip_to(T0), None, "never backwards");
    }
}
