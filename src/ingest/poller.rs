//! The background loop: every interval, plan the windows, read every page of every read, admitting each
//! page's records as it arrives (streaming admission: no page is kept, so a poll's memory is the calls
//! the ledger remembers, not the length of its windows), and only when every read succeeded finish the
//! poll, commit it and publish the new state. A failed poll is undone ([`State::rollback`]) and leaves
//! no trace: it is one [`PollFailed`] event (one line, its counters), and is retried after a backoff. A
//! scrape never waits for a poll and never sees a poll half-admitted (it reads what was published). Everything worth a line or a counter is emitted as an event of [`crate::events`];
//! the poller itself neither logs failures nor touches counters.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::ledger::{PollSummary, Retention, State};
use super::plan::{plan, settle_step, Catchup, PlanConfig, PollPlan, Read, SettleStep, WindowBudget};
use crate::cec::client::{CecClient, PageSink, Stop, WindowRead};
use crate::cec::record::{CallId, TaskQuery, TaskType};
use crate::cec::window::Window;
use crate::cec::wire::ParsedRecord;
use crate::cec::ApiError;
use crate::events::{
    CatchingUp, CatchupSkipped, DurationsTooLong, FieldInvalid, IncompleteRead, InternalEvent, LateRecords,
    OpenCallsAbandoned, OpenCallsEvicted, PollCommitted, PollFailed, ReasonCodesFolded, ReasonCodesRefolded,
    RecordLinesSuppressed, RecordsOutOfWindow, StateCommitFailed, StateCommitted, StateReloadFailed, StateReloaded,
    WindowFetched,
};
use crate::metrics::expose::Published;
use crate::metrics::telemetry::Telemetry;
use crate::store::{Store, StoreError};

/// The wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What the poller needs; from the validated configuration.
#[derive(Clone, Debug)]
pub struct PollerConfig {
    pub interval: Duration,
    pub plan: PlanConfig,
    pub retention: Retention,
    /// The `taskType` filters each window is read with.
    pub queries: Vec<TaskQuery>,
    /// After an outage, catch up at most this far back, ms; the older part is skipped and reported.
    pub max_catchup_ms: i64,
    /// The longest all reads of one poll may take (`--poll.deadline`); past it the poll fails.
    pub deadline: Duration,
    /// Codes outside the known tables that get their own series, per task type
    /// (`--metrics.max-unknown-reason-codes`); later ones fold into `reason_code="other"`.
    pub max_unknown_reason_codes: usize,
    /// Calling numbers that split `cec_calls_total` by `caller` (`--metrics.callers`; empty: none).
    pub callers: Vec<String>,
    /// The most records one read takes on: `--cec.max-pages-per-window` × `--cec.page-size`. A main
    /// window whose first page says CEC holds more is shrunk before it is paged
    /// ([`WindowBudget::too_big`]).
    pub read_capacity: u64,
}

/// Why a poll failed; either way it left no trace and is retried later.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reads did not finish within `--poll.deadline` (CEC stalled, or kept serving pages).
    #[error("poll deadline exceeded: the reads took longer than --poll.deadline ({})", humantime::format_duration(*.0))]
    Deadline(Duration),
    /// The reads brought more new calls than one poll takes on ([`MAX_NEW_CALLS_PER_READ_CAPACITY`] ×
    /// the read capacity): a gateway inventing calls, or a window far denser than planned.
    #[error("poll read more than {0} calls not seen before; the next poll reads a shorter window")]
    TooManyCalls(u64),
}

/// How many reads' worth of calls never seen before one poll takes on: a poll's main windows hold at
/// most [`crate::ingest::plan::FILL`] of a read per query, so this leaves room for two queries, the
/// settled part's re-reads and targeted reads, while a gateway inventing calls cannot make one poll
/// grow the ledger (or the transaction that commits it) without bound. Past it the poll fails whole
/// and the next one reads a halved window, as after `--poll.deadline`.
pub const MAX_NEW_CALLS_PER_READ_CAPACITY: u64 = 8;

impl PollError {
    pub fn retryable(&self) -> bool {
        match self {
            PollError::Api(e) => e.retryable(),
            PollError::Store(e) => e.retryable(),
            PollError::Deadline(_) | PollError::TooManyCalls(_) => true,
        }
    }
}

/// What the server reads: the last published state and the live telemetry.
#[derive(Debug, Default)]
pub struct Shared {
    pub published: RwLock<Arc<Published>>,
    pub telemetry: Arc<Telemetry>,
}

impl Shared {
    pub fn published(&self) -> Arc<Published> {
        self.published.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where a poll's records come from: CEC through [`CecClient`], or a model of it in tests.
pub trait Source: Send + Sync {
    /// Every page of `query` over `window`, as [`CecClient::read_window`] reads them.
    fn read(
        &self,
        query: TaskQuery,
        window: Window,
    ) -> impl std::future::Future<Output = Result<WindowRead, ApiError>> + Send;

    /// At least the first page of `query` over `window` (one request, as
    /// [`CecClient::read_first_page`] reads it), for its `total`. Reading every page, the default, is
    /// correct too, only dearer.
    fn probe(
        &self,
        query: TaskQuery,
        window: Window,
    ) -> impl std::future::Future<Output = Result<WindowRead, ApiError>> + Send {
        self.read(query, window)
    }

    /// [`Source::read`], handing the records to `sink` page by page as they arrive and returning only
    /// their counts, as [`CecClient::stream_window`] does (`refuse_over` included). The default reads
    /// everything first and hands it over as one page: right, only without the memory bound.
    fn stream(
        &self,
        query: TaskQuery,
        window: Window,
        refuse_over: Option<u64>,
        sink: &mut PageSink<'_>,
    ) -> impl std::future::Future<Output = Result<WindowRead, ApiError>> + Send {
        async move { Ok(self.read(query, window).await?.stream_into(refuse_over, sink)) }
    }
}

impl Source for CecClient {
    async fn read(&self, query: TaskQuery, window: Window) -> Result<WindowRead, ApiError> {
        self.read_window(query, window).await
    }

    async fn probe(&self, query: TaskQuery, window: Window) -> Result<WindowRead, ApiError> {
        self.read_first_page(query, window).await
    }

    async fn stream(
        &self,
        query: TaskQuery,
        window: Window,
        refuse_over: Option<u64>,
        sink: &mut PageSink<'_>,
    ) -> Result<WindowRead, ApiError> {
        self.stream_window(query, window, refuse_over, sink).await
    }
}

/// The poller: owns the state; publishes a copy of what the server needs after each commit.
pub struct Poller<S: Source = CecClient> {
    source: S,
    cfg: PollerConfig,
    state: State,
    shared: Arc<Shared>,
    /// Records per millisecond in each query's last main window, to cost targeted reads.
    density: Vec<(TaskQuery, f64)>,
    /// Where polls are committed; `None` runs in memory only.
    store: Option<Store>,
    /// A commit failed: whether its transaction reached the file is unknown, so the next poll first
    /// reads the state back from the store (see [`Poller::reconcile`]); while that has not succeeded,
    /// commits replace the whole file.
    reconcile: bool,
    /// Whether folding of reason codes was already logged at warn since start (later polls log at info).
    folding_warned: bool,
    /// How long the next main window may be ([`WindowBudget`]: after failed or refused reads).
    budget: WindowBudget,
    /// The main window the current (or last) poll set out to read, for the budget when it times out.
    attempted: Option<Window>,
    /// The catch-up under way, if any: one progress line per committed window.
    catchup: Catchup,
}

/// A committed poll.
#[derive(Debug)]
pub struct PollReport {
    pub plan: PollPlan,
    pub summary: PollSummary,
    pub requests: u64,
}

impl<S: Source> Poller<S> {
    pub fn new(source: S, cfg: PollerConfig, mut state: State, shared: Arc<Shared>, store: Option<Store>) -> Poller<S> {
        // A store saved with a higher --poll.max-open-calls (or by a flood) is brought under the cap here;
        // the next commit rewrites the store's open calls.
        let cap = cfg.retention.max_open_calls;
        let evicted = state.ledger.cap_open(cap);
        if evicted > 0 {
            OpenCallsEvicted { count: evicted, cap }.emit(&shared.telemetry);
        }
        state.aggregates.set_callers(&cfg.callers);
        let refolded = state.aggregates.set_reason_cap(cfg.max_unknown_reason_codes);
        if refolded > 0 {
            ReasonCodesRefolded { codes: refolded, cap: cfg.max_unknown_reason_codes }.emit(&shared.telemetry);
        }
        // A poll is overdue once no success came for an interval plus the deadline: `cec_up` reads 0.
        let overdue_after_ms = (cfg.interval + cfg.deadline).as_millis().min(i64::MAX as u128) as i64;
        let lookback_seconds = cfg.plan.lookback_ms as f64 / 1000.0;
        shared.telemetry.update(|d| {
            d.overdue_after_ms = Some(overdue_after_ms);
            d.lookback_seconds = Some(lookback_seconds);
        });
        let p = Poller {
            source,
            cfg,
            state,
            shared,
            density: Vec::new(),
            store,
            folding_warned: false,
            reconcile: false,
            budget: WindowBudget::default(),
            attempted: None,
            catchup: Catchup::default(),
        };
        p.publish();
        p
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// How long the next main window may be (shrunk after polls past `--poll.deadline`, polls with too
    /// many new calls, and first pages that said a window holds more than a read takes on).
    pub fn budget(&self) -> WindowBudget {
        self.budget
    }

    /// One poll at the wall clock's time.
    pub async fn poll_once(&mut self) -> Result<PollReport, PollError> {
        self.poll_at(now_ms()).await
    }

    /// One poll as if the clock read `now` (epoch ms): every read, admitted page by page, then one
    /// commit. On error nothing changed: the admitted pages are undone ([`State::rollback`]). The reads
    /// run under `--poll.deadline`: a CEC that stalls or pages without end fails the poll there, and
    /// the next poll's main window is halved ([`WindowBudget`]) so a catch-up too big for the deadline
    /// still makes progress. Per-record warnings are limited per poll; the poll ends with one summary
    /// line per kind that went past the limit ([`RecordLinesSuppressed`]), whether it succeeded or not.
    pub async fn poll_at(&mut self, now: i64) -> Result<PollReport, PollError> {
        let result = self.poll_unclosed(now).await;
        RecordLinesSuppressed::close_poll(&self.shared.telemetry);
        result
    }

    /// [`Poller::poll_at`] without closing the poll's record lines.
    async fn poll_unclosed(&mut self, now: i64) -> Result<PollReport, PollError> {
        self.reconcile();
        // An outage beyond --poll.max-catchup: plan from the limit; the ledger's cursor moves there only
        // with this poll's commit, so a poll that fails leaves the skip undone (and unreported).
        let limit = now.saturating_sub(self.cfg.max_catchup_ms);
        let cursor = self.state.ledger.cursor_ms().map(|c| c.max(limit));
        let deadline = self.cfg.deadline;
        let started = Instant::now();
        self.attempted = None;
        let folded_before: u64 = TaskType::ALL.iter().map(|&t| self.state.aggregates.folded(t)).sum();
        // Pages are admitted as they arrive: whatever fails from here on rolls back to this.
        let checkpoint = self.state.checkpoint();
        let skipped = self.state.ledger.skip_to(limit);
        let mut reading = Reading {
            source: &self.source,
            state: &mut self.state,
            telemetry: &self.shared.telemetry,
            cfg: &self.cfg,
            density: &mut self.density,
            budget: &mut self.budget,
            attempted: &mut self.attempted,
            summary: PollSummary::default(),
            records: 0,
            requests: 0,
            fill: 0.0,
        };
        let fetched = match tokio::time::timeout(deadline, reading.fetch(now, cursor)).await {
            Ok(fetched) => fetched,
            Err(_) => Err(PollError::Deadline(deadline)),
        };
        let (mut summary, records, requests, fill) = (reading.summary, reading.records, reading.requests, reading.fill);
        let plan = match fetched {
            Ok(plan) => plan,
            Err(e) => {
                self.state.rollback(checkpoint);
                if let (PollError::Deadline(_) | PollError::TooManyCalls(_), Some(main)) = (&e, self.attempted) {
                    self.budget.overran(&self.cfg.plan, main);
                }
                return Err(e);
            }
        };
        let fetch_took = started.elapsed();
        self.state.finish(&plan, now, self.cfg.retention, &mut summary);
        if let Some(store) = self.store.as_mut() {
            // redb's commit is blocking file I/O with an fsync: keep it off the async workers' queue.
            let whole = self.reconcile;
            let result = tokio::task::block_in_place(|| {
                if whole {
                    store.commit_whole(&self.state)
                } else {
                    store.commit(&self.state)
                }
            });
            let telemetry = &self.shared.telemetry;
            match result {
                Ok(()) => {
                    self.reconcile = false;
                    StateCommitted { bytes: store.size() }.emit(telemetry)
                }
                Err(e) => {
                    self.state.rollback(checkpoint);
                    self.reconcile = true;
                    StateCommitFailed { error: &e }.emit(telemetry);
                    return Err(e.into());
                }
            }
        }
        self.state.committed();
        self.budget.succeeded(&self.cfg.plan, fetch_took, deadline, fill);
        let telemetry = &self.shared.telemetry;
        if let Some((from_ms, to_ms)) = skipped {
            CatchupSkipped { from_ms, to_ms }.emit(telemetry);
        }
        // The rest of a catch-up is estimated at the window length the next polls will use.
        let next_cfg = self.budget.apply(&self.cfg.plan);
        let at = Instant::now().into_std();
        if let Some(progress) = self.catchup.committed(&next_cfg, now, &plan, records, started.into_std(), at) {
            CatchingUp { progress }.emit(telemetry);
        }
        if summary.evicted > 0 {
            OpenCallsEvicted { count: summary.evicted, cap: self.cfg.retention.max_open_calls }.emit(telemetry);
        }
        if summary.out_of_window > 0 {
            RecordsOutOfWindow { count: summary.out_of_window, lookback_ms: self.cfg.retention.lookback_ms }
                .emit(telemetry);
        }
        if summary.talk_too_long + summary.agent_talk_too_long > 0 {
            let max_call_ms = self.cfg.retention.max_call_ms;
            DurationsTooLong { talk: summary.talk_too_long, agent_talk: summary.agent_talk_too_long, max_call_ms }
                .emit(telemetry);
        }
        let folded: u64 = TaskType::ALL.iter().map(|&t| self.state.aggregates.folded(t)).sum::<u64>() - folded_before;
        if folded > 0 {
            let cap = self.cfg.max_unknown_reason_codes;
            ReasonCodesFolded { calls: folded, cap, first: !self.folding_warned }.emit(&self.shared.telemetry);
            self.folding_warned = true;
        }
        self.publish();
        Ok(PollReport { plan, summary, requests })
    }

    /// After a failed commit, makes memory hold exactly what the store holds before anything else
    /// happens: redb may report an error for a transaction that reached the disk (an fsync failing
    /// after the write), and then the rolled-back memory would count that poll's calls a second time.
    /// When the store cannot be read back (a file that cannot even be opened will fail the commit too),
    /// the poll goes on and its commit replaces the whole file ([`Store::commit_whole`]), which makes the
    /// file agree with memory instead.
    fn reconcile(&mut self) {
        let Some(store) = self.store.as_mut().filter(|_| self.reconcile) else {
            return;
        };
        match tokio::task::block_in_place(|| store.reload()) {
            Ok(mut stored) => {
                // Brought under this run's limits as at start-up (quietly: that was reported then), before
                // comparing: the store holds what the file held, which a lowered reason-code cap or
                // open-call cap had already narrowed in memory. Without this the cap would be lost until
                // a restart, and reason_code="other" could go down.
                stored.aggregates.set_callers(&self.cfg.callers);
                stored.aggregates.set_reason_cap(self.cfg.max_unknown_reason_codes);
                stored.ledger.cap_open(self.cfg.retention.max_open_calls);
                let poll_was_durable = stored != self.state;
                self.state = stored;
                self.reconcile = false;
                let calls = self.state.aggregates.total_calls();
                StateReloaded { calls, poll_was_durable }.emit(&self.shared.telemetry);
                self.publish();
            }
            Err(error) => StateReloadFailed { error: &error }.emit(&self.shared.telemetry),
        }
    }

    fn publish(&self) {
        let p = Published {
            aggregates: self.state.aggregates.clone(),
            in_progress: self.state.ledger.in_progress(),
            remembered_calls: self.state.ledger.counted_len() as u64,
        };
        *self.shared.published.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
    }

    /// Polls until `shutdown` turns true. Catch-up steps follow each other without waiting; failures
    /// back off exponentially from the interval up to five minutes (or the interval, if longer).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            // Dropping a poll half-way leaves pages admitted in memory but nothing committed or published,
            // and the poller stops with it.
            let result = tokio::select! {
                r = self.poll_once() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let elapsed = started.elapsed();
            let telemetry = self.shared.telemetry.clone();
            let wait = match result {
                Ok(report) => {
                    let s = report.summary;
                    PollCommitted {
                        summary: s,
                        main: report.plan.main,
                        reads: report.plan.reads.len(),
                        requests: report.requests,
                        elapsed,
                        at_ms: now_ms(),
                        after_failures: failures,
                    }
                    .emit(&telemetry);
                    if s.late > 0 {
                        let lookback_ms = self.cfg.plan.lookback_ms;
                        LateRecords { count: s.late, max_lateness_ms: s.max_lateness_ms, lookback_ms }.emit(&telemetry);
                    }
                    if s.abandoned > 0 {
                        OpenCallsAbandoned { count: s.abandoned }.emit(&telemetry);
                    }
                    failures = 0;
                    if report.plan.behind {
                        Duration::ZERO
                    } else {
                        self.cfg.interval
                    }
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(self.cfg.interval, failures);
                    PollFailed {
                        error: &e,
                        retryable: e.retryable(),
                        elapsed,
                        consecutive_failures: failures,
                        retry_in: wait,
                        at_ms: now_ms(),
                    }
                    .emit(&telemetry);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// The poller lent to one poll's reads: reads (or probes) a window and admits each page into the
/// state as it arrives, tallying what the poll did. Dropped half-way (the deadline), it leaves pages
/// admitted that the caller rolls back.
struct Reading<'p, S: Source> {
    source: &'p S,
    state: &'p mut State,
    telemetry: &'p Telemetry,
    cfg: &'p PollerConfig,
    density: &'p mut Vec<(TaskQuery, f64)>,
    budget: &'p mut WindowBudget,
    attempted: &'p mut Option<Window>,
    summary: PollSummary,
    /// Records served by every read and probe of the poll (re-reads included).
    records: u64,
    requests: u64,
    /// The largest share of [`PollerConfig::read_capacity`] one main read held.
    fill: f64,
}

/// Most times one poll shrinks its main window for a first page whose `total` is more than a read
/// takes on: a gateway whose `total` lies can cost at most this many extra requests a poll.
const MAX_RESHAPES: u32 = 4;

impl<S: Source> Reading<'_, S> {
    /// Every read of a poll at `now` from `cursor`, each page admitted as it arrives; the plan read.
    async fn fetch(&mut self, now: i64, cursor: Option<i64>) -> Result<PollPlan, PollError> {
        // Main windows first; the targeted reads are planned after them, with the record density the
        // main windows just showed (so even the first poll after a restart merges them well), and for the
        // calls still open after them (one that ended in the main window needs no read of its own).
        let capacity = self.cfg.read_capacity;
        let mut reshapes = 0;
        let mut plan = 'reshape: loop {
            let plan = self.plan(now, cursor);
            *self.attempted = Some(plan.main);
            let shrinkable = plan.main.end_ms - plan.main.start_ms > WindowBudget::floor_ms(&self.cfg.plan);
            let refuse_over = (shrinkable && reshapes < MAX_RESHAPES).then_some(capacity);
            for read in plan.reads.iter().filter(|r| !r.targeted) {
                // What the main read served, for checking its settled part should it prove incomplete.
                let mut served: Vec<(CallId, Option<i64>)> = Vec::new();
                let keep = plan.settled.is_some();
                let r = self
                    .read(*read, refuse_over, |rec| {
                        if keep {
                            served.push((rec.id, rec.record.start_ms))
                        }
                    })
                    .await?;
                if let (Some(Stop::TooBig), Some(total)) = (r.stopped, r.total) {
                    if self.budget.too_big(&self.cfg.plan, plan.main, total, capacity) {
                        reshapes += 1;
                        continue 'reshape;
                    }
                }
                self.fill = self.fill.max(r.entries() as f64 / capacity.max(1) as f64);
                let d = r.served as f64 / (read.window.end_ms - read.window.start_ms + 1) as f64;
                match self.density.iter_mut().find(|(q, _)| *q == read.query) {
                    Some(slot) => slot.1 = d,
                    None => self.density.push((read.query, d)),
                }
                if let (false, Some(settled)) = (r.complete(), plan.settled) {
                    self.reread_settled(read.query, settled, served).await?;
                }
            }
            break plan;
        };
        plan.reads = self.plan(now, cursor).reads;
        for read in plan.reads.iter().filter(|r| r.targeted) {
            self.read(*read, None, |_| {}).await?;
        }
        Ok(plan)
    }

    /// The plan of a poll at `now` from `cursor`, the ledger's open calls and the densities known so far,
    /// its main window no longer than the budget allows.
    fn plan(&self, now: i64, cursor: Option<i64>) -> PollPlan {
        let density = |q| self.density.iter().find(|(dq, _)| *dq == q).map(|(_, d)| *d);
        plan(
            &self.budget.apply(&self.cfg.plan),
            now,
            cursor,
            &self.cfg.queries,
            self.state.ledger.open_spans(),
            density,
        )
    }

    /// Every page of `read`, each admitted as it arrives (and shown to `seen` first). What the pages
    /// served and skipped was reported page by page by the client ([`crate::cec::ApiObserver::page`]);
    /// this notes the finished read.
    async fn read(
        &mut self,
        read: Read,
        refuse_over: Option<u64>,
        mut seen: impl FnMut(&ParsedRecord) + Send,
    ) -> Result<WindowRead, PollError> {
        let (state, summary, telemetry, retention) =
            (&mut *self.state, &mut self.summary, self.telemetry, self.cfg.retention);
        let mut sink = |page: Vec<ParsedRecord>| {
            page.iter().for_each(&mut seen);
            state.admit_page(&read, &page, retention, summary, |record| {
                FieldInvalid { query: read.query, record }.emit(telemetry)
            });
        };
        let r = self.source.stream(read.query, read.window, refuse_over, &mut sink).await?;
        self.note(read, &r)?;
        Ok(r)
    }

    /// One page of `query` over `window` ([`Source::probe`]), admitted like a read's.
    async fn probe(&mut self, query: TaskQuery, window: Window) -> Result<WindowRead, PollError> {
        let r = self.source.probe(query, window).await?.counted();
        let read = Read { query, window, targeted: false };
        let telemetry = self.telemetry;
        self.state.admit_page(&read, &r.records, self.cfg.retention, &mut self.summary, |record| {
            FieldInvalid { query, record }.emit(telemetry)
        });
        self.note(read, &r)?;
        Ok(r)
    }

    /// Tallies a finished read; fails the poll once it has taken on more new calls than a poll may
    /// ([`MAX_NEW_CALLS_PER_READ_CAPACITY`]): checked after each read, which takes on at most a read's
    /// capacity, so a poll holds at most one read more than the limit.
    fn note(&mut self, read: Read, r: &WindowRead) -> Result<(), PollError> {
        self.requests += r.requests;
        self.records += r.served;
        WindowFetched { query: read.query, window: read.window, read: r }.emit(self.telemetry);
        let limit = MAX_NEW_CALLS_PER_READ_CAPACITY.saturating_mul(self.cfg.read_capacity);
        if self.summary.counted + self.summary.first_seen_open > limit {
            return Err(PollError::TooManyCalls(limit));
        }
        Ok(())
    }

    /// The main window's pages did not partition CEC's answer (it changed while paged), so a record of
    /// the settled part, which the next poll will not read again, may have been skipped. Nothing new
    /// starts there, so its `total` holds still: one page of it (a probe) tells how many calls CEC
    /// counts there, and when every one of them was already seen, nothing more is read. Otherwise the
    /// part is halved and each half probed, down to the parts that really miss calls, which are read
    /// again ([`settle_step`] decides, by cost). A backfill whose `total` moved because calls joined its
    /// live end thus costs one request per query instead of the settled part's every page.
    ///
    /// A call counts as seen in a part when its `startTime` lies strictly inside it (CEC's window ends
    /// may be exclusive) and the main read (`served`: its serial numbers and starts) returned it, or the
    /// part's probe served it; malformed entries only when its probe served them. Either way a part can
    /// only look short of calls, never covered when it is not.
    async fn reread_settled(
        &mut self,
        query: TaskQuery,
        settled: Window,
        served: Vec<(CallId, Option<i64>)>,
    ) -> Result<(), PollError> {
        let mut known: hashbrown::HashMap<CallId, Option<i64>> = served.into_iter().collect();
        let page_size = self.cfg.plan.page_size;
        let mut parts = vec![settled];
        while let Some(part) = parts.pop() {
            let r = self.probe(query, part).await?;
            let probed: hashbrown::HashSet<CallId> = r.records.iter().map(|rec| rec.id).collect();
            let inside = known
                .iter()
                .filter(|(id, start)| {
                    start.is_some_and(|s| part.start_ms < s && s < part.end_ms) && !probed.contains(*id)
                })
                .count();
            let seen = (probed.len() + inside + r.rejected.len()) as u64;
            for rec in &r.records {
                known.entry(rec.id).or_insert(rec.record.start_ms);
            }
            let step = match r.total {
                Some(total) => settle_step(part, total, seen, page_size),
                // No `total`: a probe that ended by itself (a short page, or no data) read it all.
                None if r.stopped.is_none() => SettleStep::Covered,
                None => SettleStep::Reread,
            };
            match step {
                SettleStep::Covered => {}
                SettleStep::Split(a, b) => parts.extend([b, a]),
                SettleStep::Reread => self.reread_whole(query, part).await?,
            }
        }
        Ok(())
    }

    /// Reads `part` of the settled window until every call CEC counts there has been seen, three times
    /// at most; giving up is one [`IncompleteRead`].
    async fn reread_whole(&mut self, query: TaskQuery, part: Window) -> Result<(), PollError> {
        let read = Read { query, window: part, targeted: false };
        let mut seen = hashbrown::HashSet::new();
        // Each read is logged as a `WindowFetched` event; only giving up is worth a warning.
        let mut reason = crate::cec::client::Incomplete::ShortOfTotal;
        for _ in 0..3 {
            let r = self
                .read(read, None, |rec| {
                    seen.insert(rec.id);
                })
                .await?;
            reason = r.incomplete().unwrap_or(reason);
            if r.total.is_none_or(|t| (seen.len() + r.rejected.len()) as u64 >= t) {
                return Ok(());
            }
        }
        IncompleteRead { query, window: part, reason }.emit(self.telemetry);
        Ok(())
    }
}

/// Wait after `failures` consecutive failed polls: the interval, doubled per further failure, capped
/// at five minutes (or the interval when that is longer).
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = interval.max(Duration::from_secs(300));
    interval.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::client::Skipped;
    use crate::cec::record::CallId;
    use crate::cec::record::CallState;
    use crate::cec::wire::{Field, RejectReason, Rejection};
    use crate::cec::Endpoint;
    use crate::ingest::testing::{rec, CFG, RET, T0};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A CEC with one ended call whose reads fail while `down` is set.
    struct Flaky {
        down: AtomicBool,
    }

    impl Source for Flaky {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(ApiError::Status {
                    endpoint: Endpoint::QueryCallDetailRecord,
                    status: 503,
                    retry_after: None,
                });
            }
            let c = rec(1, CallState::Ended, T0 - 1_000);
            let records = if (w.start_ms..=w.end_ms).contains(&(T0 - 1_000)) { vec![c] } else { vec![] };
            Ok(one_page(records))
        }
    }

    /// A CEC whose ALL_BUT_ITA reads serve two ended calls, one open call and one with a bad field,
    /// page by page, while its ITA reads fail when `ita_down` is set: a poll that fails after it
    /// admitted pages.
    struct HalfDown {
        ita_down: AtomicBool,
        pages: std::sync::Mutex<Vec<usize>>,
    }

    impl Source for HalfDown {
        async fn read(&self, _: TaskQuery, _: Window) -> Result<WindowRead, ApiError> {
            unreachable!("the poller streams")
        }

        async fn stream(
            &self,
            query: TaskQuery,
            w: Window,
            _: Option<u64>,
            sink: &mut PageSink<'_>,
        ) -> Result<WindowRead, ApiError> {
            if query == TaskQuery::ITA {
                if self.ita_down.load(Ordering::Relaxed) {
                    return Err(ApiError::Status {
                        endpoint: Endpoint::QueryCallDetailRecord,
                        status: 503,
                        retry_after: None,
                    });
                }
                return Ok(one_page(Vec::new()).stream_into(None, sink));
            }
            let mut bad = rec(4, CallState::Ended, T0 - 1_000);
            bad.invalid.insert(Field::TalkDuration);
            let all = [rec(1, CallState::Ended, T0 - 3_000), rec(2, CallState::Calling, T0 - 2_000), bad];
            let all: Vec<_> = all.into_iter().filter(|r| r.record.start_ms.is_some_and(|s| w.start_ms <= s)).collect();
            for page in all.chunks(2) {
                self.pages.lock().unwrap().push(page.len());
                sink(page.to_vec());
            }
            Ok(WindowRead { total: Some(all.len() as u64), requests: 2, total_unchanged: true, ..Default::default() }
                .with_counts(all.len() as u64))
        }
    }

    #[tokio::test]
    async fn a_poll_failing_after_pages_were_admitted_leaves_no_trace_and_the_next_counts_them_once() {
        let cfg = PollerConfig { queries: vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA], ..ita_config() };
        let shared = Arc::new(Shared::default());
        let source = HalfDown { ita_down: AtomicBool::new(true), pages: Default::default() };
        let mut p = Poller::new(source, cfg, State::default(), shared.clone(), None);
        let before = p.state().clone();
        let err = p.poll_at(T0).await.unwrap_err();
        assert_eq!(err.to_string(), "query_call_detail_record: HTTP 503");
        assert_eq!(*p.source().pages.lock().unwrap(), [2, 1], "both pages were handed over and admitted");
        assert_eq!(*p.state(), before, "ledger, open calls, cursor, floor and aggregates as before the poll");
        assert_eq!(shared.published().aggregates.total_calls(), 0, "nothing was published");
        // The unusable field was counted when its page was read: each fetch counts, as a rejected
        // record's does.
        assert_eq!(shared.telemetry.snapshot().fields_invalid, [(Field::TalkDuration, 1)].into());
        p.source().ita_down.store(false, Ordering::Relaxed);
        let report = p.poll_at(T0).await.unwrap();
        assert_eq!((report.summary.counted, report.summary.tracked), (2, 1));
        assert_eq!(p.state().aggregates.total_calls(), 2);
        assert_eq!(p.state().ledger.open_len(), 1);
        assert_eq!(shared.telemetry.snapshot().fields_invalid, [(Field::TalkDuration, 2)].into());
        p.poll_at(T0 + 30_000).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 2, "re-read, not counted again");
    }

    /// Polls every 30 s for ITA calls, catching up at most an hour.
    fn ita_config() -> PollerConfig {
        PollerConfig {
            interval: Duration::from_secs(30),
            plan: CFG,
            retention: RET,
            queries: vec![TaskQuery::ITA],
            max_catchup_ms: 3_600_000,
            deadline: Duration::from_secs(300),
            max_unknown_reason_codes: 32,
            read_capacity: 100_000,
            callers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_outage_beyond_max_catchup_is_skipped_only_by_a_poll_that_succeeds() {
        let cfg = ita_config();
        let shared = Arc::new(Shared::default());
        let mut p = Poller::new(Flaky { down: AtomicBool::new(false) }, cfg, State::default(), shared.clone(), None);
        p.poll_at(T0).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 1);
        // Down for two hours; the first poll after that fails.
        let later = T0 + 2 * 3_600_000;
        p.source().down.store(true, Ordering::Relaxed);
        assert!(p.poll_at(later).await.is_err());
        assert_eq!(p.state().ledger.cursor_ms(), Some(T0), "a failed poll skipped nothing");
        assert_eq!(shared.telemetry.snapshot().catchup_skipped_seconds, 0.0);
        p.source().down.store(false, Ordering::Relaxed);
        let report = p.poll_at(later).await.unwrap();
        assert_eq!(report.plan.main.start_ms, later - 3_600_000 - RET.lookback_ms);
        assert_eq!(p.state().ledger.cursor_ms(), Some(later));
        assert_eq!(shared.telemetry.snapshot().catchup_skipped_seconds, 3_600.0);
        assert_eq!(p.state().aggregates.total_calls(), 1);
    }

    /// A CEC whose one read serves a call with an unusable field and an entry without a state.
    struct Messy;

    impl Source for Messy {
        async fn read(&self, _: TaskQuery, _: Window) -> Result<WindowRead, ApiError> {
            let mut c = rec(1, CallState::Ended, T0 - 1_000);
            c.invalid.insert(Field::TalkDuration);
            let rejection =
                Rejection { reason: RejectReason::MissingState, field: Some("state"), serial: Some(CallId(2)) };
            Ok(WindowRead {
                records: vec![c],
                requests: 1,
                total: Some(2),
                rejected: vec![Skipped { rejection, page_offset: 0 }],
                total_unchanged: true,
                stopped: None,
                ..WindowRead::default()
            })
        }
    }

    #[tokio::test]
    async fn the_poller_counts_a_call_with_a_bad_field_and_leaves_page_counters_to_the_client() {
        let cfg = ita_config();
        let shared = Arc::new(Shared::default());
        let mut p = Poller::new(Messy, cfg, State::default(), shared.clone(), None);
        let report = p.poll_at(T0).await.unwrap();
        assert_eq!(report.plan.reads.len(), 1, "one read: the first poll's main window");
        assert_eq!(p.state().aggregates.total_calls(), 1, "the record with a bad field still counts");
        // The client reported the page as it arrived (`ApiObserver::page`); counting it here again
        // would count every entry twice. Unusable fields are the poller's: known only once the
        // record's start passed the window check.
        let d = shared.telemetry.snapshot();
        assert_eq!((d.records_fetched, d.records_rejected.len()), (0, 0));
        assert_eq!(d.fields_invalid, [(Field::TalkDuration, 1)].into());
    }

    /// A complete read of `records` in one request, `total` equal to their number.
    fn one_page(records: Vec<ParsedRecord>) -> WindowRead {
        WindowRead {
            total: Some(records.len() as u64),
            records,
            requests: 1,
            total_unchanged: true,
            rejected: Vec::new(),
            stopped: None,
            ..WindowRead::default()
        }
    }

    /// A hostile gateway that answers every read with `per_read` calls never seen before, all still
    /// ringing, started a second before the window's end.
    struct Inventing {
        next: std::sync::atomic::AtomicU64,
        per_read: u64,
    }

    impl Source for Inventing {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            let first = self.next.fetch_add(self.per_read, Ordering::Relaxed);
            let records: Vec<_> =
                (first..first + self.per_read).map(|id| rec(id, CallState::Calling, w.end_ms - 1_000)).collect();
            Ok(one_page(records))
        }
    }

    #[test]
    fn invented_open_calls_stay_at_the_cap_across_polls_and_a_restart_with_a_lower_cap() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = PollerConfig { retention: Retention { max_open_calls: 100, ..RET }, ..ita_config() };
        let shared = Arc::new(Shared::default());
        let (store, _) = Store::open(dir.path(), false).unwrap();
        let source = Inventing { next: 1.into(), per_read: 300 };
        let mut p = Poller::new(source, cfg.clone(), State::default(), shared.clone(), Some(store));
        let ((), lines) = crate::logging::capture(tracing::Level::WARN, || {
            rt.block_on(async {
                for i in 0..5 {
                    let report = p.poll_at(T0 + i * 30_000).await.unwrap();
                    assert_eq!(report.summary.tracked, 300);
                    assert_eq!(p.state().ledger.open_len(), 100);
                }
            })
        });
        let warned = |n: u64, cap: u64| {
            format!("level=warn msg=\"gave up the oldest open calls: more calls open than --poll.max-open-calls; they are not counted unless seen ended later\" evicted={n} max_open_calls={cap}")
        };
        // One line per poll, however many calls: 300 new minus the 100 kept, then 100 + 300 - 100.
        let want: Vec<String> = [200, 300, 300, 300, 300].iter().map(|&n| warned(n, 100)).collect();
        assert_eq!(lines, want);
        let d = shared.telemetry.snapshot();
        assert_eq!((d.open_calls_evicted, d.open_calls_abandoned), (1_400, 1_400));
        let published: u64 = shared.published().in_progress.iter().flatten().sum();
        assert_eq!(published, 100, "cec_calls_in_progress shows every open call remembered");
        // The newest calls are the ones kept.
        assert!(p.state().ledger.open_calls().all(|(id, _)| id.0 > 1_200));
        drop(p);

        // Restarted with a lower cap, the restored store is brought under it, not refused.
        let (store, restored) = Store::open(dir.path(), false).unwrap();
        let restored = restored.expect("a saved state");
        assert_eq!(restored.ledger.open_len(), 100);
        let shared = Arc::new(Shared::default());
        let cfg = PollerConfig { retention: Retention { max_open_calls: 10, ..RET }, ..ita_config() };
        let source = Inventing { next: 10_000.into(), per_read: 0 };
        let (p, lines) = crate::logging::capture(tracing::Level::WARN, || {
            Poller::new(source, cfg, restored, shared.clone(), Some(store))
        });
        assert_eq!(lines, [warned(90, 10)]);
        assert_eq!(p.state().ledger.open_len(), 10);
        assert_eq!(shared.published().in_progress.iter().flatten().sum::<u64>(), 10);
        let d = shared.telemetry.snapshot();
        assert_eq!((d.open_calls_evicted, d.open_calls_abandoned), (90, 90));
    }

    /// A gateway whose every read serves `per_read` new ended calls with an unusable `talkDuration`, and
    /// one call ten years ahead with an unusable `endTime` (as `q_logflood` and `q_future` do).
    struct BadFields {
        next: std::sync::atomic::AtomicU64,
        per_read: u64,
    }

    impl Source for BadFields {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            let first = self.next.fetch_add(self.per_read, Ordering::Relaxed);
            let mut records: Vec<_> = (first..first + self.per_read)
                .map(|id| {
                    let mut r = rec(id, CallState::Ended, w.end_ms - 1_000);
                    r.invalid.insert(Field::TalkDuration);
                    r
                })
                .collect();
            let mut future = rec(1, CallState::Ended, w.end_ms + 10 * 365 * 86_400_000);
            future.invalid.insert(Field::EndTime);
            records.push(future);
            Ok(one_page(records))
        }
    }

    #[test]
    fn unusable_fields_are_five_lines_a_poll_and_never_for_a_record_rejected_for_its_start() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let shared = Arc::new(Shared::default());
        let source = BadFields { next: 100.into(), per_read: 20 };
        let mut p = Poller::new(source, ita_config(), State::default(), shared.clone(), None);
        let invalid = |i: u64| {
            format!("level=warn msg=\"record field unusable; read as absent, the call still counts\" fields=talkDuration call_serial_no={i} task_query=4")
        };
        let out_of_window = "level=warn msg=\"records rejected: their startTime lies outside the window read by more than --poll.lookback\" count=1 lookback_ms=120000 reason=start_out_of_window";
        let more = "level=warn msg=\"more records with unusable fields this poll; see cec_exporter_record_fields_invalid_total\" more=15";
        for (poll_no, first) in [(0, 100), (1, 120)] {
            let ((), lines) = crate::logging::capture(tracing::Level::WARN, || {
                rt.block_on(async {
                    let report = p.poll_at(T0 + poll_no * 30_000).await.unwrap();
                    assert_eq!((report.summary.counted, report.summary.out_of_window), (20, 1));
                })
            });
            let mut want: Vec<String> = (first..first + 5).map(invalid).collect();
            want.extend([out_of_window.to_owned(), more.to_owned()]);
            assert_eq!(lines, want, "poll {poll_no}");
        }
        let d = shared.telemetry.snapshot();
        // Every record counted; the one ten years ahead only as rejected, never for its endTime.
        assert_eq!(d.fields_invalid, [(Field::TalkDuration, 40)].into());
        assert_eq!(d.records_rejected, [(RejectReason::StartOutOfWindow, 2)].into());
        assert_eq!(p.state().aggregates.total_calls(), 40);
    }

    /// A CEC that returns its one ended call to the first read only (CEC deleted it, or it moved out of
    /// the windows read), so a poll that lost it cannot count it again.
    struct Once {
        served: AtomicBool,
    }

    impl Source for Once {
        async fn read(&self, _: TaskQuery, _: Window) -> Result<WindowRead, ApiError> {
            let first = !self.served.swap(true, Ordering::Relaxed);
            let records = if first { vec![rec(1, CallState::Ended, T0 - 1_000)] } else { vec![] };
            Ok(one_page(records))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_commit_that_failed_after_reaching_the_disk_is_reconciled_before_the_next_poll() {
        use crate::store::FailPoint;
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        store.fail_next_commit = Some(FailPoint::AfterWrite);
        let shared = Arc::new(Shared::default());
        let source = Once { served: AtomicBool::new(false) };
        let mut p = Poller::new(source, ita_config(), State::default(), shared.clone(), Some(store));
        let err = p.poll_at(T0).await.unwrap_err();
        assert!(err.retryable(), "{err}");
        assert_eq!(p.state().aggregates.total_calls(), 0, "rolled back in memory");
        // The call is in the file, though: the next poll reads it back before anything else.
        p.poll_at(T0 + 30_000).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 1, "not lost");
        assert_eq!(shared.published().aggregates.total_calls(), 1);
        p.poll_at(T0 + 60_000).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 1, "not counted twice");
        let state = p.state().clone();
        drop(p);
        let (_, restored) = Store::open(dir.path(), false).unwrap();
        assert_eq!(restored.unwrap(), state, "memory and store agree");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_store_that_cannot_be_read_back_is_rewritten_whole_by_the_next_commit() {
        use crate::store::FailPoint;
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        store.fail_next_commit = Some(FailPoint::AfterWrite);
        store.fail_next_reload = true;
        let shared = Arc::new(Shared::default());
        let source = Once { served: AtomicBool::new(false) };
        let mut p = Poller::new(source, ita_config(), State::default(), shared, Some(store));
        assert!(p.poll_at(T0).await.is_err());
        // The file holds call 1, memory does not, and the file cannot be read back: this poll's commit
        // replaces the file's content with memory's, so the two agree again (call 1 is not
        // half-remembered as counted in the file while missing from its counters).
        p.poll_at(T0 + 30_000).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 0);
        let state = p.state().clone();
        drop(p);
        let (_, restored) = Store::open(dir.path(), false).unwrap();
        assert_eq!(restored.unwrap(), state);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_commit_that_failed_before_the_write_counts_the_call_at_the_next_poll() {
        use crate::store::FailPoint;
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        store.fail_next_commit = Some(FailPoint::BeforeWrite);
        let shared = Arc::new(Shared::default());
        let mut p =
            Poller::new(Flaky { down: AtomicBool::new(false) }, ita_config(), State::default(), shared, Some(store));
        assert!(p.poll_at(T0).await.is_err());
        p.poll_at(T0 + 30_000).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 1, "counted once, by the poll that committed");
        let state = p.state().clone();
        drop(p);
        let (_, restored) = Store::open(dir.path(), false).unwrap();
        assert_eq!(restored.unwrap(), state);
    }

    /// A CEC answering every read with a call that starts in the year 2200 and is still talking, and one
    /// ended call that talked 30 days.
    struct FarFuture;

    impl Source for FarFuture {
        async fn read(&self, _: TaskQuery, _: Window) -> Result<WindowRead, ApiError> {
            let mut long = rec(2, CallState::Ended, T0 - 1_000);
            long.record.talk_s = Some(30.0 * 86_400.0);
            Ok(one_page(vec![rec(1, CallState::Talking, 7_258_118_400_000), long]))
        }
    }

    #[tokio::test]
    async fn a_start_in_the_year_2200_is_rejected_and_never_tracked() {
        let shared = Arc::new(Shared::default());
        let mut p = Poller::new(FarFuture, ita_config(), State::default(), shared.clone(), None);
        let report = p.poll_at(T0).await.unwrap();
        assert_eq!((report.summary.out_of_window, report.summary.tracked), (1, 0));
        assert_eq!(p.state().ledger.open_calls().count(), 0, "not tracked");
        assert_eq!(p.state().ledger.scalars().newest_start_ms, Some(T0 - 1_000), "CEC's clock is not moved to 2200");
        assert_eq!(p.state().aggregates.total_calls(), 1);
        let ita = crate::cec::record::TaskType::ItaBidirectional.index();
        assert_eq!(p.state().aggregates.talk[ita].count, 0, "30 days is longer than --poll.max-call-duration");
        let d = shared.telemetry.snapshot();
        assert_eq!(d.records_rejected, [(RejectReason::StartOutOfWindow, 1)].into());
        assert_eq!(d.fields_invalid, [(Field::TalkDuration, 1)].into());
        p.poll_at(T0 + 30_000).await.unwrap();
        assert_eq!(p.state().ledger.open_calls().count(), 0);
        assert_eq!(shared.telemetry.snapshot().records_rejected, [(RejectReason::StartOutOfWindow, 2)].into());
        assert_eq!(
            shared.telemetry.snapshot().fields_invalid,
            [(Field::TalkDuration, 1)].into(),
            "a re-read is not flagged again"
        );
    }

    /// A CEC that answers like [`Flaky`] while `hang` is unset, and never answers once it is set.
    struct Hanging {
        hang: AtomicBool,
        inner: Flaky,
    }

    impl Source for Hanging {
        async fn read(&self, q: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            if self.hang.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            self.inner.read(q, w).await
        }
    }

    fn hanging() -> Hanging {
        Hanging { hang: AtomicBool::new(false), inner: Flaky { down: AtomicBool::new(false) } }
    }

    // Multi-threaded: the commit runs in `block_in_place`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_poll_whose_reads_never_end_fails_at_the_deadline_and_commits_nothing() {
        let cfg = PollerConfig { deadline: Duration::from_millis(100), ..ita_config() };
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), false).unwrap();
        let shared = Arc::new(Shared::default());
        let mut p = Poller::new(hanging(), cfg, State::default(), shared.clone(), Some(store));
        p.poll_at(T0).await.unwrap();
        assert_eq!(shared.telemetry.snapshot().state_commits, 1);
        let before = p.state().clone();
        let published = shared.published();
        p.source().hang.store(true, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let err = p.poll_at(T0 + 30_000).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(matches!(err, PollError::Deadline(d) if d == Duration::from_millis(100)), "{err:?}");
        assert_eq!(err.to_string(), "poll deadline exceeded: the reads took longer than --poll.deadline (100ms)");
        assert!(err.retryable());
        assert_eq!(p.state(), &before, "nothing admitted");
        assert!(Arc::ptr_eq(&published, &shared.published()), "nothing published");
        assert_eq!(shared.telemetry.snapshot().state_commits, 1, "nothing committed to the store");
        // And it polls again as usual once CEC answers.
        p.source().hang.store(false, Ordering::Relaxed);
        p.poll_at(T0 + 60_000).await.unwrap();
        assert_eq!(p.state().ledger.cursor_ms(), Some(T0 + 60_000));
    }

    #[tokio::test]
    async fn the_running_poller_counts_a_poll_past_its_deadline_as_failed() {
        let cfg =
            PollerConfig { deadline: Duration::from_millis(50), interval: Duration::from_secs(1), ..ita_config() };
        let shared = Arc::new(Shared::default());
        let source = hanging();
        source.hang.store(true, Ordering::Relaxed);
        let p = Poller::new(source, cfg, State::default(), shared.clone(), None);
        assert_eq!(shared.telemetry.snapshot().overdue_after_ms, Some(1_050), "interval plus deadline");
        assert_eq!(
            shared.telemetry.snapshot().lookback_seconds,
            Some(ita_config().plan.lookback_ms as f64 / 1000.0),
            "--poll.lookback"
        );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(p.run(stopped));
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let d = shared.telemetry.snapshot();
        assert_eq!((d.polls, d.poll_failures, d.up), (1, 1, false), "one failure, then the 1 s backoff");
        assert_eq!(d.last_failure.map(|f| f.kind), Some(crate::metrics::telemetry::FailureKind::Deadline));
    }

    /// A CEC holding one ended ITA call every ten minutes of `[from, to]`, whose reads take 5 ms per
    /// hour of window: a gateway that serves only so much within a deadline.
    struct Slow {
        from: i64,
        to: i64,
    }

    const TEN_MIN: i64 = 600_000;

    impl Source for Slow {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            let hours = (w.end_ms - w.start_ms) as u64 / 3_600_000;
            tokio::time::sleep(Duration::from_millis(5 * hours)).await;
            let first = (w.start_ms.max(self.from) - self.from + TEN_MIN - 1) / TEN_MIN;
            let records: Vec<_> = (first..)
                .map(|i| self.from + i * TEN_MIN)
                .take_while(|&t| t <= w.end_ms.min(self.to))
                .map(|t| rec(t as u64, CallState::Ended, t))
                .collect();
            Ok(one_page(records))
        }
    }

    #[tokio::test]
    async fn a_catch_up_too_big_for_the_deadline_shrinks_its_window_until_it_completes_exactly() {
        // Two days to catch up; a 48 h window takes 240 ms against a 100 ms deadline, so the same
        // window retried would fail forever. Windows up to 20 h fit.
        let day = 86_400_000;
        let cfg = PollerConfig { deadline: Duration::from_millis(100), max_catchup_ms: 3 * day, ..ita_config() };
        let shared = Arc::new(Shared::default());
        let source = Slow { from: T0 - 2 * day, to: T0 };
        let mut p = Poller::new(source, cfg, State::default(), shared.clone(), None);
        // A first poll two days ago (its one-hour backfill holds one call), then the outage.
        p.poll_at(T0 - 2 * day).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 1);
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            match p.poll_at(T0).await {
                Ok(report) => {
                    outcomes.push(format!("ok {}h", (report.plan.main.end_ms - report.plan.main.start_ms) / 3_600_000));
                    if !report.plan.behind {
                        break;
                    }
                }
                Err(e) => {
                    assert!(matches!(e, PollError::Deadline(_)), "{e}");
                    outcomes.push("deadline".to_owned());
                }
            }
        }
        // 48 h fails, 24 h fails, 12 h fits (in over half the deadline: not grown), and so on to now.
        assert_eq!(outcomes, ["deadline", "deadline", "ok 12h", "ok 12h", "ok 12h", "ok 12h", "ok 0h"]);
        assert_eq!(p.state().ledger.cursor_ms(), Some(T0));
        // Every call of the two days exactly once: one every ten minutes, both ends included.
        assert_eq!(p.state().aggregates.total_calls(), 2 * 144 + 1);
        assert_eq!(shared.telemetry.snapshot().poll_failures, 0, "poll_at alone emits nothing");
    }

    #[tokio::test]
    async fn a_main_window_holding_more_than_a_read_takes_on_is_shrunk_by_its_first_page_and_counts_exactly() {
        // A read takes on 100 records: a day of calls (145, both ends included) is more. The first
        // page says so, and the same poll reads a window holding about 80 instead; nothing fails.
        let day = 86_400_000;
        let cfg = PollerConfig { max_catchup_ms: 3 * day, read_capacity: 100, ..ita_config() };
        let source = Slow { from: T0 - day, to: T0 };
        let mut p = Poller::new(source, cfg, State::default(), Arc::new(Shared::default()), None);
        p.poll_at(T0 - day).await.unwrap();
        let mut polls = Vec::new();
        loop {
            let report = p.poll_at(T0).await.unwrap();
            let minutes = (report.plan.main.end_ms - report.plan.main.start_ms) / 60_000;
            polls.push((minutes, report.requests, report.summary.counted));
            if !report.plan.behind {
                break;
            }
        }
        // 0.8 × 100 / 145 of the 1 442-minute window (two requests: the refused first page, then the
        // read); the rest, 65 calls, fits one read, from a lookback before the cursor. The limit stays:
        // twice that window would hold more than 80 % of a read.
        assert_eq!(polls, [(795, 2, 79), (648, 1, 65)]);
        assert_eq!(p.state().aggregates.total_calls(), 144 + 1, "every call of the day once");
        assert_eq!(p.budget().limit_ms(), Some(47_735_172));
    }

    #[tokio::test]
    async fn the_window_grows_back_after_fast_polls() {
        let day = 86_400_000;
        let cfg = PollerConfig { deadline: Duration::from_millis(100), max_catchup_ms: 3 * day, ..ita_config() };
        let source = Slow { from: T0 - 2 * day, to: T0 };
        let mut p = Poller::new(source, cfg, State::default(), Arc::new(Shared::default()), None);
        p.poll_at(T0 - 2 * day).await.unwrap();
        assert!(p.poll_at(T0).await.is_err());
        let half = (2 * day + RET.lookback_ms) / 2;
        assert_eq!(p.budget().limit_ms(), Some(half), "half of the 48 h (plus lookback) window that failed");
        // Quiet polls of a few minutes each (the outage is forgotten: the clock is where the cursor is)
        // finish well inside the deadline: the limit doubles back.
        let cursor = p.state().ledger.cursor_ms().unwrap();
        p.poll_at(cursor + 60_000).await.unwrap();
        assert_eq!(p.budget().limit_ms(), Some(2 * half));
        p.poll_at(cursor + 120_000).await.unwrap();
        assert_eq!(p.budget().limit_ms(), Some(4 * half));
        p.poll_at(cursor + 180_000).await.unwrap();
        assert_eq!(p.budget().limit_ms(), None, "8 days is past the 7-day limit: no shrink left");
    }

    /// A busy ITA tenant over the backfill hour: one call a second, each started at half a second past
    /// it, so no start lies on a window's edge. The main read's `total` moves while it is paged (one
    /// call joins the live end) and it may skip one call; a probe serves the first page in a fixed
    /// order that is not by time. Every read and probe is logged.
    struct Busy {
        skip: Option<u64>,
        /// Calls that every later read and probe claims in `total` beyond what it serves (a lying gateway).
        phantom: u64,
        log: std::sync::Mutex<Vec<(&'static str, Window)>>,
    }

    impl Busy {
        const START: i64 = T0 - 3_600_000;

        fn calls(w: Window) -> Vec<ParsedRecord> {
            let mut v: Vec<ParsedRecord> = (0..3_600u64)
                .map(|i| rec(i + 1, CallState::Ended, Self::START + 500 + 1_000 * i as i64))
                .chain([rec(9_999, CallState::Ended, T0 - 100)])
                .filter(|r| r.record.start_ms.is_some_and(|s| (w.start_ms..=w.end_ms).contains(&s)))
                .collect();
            v.sort_by_key(|r| r.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            v
        }
    }

    impl Source for Busy {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            let first = self.log.lock().unwrap().is_empty();
            self.log.lock().unwrap().push(("read", w));
            let all = Self::calls(w);
            let total = all.len() as u64 + if first { 0 } else { self.phantom };
            let mut records = all;
            if first {
                // The joiner came after its page was served, and the skipped call fell between pages.
                records.retain(|r| r.id.0 != 9_999 && Some(r.id.0) != self.skip);
            }
            Ok(WindowRead {
                requests: total.div_ceil(100).max(1),
                records,
                total: Some(total),
                rejected: Vec::new(),
                total_unchanged: !first,
                stopped: None,
                ..WindowRead::default()
            })
        }

        async fn probe(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            self.log.lock().unwrap().push(("probe", w));
            let all = Self::calls(w);
            let total = all.len() as u64 + self.phantom;
            let records = all.into_iter().take(100).collect();
            Ok(WindowRead { records, requests: 1, total: Some(total), total_unchanged: true, ..WindowRead::default() })
        }
    }

    #[tokio::test]
    async fn a_total_that_moved_at_the_live_end_costs_one_probe_of_the_settled_part() {
        let busy = Busy { skip: None, phantom: 0, log: Default::default() };
        let mut p = Poller::new(busy, ita_config(), State::default(), Arc::new(Shared::default()), None);
        let report = p.poll_at(T0).await.unwrap();
        // 3 601 calls: 37 pages, then one page of the settled part tells all 3 480 of them were seen.
        assert_eq!(report.requests, 37 + 1);
        let settled = Window { start_ms: Busy::START, end_ms: T0 - 120_001 };
        assert_eq!(*p.source().log.lock().unwrap(), [("read", report.plan.main), ("probe", settled)]);
        assert_eq!(p.state().aggregates.total_calls(), 3_600, "the joiner is the next poll's");
        p.poll_at(T0 + 30_000).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 3_601);
    }

    #[tokio::test]
    async fn a_call_skipped_in_the_settled_part_is_found_by_probing_halves() {
        // Call 1 001 started at START + 1 000.5 s, deep in the settled part; the main read skipped it.
        let busy = Busy { skip: Some(1_001), phantom: 0, log: Default::default() };
        let shared = Arc::new(Shared::default());
        let mut p = Poller::new(busy, ita_config(), State::default(), shared.clone(), None);
        let report = p.poll_at(T0).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 3_600, "counted once, the joiner left to the next poll");
        let log = p.source().log.lock().unwrap().clone();
        // Halving the 3 480 s settled part, probing each half, down to the 435 s part that misses the
        // call: 5 pages there cost less than halving on (3 more levels of 2 probes), so it is read again.
        let at = |start: i64, end: i64| Window { start_ms: Busy::START + start, end_ms: Busy::START + end };
        let expected = [
            ("read", report.plan.main),
            ("probe", at(0, 3_479_999)),
            ("probe", at(0, 1_739_999)),
            ("probe", at(0, 869_999)),
            ("probe", at(870_000, 1_739_999)),
            ("probe", at(870_000, 1_304_999)),
            ("read", at(870_000, 1_304_999)),
            ("probe", at(1_305_000, 1_739_999)),
            ("probe", at(1_740_000, 3_479_999)),
        ];
        assert_eq!(log, expected);
        // 37 pages of the main read, 7 probes and 5 pages again, where re-reading the settled part
        // whole would have cost 35.
        assert_eq!(report.requests, 37 + 7 + 5);
        assert_eq!(shared.telemetry.snapshot().incomplete_reads, 0);
    }

    #[tokio::test]
    async fn a_total_that_always_claims_one_call_more_costs_at_most_a_few_pages_more_than_three_rereads() {
        // A lying gateway: every read and probe after the main read claims one call more than it serves.
        let busy = Busy { skip: None, phantom: 1, log: Default::default() };
        let shared = Arc::new(Shared::default());
        let mut p = Poller::new(busy, ita_config(), State::default(), shared.clone(), None);
        let report = p.poll_at(T0).await.unwrap();
        assert_eq!(p.state().aggregates.total_calls(), 3_600);
        let log = p.source().log.lock().unwrap().clone();
        let probes = log.iter().filter(|(k, _)| *k == "probe").count();
        let rereads: Vec<Window> = log.iter().skip(1).filter(|(k, _)| *k == "read").map(|(_, w)| *w).collect();
        // Every part looks one call short, so halving stops where a part is 5 pages (435 s): 15
        // probes, then each of the 8 parts is read three times (5 pages each) and given up.
        assert_eq!(probes, 15, "{log:?}");
        assert_eq!(rereads.len(), 8 * 3);
        assert!(rereads.iter().all(|w| w.end_ms - w.start_ms == 434_999), "{rereads:?}");
        assert_eq!(shared.telemetry.snapshot().incomplete_reads, 8);
        // Reading the 35-page settled part whole three times would have cost 105 requests: 120 + 15.
        assert_eq!(report.requests, 37 + 15 + 8 * 3 * 5);
    }

    /// One ended ITA call every six hours, from ten days before T0, each a second past its hour.
    struct EverySixHours;

    impl Source for EverySixHours {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            let records = (0..40u64)
                .map(|k| rec(k + 1, CallState::Ended, T0 - 10 * 86_400_000 + k as i64 * 21_600_000 + 1_000))
                .filter(|r| r.record.start_ms.is_some_and(|s| (w.start_ms..=w.end_ms).contains(&s)))
                .collect();
            Ok(one_page(records))
        }
    }

    #[test]
    fn a_ten_day_catch_up_logs_each_window_and_the_history_left() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let shared = Arc::new(Shared::default());
        let cfg = PollerConfig { max_catchup_ms: 30 * 86_400_000, ..ita_config() };
        let mut p = Poller::new(EverySixHours, cfg, State::default(), shared.clone(), None);
        // The pace depends on this machine's speed: checked to be a whole number above 0 and masked;
        // the time left at that pace is under a second for these few records.
        let mut poll = |now: i64| {
            let (behind, lines) = crate::logging::capture(tracing::Level::INFO, || {
                rt.block_on(async { p.poll_at(now).await.unwrap().plan.behind })
            });
            let masked = lines.iter().map(|l| {
                let (head, rest) = l.split_once(" records_per_s=").expect(l);
                let (rate, tail) = rest.split_once(' ').expect(l);
                assert!(rate.parse::<u64>().is_ok_and(|r| r > 0), "{l}");
                format!("{head} records_per_s=N {tail}")
            });
            (behind, masked.collect::<Vec<_>>())
        };
        // Ten days ago the exporter ran in step with the clock: no catch-up, no line.
        assert_eq!(poll(T0 - 10 * 86_400_000), (false, vec![]));
        assert_eq!(shared.telemetry.snapshot().catchup_remaining_seconds, 0.0);
        // Back after ten days: a window of 7 days less a minute (28 calls), then the rest (12 calls).
        let (behind, lines) = poll(T0);
        assert!(behind);
        assert_eq!(
            lines,
            ["level=info msg=\"catching up\" window=1 windows=2 from=2027-01-05T07:58:00.000Z \
              to=2027-01-12T07:57:00.000Z records=28 records_per_s=N remaining_s=259380.0 eta=0s"]
        );
        assert_eq!(shared.telemetry.snapshot().catchup_remaining_seconds, 259_380.0);
        let (behind, lines) = poll(T0);
        assert!(!behind);
        assert_eq!(
            lines,
            ["level=info msg=\"catching up\" window=2 windows=2 from=2027-01-12T07:55:00.000Z \
              to=2027-01-15T08:00:00.000Z records=40 records_per_s=N remaining_s=0.0 eta=0s"]
        );
        assert_eq!(shared.telemetry.snapshot().catchup_remaining_seconds, 0.0);
        // Caught up: the next poll is quiet again.
        assert_eq!(poll(T0 + 30_000), (false, vec![]));
        assert_eq!(p.state().aggregates.total_calls(), 40);
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let i = Duration::from_secs(30);
        let got: Vec<u64> = (1..=6).map(|f| backoff(i, f).as_secs()).collect();
        assert_eq!(got, vec![30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff(Duration::from_secs(600), 3), Duration::from_secs(600));
        assert_eq!(backoff(Duration::from_secs(1), 40), Duration::from_secs(300));
    }

    /// A gateway inventing 100 ended calls never seen before in every read.
    struct Inventive {
        next: std::sync::atomic::AtomicU64,
    }

    impl Source for Inventive {
        async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
            let first = self.next.fetch_add(100, Ordering::Relaxed);
            Ok(one_page((first..first + 100).map(|id| rec(id, CallState::Ended, w.end_ms - 1_000)).collect()))
        }
    }

    #[tokio::test]
    async fn a_poll_taking_on_more_new_calls_than_eight_reads_hold_fails_whole_and_shrinks_the_window() {
        // A read takes on 10 records, so a poll at most 80 new calls. Every read claims 100: the main
        // window is refused and shrunk to the floor (lookback + 1 min), where it is read anyway, and the
        // two queries bring 100 new calls each. The poll fails, leaves nothing, and the window stays at
        // the floor.
        let day = 86_400_000;
        let cfg = PollerConfig {
            queries: vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA],
            read_capacity: 10,
            max_catchup_ms: 3 * day,
            ..ita_config()
        };
        let mut p = Poller::new(Inventive { next: 1.into() }, cfg, State::default(), Arc::new(Shared::default()), None);
        let before = p.state().clone();
        let err = p.poll_at(T0).await.unwrap_err();
        assert!(matches!(err, PollError::TooManyCalls(80)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "poll read more than 80 calls not seen before; the next poll reads a shorter window"
        );
        assert!(err.retryable());
        assert_eq!(*p.state(), before);
        assert_eq!(p.budget().limit_ms(), Some(WindowBudget::floor_ms(&CFG)));
    }

    mod streaming_review {
        use super::*;
        use crate::metrics::aggregate::OTHER_REASON;
        use std::sync::atomic::AtomicU32;

        /// Main reads serve 1 000 ended calls (so the density keeps targeted reads apart); every
        /// targeted read serves `per_read` calls never seen before, still ringing, started inside it.
        struct Unknown;

        impl Source for Unknown {
            async fn read(&self, _: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
                let mut a = rec(1, CallState::Ended, T0 - 1_000);
                a.record.reason_code = Some(900);
                let mut b = rec(2, CallState::Ended, T0 + 20_000);
                b.record.reason_code = Some(901);
                let recs = [a, b]
                    .into_iter()
                    .filter(|r| r.record.start_ms.is_some_and(|s| (w.start_ms..=w.end_ms).contains(&s)))
                    .collect();
                Ok(one_page(recs))
            }
        }

        /// FINDING (pre-existing, reconcile after a failed commit): Poller::reconcile replaces the state
        /// with Store::reload's, whose Aggregates::reason_cap is #[serde(skip)] = the default 32; it never
        /// calls set_reason_cap. With --metrics.max-unknown-reason-codes 0, every unknown code after a
        /// failed commit gets its own series.
        #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
        async fn a_reconciled_state_keeps_the_configured_reason_code_cap() {
            use crate::store::FailPoint;
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = Store::open(dir.path(), false).unwrap();
            store.fail_next_commit = Some(FailPoint::BeforeWrite);
            let cfg = PollerConfig { max_unknown_reason_codes: 0, ..ita_config() };
            let mut p = Poller::new(Unknown, cfg, State::default(), Arc::new(Shared::default()), Some(store));
            assert!(p.poll_at(T0).await.is_err());
            p.poll_at(T0 + 30_000).await.unwrap();
            let ita = TaskType::ItaBidirectional.index();
            let keys: Vec<u32> = p.state().aggregates.end_reasons[ita].keys().copied().collect();
            assert_eq!(keys, [OTHER_REASON], "with a cap of 0 both unknown codes fold into reason_code=\"other\"");
        }

        /// ALL_BUT_ITA: one call an hour (call 20 still talking the first two times it is read); ITA: one
        /// call every five minutes. A read takes on 100 records: the ITA main read is refused after the
        /// ALL_BUT_ITA one of the same (longer) window was admitted, and the poll re-planned.
        struct TwoQueries {
            from: i64,
            a_reads_of_20: AtomicU32,
        }

        impl Source for TwoQueries {
            async fn read(&self, q: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
                let inside = |s: i64| (w.start_ms..=w.end_ms).contains(&s);
                let recs: Vec<ParsedRecord> = if q == TaskQuery::ALL_BUT_ITA {
                    (0..24u64)
                        .map(|k| (k, self.from + k as i64 * 3_600_000 + 1_000))
                        .filter(|&(_, s)| inside(s))
                        .map(|(k, s)| {
                            let state = if k == 20 && self.a_reads_of_20.fetch_add(1, Ordering::Relaxed) < 2 {
                                CallState::Talking
                            } else {
                                CallState::Ended
                            };
                            rec(k + 1, state, s)
                        })
                        .collect()
                } else {
                    (0..288u64)
                        .map(|k| (k, self.from + k as i64 * 300_000 + 500))
                        .filter(|&(_, s)| inside(s))
                        .map(|(k, s)| rec(10_000 + k, CallState::Ended, s))
                        .collect()
                };
                Ok(one_page(recs))
            }
        }

        /// CONFIRMS (passes): a reshape after another query's pages of the longer window were admitted
        /// counts every call exactly once.
        #[tokio::test]
        async fn a_reshape_after_another_querys_pages_were_admitted_counts_exactly() {
            let day = 86_400_000;
            let cfg = PollerConfig {
                queries: vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA],
                max_catchup_ms: 3 * day,
                read_capacity: 100,
                ..ita_config()
            };
            let source = TwoQueries { from: T0 - day, a_reads_of_20: 0.into() };
            let mut p = Poller::new(source, cfg, State::default(), Arc::new(Shared::default()), None);
            p.poll_at(T0 - day).await.unwrap();
            let mut polls = 0;
            loop {
                polls += 1;
                let r = p.poll_at(T0).await.unwrap();
                if !r.plan.behind {
                    break;
                }
            }
            assert!(polls > 2);
            p.poll_at(T0 + 30_000).await.unwrap();
            assert_eq!(p.state().aggregates.total_calls(), 24 + 288);
            assert_eq!(p.state().ledger.open_len(), 0);
        }

        /// ALL_BUT_ITA as Flaky; ITA never answers once `hang` is set.
        struct HangsOnIta {
            hang: AtomicBool,
        }

        impl Source for HangsOnIta {
            async fn read(&self, q: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
                if q == TaskQuery::ITA && self.hang.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
                let id = if q == TaskQuery::ITA { 2 } else { 1 };
                let s = T0 + 10_000;
                let recs = if (w.start_ms..=w.end_ms).contains(&s) {
                    vec![rec(id, CallState::Ended, s), rec(id + 10, CallState::Talking, s)]
                } else {
                    vec![]
                };
                Ok(one_page(recs))
            }
        }

        /// CONFIRMS (passes): the deadline dropping the fetch after pages of one query were admitted
        /// rolls back everything, and the next poll counts them once.
        #[tokio::test]
        async fn a_deadline_after_admitted_pages_leaves_no_trace() {
            let cfg = PollerConfig {
                queries: vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA],
                deadline: Duration::from_millis(100),
                ..ita_config()
            };
            let mut p = Poller::new(
                HangsOnIta { hang: AtomicBool::new(false) },
                cfg,
                State::default(),
                Arc::new(Shared::default()),
                None,
            );
            p.poll_at(T0).await.unwrap();
            let before = p.state().clone();
            p.source().hang.store(true, Ordering::Relaxed);
            assert!(matches!(p.poll_at(T0 + 30_000).await, Err(PollError::Deadline(_))));
            assert_eq!(*p.state(), before);
            p.source().hang.store(false, Ordering::Relaxed);
            p.poll_at(T0 + 60_000).await.unwrap();
            p.poll_at(T0 + 90_000).await.unwrap();
            assert_eq!(p.state().aggregates.total_calls(), 2);
            assert_eq!(p.state().ledger.open_len(), 2);
        }
        /// FINDING (pre-existing, same root cause): a restart with a lowered
        /// --metrics.max-unknown-reason-codes folds stored codes into "other" in memory (Poller::new);
        /// a failed commit then reconciles from the store, which still holds them unfolded: the
        /// published reason_code="other" counter goes down (2 -> 0), a counter reset to Prometheus.
        #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
        async fn a_reconcile_never_makes_the_other_reason_counter_go_down() {
            use crate::store::FailPoint;
            let dir = tempfile::tempdir().unwrap();
            let (store, _) = Store::open(dir.path(), false).unwrap();
            let mut p = Poller::new(Unknown, ita_config(), State::default(), Arc::new(Shared::default()), Some(store));
            p.poll_at(T0 + 30_000).await.unwrap();
            drop(p);
            let (mut store, restored) = Store::open(dir.path(), false).unwrap();
            store.fail_next_commit = Some(FailPoint::BeforeWrite);
            let shared = Arc::new(Shared::default());
            let cfg = PollerConfig { max_unknown_reason_codes: 0, ..ita_config() };
            let mut p = Poller::new(Unknown, cfg, restored.unwrap(), shared.clone(), Some(store));
            let ita = TaskType::ItaBidirectional;
            assert_eq!(shared.published().aggregates.folded(ita), 2, "both codes folded at start");
            assert!(p.poll_at(T0 + 60_000).await.is_err());
            p.poll_at(T0 + 90_000).await.unwrap();
            assert_eq!(shared.published().aggregates.folded(ita), 2, "reason_code=\"other\" must not decrease");
        }
    }
}
