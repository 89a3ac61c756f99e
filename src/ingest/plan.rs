//! Which windows a poll reads. A pure function of the ledger's cursor and open calls, the clock, and
//! the configuration, so the cost of a poll can be reasoned about and tested without a network. The
//! window itself and CEC's seven-day limit belong to the vendor API ([`crate::cec::window`]).
//!
//! CEC selects records on the call's `startTime`, so:
//! - the *main window* re-reads `lookback` before the last cursor (records show up late, and offset
//!   paging over a live window can skip a record once) up to now;
//! - a call still open when its start has fallen out of the main window is re-read with a *targeted
//!   window*: a few seconds around its start, merged with its neighbours, so one long call costs one
//!   small request per poll instead of re-reading every record since it started.
//!
//! When the main window's answer changed while it was paged, [`settle_step`] decides how its settled
//! part is checked: by one page that tells CEC's `total` there, halving only where calls are missing,
//! instead of paging the whole part again. [`Catchup`] follows a catch-up window by window, for its
//! progress line and the `cec_exporter_catchup_remaining_seconds` gauge.
//!
//! A poll past `--poll.deadline` (or past the new calls one poll takes on) fails whole, and a catch-up
//! window too big to read within it would fail the same way forever. [`WindowBudget`] shrinks the main
//! window after such a failure, and before one: when a main read's first page says CEC holds more
//! records there than one read takes on ([`WindowBudget::too_big`]); it grows back after polls that
//! finished well inside the deadline with room to spare. It only decides where a main window *ends*: the
//! next one still starts a lookback before the last committed end, so no span is skipped, and the
//! ledger's floor keeps re-read calls from being counted twice.

use crate::cec::record::TaskQuery;

use crate::cec::window::{Window, MAX_WINDOW_MS};

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
    /// Records per page (`--cec.page-size`), for costing targeted reads.
    pub page_size: u32,
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
/// `open_spans` lists each open call's query and the span its start lies in (any order); `density` says
/// how many records per millisecond a query's recent main window held, to cost targeted reads (`None`
/// before any was read: then only windows that touch are merged).
pub fn plan(
    cfg: &PlanConfig,
    now_ms: i64,
    cursor_ms: Option<i64>,
    queries: &[TaskQuery],
    open_spans: impl IntoIterator<Item = (TaskQuery, i64, i64)>,
    density: impl Fn(TaskQuery) -> Option<f64>,
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

    // Open calls whose start may lie before the main window: padded windows around their spans. Two
    // neighbours share one window when that costs no more pages than reading them apart (estimated from
    // the query's record density), so many long calls cost about what re-reading their stretch costs,
    // and a few cost one small request each.
    let mut old: Vec<(TaskQuery, i64, i64)> = open_spans.into_iter().filter(|&(_, lo, _)| lo < start).collect();
    old.sort_unstable();
    let page = f64::from(cfg.page_size.max(1));
    let mut i = 0;
    while i < old.len() {
        let (query, first, mut last) = old[i];
        let d = density(query).map(|d| d.max(0.0));
        let pages = |d: f64, lo: i64, hi: i64| ((d * (hi - lo + 2 * cfg.pad_ms) as f64) / page).ceil().max(1.0);
        let mut j = i + 1;
        while j < old.len() && old[j].0 == query {
            let (lo2, hi2) = (old[j].1, old[j].2.max(old[j].1));
            let merged_hi = last.max(hi2);
            let touching = lo2 - cfg.pad_ms <= last + cfg.pad_ms;
            let cheaper = d.is_some_and(|d| pages(d, first, merged_hi) <= pages(d, first, last) + pages(d, lo2, hi2));
            if !(touching || cheaper) || merged_hi + cfg.pad_ms - (first - cfg.pad_ms) > max {
                break;
            }
            last = merged_hi;
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

/// What to do with a part of the settled window after one page of it was read (a *probe*, which tells
/// CEC's `total` for that part), when the main window's answer changed while it was paged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleStep {
    /// Every call CEC counts there has been seen: nothing was skipped in this part.
    Covered,
    /// Calls are missing: probe each half, so only the halves that miss calls are read on.
    Split(Window, Window),
    /// Calls are missing and halving would cost about as much as reading the part again: read every
    /// page of it again (the probe already was all of it when it fits one page).
    Reread,
}

/// Decides how to go on with `part` of the settled window: CEC counts `total` calls there, and `seen`
/// distinct calls are known to lie in it (from the main read and the probe; malformed entries
/// included). Nothing new starts in a settled part, so its `total` holds still, and a missing call lies
/// in one of its halves: finding `m` missing calls by halving costs about `2·m·log2(pages)` one-page
/// probes, against `pages` requests to read the part again, so the cheaper of the two is taken. This
/// is how a backfill whose `total` moved (calls joining the live end of the window) costs one request
/// per query instead of a second read of the whole settled part.
pub fn settle_step(part: Window, total: u64, seen: u64, page_size: u32) -> SettleStep {
    if seen >= total {
        return SettleStep::Covered;
    }
    let page = u64::from(page_size.max(1));
    let pages = total.div_ceil(page);
    let missing = total - seen;
    // ⌈log2(pages)⌉ levels of two probes each, per missing call.
    let depth = u64::from(u64::BITS - (pages.max(1) - 1).leading_zeros());
    let halving = missing.saturating_mul(2).saturating_mul(depth);
    if pages <= 1 || halving >= pages || part.end_ms - part.start_ms < 1 {
        return SettleStep::Reread;
    }
    let mid = part.start_ms + (part.end_ms - part.start_ms) / 2;
    SettleStep::Split(
        Window { start_ms: part.start_ms, end_ms: mid },
        Window { start_ms: mid + 1, end_ms: part.end_ms },
    )
}

/// A catch-up as it goes: from the first committed main window that ended before now (an outage, a
/// long backfill) to the one that reaches now. Fed each committed poll, it says where the catch-up
/// stands, so an operator watching a restart knows how long it will take; a poll in step with the
/// clock outside a catch-up is no progress to report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Catchup {
    /// Windows committed in this catch-up; 0 when none is under way.
    windows: u32,
    /// Records read in it so far (re-reads included: what CEC had to serve).
    records: u64,
    /// Where its first window started, epoch ms.
    from_ms: i64,
    /// When its first poll started.
    started: Option<std::time::Instant>,
}

/// Where a catch-up stands after one more committed window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CatchupProgress {
    /// This window's number in the catch-up, from 1.
    pub window: u32,
    /// The windows it will take in all: those done plus those the rest needs at the current window
    /// length (an estimate: the window shrinks after polls past `--poll.deadline`).
    pub windows: u32,
    /// The main window just committed.
    pub main: Window,
    /// Records read since the catch-up started.
    pub records: u64,
    /// Records read per second of wall time since it started.
    pub records_per_second: f64,
    /// History still to read: from this window's end to now, ms (0 once caught up).
    pub remaining_ms: i64,
    /// Wall time left at the pace so far (history read per second of wall time).
    pub eta: std::time::Duration,
}

impl Catchup {
    /// A poll that started at `started` committed `plan` at `now_ms` (at the instant `at`), having read
    /// `records` records; `cfg` is what it was planned with (its window length after the budget). The
    /// progress when the poll was part of a catch-up, which then ends if the poll reached now.
    pub fn committed(
        &mut self,
        cfg: &PlanConfig,
        now_ms: i64,
        plan: &PollPlan,
        records: u64,
        started: std::time::Instant,
        at: std::time::Instant,
    ) -> Option<CatchupProgress> {
        if self.windows == 0 {
            if !plan.behind {
                return None;
            }
            *self = Catchup { windows: 0, records: 0, from_ms: plan.main.start_ms, started: Some(started) };
        }
        self.windows += 1;
        self.records += records;
        let elapsed = at.saturating_duration_since(self.started.unwrap_or(started));
        let remaining_ms = if plan.behind { now_ms.saturating_sub(plan.main.end_ms).max(0) } else { 0 };
        // Each further window reads its length of history, less the lookback it re-reads.
        let step = cfg.max_window_ms.min(MAX_WINDOW_MS).saturating_sub(cfg.lookback_ms).max(1);
        let left = u32::try_from((remaining_ms as u64).div_ceil(step as u64)).unwrap_or(u32::MAX);
        let covered_ms = plan.main.end_ms.saturating_sub(self.from_ms).max(1);
        let secs = elapsed.as_secs_f64();
        let progress = CatchupProgress {
            window: self.windows,
            windows: self.windows.saturating_add(left),
            main: plan.main,
            records: self.records,
            records_per_second: if secs > 0.0 { self.records as f64 / secs } else { 0.0 },
            remaining_ms,
            eta: elapsed.mul_f64(remaining_ms as f64 / covered_ms as f64),
        };
        if !plan.behind {
            *self = Catchup::default();
        }
        Some(progress)
    }
}

/// The least a main window may be shrunk to beyond the lookback: each poll still advances the cursor
/// by at least one minute of calls.
pub const MIN_ADVANCE_MS: i64 = 60_000;

/// How long the next poll's main window may be, after polls that ran past `--poll.deadline` or took on
/// too many new calls, and after first pages that said a window holds more than a read takes on.
/// Starts (and ends up again) at no limit beyond [`PlanConfig::max_window_ms`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowBudget {
    /// The shrunk limit, ms; `None` is the configured one.
    limit_ms: Option<i64>,
}

impl WindowBudget {
    /// The configuration to plan the next poll with: `cfg` with its longest window shrunk to the budget.
    pub fn apply(&self, cfg: &PlanConfig) -> PlanConfig {
        let max_window_ms = self.limit_ms.map_or(cfg.max_window_ms, |l| l.min(cfg.max_window_ms));
        PlanConfig { max_window_ms, ..*cfg }
    }

    /// The shrunk limit, ms, if any.
    pub fn limit_ms(&self) -> Option<i64> {
        self.limit_ms
    }

    /// The smallest limit: the lookback (which every window re-reads) plus [`MIN_ADVANCE_MS`].
    pub fn floor_ms(cfg: &PlanConfig) -> i64 {
        cfg.lookback_ms.saturating_add(MIN_ADVANCE_MS)
    }

    /// A poll reading the main window `main` ran past the deadline: the next main window is at most
    /// half as long (never below [`WindowBudget::floor_ms`]). Halving the window that failed, not the
    /// previous limit, makes the first shrink of a seven-day catch-up count.
    pub fn overran(&mut self, cfg: &PlanConfig, main: Window) {
        let len = main.end_ms.saturating_sub(main.start_ms);
        let limit = (len / 2).max(Self::floor_ms(cfg));
        self.limit_ms = (limit < cfg.max_window_ms).then_some(limit);
    }

    /// The first page of a read of `main` said CEC holds `total` records there, more than one read
    /// takes on (`capacity`: `--cec.max-pages-per-window` pages of `--cec.page-size`): the window is
    /// shrunk in proportion, to hold about [`FILL`] of a read, never below [`WindowBudget::floor_ms`].
    /// Returns whether it shrank (at the floor it cannot, and the read pages up to the page limit).
    pub fn too_big(&mut self, cfg: &PlanConfig, main: Window, total: u64, capacity: u64) -> bool {
        let len = main.end_ms.saturating_sub(main.start_ms);
        let fits = (len as f64 * FILL * capacity as f64 / total.max(1) as f64) as i64;
        let limit = fits.min(len - 1).max(Self::floor_ms(cfg));
        if limit >= len {
            return false;
        }
        self.limit_ms = (limit < cfg.max_window_ms).then_some(limit);
        true
    }

    /// A poll committed after its reads took `elapsed` of `deadline`, its fullest main read holding
    /// `fill` of what one read takes on. When the reads took at most half the deadline and a window
    /// twice as long would still hold at most [`FILL`] of a read, the limit doubles, and goes once it
    /// reaches the configured one. A slower or fuller success keeps the limit, so a gateway that can
    /// serve only so much per deadline (or a tenant that busy) is not pushed into failing, or into
    /// refusing a first page, every other poll.
    pub fn succeeded(
        &mut self,
        cfg: &PlanConfig,
        elapsed: std::time::Duration,
        deadline: std::time::Duration,
        fill: f64,
    ) {
        let Some(limit) = self.limit_ms else { return };
        if elapsed.saturating_mul(2) > deadline || 2.0 * fill > FILL {
            return;
        }
        let grown = limit.saturating_mul(2);
        self.limit_ms = (grown < cfg.max_window_ms).then_some(grown);
    }
}

/// How full of records a main window is planned to be, as a share of what one read takes on
/// (`--cec.max-pages-per-window` × `--cec.page-size`), once CEC said a window holds more: room for the
/// calls that join a live window while it is paged.
pub const FILL: f64 = 0.8;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const Q: [TaskQuery; 2] = [TaskQuery::ALL_BUT_ITA, TaskQuery::ITA];

    fn cfg() -> PlanConfig {
        PlanConfig {
            backfill_ms: 3_600_000,
            lookback_ms: 120_000,
            pad_ms: 1_000,
            max_window_ms: MAX_WINDOW_MS,
            page_size: 100,
        }
    }

    #[test]
    fn first_start_reads_the_backfill_for_each_query() {
        let p = plan(&cfg(), NOW, None, &Q, [], |_| None);
        assert_eq!(p.main, Window { start_ms: NOW - 3_600_000, end_ms: NOW });
        assert_eq!(p.reads.len(), 2);
        assert_eq!(p.reads[0].query, TaskQuery::ALL_BUT_ITA);
        assert_eq!(p.reads[1].query, TaskQuery::ITA);
        assert!(!p.behind);
    }

    #[test]
    fn steady_state_rereads_the_lookback_before_the_cursor() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [], |_| None);
        assert_eq!(p.main, Window { start_ms: NOW - 150_000, end_ms: NOW });
        assert_eq!(p.reads.len(), 2, "no open calls, no targeted reads");
    }

    #[test]
    fn open_calls_inside_the_main_window_cost_nothing_extra() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ITA, NOW - 100_000, NOW - 100_000)], |_| None);
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
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, open, |_| None);
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
        let p =
            plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ITA, main_start - 200, main_start - 200)], |_| None);
        let t = p.reads.iter().find(|r| r.targeted).unwrap();
        assert_eq!(t.window, Window { start_ms: main_start - 1_200, end_ms: main_start - 1 });
    }

    #[test]
    fn long_outage_catches_up_in_windows_of_at_most_seven_days() {
        let cursor = NOW - 10 * 24 * 3_600_000;
        let p = plan(&cfg(), NOW, Some(cursor), &Q, [], |_| None);
        assert_eq!(p.main.end_ms - p.main.start_ms, MAX_WINDOW_MS);
        assert!(p.behind);
        // The next step starts a lookback before where this one ended.
        let p2 = plan(&cfg(), NOW, Some(p.main.end_ms), &Q, [], |_| None);
        assert_eq!(p2.main.start_ms, p.main.end_ms - 120_000);
        assert_eq!(p2.main.end_ms, NOW);
        assert!(!p2.behind);
    }

    #[test]
    fn a_cursor_ahead_of_the_clock_rereads_from_the_clock() {
        // The clock stepped back an hour after a poll: read the lookback before now, not nothing.
        let p = plan(&cfg(), NOW, Some(NOW + 3_600_000), &Q, [], |_| None);
        assert_eq!(p.main, Window { start_ms: NOW - 120_000, end_ms: NOW });
    }

    #[test]
    fn the_settled_part_is_what_the_next_poll_will_not_reread() {
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [], |_| None);
        assert_eq!(p.settled, Some(Window { start_ms: NOW - 150_000, end_ms: NOW - 120_001 }));
        let next = plan(&cfg(), NOW + 30_000, Some(p.main.end_ms), &Q, [], |_| None);
        assert_eq!(next.main.start_ms, p.settled.unwrap().end_ms + 1, "settled part and next window touch");
        // A window no longer than the lookback is read again in full by the next poll.
        let short = PlanConfig { backfill_ms: 60_000, ..cfg() };
        assert_eq!(plan(&short, NOW, None, &Q, [], |_| None).settled, None);
    }

    #[test]
    fn an_open_call_without_start_time_is_reread_over_the_span_it_may_have_started_in() {
        let p =
            plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ALL_BUT_ITA, NOW - 600_000, NOW - 270_000)], |_| {
                None
            });
        let t: Vec<Window> = p.reads.iter().filter(|r| r.targeted).map(|r| r.window).collect();
        assert_eq!(t, vec![Window { start_ms: NOW - 601_000, end_ms: NOW - 269_000 }]);
        // A span reaching into the main window is read up to the main window only.
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, [(TaskQuery::ITA, NOW - 200_000, NOW - 100_000)], |_| None);
        let t: Vec<Window> = p.reads.iter().filter(|r| r.targeted).map(|r| r.window).collect();
        assert_eq!(t, vec![Window { start_ms: NOW - 201_000, end_ms: NOW - 150_001 }]);
    }

    #[test]
    fn many_old_open_calls_share_windows_when_that_costs_fewer_pages() {
        // 300 open ITA calls, one every 3 s from 20 min ago to 5 min ago, on a tenant with 2 ITA
        // records a second: one window per call would cost 300 requests; the stretch holds about
        // 1 800 records, 18 pages.
        let open: Vec<(TaskQuery, i64, i64)> =
            (0..300).map(|i| (TaskQuery::ITA, NOW - 1_200_000 + i * 3_000, NOW - 1_200_000 + i * 3_000)).collect();
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, open.clone(), |_| Some(0.002));
        let t: Vec<Window> = p.reads.iter().filter(|r| r.targeted).map(|r| r.window).collect();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0], Window { start_ms: NOW - 1_201_000, end_ms: NOW - 302_000 });
        // Before any density is known, windows are merged only where their padded ends touch, so each
        // call costs one small request.
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, open.clone(), |_| None);
        assert_eq!(p.reads.iter().filter(|r| r.targeted).count(), 300);
        // Ten times busier, 3 s between calls still holds under a page: one window, ~180 pages.
        let busy = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, open, |_| Some(0.02));
        assert_eq!(busy.reads.iter().filter(|r| r.targeted).count(), 1);
    }

    #[test]
    fn merging_stops_where_it_would_cost_an_extra_page() {
        // Density 0.001/ms: 100 records per 100 s. Two calls 60 s apart fit one page together;
        // a third 200 s further would add two pages to the window but costs one alone.
        let open = [
            (TaskQuery::ITA, NOW - 1_000_000, NOW - 1_000_000),
            (TaskQuery::ITA, NOW - 940_000, NOW - 940_000),
            (TaskQuery::ITA, NOW - 740_000, NOW - 740_000),
        ];
        let p = plan(&cfg(), NOW, Some(NOW - 30_000), &Q, open, |_| Some(0.001));
        let t: Vec<Window> = p.reads.iter().filter(|r| r.targeted).map(|r| r.window).collect();
        assert_eq!(
            t,
            vec![
                Window { start_ms: NOW - 1_001_000, end_ms: NOW - 939_000 },
                Window { start_ms: NOW - 741_000, end_ms: NOW - 739_000 },
            ]
        );
    }

    #[test]
    fn a_settled_part_is_checked_by_halves_only_where_calls_are_missing() {
        let w = Window { start_ms: 0, end_ms: 3_299_999 };
        // 33 000 calls, 330 pages: all seen, nothing to read.
        assert_eq!(settle_step(w, 33_000, 33_000, 100), SettleStep::Covered);
        assert_eq!(settle_step(w, 33_000, 33_001, 100), SettleStep::Covered, "more seen (a call gone) is covered");
        // One missing: halve (about 2 × 9 probes instead of 330 pages).
        assert_eq!(
            settle_step(w, 33_000, 32_999, 100),
            SettleStep::Split(
                Window { start_ms: 0, end_ms: 1_649_999 },
                Window { start_ms: 1_650_000, end_ms: 3_299_999 }
            )
        );
        // 18 missing: 18 × 2 × 9 = 324 < 330 still halves; 19 would cost more than reading it again.
        assert!(matches!(settle_step(w, 33_000, 33_000 - 18, 100), SettleStep::Split(..)));
        assert_eq!(settle_step(w, 33_000, 33_000 - 19, 100), SettleStep::Reread);
        // A part that fits one page was read whole by its probe and is still short: read again.
        assert_eq!(settle_step(w, 100, 99, 100), SettleStep::Reread);
        // Two pages: one probe each half (2) is no cheaper than two pages.
        assert_eq!(settle_step(w, 200, 199, 100), SettleStep::Reread);
        // A single millisecond cannot be halved.
        assert_eq!(settle_step(Window { start_ms: 5, end_ms: 5 }, 1_000, 999, 100), SettleStep::Reread);
        // Halves tile the part: adjacent, no overlap.
        let SettleStep::Split(a, b) = settle_step(Window { start_ms: 10, end_ms: 13 }, 5_000, 4_999, 100) else {
            panic!("split expected")
        };
        assert_eq!((a, b), (Window { start_ms: 10, end_ms: 11 }, Window { start_ms: 12, end_ms: 13 }));
    }

    #[test]
    fn a_catch_up_reports_each_window_with_its_pace_and_what_is_left() {
        use std::time::{Duration, Instant};
        let cfg = cfg();
        let t0 = Instant::now();
        let mut c = Catchup::default();
        // In step with the clock: no catch-up, nothing to report.
        let steady = plan(&cfg, NOW, Some(NOW - 30_000), &Q, [], |_| None);
        assert_eq!(c.committed(&cfg, NOW, &steady, 500, t0, t0 + Duration::from_secs(1)), None);
        // Ten days behind: a first window of 7 days (less the minute CEC's limit keeps), then the rest.
        let cursor = NOW - 10 * DAY;
        let p1 = plan(&cfg, NOW, Some(cursor), &Q, [], |_| None);
        let first = c.committed(&cfg, NOW, &p1, 600_000, t0, t0 + Duration::from_secs(60)).unwrap();
        let remaining_ms = NOW - p1.main.end_ms;
        assert_eq!(
            first,
            CatchupProgress {
                window: 1,
                windows: 2,
                main: p1.main,
                records: 600_000,
                records_per_second: 10_000.0,
                remaining_ms,
                // 60 s for 7 days of history: the 3 days left at that pace.
                eta: Duration::from_secs(60).mul_f64(remaining_ms as f64 / MAX_WINDOW_MS as f64),
            }
        );
        assert_eq!(first.eta.as_secs(), 25);
        let p2 = plan(&cfg, NOW, Some(p1.main.end_ms), &Q, [], |_| None);
        assert!(!p2.behind);
        let t1 = t0 + Duration::from_secs(60);
        let last = c.committed(&cfg, NOW, &p2, 300_000, t1, t1 + Duration::from_secs(30)).unwrap();
        assert_eq!((last.window, last.windows, last.records), (2, 2, 900_000));
        assert_eq!((last.remaining_ms, last.eta, last.records_per_second), (0, Duration::ZERO, 10_000.0));
        // Caught up: the next poll in step with the clock is quiet again, and a new outage starts afresh.
        assert_eq!(c.committed(&cfg, NOW, &steady, 10, t0, t0), None);
        let again = c.committed(&cfg, NOW, &p1, 5, t0, t0).unwrap();
        assert_eq!((again.window, again.records, again.records_per_second), (1, 5, 0.0));
    }

    #[test]
    fn a_shrunk_window_makes_the_catch_up_take_more_windows() {
        use std::time::Instant;
        let mut b = WindowBudget::default();
        let cfg = cfg();
        b.overran(&cfg, Window { start_ms: 0, end_ms: DAY });
        // Half a day per window, less the 2 min lookback each re-reads: 3 days behind is 7 windows.
        let applied = b.apply(&cfg);
        let p = plan(&applied, NOW, Some(NOW - 3 * DAY), &Q, [], |_| None);
        let t = Instant::now();
        let first = Catchup::default().committed(&applied, NOW, &p, 0, t, t).unwrap();
        assert_eq!(first.remaining_ms, 3 * DAY + 120_000 - DAY / 2);
        assert_eq!((first.window, first.windows), (1, 7));
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_deadline_failure_halves_the_next_main_window_down_to_the_floor() {
        let cfg = cfg();
        let mut b = WindowBudget::default();
        let cursor = NOW - 10 * DAY;
        let p = plan(&b.apply(&cfg), NOW, Some(cursor), &Q, [], |_| None);
        assert_eq!(p.main.end_ms - p.main.start_ms, MAX_WINDOW_MS);
        b.overran(&cfg, p.main);
        assert_eq!(b.limit_ms(), Some(MAX_WINDOW_MS / 2));
        let p = plan(&b.apply(&cfg), NOW, Some(cursor), &Q, [], |_| None);
        assert_eq!(p.main, Window { start_ms: cursor - 120_000, end_ms: cursor - 120_000 + MAX_WINDOW_MS / 2 });
        assert!(p.behind);
        // Failing again and again: halves each time, then stays at lookback + one minute.
        let mut lens = Vec::new();
        for _ in 0..16 {
            let p = plan(&b.apply(&cfg), NOW, Some(cursor), &Q, [], |_| None);
            b.overran(&cfg, p.main);
            lens.push(b.limit_ms().unwrap());
        }
        assert_eq!(&lens[..3], [MAX_WINDOW_MS / 4, MAX_WINDOW_MS / 8, MAX_WINDOW_MS / 16]);
        assert_eq!(*lens.last().unwrap(), 180_000, "lookback (2 min) plus one minute");
        assert_eq!(lens.iter().filter(|&&l| l == 180_000).count(), 6, "{lens:?}");
        let p = plan(&b.apply(&cfg), NOW, Some(cursor), &Q, [], |_| None);
        assert_eq!(p.main, Window { start_ms: cursor - 120_000, end_ms: cursor + 60_000 }, "still advances 1 min");
    }

    #[test]
    fn a_short_window_that_fails_the_deadline_is_not_shrunk_below_the_floor() {
        // A steady-state window (lookback + 30 s) is already under the floor: nothing to shrink.
        let cfg = cfg();
        let mut b = WindowBudget::default();
        let p = plan(&b.apply(&cfg), NOW, Some(NOW - 30_000), &Q, [], |_| None);
        b.overran(&cfg, p.main);
        assert_eq!(b.limit_ms(), Some(180_000));
        assert_eq!(plan(&b.apply(&cfg), NOW, Some(NOW - 30_000), &Q, [], |_| None).main, p.main);
    }

    #[test]
    fn the_budget_grows_back_only_after_polls_well_inside_the_deadline() {
        use std::time::Duration;
        let cfg = cfg();
        let deadline = Duration::from_secs(300);
        let mut b = WindowBudget::default();
        b.succeeded(&cfg, Duration::ZERO, deadline, 0.0);
        assert_eq!(b, WindowBudget::default(), "no limit, nothing to grow");
        b.overran(&cfg, Window { start_ms: 0, end_ms: MAX_WINDOW_MS / 4 });
        assert_eq!(b.limit_ms(), Some(MAX_WINDOW_MS / 8));
        b.succeeded(&cfg, Duration::from_secs(151), deadline, 0.0);
        assert_eq!(b.limit_ms(), Some(MAX_WINDOW_MS / 8), "over half the deadline: kept");
        b.succeeded(&cfg, Duration::from_secs(1), deadline, 0.41);
        assert_eq!(b.limit_ms(), Some(MAX_WINDOW_MS / 8), "twice the window would be over 80 % full: kept");
        b.succeeded(&cfg, Duration::from_secs(150), deadline, 0.4);
        assert_eq!(b.limit_ms(), Some(MAX_WINDOW_MS / 4));
        b.succeeded(&cfg, Duration::from_secs(1), deadline, 0.0);
        assert_eq!(b.limit_ms(), Some(MAX_WINDOW_MS / 2));
        b.succeeded(&cfg, Duration::from_secs(1), deadline, 0.0);
        assert_eq!(b.limit_ms(), None, "back to the configured limit");
        // A configured limit below the floor is never exceeded.
        let tiny = PlanConfig { max_window_ms: 100_000, ..cfg };
        b.overran(&tiny, Window { start_ms: 0, end_ms: 100_000 });
        assert_eq!((b.limit_ms(), b.apply(&tiny).max_window_ms), (None, 100_000));
    }

    #[test]
    fn a_window_holding_more_than_a_read_takes_on_shrinks_in_proportion_down_to_the_floor() {
        let cfg = cfg();
        let mut b = WindowBudget::default();
        let day = Window { start_ms: 0, end_ms: DAY };
        // 250 000 records where a read takes 100 000: 0.8 × 100 000 / 250 000 of the day.
        assert!(b.too_big(&cfg, day, 250_000, 100_000));
        assert_eq!(b.limit_ms(), Some(DAY * 8 / 25));
        assert_eq!(
            plan(&b.apply(&cfg), NOW, Some(NOW - DAY), &Q, [], |_| None).main.end_ms,
            NOW - DAY - 120_000 + DAY * 8 / 25
        );
        // Barely over: still strictly shorter.
        assert!(b.too_big(&cfg, day, 100_001, 100_000));
        assert_eq!(b.limit_ms(), Some(69_119_308));
        // A lying total of 10^12: down to the floor (lookback + 1 min), and there no further.
        assert!(b.too_big(&cfg, day, 1_000_000_000_000, 100_000));
        assert_eq!(b.limit_ms(), Some(180_000));
        let floor = Window { start_ms: 0, end_ms: 180_000 };
        assert!(!b.too_big(&cfg, floor, 1_000_000_000_000, 100_000));
        assert_eq!(b.limit_ms(), Some(180_000));
    }

    #[test]
    fn shrunk_windows_tile_the_catch_up_without_a_gap() {
        // Whatever the budget does between polls, each main window starts a lookback before the end of
        // the last committed one: the union of the windows is every millisecond from the cursor to now.
        use std::time::Duration;
        let cfg = cfg();
        let mut b = WindowBudget::default();
        let mut cursor = NOW - 3 * DAY;
        let mut fail = [true, true, false, true, false, false, false, false].into_iter().cycle();
        let mut polls = 0;
        loop {
            polls += 1;
            let p = plan(&b.apply(&cfg), NOW, Some(cursor), &Q, [], |_| None);
            assert_eq!(p.main.start_ms, cursor - 120_000, "poll {polls}");
            assert!(p.main.end_ms > cursor, "poll {polls} advances");
            if fail.next().unwrap() && p.behind {
                b.overran(&cfg, p.main);
                continue;
            }
            b.succeeded(&cfg, Duration::ZERO, Duration::from_secs(1), 0.0);
            cursor = p.main.end_ms;
            if !p.behind {
                break;
            }
        }
        assert_eq!(cursor, NOW);
        assert!(polls < 40, "{polls} polls");
    }
}
