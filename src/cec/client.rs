//! The HTTP client of the two interfaces: fetches and caches the token, reads a window page by page
//! until all of `total` is read, and turns every failure into one typed [`ApiError`] that says whether
//! retrying makes sense. Each exchange is counted in telemetry; rejected records are logged and counted
//! here, where they are seen.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::auth::Token;
use super::record::TaskQuery;
use super::wire::{parse_page, parse_token, ParsedRecord, QueryRequest, RetCode, TokenRequest};
use crate::ingest::plan::Window;
use crate::metrics::telemetry::{Endpoint, ErrorKind, Telemetry};
use crate::secret::Secret;

/// What the client needs to know; from the validated configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Full URL of `queryCallDetailRecord`.
    pub query_url: reqwest::Url,
    /// Full URL of `tokenByAkSk`.
    pub token_url: reqwest::Url,
    pub app_key: String,
    pub app_secret: Secret,
    /// `X-Token-Expire`, seconds, 1–3600.
    pub token_lifetime_s: u32,
    /// Records per page, 1–100.
    pub page_size: u32,
    /// Timeout of every request.
    pub timeout: Duration,
    /// Retries of a retryable failure within one read, before the poll gives up.
    pub retries: u32,
}

/// A failed API exchange.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint}: no answer within {timeout:?}", endpoint = .endpoint.label())]
    Timeout { endpoint: Endpoint, timeout: Duration },
    #[error("{endpoint}: {message}", endpoint = .endpoint.label())]
    Transport { endpoint: Endpoint, message: String },
    #[error("{endpoint}: HTTP {status}{hint}", endpoint = .endpoint.label(), hint = status_hint(*.status))]
    Status { endpoint: Endpoint, status: u16, retry_after: Option<Duration> },
    #[error("{endpoint}: answer is not the documented JSON: {message}", endpoint = .endpoint.label())]
    Decode { endpoint: Endpoint, message: String },
    #[error("queryCallDetailRecord taskType {query} [{start}, {end}]: retCode {code}: {message}", start = .window.start_ms, end = .window.end_ms)]
    RetCode { query: TaskQuery, window: Window, code: String, message: String },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => " (unauthorized: check the app key and secret)",
        403 => " (forbidden: wrong key or source IP not allowed)",
        404 => " (not found: check --cec.url / --cec.token-url)",
        429 => " (rate limited)",
        _ => "",
    }
}

impl ApiError {
    /// Whether the same request may succeed if tried again soon.
    pub fn retryable(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Transport { .. } | ApiError::Decode { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::RetCode { .. } => false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Timeout { .. } => ErrorKind::Timeout,
            ApiError::Transport { .. } => ErrorKind::Transport,
            ApiError::Status { status: 401 | 403, .. } => ErrorKind::Unauthorized,
            ApiError::Status { status: 429, .. } => ErrorKind::RateLimited,
            ApiError::Status { status, .. } if *status >= 500 => ErrorKind::ServerError,
            ApiError::Status { .. } => ErrorKind::HttpStatus,
            ApiError::Decode { .. } => ErrorKind::Decode,
            ApiError::RetCode { .. } => ErrorKind::RetCode,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        match self {
            ApiError::Timeout { endpoint, .. }
            | ApiError::Transport { endpoint, .. }
            | ApiError::Status { endpoint, .. }
            | ApiError::Decode { endpoint, .. } => *endpoint,
            ApiError::RetCode { .. } => Endpoint::QueryCallDetailRecord,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The CEC client. Cheap to share; one token for all requests.
pub struct CecClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    token: Mutex<Option<Token>>,
    telemetry: Arc<Telemetry>,
}

/// Records of one window and what reading it cost.
#[derive(Clone, Debug, Default)]
pub struct WindowRead {
    pub records: Vec<ParsedRecord>,
    /// Business requests made (retries included).
    pub requests: u64,
    /// `total` as the last page reported it.
    pub total: Option<u64>,
    /// Entries skipped as malformed.
    pub rejected: u64,
    /// Whether every page reported the same `total`.
    pub total_unchanged: bool,
}

impl WindowRead {
    /// Distinct calls read (plus malformed entries, which have no identity).
    pub fn distinct(&self) -> u64 {
        let ids: hashbrown::HashSet<_> = self.records.iter().map(|r| r.id).collect();
        ids.len() as u64 + self.rejected
    }

    /// The pages partitioned CEC's answer: `total` never moved and as many distinct entries came back
    /// as it announced. Offset paging over an answer that changed while it was read (records joining,
    /// records moving in CEC's order) can repeat one record and skip another; this tells.
    pub fn complete(&self) -> bool {
        match self.total {
            Some(total) => self.total_unchanged && self.distinct() >= total,
            None => true,
        }
    }
}

impl CecClient {
    pub fn new(cfg: ClientConfig, telemetry: Arc<Telemetry>) -> Result<CecClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("cec-exporter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(CecClient { http, cfg, token: Mutex::new(None), telemetry })
    }

    /// Reads every page of `query` over `window`: pages of `page_size` with `offset` until all of
    /// `total` is read (one request when the window is empty). A retryable failure is retried up to
    /// `retries` times with backoff; any failure left fails the whole read.
    pub async fn read_window(&self, query: TaskQuery, window: Window) -> Result<WindowRead, ApiError> {
        let mut out = WindowRead { total_unchanged: true, ..WindowRead::default() };
        let limit = self.cfg.page_size;
        let mut offset: u64 = 0;
        let mut first_total: Option<Option<u64>> = None;
        loop {
            let req = QueryRequest { start_ms: window.start_ms, end_ms: window.end_ms, offset, limit, task: query };
            let page = self.query_with_retries(&req, &mut out.requests).await?;
            let page = match page.ret_code {
                RetCode::Success => page,
                RetCode::NoData => break,
                RetCode::Error(code) => {
                    return Err(self.fail(ApiError::RetCode { query, window, code, message: page.ret_msg }));
                }
            };
            let n = page.records.len() as u64;
            self.telemetry.update(|d| d.records_fetched += n);
            for r in page.records {
                match r {
                    Ok(rec) => {
                        if !rec.invalid.is_empty() {
                            self.telemetry.update(|d| {
                                for f in rec.invalid.iter() {
                                    *d.fields_invalid.entry(f).or_default() += 1;
                                }
                            });
                            let fields: Vec<&str> = rec.invalid.iter().map(|f| f.name()).collect();
                            tracing::warn!(
                                fields = %fields.join(","),
                                call_serial_no = %rec.id,
                                task_query = %query,
                                "record field unusable; read as absent, the call still counts"
                            );
                        }
                        out.records.push(rec)
                    }
                    Err(rej) => {
                        out.rejected += 1;
                        self.telemetry.update(|d| *d.records_rejected.entry(rej.reason).or_default() += 1);
                        tracing::warn!(
                            reason = rej.reason.label(),
                            field = rej.field.unwrap_or(""),
                            call_serial_no = %rej.serial.map(|s| s.to_string()).unwrap_or_default(),
                            task_query = %query,
                            offset,
                            "record rejected"
                        );
                    }
                }
            }
            offset += n;
            match first_total {
                None => first_total = Some(page.total),
                Some(t) if t != page.total => out.total_unchanged = false,
                Some(_) => {}
            }
            out.total = page.total;
            // `total` may grow while a live window is read: the latest answer decides.
            let done = match page.total {
                Some(total) => offset >= total,
                None => n < u64::from(limit),
            };
            if n == 0 || done {
                break;
            }
        }
        Ok(out)
    }

    async fn query_with_retries(&self, req: &QueryRequest, requests: &mut u64) -> Result<super::wire::Page, ApiError> {
        let mut attempt = 0;
        loop {
            let result = self.query_page(req, requests).await;
            match result {
                Err(e) if e.retryable() && attempt < self.cfg.retries => {
                    attempt += 1;
                    let backoff = Duration::from_millis(200 << attempt.min(6));
                    let wait = e.retry_after().map_or(backoff, |r| r.min(Duration::from_secs(10)).max(backoff));
                    tracing::info!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "retrying request");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One page; on HTTP 401 fetches a new token and tries once more.
    async fn query_page(&self, req: &QueryRequest, requests: &mut u64) -> Result<super::wire::Page, ApiError> {
        let body = req.to_json();
        let mut reauthenticated = false;
        loop {
            let token = self.token(reauthenticated).await?;
            *requests += 1;
            let ep = Endpoint::QueryCallDetailRecord;
            let resp = self
                .http
                .post(self.cfg.query_url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, bearer(&token))
                .header("X-APP-Key", &self.cfg.app_key)
                .body(body.clone())
                .send()
                .await;
            let (status, bytes) = self.finish(ep, resp).await?;
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                tracing::info!("queryCallDetailRecord answered 401: fetching a new token");
                *self.token.lock().await = None;
                reauthenticated = true;
                continue;
            }
            if !status.is_success() {
                return Err(self.fail(ApiError::Status {
                    endpoint: ep,
                    status: status.as_u16(),
                    retry_after: bytes.1,
                }));
            }
            return parse_page(&bytes.0)
                .map_err(|e| self.fail(ApiError::Decode { endpoint: ep, message: e.to_string() }));
        }
    }

    /// The current token, fetching a new one when it is due or `force`d.
    async fn token(&self, force: bool) -> Result<Secret, ApiError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if !force && t.fresh(Instant::now()) {
                return Ok(t.value.clone());
            }
        }
        let ep = Endpoint::Token;
        let body =
            serde_json::to_vec(&TokenRequest { app_key: &self.cfg.app_key, app_secret: self.cfg.app_secret.expose() })
                .expect("two strings serialize");
        let received = Instant::now();
        let resp = self
            .http
            .post(self.cfg.token_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("X-Token-Expire", self.cfg.token_lifetime_s.to_string())
            .body(body)
            .send()
            .await;
        let (status, bytes) = self.finish(ep, resp).await?;
        if !status.is_success() {
            return Err(self.fail(ApiError::Status { endpoint: ep, status: status.as_u16(), retry_after: bytes.1 }));
        }
        let t = parse_token(&bytes.0).map_err(|message| self.fail(ApiError::Decode { endpoint: ep, message }))?;
        // Never trust a lifetime longer than the one asked for: a gateway's odd `Expires` must not keep
        // a dead token in use (or overflow the clock).
        let asked = u64::from(self.cfg.token_lifetime_s);
        let lifetime = Duration::from_secs(t.expires_s.unwrap_or(asked).clamp(1, asked));
        let token = Token::new(Secret::new(t.access_token), received, lifetime);
        let value = token.value.clone();
        *slot = Some(token);
        self.telemetry.update(|d| d.token_refreshes += 1);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "fetched a new token");
        Ok(value)
    }

    /// Reads the answer, counting the request by status; transport failures become typed errors.
    async fn finish(
        &self,
        ep: Endpoint,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(StatusCode, (bytes::Bytes, Option<Duration>)), ApiError> {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.telemetry.request(ep, 0);
                return Err(self.fail(self.transport(ep, e)));
            }
        };
        let status = resp.status();
        self.telemetry.request(ep, status.as_u16());
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        match resp.bytes().await {
            Ok(b) => Ok((status, (b, retry_after))),
            Err(e) => Err(self.fail(self.transport(ep, e))),
        }
    }

    fn transport(&self, endpoint: Endpoint, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout { endpoint, timeout: self.cfg.timeout }
        } else {
            // reqwest's message names the URL, never headers or bodies: no secret in it.
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            ApiError::Transport { endpoint, message }
        }
    }

    /// Counts a failure by endpoint and kind (the caller logs it once, with context).
    fn fail(&self, e: ApiError) -> ApiError {
        self.telemetry.error(e.endpoint(), e.kind());
        e
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

fn bearer(token: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token"));
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_or_http_date() {
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let status = |s| ApiError::Status { endpoint: Endpoint::QueryCallDetailRecord, status: s, retry_after: None };
        assert!(status(500).retryable() && status(502).retryable() && status(429).retryable());
        assert!(!status(400).retryable() && !status(401).retryable() && !status(403).retryable());
        assert_eq!(status(403).kind(), ErrorKind::Unauthorized);
        assert_eq!(status(404).kind(), ErrorKind::HttpStatus);
        assert_eq!(
            status(401).to_string(),
            "query_call_detail_record: HTTP 401 (unauthorized: check the app key and secret)"
        );
        let w = Window { start_ms: 1, end_ms: 2 };
        let e = ApiError::RetCode { query: TaskQuery::ITA, window: w, code: "2".into(), message: "bad time".into() };
        assert!(!e.retryable());
        assert_eq!(e.to_string(), "queryCallDetailRecord taskType 4 [1, 2]: retCode 2: bad time");
        let t = ApiError::Timeout { endpoint: Endpoint::Token, timeout: Duration::from_secs(10) };
        assert!(t.retryable());
        assert_eq!(t.to_string(), "token_by_ak_sk: no answer within 10s");
    }
}
