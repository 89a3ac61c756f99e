//! The HTTP client of the two interfaces: fetches and caches the token, reads a window page by page
//! until all of `total` is read, and turns every failure into one typed [`ApiError`] that says whether
//! retrying makes sense. It neither counts nor logs: each exchange, failure and token refresh is told to
//! an [`ApiObserver`], and the entries it had to skip come back in the [`WindowRead`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::auth::Token;
use super::error::{ApiError, Endpoint};
use super::record::TaskQuery;
use super::window::Window;
use super::wire::{parse_page, parse_token, Page, ParsedRecord, QueryRequest, Rejection, RetCode, TokenRequest};
use super::{ApiObserver, Retry};
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

/// The CEC client. Cheap to share; one token for all requests.
pub struct CecClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    token: Mutex<Option<Token>>,
    observer: Arc<dyn ApiObserver>,
}

/// Records of one window and what reading it cost.
#[derive(Clone, Debug, Default)]
pub struct WindowRead {
    /// Every record that has an identity and a state, in the order CEC served them. A record whose
    /// optional fields were unusable is here too, with those fields named in its `invalid`.
    pub records: Vec<ParsedRecord>,
    /// Business requests made (retries included).
    pub requests: u64,
    /// `total` as the last page reported it.
    pub total: Option<u64>,
    /// Entries skipped as malformed (no identity or no state), for the caller to report.
    pub rejected: Vec<Skipped>,
    /// Whether every page reported the same `total`.
    pub total_unchanged: bool,
}

/// A `callInfo` entry skipped as malformed, and where it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub rejection: Rejection,
    /// The `offset` of the page it came on.
    pub page_offset: u64,
}

impl WindowRead {
    /// Every entry CEC served, counted or skipped (repeats included).
    pub fn entries(&self) -> u64 {
        (self.records.len() + self.rejected.len()) as u64
    }

    /// Distinct calls read (plus malformed entries, which have no identity).
    pub fn distinct(&self) -> u64 {
        let ids: hashbrown::HashSet<_> = self.records.iter().map(|r| r.id).collect();
        (ids.len() + self.rejected.len()) as u64
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
    /// A client that tells `observer` about every exchange.
    pub fn new(cfg: ClientConfig, observer: Arc<dyn ApiObserver>) -> Result<CecClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("cec-exporter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(CecClient { http, cfg, token: Mutex::new(None), observer })
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
                    let e = ApiError::RetCode { query, window, code, message: page.ret_msg };
                    self.observer.error(&e, None);
                    return Err(e);
                }
            };
            self.observer.page(query, offset, &page.records);
            let n = page.records.len() as u64;
            for r in page.records {
                match r {
                    Ok(rec) => out.records.push(rec),
                    Err(rejection) => out.rejected.push(Skipped { rejection, page_offset: offset }),
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

    /// One page, retrying a retryable failure; every failure is told to the observer once, with
    /// whether it is retried.
    async fn query_with_retries(&self, req: &QueryRequest, requests: &mut u64) -> Result<Page, ApiError> {
        let mut attempt = 0;
        loop {
            match self.query_page(req, requests).await {
                Err(e) if e.retryable() && attempt < self.cfg.retries => {
                    attempt += 1;
                    let backoff = Duration::from_millis(200 << attempt.min(6));
                    let wait = e.retry_after().map_or(backoff, |r| r.min(Duration::from_secs(10)).max(backoff));
                    self.observer.error(&e, Some(Retry { attempt, wait }));
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    self.observer.error(&e, None);
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// One page; on HTTP 401 fetches a new token and tries once more.
    async fn query_page(&self, req: &QueryRequest, requests: &mut u64) -> Result<Page, ApiError> {
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
                // The token was revoked or expired early: one new token, one more try.
                *self.token.lock().await = None;
                reauthenticated = true;
                continue;
            }
            if !status.is_success() {
                return Err(ApiError::Status { endpoint: ep, status: status.as_u16(), retry_after: bytes.1 });
            }
            return parse_page(&bytes.0).map_err(|e| ApiError::Decode { endpoint: ep, message: e.to_string() });
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
            return Err(ApiError::Status { endpoint: ep, status: status.as_u16(), retry_after: bytes.1 });
        }
        let t = parse_token(&bytes.0).map_err(|message| ApiError::Decode { endpoint: ep, message })?;
        // Never trust a lifetime longer than the one asked for: a gateway's odd `Expires` must not keep
        // a dead token in use (or overflow the clock).
        let asked = u64::from(self.cfg.token_lifetime_s);
        let lifetime = Duration::from_secs(t.expires_s.unwrap_or(asked).clamp(1, asked));
        let token = Token::new(t.access_token, received, lifetime);
        let value = token.value.clone();
        *slot = Some(token);
        self.observer.token_refreshed(lifetime, force);
        Ok(value)
    }

    /// Reads the answer, telling the observer its status; transport failures become typed errors.
    async fn finish(
        &self,
        ep: Endpoint,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(StatusCode, (bytes::Bytes, Option<Duration>)), ApiError> {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.observer.request(ep, None);
                return Err(self.transport(ep, e));
            }
        };
        let status = resp.status();
        self.observer.request(ep, Some(status.as_u16()));
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        match resp.bytes().await {
            Ok(b) => Ok((status, (b, retry_after))),
            Err(e) => Err(self.transport(ep, e)),
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

    use std::collections::VecDeque;
    use std::sync::Mutex as StdMutex;

    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use crate::cec::record::CallId;
    use crate::cec::wire::{Field, RejectReason};

    /// What the fake CEC answers, in order, per interface; and the query bodies it received.
    #[derive(Default)]
    struct Script {
        token: StdMutex<VecDeque<(u16, &'static str)>>,
        query: StdMutex<VecDeque<(u16, String)>>,
        bodies: StdMutex<Vec<serde_json::Value>>,
    }

    const TOKEN_OK: (u16, &str) = (200, r#"{"AccessToken":"t0k3n","Expires":"600"}"#);

    /// A loopback HTTP server that answers from `script`: `/token` and `/query`.
    async fn fake_cec(script: Arc<Script>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let script = script.clone();
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let script = script.clone();
                    async move {
                        let token = req.uri().path() == "/token";
                        let body = req.into_body().collect().await?.to_bytes();
                        let (status, answer) = if token {
                            let (s, b) = script.token.lock().unwrap().pop_front().expect("an unscripted token request");
                            (s, b.to_owned())
                        } else {
                            script.bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                            script.query.lock().unwrap().pop_front().expect("an unscripted query")
                        };
                        let mut resp = hyper::Response::new(Full::new(bytes::Bytes::from(answer)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        format!("http://{addr}")
    }

    /// An observer that writes down everything it is told, one line each.
    #[derive(Default)]
    struct Recorder(StdMutex<Vec<String>>);

    impl ApiObserver for Recorder {
        fn request(&self, endpoint: Endpoint, status: Option<u16>) {
            self.0.lock().unwrap().push(format!("request {} {status:?}", endpoint.label()));
        }
        fn error(&self, error: &ApiError, retry: Option<Retry>) {
            let retry = retry.map(|r| (r.attempt, r.wait.as_millis()));
            self.0.lock().unwrap().push(format!("error {error} retry={retry:?}"));
        }
        fn token_refreshed(&self, lifetime: Duration, after_401: bool) {
            self.0.lock().unwrap().push(format!("token {}s after_401={after_401}", lifetime.as_secs()));
        }
        fn page(&self, query: TaskQuery, offset: u64, entries: &[Result<ParsedRecord, Rejection>]) {
            let skipped = entries.iter().filter(|e| e.is_err()).count();
            self.0
                .lock()
                .unwrap()
                .push(format!("page {query} offset={offset} entries={} skipped={skipped}", entries.len()));
        }
    }

    fn client(base: &str, page_size: u32, retries: u32) -> (CecClient, Arc<Recorder>) {
        let cfg = ClientConfig {
            query_url: format!("{base}/query").parse().unwrap(),
            token_url: format!("{base}/token").parse().unwrap(),
            app_key: "key".into(),
            app_secret: Secret::new("secret"),
            token_lifetime_s: 600,
            page_size,
            timeout: Duration::from_secs(5),
            retries,
        };
        let rec = Arc::new(Recorder::default());
        (CecClient::new(cfg, rec.clone()).unwrap(), rec)
    }

    fn page(total: u64, entries: &[&str]) -> (u16, String) {
        (
            200,
            format!(
                r#"{{"retCode":"0","retMsg":"ok","result":{{"total":{total},"callInfo":[{}]}}}}"#,
                entries.join(",")
            ),
        )
    }

    const W: Window = Window { start_ms: 1_000, end_ms: 2_000 };

    #[tokio::test]
    async fn a_401_gets_one_new_token_and_the_observer_sees_every_exchange() {
        let script = Arc::new(Script::default());
        script.token.lock().unwrap().extend([TOKEN_OK, TOKEN_OK]);
        script.query.lock().unwrap().extend([
            (401, String::new()),
            page(
                3,
                &[
                    r#"{"callSerialNo":"1","state":3}"#,
                    r#"{"callSerialNo":"2","state":"x"}"#,
                    r#"{"callSerialNo":"3","state":2,"talkDuration":"26s"}"#,
                ],
            ),
        ]);
        let (c, rec) = client(&fake_cec(script.clone()).await, 100, 0);
        let read = c.read_window(TaskQuery::ITA, W).await.unwrap();
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "request token_by_ak_sk Some(200)",
                "token 600s after_401=false",
                "request query_call_detail_record Some(401)",
                "request token_by_ak_sk Some(200)",
                "token 600s after_401=true",
                "request query_call_detail_record Some(200)",
                "page 4 offset=0 entries=3 skipped=1",
            ]
        );
        assert_eq!(read.requests, 2, "the request refused with 401 counts");
        assert_eq!(read.records.iter().map(|r| r.id).collect::<Vec<_>>(), [CallId(1), CallId(3)]);
        assert_eq!(read.records[1].invalid.iter().collect::<Vec<_>>(), [Field::TalkDuration]);
        let rejected = Rejection { reason: RejectReason::InvalidState, field: Some("state"), serial: Some(CallId(2)) };
        assert_eq!(read.rejected, [Skipped { rejection: rejected, page_offset: 0 }]);
        assert_eq!((read.entries(), read.distinct(), read.complete()), (3, 3, true));
    }

    #[tokio::test]
    async fn a_retried_failure_is_reported_with_its_retry_and_a_final_one_without() {
        let script = Arc::new(Script::default());
        script.token.lock().unwrap().push_back(TOKEN_OK);
        script.query.lock().unwrap().extend([
            (500, String::new()),
            page(0, &[]),
            (400, String::new()),
            (200, r#"{"retCode":"2","retMsg":"bad time"}"#.to_owned()),
        ]);
        let (c, rec) = client(&fake_cec(script.clone()).await, 100, 1);
        let read = c.read_window(TaskQuery::ITA, W).await.unwrap();
        assert_eq!((read.requests, read.records.len()), (2, 0));
        let e = c.read_window(TaskQuery::ITA, W).await.unwrap_err();
        assert_eq!(e.to_string(), "query_call_detail_record: HTTP 400");
        let e = c.read_window(TaskQuery::ALL_BUT_ITA, W).await.unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::RetCode);
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "request token_by_ak_sk Some(200)",
                "token 600s after_401=false",
                "request query_call_detail_record Some(500)",
                "error query_call_detail_record: HTTP 500 retry=Some((1, 400))",
                "request query_call_detail_record Some(200)",
                "page 4 offset=0 entries=0 skipped=0",
                "request query_call_detail_record Some(400)",
                "error query_call_detail_record: HTTP 400 retry=None",
                "request query_call_detail_record Some(200)",
                "error queryCallDetailRecord taskType 0 [1000, 2000]: retCode 2: bad time retry=None",
            ]
        );
    }

    #[tokio::test]
    async fn pages_follow_the_offset_and_skipped_entries_keep_their_page() {
        let script = Arc::new(Script::default());
        script.token.lock().unwrap().push_back(TOKEN_OK);
        script.query.lock().unwrap().extend([
            page(3, &[r#"{"callSerialNo":"1","state":3}"#, r#"{"callSerialNo":"2","state":3}"#]),
            page(3, &["42"]),
        ]);
        let (c, _) = client(&fake_cec(script.clone()).await, 2, 0);
        let read = c.read_window(TaskQuery::ITA, W).await.unwrap();
        let offsets: Vec<_> = script.bodies.lock().unwrap().iter().map(|b| b["offset"].clone()).collect();
        assert_eq!(offsets, ["0", "2"]);
        let rejected = Rejection { reason: RejectReason::NotAnObject, field: None, serial: None };
        assert_eq!(read.rejected, [Skipped { rejection: rejected, page_offset: 2 }]);
        assert_eq!((read.requests, read.total, read.complete()), (2, Some(3), true));
    }

    #[tokio::test]
    async fn a_page_is_reported_as_it_arrives_even_when_a_later_page_fails_the_read() {
        let script = Arc::new(Script::default());
        script.token.lock().unwrap().push_back(TOKEN_OK);
        script
            .query
            .lock()
            .unwrap()
            .extend([page(4, &[r#"{"callSerialNo":"1","state":3}"#, r#"{"state":3}"#]), (400, String::new())]);
        let (c, rec) = client(&fake_cec(script.clone()).await, 2, 0);
        let e = c.read_window(TaskQuery::ALL_BUT_ITA, W).await.unwrap_err();
        assert_eq!(e.to_string(), "query_call_detail_record: HTTP 400");
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "request token_by_ak_sk Some(200)",
                "token 600s after_401=false",
                "request query_call_detail_record Some(200)",
                "page 0 offset=0 entries=2 skipped=1",
                "request query_call_detail_record Some(400)",
                "error query_call_detail_record: HTTP 400 retry=None",
            ]
        );
    }

    #[tokio::test]
    async fn no_answer_is_a_request_without_status() {
        // A port nobody listens on.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (c, rec) = client(&format!("http://{addr}"), 100, 0);
        let e = c.read_window(TaskQuery::ITA, W).await.unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::Transport);
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "request token_by_ak_sk None");
        assert!(seen[1].starts_with("error token_by_ak_sk: ") && seen[1].ends_with(" retry=None"), "{seen:?}");
        assert!(!seen[1].contains("secret"), "{seen:?}");
    }
}
