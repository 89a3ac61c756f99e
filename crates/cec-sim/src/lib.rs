//! cec-sim: a simulator of Huawei Cloud CEC's call-history API (tokenByAkSk + queryCallDetailRecord)
//! for cec-exporter's demo, integration tests and benchmarks. It follows the vendor page and
//! `shared/cec-api/README.md`, quirks included, serves scripted or seeded random traffic, and knows
//! the exact truth of what a perfect exporter would count.
//!
//! It is the exporter's test oracle, so it is deliberately independent of it: this crate does not
//! depend on cec-exporter, and it keeps its own reading of the vendor's tables (its own [`Outcome`]
//! and [`classify`], task-type labels, paths and clock) rather than sharing the exporter's. A
//! misreading of the vendor page then shows up as a disagreement between the two, not as the same
//! mistake on both sides. The two meet only in label strings (`"no_answer"`, `"ita_bidirectional"`),
//! which is what comparisons between them use.
//!
//! This file owns the public entry point (`Simulator`, its config, the clock) and the shared state;
//! [`Running`] runs it in the background, the HTTP side lives in `http.rs`. A new vendor quirk goes
//! into the call model (`model.rs`, how a record looks) or the query rules (`query.rs`); a new fault
//! switch is a field of [`Faults`] (`stats.rs`), injected in `http.rs`.
//!
//! Served paths:
//! - `POST /apigovernance/api/oauth/tokenByAkSk` and
//!   `POST /apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord`: the vendor interfaces.
//! - `GET /sim/truth[?since_ms=N]` → [`Truth`]; `GET /sim/stats` → [`Stats`];
//!   `GET|POST /sim/faults` ([`Faults`] JSON, missing fields = off; answers the pending faults);
//!   `POST /sim/calls` (JSON array of [`CallSpec`]; answers `{"added": n}`, or 400 and adds none).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use cec_sim::{now_ms, CallSpec, Outcome, SimConfig, Simulator, Traffic, SERIAL_BASE};
//! let sim = Simulator::new(SimConfig {
//!     app_key: "key".into(),
//!     app_secret: "secret".into(),
//!     seed: 1,
//!     traffic: Traffic::None,
//!     max_record_latency: std::time::Duration::ZERO,
//! });
//! let t0 = now_ms() - 60_000;
//! sim.add_calls(vec![
//!     CallSpec::builder(SERIAL_BASE, 1, t0).talk_ms(12_000).build(),
//!     CallSpec::builder(SERIAL_BASE + 1, 4, t0).outcome(Outcome::Busy).build(),
//! ]);
//! // Serves on a free 127.0.0.1 port until `running` is dropped or shut down.
//! let running = sim.spawn_loopback().await?;
//! assert!(running.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(running.sim().truth().ended_calls, 2);
//! assert_eq!(sim.truth().calls_of("ita_bidirectional", "busy"), 1);
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod generator;
mod http;
mod model;
mod query;
mod running;
mod stats;
mod store;
#[cfg(test)]
mod testing;
mod truth;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use model::{
    classify, has_agent_leg, task_type_label, CallBuilder, CallSpec, Outcome, SpecError, MIN_SERIAL, SERIAL_BASE,
    TASK_ANONYMOUS_OUTBOUND, TASK_CEC_BIDIRECTIONAL, TASK_ITA_BIDIRECTIONAL, TASK_VOICE_NOTIFICATION,
};
pub use running::Running;
pub use stats::{
    ChaosConfig, ChaosKind, Faults, QueryLogEntry, RequestCount, Stats, DEFAULT_OVERSIZED_MIB, DEFAULT_REDIRECT_TO,
    LOG_CAPACITY, LYING_TOTAL,
};
pub use truth::{CallCount, DelaySum, DurationSum, LastEnd, ReasonCount, StateCount, Truth};

/// Path of the token interface.
pub const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// Path of the call-history interface.
pub const QUERY_PATH: &str = "/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord";

/// The simulator's one clock: the real wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How the simulator is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The only app_key tokenByAkSk accepts.
    pub app_key: String,
    /// The only app_secret tokenByAkSk accepts.
    pub app_secret: String,
    /// Seeds the traffic and every per-record and per-response choice.
    pub seed: u64,
    /// Generated traffic, if any.
    pub traffic: Traffic,
    /// Largest delay between a call's start and its record first being returned (record latency),
    /// and between its end and state 3 being visible. Each call draws its own delays in [0, this].
    pub max_record_latency: Duration,
}

/// Generated traffic.
#[derive(Clone, Debug)]
pub enum Traffic {
    /// No generated calls; tests add scripted calls with `Simulator::add_calls`.
    None,
    /// Seeded random traffic: Poisson arrivals, generated lazily as time passes, also `history` back from
    /// the moment the simulator is created (so a fresh exporter's backfill finds data).
    Random {
        /// Mean arrival rate.
        calls_per_minute: f64,
        /// How far before creation arrivals begin.
        history: Duration,
        /// Multiplies every queue, ring and talk time (0.01 for tests, 1.0 for the demo).
        duration_scale: f64,
    },
}

/// A token and when it stops being accepted.
#[derive(Debug, Clone, Copy)]
struct TokenInfo {
    expires_at_ms: i64,
}

/// The simulated CEC tenant. Create with [`Simulator::new`]; run it in the background with
/// [`Simulator::spawn_loopback`] or [`Simulator::spawn_on`], or in the foreground with [`Simulator::serve`].
#[derive(Debug)]
pub struct Simulator {
    app_key: String,
    app_secret: String,
    seed: u64,
    store: Mutex<store::Store>,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    faults: Mutex<Faults>,
    stats: Mutex<stats::StatsState>,
    /// Numbers the responses, so per-response coin flips differ yet replay for a given seed.
    responses: AtomicU64,
    /// Numbers the business requests since the faults were last set: the random faults' draws.
    chaos_draws: AtomicU64,
}

/// A panic while holding a lock leaves plain data behind (counters, maps); keep serving it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Simulator {
    /// A simulator whose random history (if any) reaches back from now.
    pub fn new(cfg: SimConfig) -> Arc<Self> {
        let created = now_ms();
        let generator = match cfg.traffic {
            Traffic::None => None,
            Traffic::Random { calls_per_minute, history, duration_scale } => generator::Generator::new(
                cfg.seed,
                calls_per_minute,
                created.saturating_sub(i64::try_from(duration_ms(history)).unwrap_or(i64::MAX)),
                duration_scale,
                duration_ms(cfg.max_record_latency),
            ),
        };
        Arc::new(Self {
            app_key: cfg.app_key,
            app_secret: cfg.app_secret,
            seed: cfg.seed,
            store: Mutex::new(store::Store::new(cfg.seed, generator)),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(stats::StatsState::default()),
            responses: AtomicU64::new(0),
            chaos_draws: AtomicU64::new(0),
        })
    }

    /// Serves both interfaces and the control endpoints until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        http::serve(self, listener, shutdown).await
    }

    /// Adds scripted calls.
    ///
    /// # Panics
    /// If a spec is invalid or its serial is already taken (see [`Simulator::try_add_calls`]).
    pub fn add_calls(&self, calls: Vec<CallSpec>) {
        if let Err(e) = self.try_add_calls(calls) {
            panic!("simulator: cannot add calls: {e}");
        }
    }

    /// Adds scripted calls, all or none; returns how many were added.
    pub fn try_add_calls(&self, calls: Vec<CallSpec>) -> Result<usize, SpecError> {
        let mut store = lock(&self.store);
        store.advance(now_ms());
        store.add(calls)
    }

    /// Replaces the fault switches; `revoke_tokens` takes effect at once and is not kept.
    pub fn set_faults(&self, mut faults: Faults) {
        if std::mem::take(&mut faults.revoke_tokens) {
            lock(&self.tokens).clear();
        }
        let mut f = lock(&self.faults);
        *f = faults;
        // A new chaos config replays from its first draw.
        self.chaos_draws.store(0, Ordering::Relaxed);
    }

    /// The random fault for the next business request, if chaos is on.
    fn chaos_draw(&self) -> Option<ChaosKind> {
        let f = lock(&self.faults);
        let chaos = f.chaos.as_ref()?;
        chaos.draw(self.chaos_draws.fetch_add(1, Ordering::Relaxed))
    }

    /// The fault switches still pending (counters decrease as faults are injected).
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// What a perfect exporter would report now, over every call.
    pub fn truth(&self) -> Truth {
        self.truth_at(None)
    }

    /// Like [`Simulator::truth`], restricted to calls that started at or after `start_ms`.
    pub fn truth_since(&self, start_ms: i64) -> Truth {
        self.truth_at(Some(start_ms))
    }

    fn truth_at(&self, since_ms: Option<i64>) -> Truth {
        let now = now_ms();
        let mut store = lock(&self.store);
        store.advance(now);
        store.truth(now, since_ms)
    }

    /// What the simulator observed so far.
    pub fn stats(&self) -> Stats {
        lock(&self.stats).snapshot()
    }

    /// Stored calls (visible or not), scripted and generated so far.
    pub fn call_count(&self) -> usize {
        let mut store = lock(&self.store);
        store.advance(now_ms());
        store.len()
    }

    fn next_response_coin(&self) -> u64 {
        let n = self.responses.fetch_add(1, Ordering::Relaxed);
        model::mix(self.seed, n, 0xC0)
    }
}
