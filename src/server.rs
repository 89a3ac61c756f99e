//! The HTTP server (hyper 1): the telemetry path rendered from memory, a landing page, `/-/healthy` and
//! `/-/ready`. A scrape never reaches the CEC API: it renders the last published state.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, VARY};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::ingest::poller::Shared;
use crate::metrics::expose::{render, BuildInfo};
use crate::metrics::negotiate::Format;

/// What the server shows.
pub struct Site {
    pub shared: Arc<Shared>,
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
            let published = self.shared.published();
            let telemetry = self.shared.telemetry.snapshot();
            let mut out = Vec::with_capacity(64 * 1024);
            render(&mut out, format, &published, &telemetry, &self.build);
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
            "/-/ready" => {
                if self.shared.telemetry.update(|d| d.ready) {
                    plain(StatusCode::OK, "Ready.\n")
                } else {
                    plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready: no successful poll of CEC yet.\n")
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "Not found.\n"),
        }
    }

    fn landing(&self) -> String {
        let t = self.shared.telemetry.snapshot();
        let status = match (t.polls, t.up) {
            (0, _) => "no poll finished yet".to_owned(),
            (_, true) => "last poll succeeded".to_owned(),
            (_, false) => {
                let error = bounded(t.last_error.as_deref().unwrap_or("unknown error"), LAST_ERROR_CHARS);
                format!("last poll failed: {}", html_escape(&error))
            }
        };
        let last = t.last_success_ms.map_or("never".to_owned(), |ms| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64))
                .to_string()
        });
        let path = html_escape(&self.telemetry_path);
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>CEC Exporter</title></head><body>\n\
             <h1>CEC Exporter</h1>\n<p>Prometheus exporter for Huawei Cloud CEC call detail records.</p>\n\
             <ul>\n<li>Version: {version} (revision {revision})</li>\n<li>Status: {status}</li>\n\
             <li>Last successful poll: {last}</li>\n<li>Polls: {polls}, failed: {failures}</li>\n</ul>\n\
             <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\n\
             </body></html>\n",
            version = self.build.version,
            revision = self.build.revision,
            polls = t.polls,
            failures = t.poll_failures,
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Serves until `shutdown` resolves, then lets open connections finish.
pub async fn serve(listener: TcpListener, site: Arc<Site>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let site = site.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let mut resp = site.handle(req.method(), req.uri().path(), accept.as_deref());
                    if req.method() == Method::HEAD {
                        *resp.body_mut() = Full::new(Bytes::new());
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
            tracing::warn!("connections still open after 5s; closing them");
        }
    }
}

/// The most characters of the last error the landing page shows. The error's own text is already
/// bounded where it is made (the client keeps only a short `retMsg` excerpt); this keeps the page small
/// whatever a future error carries.
const LAST_ERROR_CHARS: usize = 300;

/// `s` cut to `max` characters, a cut marked with `…`.
fn bounded(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]).into(),
        None => s.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            shared: Arc::new(Shared::default()),
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
        s.shared.telemetry.update(|d| {
            d.polls = 2;
            d.up = false;
            d.last_error = Some("query_call_detail_record: HTTP 500 <x>".into());
        });
        let html = body(&s.handle(&Method::GET, "/", None));
        assert!(html.contains("<a href=\"/metrics\">Metrics</a>"));
        assert!(html.contains("Version: 0.1.0 (revision r1)"));
        assert!(html.contains("last poll failed: query_call_detail_record: HTTP 500 &lt;x&gt;"));
        s.shared.telemetry.update(|d| d.last_error = Some(format!("retCode 2: {}", "é".repeat(1 << 20))));
        let html = body(&s.handle(&Method::GET, "/", None));
        let shown = format!("last poll failed: retCode 2: {}…", "é".repeat(300 - "retCode 2: ".len()));
        assert!(html.contains(&shown), "{}", html.len());
        assert!(html.len() < 2_000, "{}", html.len());
    }
}
