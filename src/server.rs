//! The HTTP server (hyper 1): the telemetry path rendered from memory, a landing page, `/-/healthy` and
//! `/-/ready`. A scrape never reaches the CEC API: it renders the last published state.
//!
//! It also defends itself: a header-read timeout (which hyper 1 only applies with a timer), a cap on
//! open connections that closes stalled ones first, accept failures logged at most once a second, and
//! the `--web.config.file` (TLS, basic auth on every endpoint), re-read while running.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, VARY, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::events::{AcceptFailed, InternalEvent, WebConfigReloadFailed, WebConfigReloaded};
use crate::metrics::telemetry::Telemetry;
use crate::web_config::{BasicAuth, WebConfig};

use crate::ingest::poller::Shared;
use crate::metrics::expose::{render, render_tenants, BuildInfo, TenantView};
use crate::metrics::negotiate::Format;

/// What the server shows.
pub struct Site {
    /// The single tenant's published state and telemetry; with tenants (`fleet`), only the process's
    /// own telemetry (the web server's events, build).
    pub shared: Arc<Shared>,
    /// The tenants of `--config.file`, when the exporter runs with one.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// With tenants: set once every tenant had finished a poll, and kept (a tenant added by a reload
    /// does not take a serving replica out of service).
    pub ready: std::sync::atomic::AtomicBool,
    pub telemetry_path: String,
    pub build: BuildInfo,
}

type Resp = Response<Full<Bytes>>;

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

impl Site {
    /// Answers one request.
    pub fn handle(&self, method: &Method, path: &str, accept: Option<&str>) -> Resp {
        if method != Method::GET && method != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed; use GET.\n");
        }
        if path == self.telemetry_path {
            let format = Format::negotiate(accept);
            let mut out = Vec::with_capacity(64 * 1024);
            match &self.fleet {
                None => {
                    let published = self.shared.published();
                    let telemetry = self.shared.telemetry.snapshot();
                    render(&mut out, format, &published, &telemetry, &self.build);
                }
                Some(fleet) => {
                    let tenants = fleet.tenants();
                    let state: Vec<_> =
                        tenants.iter().map(|t| (t.shared.published(), t.shared.telemetry.snapshot())).collect();
                    let views: Vec<TenantView<'_>> = tenants
                        .iter()
                        .zip(&state)
                        .map(|(t, (p, d))| TenantView { name: &t.name, published: p, telemetry: d })
                        .collect();
                    render_tenants(&mut out, format, &views, &self.shared.telemetry.snapshot(), &self.build);
                }
            }
            return Response::builder()
                .header(CONTENT_TYPE, format.content_type())
                // The body depends on Accept: a cache in front must not serve one format for the other.
                .header(VARY, "Accept")
                .body(Full::new(Bytes::from(out)))
                .expect("static response parts are valid");
        }
        match path {
            "/" => Response::builder()
                .header(CONTENT_TYPE, "text/html; charset=utf-8")
                .body(Full::new(Bytes::from(self.landing())))
                .expect("static response parts are valid"),
            "/-/healthy" => plain(StatusCode::OK, "Healthy.\n"),
            "/-/ready" => match &self.fleet {
                None if self.shared.telemetry.update(|d| d.ready) => plain(StatusCode::OK, "Ready.\n"),
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready: no successful poll of CEC yet.\n"),
                // Every tenant has finished a poll, failed or not: one tenant's broken gateway must not
                // take the replica, and every other tenant's series, out of service.
                Some(fleet) => {
                    let waiting =
                        fleet.tenants().iter().filter(|t| t.shared.telemetry.update(|d| d.polls == 0)).count();
                    if waiting == 0 {
                        plain(StatusCode::OK, "Ready.\n")
                    } else {
                        let msg = format!("Not ready: {waiting} tenant(s) have not finished a poll of CEC yet.\n");
                        plain(StatusCode::SERVICE_UNAVAILABLE, msg)
                    }
                }
            },
            _ => plain(StatusCode::NOT_FOUND, "Not found.\n"),
        }
    }

    fn landing(&self) -> String {
        let items = match &self.fleet {
            None => {
                let (status, last, polls, failures) = status_of(&self.shared);
                format!(
                    "<li>Status: {status}</li>\n<li>Last successful poll: {last}</li>\n\
                     <li>Polls: {polls}, failed: {failures}</li>\n"
                )
            }
            Some(fleet) => {
                let tenants = fleet.tenants();
                let mut items = format!("<li>Tenants: {}</li>\n", tenants.len());
                for t in &tenants {
                    let (status, last, polls, failures) = status_of(&t.shared);
                    // Names follow NAME_RULE ([a-z0-9_-]): nothing to escape, but escaped all the same.
                    items.push_str(&format!(
                        "<li>{}: {status}; last successful poll: {last}; polls: {polls}, failed: {failures}</li>\n",
                        html_escape(&t.name)
                    ));
                }
                items
            }
        };
        let path = html_escape(&self.telemetry_path);
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>CEC Exporter</title></head><body>\n\
             <h1>CEC Exporter</h1>\n<p>Prometheus exporter for Huawei Cloud CEC call detail records.</p>\n\
             <ul>\n<li>Version: {version} (revision {revision})</li>\n{items}</ul>\n\
             <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\n\
             </body></html>\n",
            version = self.build.version,
            revision = self.build.revision,
        )
    }
}

/// A poller's status for the landing page: the status, the last successful poll, polls and failed
/// polls.
fn status_of(shared: &Shared) -> (String, String, u64, u64) {
    let t = shared.telemetry.snapshot();
    let status = match (t.polls, t.up) {
        (0, _) => "no poll finished yet".to_owned(),
        (_, true) => "last poll succeeded".to_owned(),
        // The kind and time only: the error's text may quote the gateway (a retMsg excerpt, a
        // parser position), and this page is for anyone who can reach the port. The log has the text.
        (_, false) => match t.last_failure {
            Some(f) => format!("last poll failed at {} ({})", crate::logging::rfc3339_s(f.at_ms), f.kind),
            None => "last poll failed".to_owned(),
        },
    };
    let last = t.last_success_ms.map_or("never".to_owned(), crate::logging::rfc3339_s);
    (status, last, t.polls, t.poll_failures)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// How the server protects itself; see [`serve`].
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at most (`--web.max-connections`). At the cap a new connection is still
    /// accepted, and the oldest connection that never completed a request (else the oldest one) is
    /// closed to make room: half-sent or idle connections cannot lock a scraper out, and the number of
    /// sockets stays bounded.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, including the TLS handshake; hyper also applies
    /// it to a keep-alive connection waiting for its next request, so it is the idle timeout too.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_connections: 64, header_timeout: HEADER_TIMEOUT }
    }
}

/// The default [`Limits::header_timeout`]: ample for any scraper, short enough that hundreds of stalled
/// connections go away quickly.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the web configuration file is re-read.
pub const WEB_CONFIG_POLL: Duration = Duration::from_secs(2);

/// The `--web.config.file` in force: re-read every [`WEB_CONFIG_POLL`], and swapped when its bytes (or
/// those of a file it names) changed and still make a valid configuration. Each new connection takes
/// the configuration of the moment, as exporter-toolkit does.
pub struct ActiveWebConfig {
    path: PathBuf,
    current: RwLock<Arc<WebConfig>>,
    /// The last failed re-read: the file's bytes then and the error. The same failure again is not
    /// reported again (a broken file would otherwise add a line and a failure every 2 s).
    failed: Mutex<Option<(Vec<u8>, String)>>,
}

impl ActiveWebConfig {
    /// Starts with `config`, read from `path`.
    pub fn new(path: PathBuf, config: WebConfig) -> ActiveWebConfig {
        ActiveWebConfig { path, current: RwLock::new(Arc::new(config)), failed: Mutex::new(None) }
    }

    /// The configuration in force.
    pub fn get(&self) -> Arc<WebConfig> {
        self.current.read().expect("web config lock").clone()
    }

    /// Re-reads the file. A changed, valid file replaces the configuration; a bad one keeps the old one
    /// and is reported once (a [`WebConfigReloadFailed`]) until the file or the error changes. Turning
    /// TLS on or off needs a restart (the listener's scheme is what scrapers were configured with), so
    /// such a change is refused too. A file restored to the configuration in force after a failure is a
    /// successful reload. Returns whether the configuration changed.
    pub fn reload(&self, telemetry: &Telemetry) -> bool {
        let old = self.get();
        let mut failed = self.failed.lock().expect("web config failure lock");
        let new = match WebConfig::load(&self.path) {
            Ok(new) if new.same_inputs(&old) => {
                if failed.take().is_some() {
                    WebConfigReloaded { path: &self.path }.emit(telemetry);
                }
                return false;
            }
            Ok(new) if new.tls.is_some() != old.tls.is_some() => Err(format!(
                "{}: tls_server_config: TLS cannot be turned on or off while running; restart to apply",
                self.path.display()
            )),
            Ok(new) => Ok(new),
            Err(e) => Err(e.to_string()),
        };
        match new {
            Ok(new) => {
                *self.current.write().expect("web config lock") = Arc::new(new);
                *failed = None;
                WebConfigReloaded { path: &self.path }.emit(telemetry);
                true
            }
            Err(error) => {
                // The bytes as well as the error: an edit that is still broken is a new attempt.
                let attempt = (std::fs::read(&self.path).unwrap_or_default(), error);
                if failed.as_ref() != Some(&attempt) {
                    WebConfigReloadFailed { error: &attempt.1 }.emit(telemetry);
                    *failed = Some(attempt);
                }
                false
            }
        }
    }
}

/// The open connections, oldest first, so that one can be closed when the cap is reached.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: VecDeque<OpenConnection>,
}

struct OpenConnection {
    id: u64,
    /// Set once a complete request arrived on it.
    served: Arc<AtomicBool>,
    close: Arc<Notify>,
}

impl Connections {
    /// Registers a new connection, first closing one if `max` are open.
    fn admit(&mut self, max: usize) -> (u64, Arc<AtomicBool>, Arc<Notify>) {
        while self.open.len() >= max.max(1) {
            let victim = self.open.iter().position(|c| !c.served.load(Ordering::Relaxed)).unwrap_or(0);
            if let Some(c) = self.open.remove(victim) {
                c.close.notify_one();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let (served, close) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        self.open.push_back(OpenConnection { id, served: served.clone(), close: close.clone() });
        (id, served, close)
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.open.iter().position(|c| c.id == id) {
            self.open.remove(i);
        }
    }
}

/// Removes its connection from [`Connections`] however the connection's task ends.
struct Registered {
    connections: Arc<Mutex<Connections>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.lock().expect("connections lock").remove(self.id);
    }
}

/// Logs failed accepts at most once per second, with how many failed since the last line: an accept
/// failure (typically out of file descriptors) repeats as fast as the loop turns.
struct AcceptErrors {
    last_line: Option<Instant>,
    since: u64,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error, telemetry: &Telemetry) {
        self.since += 1;
        let warn_for = if self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.last_line = Some(Instant::now());
            Some(std::mem::take(&mut self.since))
        } else {
            None
        };
        // Every failure is counted; only the warning is rate-limited.
        AcceptFailed { error, warn_for }.emit(telemetry);
    }
}

fn unauthorized() -> Resp {
    let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    r
}

/// Serves until `shutdown` resolves, then lets open connections finish. `web` is the
/// `--web.config.file` (TLS and basic auth), re-read while serving.
pub async fn serve(
    listener: TcpListener,
    site: Arc<Site>,
    limits: Limits,
    web: Option<Arc<ActiveWebConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Mutex::new(Connections::default()));
    let telemetry = site.shared.telemetry.clone();
    let reloader = web.clone().map(|web| {
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WEB_CONFIG_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let web = web.clone();
                let telemetry = telemetry.clone();
                // Reading files blocks; keep it off the threads that serve.
                let _ = tokio::task::spawn_blocking(move || web.reload(&telemetry)).await;
            }
        })
    });
    let mut accept_errors = AcceptErrors { last_line: None, since: 0 };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        accept_errors.failed(&e, &telemetry);
                        // Out of descriptors does not end by retrying at once; give closing ones a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (id, served, close) = connections.lock().expect("connections lock").admit(limits.max_connections);
                let registered = Registered { connections: connections.clone(), id };
                let active = web.clone();
                let site = site.clone();
                let watcher = graceful.watcher();
                let header_timeout = limits.header_timeout;
                tokio::spawn(async move {
                    let _registered = registered;
                    // TLS is settled per connection (as a handshake is); credentials per request, below.
                    let tls = active.as_ref().and_then(|w| w.get().tls.clone());
                    let conn = async {
                        match tls {
                            Some(tls) => {
                                let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                                match tokio::time::timeout(header_timeout, accept).await {
                                    Ok(Ok(tls)) => connection(tls, site, active, served, header_timeout, watcher).await,
                                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                            }
                            None => connection(stream, site, active, served, header_timeout, watcher).await,
                        }
                    };
                    tokio::select! {
                        _ = conn => {}
                        _ = close.notified() => tracing::debug!("connection closed: --web.max-connections reached"),
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    if let Some(r) = reloader {
        r.abort();
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::warn!("connections still open after 5s; closing them");
        }
    }
}

/// Serves HTTP/1.1 on one connection (plain or TLS).
async fn connection<I>(
    io: I,
    site: Arc<Site>,
    web: Option<Arc<ActiveWebConfig>>,
    served: Arc<AtomicBool>,
    header_timeout: Duration,
    watcher: Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        served.store(true, Ordering::Relaxed);
        let site = site.clone();
        // The users in force now: a reload applies to the next request, even on a kept-alive connection.
        let auth: Option<Arc<BasicAuth>> = web.as_ref().and_then(|w| w.get().auth.clone());
        async move {
            if let Some(auth) = auth {
                let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes().to_vec());
                // A cache miss costs a bcrypt (tens of milliseconds by design): not on the async threads.
                let ok = tokio::task::spawn_blocking(move || auth.check(header.as_deref())).await.unwrap_or(false);
                if !ok {
                    return Ok::<_, Infallible>(unauthorized());
                }
            }
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let mut resp = site.handle(req.method(), req.uri().path(), accept);
            if req.method() == Method::HEAD {
                *resp.body_mut() = Full::new(Bytes::new());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // hyper 1 has no header timeout without a timer: a client sending half a request would hold
        // its connection forever.
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            shared: Arc::new(Shared::default()),
            fleet: None,
            ready: Default::default(),
            telemetry_path: "/metrics".into(),
            build: BuildInfo { version: "0.1.0", revision: "r1" },
        }
    }

    fn body(r: &Resp) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let collected = rt.block_on(r.body().clone().collect()).unwrap_or_else(|e: Infallible| match e {});
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn routes() {
        let s = site();
        let r = s.handle(&Method::GET, "/metrics", Some("application/openmetrics-text; version=1.0.0"));
        assert_eq!(r.headers()[CONTENT_TYPE], "application/openmetrics-text; version=1.0.0; charset=utf-8");
        assert_eq!(r.headers()[VARY], "Accept");
        assert!(body(&r).ends_with("# EOF\n"));
        let r = s.handle(&Method::GET, "/metrics", None);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; version=0.0.4; charset=utf-8");
        assert!(body(&r).contains("\ncec_up 0\n"));
        assert_eq!(s.handle(&Method::GET, "/-/healthy", None).status(), StatusCode::OK);
        let r = s.handle(&Method::GET, "/-/ready", None);
        assert_eq!(
            (r.status(), body(&r).as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "Not ready: no successful poll of CEC yet.\n")
        );
        s.shared.telemetry.update(|d| d.ready = true);
        assert_eq!(s.handle(&Method::GET, "/-/ready", None).status(), StatusCode::OK);
        assert_eq!(s.handle(&Method::GET, "/nope", None).status(), StatusCode::NOT_FOUND);
        assert_eq!(s.handle(&Method::POST, "/metrics", None).status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn landing_page_links_metrics_and_shows_status() {
        let s = site();
        let html = body(&s.handle(&Method::GET, "/", None));
        assert!(html.contains("<a href=\"/metrics\">Metrics</a>"));
        assert!(html.contains("Version: 0.1.0 (revision r1)"));
        assert!(html.contains("<li>Status: no poll finished yet</li>"), "{html}");
        assert!(html.contains("<li>Last successful poll: never</li>"), "{html}");
    }

    /// Finding 6: a gateway's retMsg reached `/`. The page shows the failure's kind and time only.
    #[test]
    fn landing_page_shows_a_failures_kind_and_time_never_the_gateways_text() {
        use crate::cec::record::TaskQuery;
        use crate::cec::window::Window;
        use crate::events::PollFailed;
        use crate::ingest::poller::PollError;
        let s = site();
        let retmsg = "<b>call 13800138000</b> failed";
        let error = PollError::Api(crate::cec::ApiError::RetCode {
            query: TaskQuery::ALL_BUT_ITA,
            window: Window { start_ms: 0, end_ms: 1_000 },
            code: "-9\u{1}2".into(),
            message: retmsg.into(),
        });
        assert!(error.to_string().contains(retmsg), "the log line keeps the text: {error}");
        PollFailed {
            error: &error,
            retryable: false,
            elapsed: Duration::from_millis(10),
            consecutive_failures: 1,
            retry_in: Duration::from_secs(30),
            at_ms: 1_764_406_800_000,
        }
        .emit(&s.shared.telemetry);
        let html = body(&s.handle(&Method::GET, "/", None));
        assert!(
            html.contains(
                "<li>Status: last poll failed at 2025-11-29T09:00:00Z (query_call_detail_record ret_code)</li>"
            ),
            "{html}"
        );
        for gateway_text in ["13800138000", "failed</", "retCode", "-9", "&lt;b&gt;", "<b>"] {
            assert!(!html.contains(gateway_text), "{gateway_text:?} on the page: {html}");
        }
        // Recovered: the failure is gone from the page.
        s.shared.telemetry.update(|d| {
            d.up = true;
            d.last_success_ms = Some(1_764_406_860_000);
        });
        let html = body(&s.handle(&Method::GET, "/", None));
        assert!(html.contains("<li>Status: last poll succeeded</li>"), "{html}");
        assert!(html.contains("<li>Last successful poll: 2025-11-29T09:01:00Z</li>"), "{html}");
    }

    fn web_yml(dir: &std::path::Path, text: &str) {
        let tmp = dir.join("web.yml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, dir.join("web.yml")).unwrap();
    }

    #[test]
    fn web_config_reloads_count_once_per_failure_and_a_fixed_file_counts_as_success() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!("basic_auth_users:\n  u: '{}'\n", bcrypt::hash("p", 4).unwrap());
        web_yml(dir.path(), &good);
        let path = dir.path().join("web.yml");
        let active = ActiveWebConfig::new(path.clone(), WebConfig::load(&path).unwrap());
        let t = Telemetry::default();
        let counts = |t: &Telemetry| {
            let d = t.snapshot();
            (d.web_config_reloads, d.web_config_reload_failures, d.web_config_last_reload_failed)
        };
        assert!(!active.reload(&t), "unchanged");
        assert_eq!(counts(&t), (0, 0, false));
        web_yml(dir.path(), "basic_auth_users:\n  u: not-a-hash\n");
        assert!(!active.reload(&t));
        assert!(!active.reload(&t), "the same broken file, re-read");
        assert_eq!(counts(&t), (0, 1, true), "one failure per broken file, not one per re-read");
        assert!(active.get().auth.as_ref().unwrap().check(Some(b"Basic dTpw")), "u:p still in force");
        web_yml(dir.path(), "basic_auth_users:\n  u: still-not-a-hash\n");
        assert!(!active.reload(&t));
        assert_eq!(counts(&t), (0, 2, true), "another broken edit is another failure");
        web_yml(dir.path(), &good);
        assert!(!active.reload(&t), "back to the configuration in force: nothing to swap");
        assert_eq!(counts(&t), (1, 2, false), "but the file is usable again");
        assert!(!active.reload(&t));
        assert_eq!(counts(&t), (1, 2, false));
        web_yml(dir.path(), "");
        assert!(active.reload(&t), "an empty file: no users");
        assert_eq!(counts(&t), (2, 2, false));
        assert!(active.get().auth.is_none());
    }

    /// Sends a whole GET on a new connection and returns the response's status line.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_owned()
    }

    /// Whether the server closed `s` (read gives EOF or an error) within `wait`.
    async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(wait, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // hyper may answer a timed-out request with a 408 before closing.
                Ok(Ok(_)) => continue,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_answer_while_hundreds_of_half_sent_requests_are_open_and_those_time_out() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits { max_connections: 64, header_timeout: Duration::from_millis(1500) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(site()), limits, None, async {
            let _ = stopped.await;
        }));
        let mut stalled = Vec::new();
        for _ in 0..200 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            stalled.push(s);
        }
        let started = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(1), get(addr, "/metrics")).await;
        assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"), "a scrape within 1s");
        // The cap closed the oldest stalled ones at once: only the last 63 stalled remain, plus the scrape.
        let mut closed = 0;
        for s in &mut stalled[..137] {
            closed += usize::from(closed_within(s, Duration::from_millis(100)).await);
        }
        assert_eq!(closed, 137, "connections past --web.max-connections are closed, oldest first");
        assert!(!closed_within(&mut stalled[199], Duration::from_millis(200)).await, "the newest is still open");
        // The rest go when the header timeout runs out.
        for s in &mut stalled[137..] {
            assert!(closed_within(s, Duration::from_secs(3)).await, "closed by the header timeout");
        }
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn at_the_cap_a_connection_that_never_completed_a_request_goes_first() {
        let mut c = Connections::default();
        let (_, served0, close0) = c.admit(2);
        let (_, _, close1) = c.admit(2);
        served0.store(true, Ordering::Relaxed);
        let (id2, _, _) = c.admit(2);
        assert_eq!(
            c.open.iter().map(|o| o.id).collect::<Vec<_>>(),
            [0, id2],
            "the idle newer one went, not the scraper"
        );
        assert!(tokio::time::timeout(Duration::from_millis(10), close1.notified()).await.is_ok());
        assert!(tokio::time::timeout(Duration::from_millis(10), close0.notified()).await.is_err());
        c.remove(0);
        assert_eq!(c.open.len(), 1);
    }

    #[test]
    fn accept_failures_make_at_most_one_line_a_second_with_their_count() {
        let t = Telemetry::default();
        let e = std::io::Error::from_raw_os_error(24);
        let mut errors = AcceptErrors { last_line: None, since: 0 };
        let ((), lines) = crate::logging::capture(tracing::Level::INFO, || {
            for _ in 0..150 {
                errors.failed(&e, &t);
            }
            // A second later, the next failure writes a line counting every one since the first line.
            errors.last_line = Some(Instant::now() - Duration::from_secs(1));
            errors.failed(&e, &t);
        });
        let failures: Vec<&str> = lines.iter().map(|l| l.rsplit_once(' ').unwrap().1).collect();
        assert_eq!(failures, ["failures=1", "failures=150"], "{lines:?}");
        assert_eq!(t.snapshot().accept_errors, 151, "every failed accept is counted");
    }
}
