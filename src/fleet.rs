//! Many tenants in one process (`--config.file`): one poller per tenant, each with its own HTTP
//! client, token, state store (`<--state.path>/tenants/<name>/`), published state and telemetry, so a
//! tenant whose gateway fails or stalls delays no other. This module starts and stops those pollers,
//! applies a re-read file (start the added, stop the removed, restart the changed, leave the rest
//! polling), and is what the server renders when there are tenants. Each poller runs inside a
//! `tenant` span, so every line it logs carries `tenant=<name>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::config::Config;
use crate::ingest::ledger::State;
use crate::ingest::poller::{Poller, Shared};
use crate::tenants::Tenant;

/// A tenant being polled.
pub struct RunningTenant {
    pub name: String,
    /// Its published state and telemetry.
    pub shared: Arc<Shared>,
    /// What it was started with, to tell a changed tenant on reload (the secret apart: it is compared,
    /// never formatted).
    fingerprint: String,
    secret: crate::secret::Secret,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Why a tenant could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tenant {tenant:?}: cannot build the HTTP client: {detail}")]
    Client { tenant: String, detail: String },
    #[error("tenant {tenant:?}: {error}")]
    Store { tenant: String, error: crate::store::StoreError },
}

/// What applying a file changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Tenants whose keys changed: stopped and started again (their counts are restored from the state
    /// store, or start afresh without `--state.path`).
    pub restarted: Vec<String>,
    pub kept: usize,
}

/// The running tenants, sorted by name.
#[derive(Default)]
pub struct Fleet {
    tenants: RwLock<Vec<Arc<RunningTenant>>>,
}

/// The directory of a tenant's state store under `--state.path`.
pub fn state_dir(root: &Path, tenant: &str) -> PathBuf {
    root.join("tenants").join(tenant)
}

/// What a tenant's configuration is, for telling a changed one: every field that matters to its
/// poller but the secret, which is compared apart.
fn fingerprint(c: &Config) -> String {
    format!(
        "{:?}|{:?}|{}|{:?}|{:?}|{:?}",
        c.client.query_url.as_str(),
        c.client.token_url.as_str(),
        c.client.app_key,
        (c.client.token_lifetime_s, c.client.page_size, c.client.timeout, c.client.retries),
        (c.client.max_body_bytes, c.client.max_pages_per_window, c.client.tls.insecure_skip_verify),
        c.poller,
    )
}

/// Whether `running` was started with `t`'s configuration.
fn unchanged(running: &RunningTenant, t: &Tenant) -> bool {
    fingerprint(&t.config) == running.fingerprint && t.config.client.app_secret == running.secret
}

impl Fleet {
    /// The running tenants, sorted by name.
    pub fn tenants(&self) -> Vec<Arc<RunningTenant>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts one tenant's poller: its client, its state store (restored if there is one), its poller
    /// in a `tenant` span.
    pub fn start(t: &Tenant) -> Result<RunningTenant, StartError> {
        let shared = Arc::new(Shared::default());
        let cfg = &t.config;
        let client = crate::cec::client::CecClient::new(cfg.client.clone(), shared.telemetry.clone())
            .map_err(|e| StartError::Client { tenant: t.name.clone(), detail: e.to_string() })?;
        let (store, state) = match &cfg.state_path {
            Some(root) => {
                let dir = state_dir(root, &t.name);
                let (store, restored) = crate::store::Store::open(&dir, cfg.state_reset)
                    .map_err(|error| StartError::Store { tenant: t.name.clone(), error })?;
                (Some(store), restored.unwrap_or_default())
            }
            None => (None, State::default()),
        };
        let span = tracing::info_span!("tenant", tenant = %t.name);
        let _entered = span.enter();
        tracing::info!(
            counted_calls = state.aggregates.total_calls(),
            cursor = %state.ledger.cursor_ms().map(crate::logging::rfc3339_ms).unwrap_or_default(),
            "tenant started"
        );
        let poller = Poller::new(client, cfg.poller.clone(), state, shared.clone(), store);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(poller.run(stop_rx).instrument(span.clone()));
        Ok(RunningTenant {
            name: t.name.clone(),
            shared,
            fingerprint: fingerprint(cfg),
            secret: cfg.client.app_secret.clone(),
            stop,
            task,
        })
    }

    /// Makes the running tenants those of `wanted`: stops the tenants no longer wanted (their state
    /// stays on disk and their series go), starts the new ones, restarts those whose keys changed, and
    /// leaves the others polling with their counts. A tenant that cannot start is left out, with its
    /// error; the others still apply.
    pub async fn apply(&self, wanted: &[Tenant]) -> (Applied, Vec<StartError>) {
        let mut applied = Applied::default();
        let mut errors = Vec::new();
        let current = self.tenants();
        let mut next: Vec<Arc<RunningTenant>> = Vec::new();
        let mut to_stop: Vec<Arc<RunningTenant>> = Vec::new();
        for running in &current {
            match wanted.iter().find(|t| t.name == running.name) {
                Some(t) if unchanged(running, t) => {
                    applied.kept += 1;
                    next.push(running.clone());
                }
                Some(_) => {
                    applied.restarted.push(running.name.clone());
                    to_stop.push(running.clone());
                }
                None => {
                    applied.removed.push(running.name.clone());
                    to_stop.push(running.clone());
                }
            }
        }
        // Stopped (and their stores closed) before a restarted tenant opens its store again.
        for t in &to_stop {
            stop(t).await;
        }
        for t in wanted {
            if next.iter().any(|r| r.name == t.name) {
                continue;
            }
            if !applied.restarted.contains(&t.name) {
                applied.added.push(t.name.clone());
            }
            match Fleet::start(t) {
                Ok(r) => next.push(Arc::new(r)),
                Err(e) => errors.push(e),
            }
        }
        next.sort_by(|a, b| a.name.cmp(&b.name));
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = next;
        (applied, errors)
    }

    /// Stops every tenant and waits for their pollers.
    pub async fn stop_all(&self) {
        let all = std::mem::take(&mut *self.tenants.write().unwrap_or_else(|p| p.into_inner()));
        for t in &all {
            stop(t).await;
        }
    }

    /// A tenant whose poller ended on its own (it panicked), if any.
    pub fn crashed(&self) -> Option<String> {
        self.tenants().iter().find(|t| t.task.is_finished() && !*t.stop.borrow()).map(|t| t.name.clone())
    }
}

/// Tells `t`'s poller to stop and waits until it has (a poll under way is dropped: it committed
/// nothing), so that its state store is closed.
async fn stop(t: &RunningTenant) {
    let _ = t.stop.send(true);
    while !t.task.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
