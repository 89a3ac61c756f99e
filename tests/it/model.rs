//! A model of CEC driven through the real poller for hours of simulated time: every call must be counted
//! exactly once, whatever CEC's undocumented choices (window ends inclusive or exclusive), its quirks
//! (records late, without startTime, reordered between pages so one is repeated and one skipped) and
//! this host's clock (jumping forward, stepping back) do. Each call carries its own reason code, so
//! "exactly once" is checked call by call, not as a total where a miss could hide a double count.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cec_exporter::cec::client::{PageSink, Stop, WindowRead};
use cec_exporter::cec::record::{CallId, CallRecord, CallState, TaskQuery, TaskType};
use cec_exporter::cec::window::{Window, MAX_WINDOW_MS};
use cec_exporter::cec::wire::ParsedRecord;
use cec_exporter::cec::ApiError;
use cec_exporter::cec::Endpoint;
use cec_exporter::ingest::ledger::{Retention, State};
use cec_exporter::ingest::plan::PlanConfig;
use cec_exporter::ingest::poller::{Poller, PollerConfig, Shared, Source};

use crate::harness::Rng;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const LOOKBACK: i64 = 5 * MIN;
const INTERVAL: i64 = 30_000;

#[derive(Clone, Copy, Debug)]
struct Quirks {
    exclusive_start: bool,
    exclusive_end: bool,
    /// Chance, at each page boundary, that a record not yet served moves ahead of the offset.
    reorder: f64,
    /// Share of records without startTime.
    no_start: f64,
    /// Largest delay before a record first shows, ms.
    max_latency: i64,
    /// `(from, until, offset)`: this host's clock reads `offset` ms off between those real times.
    clock: Option<(i64, i64, i64)>,
    /// Calls a hostile gateway invents: open (state 2) forever, started before any real call.
    ghosts: u64,
    /// `--poll.max-open-calls`.
    max_open_calls: usize,
    /// Records one read takes on: a main window whose first page says more is re-planned shorter.
    read_capacity: u64,
    /// Every so many reads (0: never) fails after half its pages were handed over, during the first
    /// 150 minutes: the poll is rolled back and read again.
    fail_every: u64,
}

const BASE: Quirks = Quirks {
    exclusive_start: false,
    exclusive_end: false,
    reorder: 0.0,
    no_start: 0.0,
    max_latency: 10_000,
    clock: None,
    ghosts: 0,
    max_open_calls: 250_000,
    read_capacity: 100_000,
    fail_every: 0,
};

/// Serial numbers of invented calls start here (real ones are far below).
const GHOST: u64 = 9_000_000_000_000_000_000;

struct Call {
    id: u64,
    code: u16,
    ita: bool,
    start: i64,
    visible: i64,
    end_visible: i64,
    no_start: bool,
}

/// CEC as the vendor documents it, with the quirks switched on.
struct ModelCec {
    calls: Vec<Call>,
    now: AtomicI64,
    quirks: Quirks,
    rng: Mutex<Rng>,
    /// Reads streamed so far, to pick the ones that fail.
    reads: AtomicU64,
}

impl Source for ModelCec {
    async fn read(&self, query: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
        Ok(self.serve(query, w, usize::MAX))
    }

    /// As the real client streams: pages of 100 handed over one by one, a first page refused when
    /// `total` is more than the poller takes on, and (`fail_every`) a read failing half-way through
    /// its pages, after the poller admitted them.
    async fn stream(
        &self,
        query: TaskQuery,
        w: Window,
        refuse_over: Option<u64>,
        sink: &mut PageSink<'_>,
    ) -> Result<WindowRead, ApiError> {
        let r = self.serve(query, w, usize::MAX);
        if let (Some(max), Some(total)) = (refuse_over, r.total) {
            if total > max {
                return Ok(WindowRead { stopped: Some(Stop::TooBig), records: Vec::new(), requests: 1, ..r });
            }
        }
        let n = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        let k = self.quirks.fail_every;
        let fail = k > 0
            && self.now.load(Ordering::Relaxed) < T0 + 150 * MIN
            && n.wrapping_mul(0x9E37_79B9_7F4A_7C15).is_multiple_of(k);
        let r = r.counted();
        let (pages, mut records) = (r.records.len().div_ceil(100), r.records.into_iter());
        for i in 0..pages {
            if fail && i >= pages / 2 {
                return Err(ApiError::Status {
                    endpoint: Endpoint::QueryCallDetailRecord,
                    status: 503,
                    retry_after: None,
                });
            }
            sink(records.by_ref().take(100).collect());
        }
        if fail {
            return Err(ApiError::Status { endpoint: Endpoint::QueryCallDetailRecord, status: 503, retry_after: None });
        }
        Ok(WindowRead { records: Vec::new(), ..r })
    }

    /// One page, as the real client probes a settled window: the poller must find skipped records by
    /// probing halves, and every call must still count once.
    async fn probe(&self, query: TaskQuery, w: Window) -> Result<WindowRead, ApiError> {
        Ok(self.serve(query, w, 1))
    }
}

impl ModelCec {
    /// Up to `max_pages` pages of `query` over `w`, from offset 0.
    fn serve(&self, query: TaskQuery, w: Window, max_pages: usize) -> WindowRead {
        let now = self.now.load(Ordering::Relaxed);
        let q = self.quirks;
        let mut order: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.ita == (query == TaskQuery::ITA))
            .filter(|c| if q.exclusive_start { c.start > w.start_ms } else { c.start >= w.start_ms })
            .filter(|c| if q.exclusive_end { c.start < w.end_ms } else { c.start <= w.end_ms })
            .filter(|c| now >= c.visible)
            .collect();
        // Not by time: by a hash of the serial.
        order.sort_by_key(|c| c.id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let total = order.len();
        let mut out = WindowRead { total: Some(total as u64), total_unchanged: true, ..Default::default() };
        let mut offset = 0;
        let mut rng = self.rng.lock().unwrap();
        loop {
            out.requests += 1;
            let page = &order[offset..(offset + 100).min(total)];
            for c in page {
                let state = if now >= c.end_visible { CallState::Ended } else { CallState::Talking };
                out.records.push(ParsedRecord {
                    id: CallId(c.id),
                    state,
                    record: CallRecord {
                        start_ms: (!c.no_start).then_some(c.start),
                        reason_code: Some(c.code),
                        talk_s: Some(10.0),
                        ..Default::default()
                    },
                    invalid: Default::default(),
                });
            }
            offset += page.len();
            if offset >= total || out.requests as usize >= max_pages {
                return out;
            }
            if (rng.below(1_000_000) as f64) < q.reorder * 1e6 {
                // A record not served yet moves ahead of the offset: it is skipped by this read, and
                // the one before the offset is pushed onto the next page and served twice.
                let from = offset + rng.below((total - offset) as u64) as usize;
                let to = rng.below(offset as u64) as usize;
                let c = order.remove(from);
                order.insert(to, c);
            }
        }
    }
}

/// Three hours of traffic (one call every 2 s on average, 5 % of them 10-60 min long), then an hour of
/// polls with no new calls; returns the poller's state, the real calls, and how many open calls the
/// polls gave up for `--poll.max-open-calls` (checked to hold after every poll).
async fn run(seed: u64, quirks: Quirks) -> (State, Vec<(u64, u16, bool)>, u64) {
    let mut rng = Rng::new(seed);
    let mut calls = Vec::new();
    let mut t = T0 - 50 * MIN;
    let mut code = 0u16;
    while t < T0 + 2 * 3_600_000 {
        t += 1 + rng.below(4_000) as i64;
        code += 1;
        let dur =
            if rng.below(100) < 5 { 10 * MIN + rng.below(50 * MIN as u64) as i64 } else { rng.below(60_000) as i64 };
        let visible = t + rng.below(quirks.max_latency as u64 + 1) as i64;
        calls.push(Call {
            id: 1_037_058_396_471_308_289 + u64::from(code) * 17,
            code,
            ita: rng.below(5) == 0,
            start: t,
            visible,
            end_visible: (t + dur + rng.below(5_000) as i64).max(visible),
            no_start: (rng.below(1_000_000) as f64) < quirks.no_start * 1e6,
        });
    }
    let expected = calls.iter().map(|c| (c.id, c.code, c.ita)).collect();
    for g in 0..quirks.ghosts {
        let start = T0 - 59 * MIN + (g as i64 * 7) % (8 * MIN);
        calls.push(Call {
            id: GHOST + g,
            code: 0,
            ita: false,
            start,
            visible: start,
            end_visible: i64::MAX,
            no_start: false,
        });
    }
    let cec = ModelCec {
        calls,
        now: AtomicI64::new(T0),
        quirks,
        rng: Mutex::new(Rng::new(seed + 100)),
        reads: AtomicU64::new(0),
    };
    let cfg = PollerConfig {
        interval: Duration::from_millis(INTERVAL as u64),
        plan: PlanConfig {
            backfill_ms: 3_600_000,
            lookback_ms: LOOKBACK,
            pad_ms: 1_000,
            max_window_ms: MAX_WINDOW_MS,
            page_size: 100,
        },
        retention: Retention {
            lookback_ms: LOOKBACK,
            max_call_ms: 24 * 3_600_000,
            max_open_calls: quirks.max_open_calls,
        },
        queries: vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA],
        max_catchup_ms: 30 * 24 * 3_600_000,
        deadline: Duration::from_secs(300),
        // Each call carries its own reason code, and the check reads each code's series.
        max_unknown_reason_codes: usize::MAX,
        read_capacity: quirks.read_capacity,
        callers: Vec::new(),
    };
    let mut poller = Poller::new(cec, cfg, State::default(), Arc::new(Shared::default()), None);
    let mut now = T0;
    let mut evicted = 0;
    while now < T0 + 3 * 3_600_000 {
        let clock = match quirks.clock {
            Some((from, until, off)) if (from..until).contains(&now) => now + off,
            _ => now,
        };
        poller.source().now.store(now, Ordering::Relaxed);
        let report = match poller.poll_at(clock).await {
            Ok(report) => report,
            // A read failed half-way on purpose: the poll left no trace, the next one reads it again.
            Err(_) if quirks.fail_every > 0 => {
                now += INTERVAL;
                continue;
            }
            Err(e) => panic!("the model never fails: {e}"),
        };
        evicted += report.summary.evicted;
        let open = poller.state().ledger.open_len();
        assert!(open <= quirks.max_open_calls, "{open} open calls, cap {}", quirks.max_open_calls);
        now += INTERVAL;
    }
    (poller.state().clone(), expected, evicted)
}

async fn each_call_counted_exactly_once(name: &str, quirks: Quirks) {
    for seed in 1..=3 {
        let (state, calls, evicted) = run(seed, quirks).await;
        let mut wrong = Vec::new();
        for &(id, code, ita) in &calls {
            let t = if ita { TaskType::ItaBidirectional } else { TaskType::Unknown };
            let n = state.aggregates.end_reasons[t.index()].get(&u32::from(code)).map_or(0, |c| c.count);
            if n != 1 {
                wrong.push((id, n));
            }
        }
        assert!(
            wrong.is_empty(),
            "{name}, seed {seed}: {} of {} calls counted other than once: {:?}",
            wrong.len(),
            calls.len(),
            &wrong[..wrong.len().min(5)]
        );
        assert_eq!(state.aggregates.total_calls(), calls.len() as u64, "{name}, seed {seed}");
        // Only invented calls are still open: those the cap did not give up (the oldest went first).
        assert!(state.ledger.open_calls().all(|(id, _)| id.0 >= GHOST), "{name}, seed {seed}");
        let ghosts_open = state.ledger.open_len() as u64;
        assert!(ghosts_open <= quirks.max_open_calls as u64, "{name}, seed {seed}");
        assert_eq!(evicted + ghosts_open, quirks.ghosts, "{name}, seed {seed}: every invented call given up once");
    }
}

/// A gateway inventing 3 000 calls that never end, against a cap of 400 open calls: the cap holds after
/// every poll, the invented calls (the oldest) are given up first, and every real call, all within the
/// cap, still counts exactly once.
#[tokio::test]
async fn model_invented_open_calls_beyond_the_cap() {
    each_call_counted_exactly_once("ghosts", Quirks { ghosts: 3_000, max_open_calls: 400, ..BASE }).await;
}

/// Pages streamed into the ledger while reads fail half-way (one read in 7, for the first 150 minutes,
/// so the poll is rolled back after admitting pages), and main windows refused by their first page and
/// re-planned because a read takes on only 300 records: every call still counts exactly once.
#[tokio::test]
async fn model_reads_failing_half_way_and_windows_reshaped_by_their_first_page() {
    each_call_counted_exactly_once("rollback and reshape", Quirks { read_capacity: 300, fail_every: 7, ..BASE }).await;
    each_call_counted_exactly_once("reshape", Quirks { read_capacity: 300, reorder: 0.2, ..BASE }).await;
}

#[tokio::test]
async fn model_base() {
    each_call_counted_exactly_once("base", BASE).await;
}

#[tokio::test]
async fn model_window_ends_exclusive() {
    each_call_counted_exactly_once("exclusive start", Quirks { exclusive_start: true, ..BASE }).await;
    each_call_counted_exactly_once("exclusive end", Quirks { exclusive_end: true, ..BASE }).await;
    each_call_counted_exactly_once("exclusive both", Quirks { exclusive_start: true, exclusive_end: true, ..BASE })
        .await;
}

#[tokio::test]
async fn model_records_reordered_between_pages() {
    each_call_counted_exactly_once("reorder", Quirks { reorder: 0.3, ..BASE }).await;
}

#[tokio::test]
async fn model_records_without_start_time() {
    each_call_counted_exactly_once("no startTime", Quirks { no_start: 0.1, ..BASE }).await;
}

#[tokio::test]
async fn model_records_late_by_most_of_the_lookback() {
    each_call_counted_exactly_once("late", Quirks { max_latency: 4 * MIN, ..BASE }).await;
}

#[tokio::test]
async fn model_clock_jumping_forward_for_one_poll() {
    let jump = Some((T0 + 3_600_000, T0 + 3_600_000 + INTERVAL, 3_600_000));
    each_call_counted_exactly_once("clock +1h", Quirks { clock: jump, ..BASE }).await;
}

#[tokio::test]
async fn model_clock_stepping_back_for_half_an_hour() {
    let step = Some((T0 + 3_600_000, T0 + 5_400_000, -10 * MIN));
    each_call_counted_exactly_once("clock -10m", Quirks { clock: step, ..BASE }).await;
}

#[tokio::test]
async fn model_everything_at_once() {
    let all = Quirks {
        exclusive_start: true,
        exclusive_end: true,
        reorder: 0.2,
        no_start: 0.05,
        max_latency: 2 * MIN,
        clock: Some((T0 + 3_600_000, T0 + 3_600_000 + INTERVAL, 3_600_000)),
        ..BASE
    };
    each_call_counted_exactly_once("all quirks", all).await;
}
