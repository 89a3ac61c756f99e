//! The background loop: every interval, plan the windows, read every page of every read, and only when
//! all of them succeeded admit the records and publish the new state. A failed poll leaves no trace: it
//! is one [`PollFailed`] event (one line, its counters), and is retried after a backoff. A scrape never
//! waits for a poll. Everything worth a line or a counter is emitted as an event of [`crate::events`];
//! the poller itself neither logs failures nor touches counters.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::ledger::{PollSummary, Retention, State};
use super::plan::{plan, PlanConfig, PollPlan, Read};
use crate::cec::client::{CecClient, WindowRead};
use crate::cec::record::TaskQuery;
use crate::cec::window::Window;
use crate::cec::wire::ParsedRecord;
use crate::cec::ApiError;
use crate::events::{
    CatchupSkipped, IncompleteRead, InternalEvent, LateRecords, OpenCallsAbandoned, PollCommitted, PollFailed,
    StateCommitFailed, StateCommitted, WindowFetched,
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
}

/// Why a poll failed; either way it left no trace and is retried later.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PollError {
    pub fn retryable(&self) -> bool {
        match self {
            PollError::Api(e) => e.retryable(),
            PollError::Store(e) => e.retryable(),
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
}

impl Source for CecClient {
    async fn read(&self, query: TaskQuery, window: Window) -> Result<WindowRead, ApiError> {
        self.read_window(query, window).await
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
}

/// A committed poll.
#[derive(Debug)]
pub struct PollReport {
    pub plan: PollPlan,
    pub summary: PollSummary,
    pub requests: u64,
}

impl<S: Source> Poller<S> {
    pub fn new(source: S, cfg: PollerConfig, state: State, shared: Arc<Shared>, store: Option<Store>) -> Poller<S> {
        let p = Poller { source, cfg, state, shared, density: Vec::new(), store };
        p.publish();
        p
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// One poll at the wall clock's time.
    pub async fn poll_once(&mut self) -> Result<PollReport, PollError> {
        self.poll_at(now_ms()).await
    }

    /// One poll as if the clock read `now` (epoch ms): every read, then one commit. On error nothing
    /// changed.
    pub async fn poll_at(&mut self, now: i64) -> Result<PollReport, PollError> {
        // An outage beyond --poll.max-catchup: plan from the limit; the ledger's cursor moves there only
        // with this poll's commit, so a poll that fails leaves the skip undone (and unreported).
        let limit = now.saturating_sub(self.cfg.max_catchup_ms);
        let cursor = self.state.ledger.cursor_ms().map(|c| c.max(limit));
        let mut fetched: Vec<(Read, Vec<ParsedRecord>)> = Vec::new();
        let mut requests = 0;
        // Main windows first; the targeted reads are planned after them, with the record density the
        // main windows just showed (so even the first poll after a restart merges them well).
        let mut plan = self.plan(now, cursor);
        for read in plan.reads.clone().iter().filter(|r| !r.targeted) {
            let r = self.read(read.query, read.window).await?;
            requests += r.requests;
            let complete = r.complete();
            let d = r.records.len() as f64 / (read.window.end_ms - read.window.start_ms + 1) as f64;
            match self.density.iter_mut().find(|(q, _)| *q == read.query) {
                Some(slot) => slot.1 = d,
                None => self.density.push((read.query, d)),
            }
            fetched.push((*read, r.records));
            if let (false, Some(settled)) = (complete, plan.settled) {
                self.reread_settled(read.query, settled, &mut fetched, &mut requests).await?;
            }
        }
        plan.reads = self.plan(now, cursor).reads;
        for read in plan.reads.iter().filter(|r| r.targeted) {
            let r = self.read(read.query, read.window).await?;
            requests += r.requests;
            fetched.push((*read, r.records));
        }
        let checkpoint = self.store.is_some().then(|| self.state.checkpoint());
        let skipped = self.state.ledger.skip_to(limit);
        let summary = self.state.apply(&plan, fetched.iter().map(|(r, v)| (r, v.as_slice())), now, self.cfg.retention);
        if let (Some(store), Some(cp)) = (self.store.as_mut(), checkpoint) {
            // redb's commit is blocking file I/O with an fsync: keep it off the async workers' queue.
            let result = tokio::task::block_in_place(|| store.commit(&self.state));
            let telemetry = &self.shared.telemetry;
            match result {
                Ok(()) => StateCommitted { bytes: store.size() }.emit(telemetry),
                Err(e) => {
                    self.state.rollback(cp);
                    StateCommitFailed { error: &e }.emit(telemetry);
                    return Err(e.into());
                }
            }
        }
        self.state.committed();
        if let Some((from_ms, to_ms)) = skipped {
            CatchupSkipped { from_ms, to_ms }.emit(&self.shared.telemetry);
        }
        self.publish();
        Ok(PollReport { plan, summary, requests })
    }

    /// Every page of `query` over `window`. What the pages served and skipped was reported page by page
    /// by the client ([`crate::cec::ApiObserver::page`]); this only notes the finished read.
    async fn read(&self, query: TaskQuery, window: Window) -> Result<WindowRead, ApiError> {
        let r = self.source.read(query, window).await?;
        WindowFetched { query, window, read: &r }.emit(&self.shared.telemetry);
        Ok(r)
    }

    /// The plan of a poll at `now` from `cursor`, the ledger's open calls and the densities known so far.
    fn plan(&self, now: i64, cursor: Option<i64>) -> PollPlan {
        plan(&self.cfg.plan, now, cursor, &self.cfg.queries, self.state.ledger.open_spans(), |q| {
            self.density.iter().find(|(dq, _)| *dq == q).map(|(_, d)| *d)
        })
    }

    /// The main window's pages did not partition CEC's answer (it changed while paged), so a record of
    /// the settled part, which the next poll will not read again, may have been skipped. Nothing new
    /// starts there; read it again until every call CEC counts there has been seen, three times at most.
    async fn reread_settled(
        &self,
        query: TaskQuery,
        settled: Window,
        fetched: &mut Vec<(Read, Vec<ParsedRecord>)>,
        requests: &mut u64,
    ) -> Result<(), PollError> {
        let read = Read { query, window: settled, targeted: false };
        let mut seen = hashbrown::HashSet::new();
        // Each read is logged as a `WindowFetched` event; only giving up is worth a warning.
        for _ in 0..3 {
            let r = self.read(query, settled).await?;
            *requests += r.requests;
            seen.extend(r.records.iter().map(|rec| rec.id));
            let covered = r.total.is_none_or(|t| (seen.len() + r.rejected.len()) as u64 >= t);
            fetched.push((read, r.records));
            if covered {
                return Ok(());
            }
        }
        IncompleteRead { query, window: settled }.emit(&self.shared.telemetry);
        Ok(())
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
            // Dropping a poll half-way is safe: nothing changes before its last read has succeeded.
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
            Ok(WindowRead {
                total: Some(records.len() as u64),
                records,
                requests: 1,
                total_unchanged: true,
                rejected: Vec::new(),
                stopped: None,
            })
        }
    }

    /// Polls every 30 s for ITA calls, catching up at most an hour.
    fn ita_config() -> PollerConfig {
        PollerConfig {
            interval: Duration::from_secs(30),
            plan: CFG,
            retention: RET,
            queries: vec![TaskQuery::ITA],
            max_catchup_ms: 3_600_000,
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
        // would count every entry twice.
        let d = shared.telemetry.snapshot();
        assert_eq!((d.records_fetched, d.records_rejected.len(), d.fields_invalid.len()), (0, 0, 0));
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let i = Duration::from_secs(30);
        let got: Vec<u64> = (1..=6).map(|f| backoff(i, f).as_secs()).collect();
        assert_eq!(got, vec![30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff(Duration::from_secs(600), 3), Duration::from_secs(600));
        assert_eq!(backoff(Duration::from_secs(1), 40), Duration::from_secs(300));
    }
}
