//! Which windows a poll reads. A pure function of the ledger's cursor and open calls, the clock, and
//! the configuration, so the cost of a poll can be reasoned about and tested without a network.
//!
//! CEC selects records on the call's `startTime`, so:
//! - the *main window* re-reads `lookback` before the last cursor (records show up late, and offset
//!   paging over a live window can skip a record once) up to now;
//! - a call still open when its start has fallen out of the main window is re-read with a *targeted
//!   window*: a few seconds around its start, merged with its neighbours, so one long call costs one
//!   small request per poll instead of re-reading every record since it started.

use crate::cec::record::TaskQuery;

/// The longest window of one query: CEC refuses windows longer than seven days. A minute is kept in hand
/// in case "cannot exceed seven days" is enforced as "shorter than".
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000 - 60_000;

/// A `[start, end]` window of call start times, epoch ms. CEC's inclusivity is undocumented, so windows
/// are read as if both ends were inclusive and overlaps are absorbed by the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How far windows reach; from the validated configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanConfig {
    /// First start without a cursor: read this far back, ms.
    pub backfill_ms: i64,
    /// Each poll re-reads this far before the previous window's end, ms.
    pub lookback_ms: i64,
    /// Targeted windows reach this far on each side of an open call's start, ms.
    pub pad_ms: i64,
    /// Longest window of one poll (catch-up proceeds in steps of this), at most [`MAX_WINDOW_MS`].
    pub max_window_ms: i64,
}

/// One query to run: a task-type filter over a window, every page of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub query: TaskQuery,
    pub window: Window,
    /// Re-reading open calls whose start is before the main window.
    pub targeted: bool,
}

/// What one poll reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollPlan {
    /// The main window, read once per configured task-type query.
    pub main: Window,
    /// Every read, main windows first.
    pub reads: Vec<Read>,
    /// True when `main` ends before now (catching up): the poller goes on without waiting.
    pub behind: bool,
    /// The part of the main window the next poll will not read again (calls that started before
    /// `main.end - lookback`), when there is one. If CEC's answer changed while the main window was paged
    /// (its `total` moved), a record of this part may have been skipped, so the poller reads it again:
    /// nothing new starts there, so that second read is stable.
    pub settled: Option<Window>,
}

/// Plans a poll. `cursor_ms` is the end of the last committed main window (`None` on a first start);
/// `open_spans` lists each open call's query and the span its start lies in (any order).
pub fn plan(
    cfg: &PlanConfig,
    now_ms: i64,
    cursor_ms: Option<i64>,
    queries: &[TaskQuery],
    open_spans: impl IntoIterator<Item = (TaskQuery, i64, i64)>,
) -> PollPlan {
    // A cursor ahead of the clock (the clock stepped back) re-reads from the clock, not from the cursor.
    let start = match cursor_ms {
        Some(c) => c.min(now_ms).saturating_sub(cfg.lookback_ms),
        None => now_ms.saturating_sub(cfg.backfill_ms),
    };
    let max = cfg.max_window_ms.min(MAX_WINDOW_MS);
    let end = now_ms.min(start.saturating_add(max)).max(start);
    let main = Window { start_ms: start, end_ms: end };
    let mut reads: Vec<Read> = queries.iter().map(|&query| Read { query, window: main, targeted: false }).collect();

    // Open calls whose start may lie before the main window: padded windows around their spans, merged
    // with neighbours of the same query while the result stays within the limit.
    let mut old: Vec<(TaskQuery, i64, i64)> = open_spans.into_iter().filter(|&(_, lo, _)| lo < start).collect();
    old.sort_unstable();
    let mut i = 0;
    while i < old.len() {
        let (query, first, mut last) = old[i];
        let mut j = i + 1;
        while j < old.len()
            && old[j].0 == query
            && old[j].1 - cfg.pad_ms <= last + cfg.pad_ms
            && old[j].2.max(last) + cfg.pad_ms - (first - cfg.pad_ms) <= max
        {
            last = last.max(old[j].2);
            j += 1;
        }
        // Never reach into the main window: that part is read anyway.
        let w_end = (last + cfg.pad_ms).min(start - 1);
        reads.push(Read { query, window: Window { start_ms: first - cfg.pad_ms, end_ms: w_end }, targeted: true });
        i = j;
    }
    let settled_end = end.saturating_sub(cfg.lookback_ms) - 1;
    let settled = (settled_end >= start).then_some(Window { start_ms: start, end_ms: settled_end });
    PollPlan { main, reads, behind: end < now_ms, settled }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const Q: [TaskQuery; 2] = [TaskQuery::ALL_BUT_ITA, TaskQuery::ITA];

    fn cfg() -> PlanConfig {
        PlanConfig { backfill_ms: 3_600_000, lookback_ms: 120_000, pad_ms: 1_000, max_window_ms: MAX_WINDOW_MS }
    }

    #[test]
    fn first_start_reads_the_backfill_for_each_query() {
        let p = plan(&cfg(), NOW, None, &Q, []);
        assert_eq!(p.main, Window { start_ms: NOW - 3_600_000, end_ms: NOW });
        assert_eq!(p.reads.len(), 2);
        assert_eq!(p.reads[0].query, TaskQuery::ALL_BUT_ITA);
        assert_eq!(p.reads[1].query, TaskQuery::ITA);
        assert!(!p.behind);
    }

    #[test]
    fn steady_state_rereads_the_lookback_before_the_cursor() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, []);
        assert_eq!(p.main, Window { start_ms: NOW - 150_000, end_ms: NOW });
        assert_eq!(p.reads.len(), 2, "no open calls, no targeted reads");
    }

    #[test]
    fn open_calls_inside_the_main_window_cost_nothing_extra() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ITA, NOW - 100_000, NOW - 100_000)]);
        assert_eq!(p.reads.len(), 2);
    }

    #[test]
    fn old_open_calls_get_small_merged_windows() {
        let open = [
            (TaskQuery::ITA, NOW - 3_000_000, NOW - 3_000_000),
            (TaskQuery::ALL_BUT_ITA, NOW - 2_000_000, NOW - 2_000_000),
            (TaskQuery::ALL_BUT_ITA, NOW - 1_999_500, NOW - 1_999_500), // merged with the previous one
            (TaskQuery::ALL_BUT_ITA, NOW - 1_000_000, NOW - 1_000_000),
        ];
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, open);
        let targeted: Vec<(TaskQuery, Window)> =
            p.reads.iter().filter(|r| r.targeted).map(|r| (r.query, r.window)).collect();
        assert_eq!(
            targeted,
            vec![
                (TaskQuery::ALL_BUT_ITA, Window { start_ms: NOW - 2_001_000, end_ms: NOW - 1_998_500 }),
                (TaskQuery::ALL_BUT_ITA, Window { start_ms: NOW - 1_001_000, end_ms: NOW - 999_000 }),
                (TaskQuery::ITA, Window { start_ms: NOW - 3_001_000, end_ms: NOW - 2_999_000 }),
            ]
        );
    }

    #[test]
    fn targeted_window_stops_short_of_the_main_window() {
        let main_start = NOW - 150_000;
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ITA, main_start - 200, main_start - 200)]);
        let t = p.reads.iter().find(|r| r.targeted).unwrap();
        assert_eq!(t.window, Window { start_ms: main_start - 1_200, end_ms: main_start - 1 });
    }

    #[test]
    fn long_outage_catches_up_in_windows_of_at_most_seven_days() {
        let cursor = NOW - 10 * 24 * 3_600_000;
        let p = plan(&cfg(), NOW, Some(cursor), &Q, []);
        assert_eq!(p.main.end_ms - p.main.start_ms, MAX_WINDOW_MS);
        assert!(p.behind);
        // The next step starts a lookback before where this one ended.
        let p2 = plan(&cfg(), NOW, Some(p.main.end_ms), &Q, []);
        assert_eq!(p2.main.start_ms, p.main.end_ms - 120_000);
        assert_eq!(p2.main.end_ms, NOW);
        assert!(!p2.behind);
    }

    #[test]
    fn a_cursor_ahead_of_the_clock_rereads_from_the_clock() {
        // The clock stepped back an hour after a poll: read the lookback before now, not nothing.
        let p = plan(&cfg(), NOW, Some(NOW + 3_600_000), &Q, []);
        assert_eq!(p.main, Window { start_ms: NOW - 120_000, end_ms: NOW });
    }

    #[test]
    fn the_settled_part_is_what_the_next_poll_will_not_reread() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, []);
        assert_eq!(p.settled, Some(Window { start_ms: NOW - 150_000, end_ms: NOW - 120_001 }));
        let next = plan(&cfg(), NOW + 30_000, Some(p.main.end_ms), &Q, []);
        assert_eq!(next.main.start_ms, p.settled.unwrap().end_ms + 1, "settled part and next window touch");
        // A window no longer than the lookback is read again in full by the next poll.
        let short = PlanConfig { backfill_ms: 60_000, ..cfg() };
        assert_eq!(plan(&short, NOW, None, &Q, []).settled, None);
    }

    #[test]
    fn an_open_call_without_start_time_is_reread_over_the_span_it_may_have_started_in() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ALL_BUT_ITA, NOW - 600_000, NOW - 270_000)]);
        let t: Vec<Window> = p.reads.iter().filter(|r| r.targeted).map(|r| r.window).collect();
        assert_eq!(t, vec![Window { start_ms: NOW - 601_000, end_ms: NOW - 269_000 }]);
        // A span reaching into the main window is read up to the main window only.
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ITA, NOW - 200_000, NOW - 100_000)]);
        let t: Vec<Window> = p.reads.iter().filter(|r| r.targeted).map(|r| r.window).collect();
        assert_eq!(t, vec![Window { start_ms: NOW - 201_000, end_ms: NOW - 150_001 }]);
    }
}
