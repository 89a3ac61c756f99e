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
    /// It could not start: no poller runs; its telemetry says so (`cec_up` 0, one failed poll), and
    /// every [`Fleet::apply`] tries again.
    failed: bool,
}

/// Why a tenant could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tenant {tenant:?}: cannot build the HTTP client: {detail}")]
    Client { tenant: String, detail: String },
    #[error(
        "tenant {tenant:?}: {error} (with --config.file, --state.reset moves every tenant's store aside; to \
         start this tenant alone afresh, move {} aside instead)",
        dir.display()
    )]
    Store { tenant: String, dir: PathBuf, error: crate::store::StoreError },
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

/// Whether `running` was started with `t`'s configuration (and did start).
fn unchanged(running: &RunningTenant, t: &Tenant) -> bool {
    !running.failed && fingerprint(&t.config) == running.fingerprint && t.config.client.app_secret == running.secret
}

impl Fleet {
    /// The running tenants, sorted by name.
    pub fn tenants(&self) -> Vec<Arc<RunningTenant>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts one tenant's poller: its client, its state store (restored if there is one), its poller
    /// in a `tenant` span. A tenant that cannot start is returned as such (see [`RunningTenant`]),
    /// with the error, so that it shows and is retried instead of stopping the others.
    pub fn start(t: &Tenant) -> (RunningTenant, Option<StartError>) {
        let shared = Arc::new(Shared::default());
        let cfg = &t.config;
        let (stop, stop_rx) = watch::channel(false);
        let running = |task, failed, shared| RunningTenant {
            name: t.name.clone(),
            shared,
            fingerprint: fingerprint(cfg),
            secret: cfg.client.app_secret.clone(),
            stop: stop.clone(),
            task,
            failed,
        };
        let started = (|| -> Result<_, StartError> {
            let client = crate::cec::client::CecClient::new(cfg.client.clone(), shared.telemetry.clone())
                .map_err(|e| StartError::Client { tenant: t.name.clone(), detail: e.to_string() })?;
            let (store, state) = match &cfg.state_path {
                Some(root) => {
                    let dir = state_dir(root, &t.name);
                    let (store, restored) = crate::store::Store::open(&dir, cfg.state_reset)
                        .map_err(|error| StartError::Store { tenant: t.name.clone(), dir: dir.clone(), error })?;
                    (Some(store), restored.unwrap_or_default())
                }
                None => (None, State::default()),
            };
            Ok((client, store, state))
        })();
        let (client, store, state) = match started {
            Ok(parts) => parts,
            Err(e) => {
                let failed = crate::events::TenantStartFailed {
                    tenant: &t.name,
                    error: &e.to_string(),
                    store: matches!(e, StartError::Store { .. }),
                    at_ms: crate::ingest::poller::now_ms(),
                };
                crate::events::InternalEvent::emit(&failed, &shared.telemetry);
                return (running(tokio::spawn(async {}), true, shared), Some(e));
            }
        };
        let span = tracing::info_span!("tenant", tenant = %t.name);
        let task = {
            let _entered = span.enter();
            tracing::info!(
                counted_calls = state.aggregates.total_calls(),
                cursor = %state.ledger.cursor_ms().map(crate::logging::rfc3339_ms).unwrap_or_default(),
                "tenant started"
            );
            let poller = Poller::new(client, cfg.poller.clone(), state, shared.clone(), store);
            tokio::spawn(poller.run(stop_rx).instrument(span.clone()))
        };
        (running(task, false, shared), None)
    }

    /// Whether a tenant could not start (and waits for a retry).
    pub fn has_failed(&self) -> bool {
        self.tenants().iter().any(|t| t.failed)
    }

    /// Makes the running tenants those of `wanted`: stops the tenants no longer wanted (their state
    /// stays on disk and their series go), starts the new ones, restarts those whose keys changed (and
    /// those that could not start before), and leaves the others polling with their counts. A tenant
    /// that cannot start stays listed as failed (`cec_up` 0), with its error; the others still apply.
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
        // Stopped (and their stores closed) before a restarted tenant opens its store again; all told
        // at once, then awaited, so that a reload of many tenants takes one poll's drop, not many.
        for t in &to_stop {
            let _ = t.stop.send(true);
        }
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
            // Opening and restoring a store is blocking file I/O (a large store takes a while).
            let (r, error) = tokio::task::block_in_place(|| Fleet::start(t));
            next.push(Arc::new(r));
            errors.extend(error);
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
        self.tenants().iter().find(|t| !t.failed && t.task.is_finished() && !*t.stop.borrow()).map(|t| t.name.clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    /// Tenants `names` of a file whose gateway is unreachable (nothing is counted; the fleet's own
    /// behaviour is what matters), with `page_size` as a key to change, state under `state`.
    fn tenants(dir: &Path, state: &Path, page_size: u32, names: &[&str]) -> Vec<Tenant> {
        let mut yaml = String::from("tenants:\n");
        for n in names {
            let secret = dir.join(format!("{n}.secret"));
            if !secret.exists() {
                std::fs::write(&secret, format!("secret-{n}\n")).unwrap();
            }
            yaml.push_str(&format!(
                "  - name: {n}\n    cec: {{url: 'http://127.0.0.1:9', app_key: 'k-{n}', app_secret_file: '{}', page_size: {page_size}}}\n",
                secret.display()
            ));
        }
        let base: Vec<OsString> = vec![
            "cec-exporter".into(),
            format!("--state.path={}", state.display()).into(),
            "--poll.interval=1s".into(),
        ];
        crate::tenants::parse(Path::new("t.yml"), &yaml, &base).unwrap()
    }

    fn names(f: &Fleet) -> Vec<(String, bool)> {
        f.tenants().iter().map(|t| (t.name.clone(), t.failed)).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changed_key_or_secret_restarts_only_that_tenant_and_its_store_is_closed_first() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let fleet = Fleet::default();
        let (a, e) = fleet.apply(&tenants(dir.path(), &state, 100, &["a", "b"])).await;
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(a.added, ["a", "b"]);
        // Restarting reopens each store: it was closed when the old poller stopped (else Locked).
        for page_size in [50, 100, 50] {
            let (a, e) = fleet.apply(&tenants(dir.path(), &state, page_size, &["a", "b"])).await;
            assert!(e.is_empty(), "{e:?}");
            assert_eq!((a.restarted, a.kept), (vec!["a".to_owned(), "b".to_owned()], 0));
        }
        std::fs::write(dir.path().join("a.secret"), "rotated\n").unwrap();
        let (a, e) = fleet.apply(&tenants(dir.path(), &state, 50, &["a", "b"])).await;
        assert!(e.is_empty(), "{e:?}");
        assert_eq!((a.restarted, a.kept), (vec!["a".to_owned()], 1), "a rotated secret restarts its tenant");
        fleet.stop_all().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_whose_store_is_unreadable_shows_failed_the_others_run_and_it_comes_back_when_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let fleet = Fleet::default();
        assert!(fleet.apply(&tenants(dir.path(), &state, 100, &["a", "b"])).await.1.is_empty());
        fleet.stop_all().await;
        let store = state_dir(&state, "b").join(crate::store::FILE);
        std::fs::write(&store, b"not a redb file at all").unwrap();
        // Start-up with b broken: a runs, b is listed as failed with one failed poll and cec_up 0.
        let fleet = Fleet::default();
        let (_, errors) = fleet.apply(&tenants(dir.path(), &state, 100, &["a", "b"])).await;
        assert_eq!(errors.len(), 1);
        let msg = errors[0].to_string();
        assert!(
            msg.starts_with("tenant \"b\": state store ") && msg.contains("move ") && msg.ends_with(" aside instead)"),
            "{msg}"
        );
        assert_eq!(names(&fleet), [("a".to_owned(), false), ("b".to_owned(), true)]);
        let b = fleet.tenants()[1].shared.telemetry.snapshot();
        assert_eq!((b.up, b.poll_failures), (false, 1));
        assert_eq!(b.last_failure.map(|f| f.kind.to_string()), Some("state_store".to_owned()));
        assert_eq!(fleet.crashed(), None, "a tenant that never started is not a crashed poller");
        // A reload with b unchanged tries it again: still broken, still listed; a keeps polling untouched.
        let (a, errors) = fleet.apply(&tenants(dir.path(), &state, 100, &["a", "b"])).await;
        assert_eq!((errors.len(), a.kept, a.restarted), (1, 1, vec!["b".to_owned()]));
        // Fixed (moved aside by hand), the next apply starts it.
        std::fs::rename(&store, dir.path().join("aside.redb")).unwrap();
        let (_, errors) = fleet.apply(&tenants(dir.path(), &state, 100, &["a", "b"])).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&fleet), [("a".to_owned(), false), ("b".to_owned(), false)]);
        fleet.stop_all().await;
    }
}
