//! The simulator's HTTP/1.1 server: routing, the token interface and its token store, bearer
//! checks, fault injection and request accounting around queryCallDetailRecord, and the `/sim/*`
//! control endpoints that let a separate process drive the simulator. Bodies are [`SimBody`]: a
//! plain buffer, or generated on the fly for the oversized and endless faults (so a 64 MiB or
//! never-ending answer costs the simulator no memory).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::{self, Rejection};
use super::stats::{take, ChaosKind, Faults, QueryLogEntry, DEFAULT_OVERSIZED_MIB, DEFAULT_REDIRECT_TO, LYING_TOTAL};
use super::store::Selection;
use super::{lock, now_ms, CallSpec, Simulator, TokenInfo, QUERY_PATH, TOKEN_PATH};

type Resp = Response<SimBody>;

/// Whitespace served by the oversized and endless faults, one chunk at a time.
static PADDING: [u8; 64 << 10] = [b' '; 64 << 10];

/// A response body: a buffer, or a prefix followed by generated whitespace.
#[derive(Debug)]
pub(crate) enum SimBody {
    /// The whole body at once.
    Full(Full<Bytes>),
    /// `prefix`, then `remaining` bytes of whitespace (`None`: forever). `declared` sends the length
    /// as `Content-Length`; otherwise the body goes chunked.
    Generated { prefix: Option<Bytes>, remaining: Option<u64>, declared: bool },
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(full) => Pin::new(full).poll_frame(cx),
            SimBody::Generated { prefix, remaining, .. } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                let n = match remaining {
                    Some(0) => return Poll::Ready(None),
                    Some(r) => {
                        let n = (*r).min(PADDING.len() as u64);
                        *r -= n;
                        usize::try_from(n).unwrap_or(PADDING.len())
                    }
                    None => PADDING.len(),
                };
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PADDING[..n])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(full) => full.is_end_stream(),
            SimBody::Generated { prefix, remaining, .. } => prefix.is_none() && *remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(full) => full.size_hint(),
            // hyper sends `Content-Length` for an exact hint and chunked encoding otherwise.
            SimBody::Generated { prefix, remaining: Some(r), declared: true } => {
                SizeHint::with_exact(prefix.as_ref().map_or(0, |p| p.len() as u64) + r)
            }
            SimBody::Generated { .. } => SizeHint::default(),
        }
    }
}

/// Token lifetime when `X-Token-Expire` is absent (the vendor's examples use 600).
const DEFAULT_TOKEN_SECS: u64 = 600;
/// Largest accepted `X-Token-Expire`.
const MAX_TOKEN_SECS: u64 = 3_600;
/// Bodies of the documented interfaces above this are refused; real ones are a few hundred bytes.
const API_BODY_LIMIT: usize = 1 << 20;
/// `/sim/calls` bodies can carry many thousand scripted calls.
const CONTROL_BODY_LIMIT: usize = 64 << 20;
/// How long shutdown waits for open connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn serve(
    sim: Arc<Simulator>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small request/response pairs: without this, Nagle adds tens of ms per call.
                    let _ = stream.set_nodelay(true);
                    let sim = Arc::clone(&sim);
                    let svc = service_fn(move |req| {
                        let sim = Arc::clone(&sim);
                        async move { Ok::<_, Infallible>(handle(sim, req).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "simulator connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::debug!("simulator shutdown: connections still open after the drain timeout");
    }
    Ok(())
}

fn body_response(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(SimBody::Full(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    r
}

/// A 200 answer of `body` padded with whitespace to `total` bytes (not less than the body).
fn padded_response(body: Vec<u8>, total: u64, declared: bool) -> Resp {
    let remaining = total.saturating_sub(body.len() as u64);
    let mut r =
        Response::new(SimBody::Generated { prefix: Some(Bytes::from(body)), remaining: Some(remaining), declared });
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    r
}

/// A 200 answer that starts like a page and never ends.
fn endless_response() -> Resp {
    let prefix = Bytes::from_static(br#"{"retCode":"0","retMsg":"success","result":{"total":"1","callInfo":["#);
    let mut r = Response::new(SimBody::Generated { prefix: Some(prefix), remaining: None, declared: false });
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    r
}

/// A redirect of `status` to `location` (the target a test gave, or [`DEFAULT_REDIRECT_TO`]).
fn redirect(status: StatusCode, location: Option<&str>) -> Resp {
    let mut r = error(status, "REDIRECT", "moved");
    let v = HeaderValue::from_str(location.unwrap_or(DEFAULT_REDIRECT_TO))
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_REDIRECT_TO));
    r.headers_mut().insert(LOCATION, v);
    r
}

fn json_response(status: StatusCode, v: &Value) -> Resp {
    body_response(status, serde_json::to_vec(v).unwrap_or_default())
}

/// Error bodies of the gateway are not documented; this shape matches what API gateways send.
fn error(status: StatusCode, code: &str, msg: &str) -> Resp {
    json_response(status, &json!({"error_code": code, "error_msg": msg}))
}

fn endpoint_of(path: &str) -> &'static str {
    match path {
        TOKEN_PATH => "token",
        QUERY_PATH => "query",
        p if p.starts_with("/sim/") => "control",
        _ => "other",
    }
}

fn allowed(path: &str) -> Option<&'static [Method]> {
    const POST: &[Method] = &[Method::POST];
    const GET: &[Method] = &[Method::GET];
    const GET_POST: &[Method] = &[Method::GET, Method::POST];
    match path {
        TOKEN_PATH | QUERY_PATH | "/sim/calls" => Some(POST),
        "/sim/truth" | "/sim/stats" => Some(GET),
        "/sim/faults" => Some(GET_POST),
        _ => None,
    }
}

async fn handle(sim: Arc<Simulator>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let endpoint = endpoint_of(&path);
    let resp = match allowed(&path) {
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path"),
        Some(methods) if !methods.contains(req.method()) => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "method not allowed");
            let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                r.headers_mut().insert(ALLOW, v);
            }
            r
        }
        Some(_) => route(&sim, &path, req).await,
    };
    lock(&sim.stats).request(endpoint, resp.status().as_u16());
    resp
}

async fn route(sim: &Simulator, path: &str, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let limit = if path.starts_with("/sim/") { CONTROL_BODY_LIMIT } else { API_BODY_LIMIT };
    // One draw per business request, taken here so a slow answer can sleep.
    let chaos = if path == QUERY_PATH { sim.chaos_draw() } else { None };
    if matches!(path, TOKEN_PATH | QUERY_PATH) {
        let mut delay = lock(&sim.faults).delay_ms;
        if chaos == Some(ChaosKind::Slow) {
            delay += lock(&sim.faults).chaos.as_ref().map_or(0, |c| c.slow_ms);
        }
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "request body too large")
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "BAD_BODY", &format!("cannot read body: {e}")),
    };
    match (path, &parts.method) {
        (TOKEN_PATH, _) => sim.token(&parts.headers, &body),
        (QUERY_PATH, _) => sim.query(&parts.headers, &body, chaos),
        ("/sim/truth", _) => match since_param(parts.uri.query()) {
            Ok(since) => {
                let truth = since.map_or_else(|| sim.truth(), |s| sim.truth_since(s));
                json_response(StatusCode::OK, &json!(truth))
            }
            Err(msg) => error(StatusCode::BAD_REQUEST, "BAD_QUERY", &msg),
        },
        ("/sim/stats", _) => json_response(StatusCode::OK, &json!(sim.stats())),
        ("/sim/faults", &Method::GET) => json_response(StatusCode::OK, &json!(sim.faults())),
        ("/sim/faults", _) => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => {
                sim.set_faults(f);
                json_response(StatusCode::OK, &json!(sim.faults()))
            }
            Err(e) => error(StatusCode::BAD_REQUEST, "BAD_FAULTS", &e.to_string()),
        },
        _ => match serde_json::from_slice::<Vec<CallSpec>>(&body) {
            Ok(calls) => match sim.try_add_calls(calls) {
                Ok(n) => json_response(StatusCode::OK, &json!({"added": n})),
                Err(e) => error(StatusCode::BAD_REQUEST, "BAD_CALLS", &e.to_string()),
            },
            Err(e) => error(StatusCode::BAD_REQUEST, "BAD_CALLS", &e.to_string()),
        },
    }
}

/// `since_ms` from a query string such as `since_ms=1700000000000`; other parameters are ignored.
fn since_param(q: Option<&str>) -> Result<Option<i64>, String> {
    let Some(q) = q else { return Ok(None) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("since_ms=") {
            return v.parse().map(Some).map_err(|_| format!("since_ms {v:?} is not an integer"));
        }
    }
    Ok(None)
}

#[derive(Deserialize)]
struct Credentials {
    app_key: String,
    app_secret: String,
}

impl Simulator {
    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Resp {
        {
            let mut f = lock(&self.faults);
            if take(&mut f.token_http_500) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "APIGW.0500", "injected fault: internal error");
            }
            if take(&mut f.token_http_401) {
                return error(StatusCode::UNAUTHORIZED, "APIGW.0301", "injected fault: authentication failed");
            }
            if take(&mut f.token_redirect) {
                return redirect(StatusCode::TEMPORARY_REDIRECT, f.redirect_to.as_deref());
            }
        }
        let lifetime = match headers.get("x-token-expire") {
            None => DEFAULT_TOKEN_SECS,
            Some(v) => match v
                .to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(n) if (1..=MAX_TOKEN_SECS).contains(&n) => n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "APIGW.0101",
                        "X-Token-Expire must be an integer number of seconds in 1..=3600",
                    )
                }
            },
        };
        let creds = match serde_json::from_slice::<Credentials>(body) {
            Ok(c) => c,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "APIGW.0102",
                    &format!("body must be {{\"app_key\", \"app_secret\"}}: {e}"),
                )
            }
        };
        if creds.app_key != self.app_key || creds.app_secret != self.app_secret {
            return error(StatusCode::UNAUTHORIZED, "APIGW.0301", "incorrect app_key or app_secret");
        }
        let bytes: [u8; 32] = rand::thread_rng().gen();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = now_ms();
        let expires_at_ms = now.saturating_add(i64::try_from(lifetime * 1_000).unwrap_or(i64::MAX));
        {
            let mut tokens = lock(&self.tokens);
            // Clients fetch a new token every few minutes; forget the dead ones as we go.
            tokens.retain(|_, t| t.expires_at_ms > now);
            tokens.insert(token.clone(), TokenInfo { expires_at_ms });
        }
        lock(&self.stats).token_issued();
        let expires = {
            let mut f = lock(&self.faults);
            match f.token_expires_text.clone() {
                Some(text) if take(&mut f.token_expires_count) => text,
                _ => lifetime.to_string(),
            }
        };
        json_response(
            StatusCode::OK,
            &json!({
                "AccessToken": token,
                "ApplyType": "Bearer",
                "CreateTime": (now / 1_000).to_string(),
                "Expires": expires,
                "Scope": "default",
                "AppKey": self.app_key,
                "UserID": "Anonymous",
            }),
        )
    }

    /// Exactly one `Authorization: Bearer <token>` (one space) naming a live token.
    fn authorized(&self, headers: &HeaderMap, now: i64) -> bool {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(v), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(token) = v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")) else {
            return false;
        };
        let mut tokens = lock(&self.tokens);
        match tokens.get(token) {
            Some(t) if now < t.expires_at_ms => true,
            Some(_) => {
                tokens.remove(token);
                false
            }
            None => false,
        }
    }

    fn query(&self, headers: &HeaderMap, body: &[u8], chaos: Option<ChaosKind>) -> Resp {
        let parsed = query::parse(body);
        let now = now_ms();
        let mut entry = QueryLogEntry {
            at_ms: now,
            task_type: parsed.fields.task_type.clone(),
            start: parsed.fields.start,
            end: parsed.fields.end,
            offset: parsed.fields.offset,
            limit: parsed.fields.limit,
            status: 0,
            ret_code: None,
            records: 0,
            total: None,
            fault: None,
        };
        let resp = self.answer_query(headers, &parsed, now, &mut entry, chaos);
        entry.status = resp.status().as_u16();
        if chaos == Some(ChaosKind::Slow) && entry.fault.is_none() {
            entry.fault = Some("slow".into());
        }
        if chaos.is_some() {
            entry.fault = entry.fault.map(|f| format!("chaos:{f}"));
        }
        let unreadable = matches!(entry.fault.as_deref(), Some("truncated_json" | "chaos:truncated_json"));
        let delivered = if unreadable { 0 } else { entry.records };
        lock(&self.stats).business(entry, parsed.all_strings, delivered);
        resp
    }

    fn answer_query(
        &self,
        headers: &HeaderMap,
        parsed: &query::Parsed,
        now: i64,
        entry: &mut QueryLogEntry,
        chaos: Option<ChaosKind>,
    ) -> Resp {
        // Gateway-level faults hit before authentication, like a real rate limiter or outage.
        {
            let mut f = lock(&self.faults);
            if take(&mut f.http_429) || chaos == Some(ChaosKind::Http429) {
                entry.fault = Some("http_429".into());
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "APIGW.0308", "injected fault: throttled");
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            if take(&mut f.http_500) || chaos == Some(ChaosKind::Http500) {
                entry.fault = Some("http_500".into());
                return error(StatusCode::INTERNAL_SERVER_ERROR, "500", "injected fault: business failure");
            }
            if take(&mut f.redirect) || chaos == Some(ChaosKind::Redirect) {
                entry.fault = Some("redirect".into());
                return redirect(StatusCode::PERMANENT_REDIRECT, f.redirect_to.as_deref());
            }
            if take(&mut f.endless) || chaos == Some(ChaosKind::Endless) {
                entry.fault = Some("endless".into());
                return endless_response();
            }
        }
        if !self.authorized(headers, now) {
            return error(StatusCode::UNAUTHORIZED, "APIGW.0301", "missing, unknown, expired or revoked bearer token");
        }
        let body = match &parsed.selection {
            Err(Rejection::BadRequest(msg)) => {
                return error(StatusCode::BAD_REQUEST, "400", msg);
            }
            Err(Rejection::RetCode(code, msg)) => {
                entry.ret_code = Some((*code).to_string());
                query::ret_code_body(code, msg)
            }
            Ok(sel) => {
                let shifted;
                let sel = if sel.offset > 0 && take(&mut lock(&self.faults).shift_pages) {
                    entry.fault = Some("shift_pages".into());
                    shifted = Selection { offset: sel.offset - 1, ..sel.clone() };
                    &shifted
                } else {
                    sel
                };
                let lying_switch = take(&mut lock(&self.faults).lying_total);
                let lying = lying_switch || chaos == Some(ChaosKind::LyingTotal);
                let mut page = {
                    let mut store = lock(&self.store);
                    store.advance(now);
                    let page = store.select(now, sel);
                    if lying && (page.calls.len() as u64) < sel.limit {
                        // Past the real end: the window's first page again, full when it can be.
                        store.select(now, &Selection { offset: 0, ..sel.clone() })
                    } else {
                        page
                    }
                };
                if lying && !page.calls.is_empty() {
                    entry.fault = Some("lying_total".into());
                    page.total = LYING_TOTAL;
                } else if lying_switch {
                    // An empty window has nothing to repeat: the switch waits for one that has.
                    lock(&self.faults).lying_total += 1;
                }
                let coin = self.next_response_coin();
                if page.calls.is_empty() {
                    entry.ret_code = Some("1".into());
                    query::no_data_body(coin)
                } else {
                    let malformed = take(&mut lock(&self.faults).malformed);
                    if malformed {
                        entry.fault = Some("malformed".into());
                    }
                    entry.ret_code = Some("0".into());
                    entry.records = page.calls.len() as u64;
                    entry.total = Some(page.total);
                    query::success_body(&page, now, self.seed, coin, malformed)
                }
            }
        };
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut f = lock(&self.faults);
        if take(&mut f.truncated_json) || chaos == Some(ChaosKind::Truncated) {
            entry.fault = Some("truncated_json".into());
            bytes.truncate(bytes.len() / 2);
        } else if take(&mut f.oversized) || chaos == Some(ChaosKind::Oversized) {
            entry.fault = Some("oversized".into());
            let mib = if f.oversized_mib == 0 { DEFAULT_OVERSIZED_MIB } else { f.oversized_mib };
            return padded_response(bytes, u64::from(mib) << 20, !f.oversized_chunked);
        }
        body_response(StatusCode::OK, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{num, sim_config, KEY, SECRET};
    use crate::{now_ms, CallSpec, ChaosConfig, Outcome, Running, SimConfig, Traffic, Truth, SERIAL_BASE};
    use std::collections::HashSet;

    /// A test simulator on loopback and a client for it.
    struct Harness {
        sim: Arc<Simulator>,
        base: String,
        http: reqwest::Client,
        /// Stops the server when the test ends.
        running: Running,
    }

    async fn serve(sim: Arc<Simulator>) -> Harness {
        let running = sim.spawn_loopback().await.unwrap();
        Harness { sim, base: running.url(), http: reqwest::Client::new(), running }
    }

    async fn start() -> Harness {
        serve(Simulator::new(sim_config(Traffic::None, Duration::ZERO))).await
    }

    impl Harness {
        async fn token_raw(&self, expire: Option<&str>, key: &str, secret: &str) -> reqwest::Response {
            let mut rb = self
                .http
                .post(format!("{}{TOKEN_PATH}", self.base))
                .json_body(&json!({"app_key": key, "app_secret": secret}));
            if let Some(e) = expire {
                rb = rb.header("X-Token-Expire", e);
            }
            rb.send().await.unwrap()
        }

        async fn token(&self) -> String {
            let r = self.token_raw(Some("600"), KEY, SECRET).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json_value().await.unwrap();
            v["AccessToken"].as_str().unwrap().to_string()
        }

        async fn query_auth(&self, auth: Option<&str>, body: &Value) -> (u16, String) {
            let mut rb = self.http.post(format!("{}{QUERY_PATH}", self.base)).header("X-APP-Key", KEY).json_body(body);
            if let Some(a) = auth {
                rb = rb.header("Authorization", a);
            }
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }

        async fn query(&self, token: &str, body: &Value) -> (u16, Value) {
            let (status, text) = self.query_auth(Some(&format!("Bearer {token}")), body).await;
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }

        /// Every record of a window and task type, paging by 100 until `total` is covered.
        async fn all_records(&self, token: &str, start: i64, end: i64, task: &str) -> Vec<Value> {
            let mut out = Vec::new();
            let mut offset = 0;
            loop {
                let (status, v) = self
                    .query(
                        token,
                        &json!({"startTime": start.to_string(), "endTime": end.to_string(),
                                "taskType": task, "offset": offset.to_string(), "limit": "100"}),
                    )
                    .await;
                assert_eq!(status, 200);
                if v["retCode"] == "1" {
                    return out;
                }
                assert_eq!(v["retCode"], "0", "{v}");
                let page = v["result"]["callInfo"].as_array().unwrap().clone();
                let total = num(&v["result"]["total"]);
                offset += page.len() as i64;
                out.extend(page);
                if offset >= total {
                    return out;
                }
            }
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
            (r.status().as_u16(), r.json_value().await.unwrap_or(Value::Null))
        }

        async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            let r = self.http.post(format!("{}{path}", self.base)).json_body(body).send().await.unwrap();
            (r.status().as_u16(), r.json_value().await.unwrap_or(Value::Null))
        }
    }

    /// reqwest is built without its `json` feature; these two stand in for it.
    trait JsonBody {
        fn json_body(self, v: &Value) -> Self;
    }

    impl JsonBody for reqwest::RequestBuilder {
        fn json_body(self, v: &Value) -> Self {
            self.header(CONTENT_TYPE, "application/json").body(serde_json::to_vec(v).unwrap())
        }
    }

    trait JsonValue {
        async fn json_value(self) -> serde_json::Result<Value>;
    }

    impl JsonValue for reqwest::Response {
        async fn json_value(self) -> serde_json::Result<Value> {
            serde_json::from_str(&self.text().await.unwrap())
        }
    }

    fn window(start: i64, end: i64, task: &str) -> Value {
        json!({"startTime": start.to_string(), "endTime": end.to_string(), "taskType": task})
    }

    #[tokio::test]
    async fn token_issue_and_validation() {
        let h = start().await;
        let before = now_ms() / 1_000;
        let r = h.token_raw(None, KEY, SECRET).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json_value().await.unwrap();
        let obj = v.as_object().unwrap();
        let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from(["AccessToken", "ApplyType", "CreateTime", "Expires", "Scope", "AppKey", "UserID"])
        );
        assert!(obj.values().all(Value::is_string));
        assert_eq!(v["Expires"], "600");
        assert_eq!(v["ApplyType"], "Bearer");
        assert_eq!(v["UserID"], "Anonymous");
        assert_eq!(v["AppKey"], KEY);
        let created: i64 = v["CreateTime"].as_str().unwrap().parse().unwrap();
        assert!(created >= before && created <= now_ms() / 1_000);
        let token = v["AccessToken"].as_str().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, h.token().await, "tokens are random");

        for (expire, status) in
            [("1", 200), ("3600", 200), ("0", 400), ("3601", 400), ("abc", 400), ("+5", 400), ("", 400)]
        {
            let r = h.token_raw(Some(expire), KEY, SECRET).await;
            assert_eq!(r.status(), status, "X-Token-Expire {expire:?}");
            let v: Value = r.json_value().await.unwrap();
            if status == 200 {
                assert_eq!(v["Expires"], expire);
            } else {
                assert!(v.is_object(), "JSON error body");
            }
        }
        assert_eq!(h.token_raw(None, "other", SECRET).await.status(), 401);
        assert_eq!(h.token_raw(None, KEY, "other").await.status(), 401);
        let r = h
            .http
            .post(format!("{}{TOKEN_PATH}", h.base))
            .json_body(&json!({"appKey": KEY, "appSecret": SECRET}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "camelCase keys are not the documented body");

        let body = window(0, 1, "0");
        let good = format!("Bearer {token}");
        assert_eq!(h.query_auth(Some(&good), &body).await.0, 200);
        for bad in [
            None,
            Some(format!("Bearer  {token}")),
            Some(format!("bearer {token}")),
            Some(token.to_string()),
            Some("Bearer 0123".to_string()),
        ] {
            let (status, text) = h.query_auth(bad.as_deref(), &body).await;
            assert_eq!(status, 401, "{bad:?}");
            assert!(serde_json::from_str::<Value>(&text).unwrap().is_object());
        }
        // X-APP-Key is optional.
        let r = h
            .http
            .post(format!("{}{QUERY_PATH}", h.base))
            .header("Authorization", &good)
            .json_body(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let st = h.sim.stats();
        assert_eq!(st.requests_of("query", 401), 5);
        assert_eq!(st.tokens_issued, 4);
    }

    #[tokio::test]
    async fn token_expires() {
        let h = start().await;
        let v: Value = h.token_raw(Some("1"), KEY, SECRET).await.json_value().await.unwrap();
        let token = v["AccessToken"].as_str().unwrap().to_string();
        assert_eq!(h.query(&token, &window(0, 1, "0")).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        assert_eq!(h.query(&token, &window(0, 1, "0")).await.0, 401);
    }

    #[tokio::test]
    async fn query_rules() {
        let h = start().await;
        let t0 = now_ms() - 120_000;
        let mut calls: Vec<CallSpec> =
            (0..150).map(|i| CallSpec::builder(SERIAL_BASE + i * 7, 1, t0 + i as i64).build()).collect();
        calls.push(CallSpec::builder(SERIAL_BASE + 5_000, 4, t0).build());
        h.sim.add_calls(calls);
        let tok = h.token().await;

        let week = 7 * 24 * 3_600 * 1_000;
        let (s, v) = h.query(&tok, &window(t0, t0 + week + 1, "0")).await;
        assert_eq!((s, v["retCode"].as_str()), (200, Some("2")));
        assert!(v["retMsg"].as_str().unwrap().contains("seven days"));
        let (_, v) = h.query(&tok, &window(t0, t0 + week, "0")).await;
        assert_eq!(v["retCode"], "0");
        let (_, v) = h.query(&tok, &json!({"endTime": "5"})).await;
        assert_eq!(v["retCode"], "2");

        let mut b = window(t0, t0 + 1_000, "1");
        b["limit"] = json!("1000");
        let (_, v) = h.query(&tok, &b).await;
        assert_eq!(v["result"]["callInfo"].as_array().unwrap().len(), 100);
        assert_eq!(num(&v["result"]["total"]), 150);
        b["limit"] = json!("0");
        assert_eq!(h.query(&tok, &b).await.1["retCode"], "4");
        b["limit"] = json!("10");
        b["offset"] = json!("-1");
        assert_eq!(h.query(&tok, &b).await.1["retCode"], "4");
        b["offset"] = json!("abc");
        assert_eq!(h.query(&tok, &b).await.1["retCode"], "4");
        b["offset"] = json!("150");
        let (s, v) = h.query(&tok, &b).await;
        assert_eq!((s, v["retCode"].as_str()), (200, Some("1")), "offset past the end");
        assert_eq!(v["retMsg"], "No data is found.");
        b["offset"] = json!(145);
        let (_, v) = h.query(&tok, &b).await;
        assert_eq!(v["result"]["callInfo"].as_array().unwrap().len(), 5);

        let (s, v) = h.query(&tok, &window(t0 - 10_000, t0 - 1, "0")).await;
        assert_eq!((s, v["retCode"].as_str()), (200, Some("1")));
        assert!(v.get("result").is_none_or(|r| r["callInfo"] == json!([])));

        // taskType 0 (and absent) excludes ITA; 4 returns only it; 9 is an incorrect request.
        let (_, v) = h.query(&tok, &window(t0, t0, "0")).await;
        let info = v["result"]["callInfo"].as_array().unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0]["callSerialNo"], SERIAL_BASE.to_string());
        let (_, v) = h.query(&tok, &json!({"startTime": t0.to_string(), "endTime": t0.to_string()})).await;
        assert_eq!(num(&v["result"]["total"]), 1);
        let (_, v) = h.query(&tok, &window(t0, t0, "4")).await;
        let info = v["result"]["callInfo"].as_array().unwrap();
        assert_eq!(info[0]["callSerialNo"], (SERIAL_BASE + 5_000).to_string());
        assert_eq!(h.query(&tok, &window(t0, t0, "9")).await.0, 400);

        // Both window ends are inclusive: [t0+1, t0+1] holds exactly the call started at t0+1.
        let (_, v) = h.query(&tok, &window(t0 + 1, t0 + 1, "1")).await;
        assert_eq!(num(&v["result"]["total"]), 1);
        assert_eq!(v["result"]["callInfo"][0]["callSerialNo"], (SERIAL_BASE + 7).to_string());
        let (_, v) = h.query(&tok, &window(t0 + 1, t0 + 3, "1")).await;
        assert_eq!(num(&v["result"]["total"]), 3);

        // Paging with nothing changing covers every record exactly once.
        let recs = h.all_records(&tok, t0, t0 + 1_000, "1").await;
        assert_eq!(recs.len(), 150);
        let serials: HashSet<&str> = recs.iter().map(|r| r["callSerialNo"].as_str().unwrap()).collect();
        assert_eq!(serials.len(), 150);
        assert!(serials.iter().all(|s| s.len() == 19 && s.parse::<u64>().unwrap() > 1 << 53));

        // Both number and string forms of times and state appear.
        let (mut nums, mut strs) = (0, 0);
        for r in &recs {
            for k in ["startTime", "endTime", "state", "talkDuration"] {
                if r[k].is_string() {
                    strs += 1;
                } else {
                    assert!(r[k].is_number());
                    nums += 1;
                }
            }
        }
        assert!(nums > 50 && strs > 50, "{nums} numbers / {strs} strings");

        let st = h.sim.stats();
        assert!(!st.all_values_strings, "offset 145 was sent as a number");
        assert_eq!(st.non_string_bodies, 1);
        let last = st.log.last().unwrap();
        assert_eq!(last.limit, Some(100));
        assert_eq!(last.task_type.as_deref(), Some("1"));
        assert_eq!(last.total, Some(150));
        // retCode-"0" answers: 100 (7-day window) + 100 (clamped) + 5 (offset 145) + 1 + 1 + 1
        // (taskType 0, absent, 4) + 1 + 3 (inclusive windows) + 150 (paging).
        assert_eq!(st.records_served, 100 + 100 + 5 + 1 + 1 + 1 + 1 + 3 + 150);
    }

    #[tokio::test]
    async fn latency_hides_records_and_end() {
        let h = start().await;
        let now = now_ms();
        h.sim.add_calls(vec![
            CallSpec::builder(SERIAL_BASE, 2, now - 10_000).latency_ms(0, 0).build(),
            // Started 10 s ago, ended 5 s ago, but its record appears only 10.6 s after the start
            // and state 3 a further 9 s after the end.
            CallSpec::builder(SERIAL_BASE + 1, 2, now - 10_000)
                .queue_ms(0)
                .agent_ring_ms(1_000)
                .ring_ms(1_000)
                .talk_ms(3_000)
                .latency_ms(10_600, 9_000)
                .build(),
        ]);
        let tok = h.token().await;
        let b = window(now - 10_000, now, "2");
        let (_, v) = h.query(&tok, &b).await;
        assert_eq!(num(&v["result"]["total"]), 1);
        assert_eq!(h.sim.truth().in_progress.len(), 0);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (_, v) = h.query(&tok, &b).await;
        assert_eq!(num(&v["result"]["total"]), 2);
        let late = v["result"]["callInfo"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["callSerialNo"] == json!((SERIAL_BASE + 1).to_string()))
            .unwrap()
            .clone();
        assert_eq!(num(&late["state"]), 2, "shows talking until the end is visible");
        assert!(late.get("endTime").is_none() && late.get("talkDuration").is_none());
        let t = h.sim.truth();
        assert_eq!(t.ended_calls, 1);
        assert_eq!(t.in_progress_of("anonymous_outbound", 2), 1);
    }

    /// Ten hand-made calls, truth computed by hand.
    #[tokio::test]
    async fn truth_of_a_scripted_scenario() {
        let h = start().await;
        let t0 = now_ms() - 600_000;
        let s = SERIAL_BASE;
        let b = |i: u64, task: u8| CallSpec::builder(s + i, task, t0 + i as i64 * 1_000);
        h.sim.add_calls(vec![
            b(0, 1).talk_ms(30_500).build(),
            b(1, 1).outcome(Outcome::NoAnswer).build(),
            b(2, 1).outcome(Outcome::Failed).reason_code(Some(1001)).build(),
            b(3, 2).talk_ms(61_000).ring_ms(4_000).build(),
            b(4, 2).outcome(Outcome::Cancelled).reason_code(Some(0)).build(),
            b(5, 3).talk_ms(9_999).build(),
            b(6, 3).outcome(Outcome::Unknown).build(),
            b(7, 4).outcome(Outcome::Rejected).build(),
            b(8, 4).outcome(Outcome::NoAnswer).reason_code(Some(18)).build(),
            // Talking since 2.8 s ago, ends in ten minutes.
            CallSpec::builder(s + 9, 4, now_ms() - 5_000).talk_ms(600_000).build(),
        ]);
        let t: Truth = h.sim.truth();
        assert_eq!(t.ended_calls, 9);
        let expect_calls = [
            ("cec_bidirectional", "answered", 1),
            ("cec_bidirectional", "failed", 1),
            ("cec_bidirectional", "no_answer", 1),
            ("anonymous_outbound", "answered", 1),
            ("anonymous_outbound", "cancelled", 1),
            ("voice_notification", "answered", 1),
            ("voice_notification", "unknown", 1),
            ("ita_bidirectional", "no_answer", 1),
            ("ita_bidirectional", "rejected", 1),
        ];
        assert_eq!(t.calls.len(), expect_calls.len());
        for (tt, o, n) in expect_calls {
            assert_eq!(t.calls_of(tt, o), n, "{tt} {o}");
        }
        assert_eq!(t.reasons_of("cec_bidirectional", "1"), 1);
        assert_eq!(t.reasons_of("cec_bidirectional", "5"), 1);
        assert_eq!(t.reasons_of("cec_bidirectional", "1001"), 1);
        assert_eq!(t.reasons_of("anonymous_outbound", "0"), 1);
        assert_eq!(t.reasons_of("voice_notification", "none"), 1);
        assert_eq!(t.reasons_of("ita_bidirectional", "21"), 1);
        assert_eq!(t.reasons_of("ita_bidirectional", "18"), 1);
        let talk: Vec<(String, u64, u64)> =
            t.talk_duration.iter().map(|r| (r.task_type.clone(), r.count, r.sum)).collect();
        assert_eq!(
            talk,
            vec![
                ("cec_bidirectional".into(), 1, 30),
                ("anonymous_outbound".into(), 1, 61),
                ("voice_notification".into(), 1, 9),
            ]
        );
        // Agent talk = end − agentTalking, floored to seconds:
        // 0: 1 000 ring + 30 500 talk → 31; 1: customer rang 1 s → 1; 2: failed 1 s after → 1;
        // 3: 4 000 + 61 000 → 65; 4: 1; 7: 1; 8: 1.
        let agent: Vec<(String, u64, u64)> =
            t.agent_talk_duration.iter().map(|r| (r.task_type.clone(), r.count, r.sum)).collect();
        assert_eq!(
            agent,
            vec![
                ("cec_bidirectional".into(), 3, 33),
                ("anonymous_outbound".into(), 2, 66),
                ("ita_bidirectional".into(), 2, 2),
            ]
        );
        let delay = |tt: &str, leg: &str| {
            t.answer_delay.iter().find(|r| r.task_type == tt && r.leg == leg).map(|r| (r.count, r.sum))
        };
        assert_eq!(delay("cec_bidirectional", "agent"), Some((3, 3.0)));
        assert_eq!(delay("cec_bidirectional", "customer"), Some((1, 1.0)));
        assert_eq!(delay("anonymous_outbound", "customer"), Some((1, 4.0)));
        assert_eq!(delay("voice_notification", "customer"), Some((1, 1.0)));
        assert_eq!(delay("ita_bidirectional", "agent"), Some((2, 2.0)));
        assert_eq!(delay("ita_bidirectional", "customer"), None);
        assert_eq!(
            t.in_progress,
            vec![crate::StateCount { task_type: "ita_bidirectional".into(), state: "2".into(), count: 1 }]
        );
        let last = |tt: &str| t.last_call_end_ms.iter().find(|r| r.task_type == tt).unwrap().value;
        assert_eq!(last("cec_bidirectional"), t0 + 200 + 1_000 + 1_000 + 30_500);
        assert_eq!(last("anonymous_outbound"), t0 + 3_000 + 200 + 1_000 + 4_000 + 61_000);
        assert_eq!(last("voice_notification"), t0 + 5_000 + 200 + 1_000 + 9_999);
        assert_eq!(last("ita_bidirectional"), t0 + 8_000 + 200 + 1_000 + 1_000);

        // The control endpoint serves the same truth; since_ms restricts by start.
        let (status, v) = h.get("/sim/truth").await;
        assert_eq!(status, 200);
        let over_http: Truth = serde_json::from_value(v).unwrap();
        assert_eq!(over_http.calls, t.calls);
        let (_, v) = h.get(&format!("/sim/truth?since_ms={}", t0 + 7_000)).await;
        let since: Truth = serde_json::from_value(v).unwrap();
        assert_eq!(since.ended_calls, 2);
        assert_eq!(since, h.sim.truth_since(t0 + 7_000).with_at(since.at_ms));
        assert_eq!(h.get("/sim/truth?since_ms=x").await.0, 400);
    }

    impl Truth {
        fn with_at(mut self, at_ms: i64) -> Self {
            self.at_ms = at_ms;
            self
        }
    }

    #[tokio::test]
    async fn shifted_pages_repeat_one_record_and_leave_one_out() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        h.sim.add_calls((0..6).map(|i| CallSpec::builder(SERIAL_BASE + i, 1, t0).build()).collect());
        let tok = h.token().await;
        let page = |offset: u64| {
            let mut b = window(t0, t0, "0");
            b["offset"] = json!(offset.to_string());
            b["limit"] = json!("3");
            b
        };
        let serials = |v: &Value| -> Vec<String> {
            v["result"]["callInfo"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["callSerialNo"].as_str().unwrap().to_owned())
                .collect()
        };
        let (first, second) = (serials(&h.query(&tok, &page(0)).await.1), serials(&h.query(&tok, &page(3)).await.1));
        h.sim.set_faults(Faults { shift_pages: 1, ..Faults::default() });
        // The first page is never shifted and does not use up the fault.
        assert_eq!(serials(&h.query(&tok, &page(0)).await.1), first);
        let shifted = serials(&h.query(&tok, &page(3)).await.1);
        assert_eq!(shifted, vec![first[2].clone(), second[0].clone(), second[1].clone()]);
        assert_eq!(serials(&h.query(&tok, &page(3)).await.1), second, "one read only");
        assert_eq!(h.sim.stats().log.iter().filter(|e| e.fault.as_deref() == Some("shift_pages")).count(), 1);
    }

    #[tokio::test]
    async fn business_faults() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        h.sim.add_calls((0..5).map(|i| CallSpec::builder(SERIAL_BASE + i, 1, t0).build()).collect());
        let tok = h.token().await;
        let b = window(t0, t0, "0");
        let truth_before = h.sim.truth();

        h.sim.set_faults(Faults { http_500: 1, http_429: 1, ..Faults::default() });
        let r = h
            .http
            .post(format!("{}{QUERY_PATH}", h.base))
            .header("Authorization", format!("Bearer {tok}"))
            .json_body(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(h.query(&tok, &b).await.0, 500);
        assert_eq!(h.query(&tok, &b).await.0, 200);

        h.sim.set_faults(Faults { malformed: 1, ..Faults::default() });
        // A retCode-"1" answer carries no records and does not use up the fault.
        assert_eq!(h.query(&tok, &window(0, 1, "0")).await.1["retCode"], "1");
        let (_, v) = h.query(&tok, &b).await;
        let info = v["result"]["callInfo"].as_array().unwrap();
        assert_eq!(info.len(), 8);
        assert!(info.contains(&json!(42)));
        assert!(info.iter().any(|r| r.is_object() && r.get("callSerialNo").is_none()));
        assert!(info.iter().any(|r| r["state"] == "banana"));
        assert_eq!(num(&v["result"]["total"]), 5);
        let (_, v) = h.query(&tok, &b).await;
        assert_eq!(v["result"]["callInfo"].as_array().unwrap().len(), 5);
        let truth_after = h.sim.truth();
        assert_eq!(truth_after.clone(), truth_before.with_at(truth_after.at_ms));

        h.sim.set_faults(Faults { truncated_json: 1, ..Faults::default() });
        let (status, text) = h.query_auth(Some(&format!("Bearer {tok}")), &b).await;
        assert_eq!(status, 200);
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert_eq!(h.query(&tok, &b).await.1["retCode"], "0");

        h.sim.set_faults(Faults { delay_ms: 300, ..Faults::default() });
        let started = std::time::Instant::now();
        assert_eq!(h.query(&tok, &b).await.0, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
        h.sim.set_faults(Faults::default());

        h.sim.set_faults(Faults { revoke_tokens: true, ..Faults::default() });
        assert!(!h.sim.faults().revoke_tokens, "one-shot");
        assert_eq!(h.query(&tok, &b).await.0, 401);
        let fresh = h.token().await;
        assert_eq!(h.query(&fresh, &b).await.0, 200);

        let st = h.sim.stats();
        let faults: Vec<Option<&str>> = st.log.iter().map(|e| e.fault.as_deref()).collect();
        assert_eq!(
            faults,
            vec![
                Some("http_429"),
                Some("http_500"),
                None,
                None,
                Some("malformed"),
                None,
                Some("truncated_json"),
                None,
                None,
                None,
                None,
            ]
        );
        assert_eq!(st.log[0].status, 429);
        assert_eq!(st.log[6].records, 5);
        // 5 per good retCode-"0" answer: 3rd, 5th, 6th, 8th, 9th and 11th; the truncated one not.
        assert_eq!(st.records_served, 30);
    }

    /// A client that shows redirects instead of following them.
    fn no_follow() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    /// A one-request HTTP server on another loopback port: its URL, and the request it receives
    /// (head and body as text), answered 204.
    async fn capture() -> (String, tokio::sync::oneshot::Receiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/elsewhere", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Until the head and a Content-Length worth of body are in (requests here are small).
            while buf.len() < 64 << 10 {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len {
                        break;
                    }
                }
            }
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        (url, rx)
    }

    #[tokio::test]
    async fn redirects_point_at_another_loopback_port() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        h.sim.add_calls(vec![CallSpec::builder(SERIAL_BASE, 1, t0).build()]);
        let tok = h.token().await;
        let (elsewhere, received) = capture().await;
        h.sim.set_faults(Faults {
            token_redirect: 1,
            redirect: 1,
            redirect_to: Some(elsewhere.clone()),
            ..Faults::default()
        });
        let nf = no_follow();
        let r = nf
            .post(format!("{}{TOKEN_PATH}", h.base))
            .json_body(&json!({"app_key": KEY, "app_secret": SECRET}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 307);
        assert_eq!(r.headers()["location"], elsewhere.as_str());
        let r = nf
            .post(format!("{}{QUERY_PATH}", h.base))
            .header("Authorization", format!("Bearer {tok}"))
            .json_body(&window(t0, t0, "0"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()["location"], elsewhere.as_str());
        assert_eq!(h.query(&tok, &window(t0, t0, "0")).await.0, 200, "one redirect each");
        assert_eq!(h.token_raw(None, KEY, SECRET).await.status(), 200);

        // What the fault is for: a client that follows a 307 posts the secret to the other port.
        h.sim.set_faults(Faults { token_redirect: 1, redirect_to: Some(elsewhere), ..Faults::default() });
        assert_eq!(h.token_raw(None, KEY, SECRET).await.status(), 204);
        let seen = tokio::time::timeout(Duration::from_secs(10), received).await.unwrap().unwrap();
        assert!(seen.starts_with("POST /elsewhere HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains(SECRET), "{seen}");

        // Without a target the redirect points at a loopback port nothing serves.
        h.sim.set_faults(Faults { redirect: 1, ..Faults::default() });
        let r = nf.post(format!("{}{QUERY_PATH}", h.base)).json_body(&window(t0, t0, "0")).send().await.unwrap();
        assert_eq!(r.headers()["location"], DEFAULT_REDIRECT_TO);
        let faults: Vec<_> = h.sim.stats().log.iter().map(|e| (e.status, e.fault.clone())).collect();
        assert_eq!(faults, vec![(308, Some("redirect".into())), (200, None), (308, Some("redirect".into()))]);
        assert_eq!(h.sim.stats().requests_of("token", 307), 2);
        drop(h.running);
    }

    #[tokio::test]
    async fn oversized_bodies_with_and_without_length() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        h.sim.add_calls((0..5).map(|i| CallSpec::builder(SERIAL_BASE + i, 1, t0).build()).collect());
        let tok = h.token().await;
        let b = window(t0, t0, "0");
        for chunked in [false, true] {
            h.sim.set_faults(Faults {
                oversized: 1,
                oversized_mib: 3,
                oversized_chunked: chunked,
                ..Faults::default()
            });
            let r = h
                .http
                .post(format!("{}{QUERY_PATH}", h.base))
                .header("Authorization", format!("Bearer {tok}"))
                .json_body(&b)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            if chunked {
                assert_eq!(r.headers()["transfer-encoding"], "chunked");
                assert!(r.headers().get("content-length").is_none());
            } else {
                assert_eq!(r.headers()["content-length"], (3u64 << 20).to_string().as_str());
            }
            let bytes = r.bytes().await.unwrap();
            assert_eq!(bytes.len(), 3 << 20);
            // Still the same page: only the size is hostile.
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["result"]["callInfo"].as_array().unwrap().len(), 5);
            assert_eq!(h.query(&tok, &b).await.1["retCode"], "0");
        }
        h.sim.set_faults(Faults { oversized: 1, ..Faults::default() });
        let r = h
            .http
            .post(format!("{}{QUERY_PATH}", h.base))
            .header("Authorization", format!("Bearer {tok}"))
            .json_body(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.content_length(), Some(u64::from(DEFAULT_OVERSIZED_MIB) << 20));
        drop(r);
        let faults: Vec<_> = h.sim.stats().log.iter().map(|e| e.fault.clone()).collect();
        let o = Some("oversized".to_string());
        assert_eq!(faults, vec![o.clone(), None, o.clone(), None, o]);
    }

    #[tokio::test]
    async fn endless_body_never_ends() {
        let h = start().await;
        let tok = h.token().await;
        h.sim.set_faults(Faults { endless: 1, ..Faults::default() });
        let mut r = h
            .http
            .post(format!("{}{QUERY_PATH}", h.base))
            .header("Authorization", format!("Bearer {tok}"))
            .json_body(&window(0, 1, "0"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.content_length().is_none());
        const STOP: usize = 64 << 20;
        let mut read = 0;
        let mut first = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while read < STOP {
            let chunk = tokio::time::timeout_at(deadline, r.chunk()).await.expect("64 MiB within 60 s").unwrap();
            let chunk = chunk.expect("the body ended");
            if first.len() < 64 {
                first.extend_from_slice(&chunk);
            }
            read += chunk.len();
        }
        assert!(first.starts_with(br#"{"retCode":"0""#));
        drop(r);
        assert_eq!(h.sim.stats().log[0].fault.as_deref(), Some("endless"));
        assert_eq!(h.query(&tok, &window(0, 1, "0")).await.1["retCode"], "1", "one endless answer");
    }

    #[tokio::test]
    async fn lying_totals_repeat_full_pages() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        h.sim.add_calls((0..150).map(|i| CallSpec::builder(SERIAL_BASE + i, 1, t0).build()).collect());
        let tok = h.token().await;
        let truth_before = h.sim.truth();
        let page = |offset: u64| {
            json!({"startTime": t0.to_string(), "endTime": t0.to_string(), "taskType": "0",
                   "offset": offset.to_string(), "limit": "100"})
        };
        let serials = |v: &Value| -> Vec<Value> {
            v["result"]["callInfo"].as_array().unwrap().iter().map(|r| r["callSerialNo"].clone()).collect()
        };
        // An empty window does not use the switch up.
        h.sim.set_faults(Faults { lying_total: 3, ..Faults::default() });
        assert_eq!(h.query(&tok, &window(0, 1, "0")).await.1["retCode"], "1");
        assert_eq!(h.sim.faults().lying_total, 3);
        let (_, first) = h.query(&tok, &page(0)).await;
        assert_eq!(num(&first["result"]["total"]), LYING_TOTAL as i64);
        assert_eq!(serials(&first).len(), 100);
        for offset in [100, 200] {
            let (_, v) = h.query(&tok, &page(offset)).await;
            assert_eq!(num(&v["result"]["total"]), LYING_TOTAL as i64);
            assert_eq!(serials(&v), serials(&first), "offset {offset}: the first full page again");
        }
        // The lies are used up: the truth about the same pages.
        let (_, v) = h.query(&tok, &page(100)).await;
        assert_eq!(num(&v["result"]["total"]), 150);
        assert_eq!(serials(&v).len(), 50);
        assert_eq!(h.query(&tok, &page(200)).await.1["retCode"], "1");
        let truth_after = h.sim.truth();
        assert_eq!(truth_after.clone(), truth_before.with_at(truth_after.at_ms));
        let faults: Vec<_> = h.sim.stats().log.iter().map(|e| e.fault.clone()).collect();
        let l = Some("lying_total".to_string());
        assert_eq!(faults, vec![None, l.clone(), l.clone(), l, None, None]);
    }

    #[tokio::test]
    async fn chaos_is_random_per_request_replays_from_its_seed_and_keeps_truth() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        h.sim.add_calls((0..5).map(|i| CallSpec::builder(SERIAL_BASE + i, 1, t0).build()).collect());
        let tok = h.token().await;
        let truth_before = h.sim.truth();
        let nf = no_follow();
        let chaos = ChaosConfig {
            seed: 11,
            per_mille: 600,
            kinds: ChaosKind::ALL.into_iter().filter(|k| *k != ChaosKind::Endless).collect(),
            slow_ms: 20,
        };
        let faults = Faults { chaos: Some(chaos), oversized_mib: 1, ..Faults::default() };
        let mut runs = Vec::new();
        for _ in 0..2 {
            h.sim.set_faults(faults.clone());
            let before = h.sim.stats().log.len();
            let mut statuses = Vec::new();
            for _ in 0..40 {
                let r = nf
                    .post(format!("{}{QUERY_PATH}", h.base))
                    .header("Authorization", format!("Bearer {tok}"))
                    .json_body(&window(t0, t0, "0"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let body = r.bytes().await.unwrap();
                statuses.push((status, retry_after, body.len()));
            }
            let log: Vec<_> = h.sim.stats().log[before..].iter().map(|e| e.fault.clone()).collect();
            runs.push((statuses, log));
        }
        // Body sizes vary a little with the per-response coin (numbers as strings or not).
        let outline = |run: usize| {
            let (statuses, log) = &runs[run];
            (statuses.iter().map(|(s, r, _)| (*s, r.clone())).collect::<Vec<_>>(), log.clone())
        };
        assert_eq!(outline(0), outline(1), "the same seed gives the same faults");
        let (statuses, log) = &runs[0];
        let kinds: HashSet<&str> = log.iter().flatten().map(String::as_str).collect();
        for k in [
            "chaos:http_500",
            "chaos:http_429",
            "chaos:slow",
            "chaos:redirect",
            "chaos:truncated_json",
            "chaos:oversized",
            "chaos:lying_total",
        ] {
            assert!(kinds.contains(k), "{k} never drawn in 40 requests: {log:?}");
        }
        assert!(log.iter().filter(|f| f.is_none()).count() >= 5, "{log:?}");
        for ((status, retry_after, len), fault) in statuses.iter().zip(log) {
            match fault.as_deref() {
                Some("chaos:http_500") => assert_eq!(*status, 500),
                Some("chaos:http_429") => {
                    assert_eq!((*status, retry_after.as_deref()), (429, Some("1")));
                }
                Some("chaos:redirect") => assert_eq!(*status, 308),
                Some("chaos:oversized") => assert_eq!((*status, *len), (200, 1 << 20)),
                Some(_) | None => assert_eq!(*status, 200, "{fault:?}"),
            }
        }
        let truth_after = h.sim.truth();
        assert_eq!(truth_after.clone(), truth_before.with_at(truth_after.at_ms));
    }

    #[tokio::test]
    async fn token_faults() {
        let h = start().await;
        h.sim.set_faults(Faults { token_http_500: 1, token_http_401: 1, ..Faults::default() });
        assert_eq!(h.token_raw(None, KEY, SECRET).await.status(), 500);
        assert_eq!(h.token_raw(None, KEY, SECRET).await.status(), 401);
        assert_eq!(h.token_raw(None, KEY, SECRET).await.status(), 200);
        assert_eq!(h.sim.faults(), Faults::default());
    }

    #[tokio::test]
    async fn control_endpoints_and_routing() {
        let h = start().await;
        let t0 = now_ms() - 60_000;
        let calls = vec![
            CallSpec::builder(SERIAL_BASE, 3, t0).build(),
            CallSpec::builder(SERIAL_BASE + 1, 4, t0).outcome(Outcome::Busy).build(),
        ];
        let (s, v) = h.post("/sim/calls", &json!(calls)).await;
        assert_eq!((s, v), (200, json!({"added": 2})));
        let (s, v) = h.post("/sim/calls", &json!(calls)).await;
        assert_eq!(s, 400, "duplicate serials");
        assert!(v["error_msg"].as_str().unwrap().contains("already exists"));
        let (s, _) = h.post("/sim/calls", &json!([{"serial": "5", "task_type": 1, "start_ms": 1, "end_ms": 2}])).await;
        assert_eq!(s, 400, "serial below 2^53");

        let (s, v) = h.post("/sim/faults", &json!({"http_500": 2})).await;
        assert_eq!(s, 200);
        assert_eq!(v["http_500"], 2);
        assert_eq!(h.sim.faults().http_500, 2);
        assert_eq!(h.get("/sim/faults").await.1["http_500"], 2);
        assert_eq!(h.post("/sim/faults", &json!({"http_500": "x"})).await.0, 400);
        h.sim.set_faults(Faults::default());

        let tok = h.token().await;
        let (_, v) = h.query(&tok, &window(t0, t0, "4")).await;
        assert_eq!(num(&v["result"]["total"]), 1);
        let truth: Truth = serde_json::from_value(h.get("/sim/truth").await.1).unwrap();
        assert_eq!(truth.calls_of("ita_bidirectional", "busy"), 1);
        assert_eq!(truth.calls_of("voice_notification", "answered"), 1);

        let (s, v) = h.get("/sim/stats").await;
        assert_eq!(s, 200);
        let stats: crate::Stats = serde_json::from_value(v).unwrap();
        assert_eq!(stats.business_requests, 1);
        assert_eq!(stats.records_served, 1);
        assert!(stats.all_values_strings);
        assert_eq!(stats.log[0].start, Some(t0));

        assert_eq!(h.get("/nope").await.0, 404);
        let r = h.http.get(format!("{}{QUERY_PATH}", h.base)).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST");
        assert_eq!(h.post("/sim/truth", &json!({})).await.0, 405);
        let st = h.sim.stats();
        assert_eq!(st.requests_of("other", 404), 1);
        assert_eq!(st.requests_of("query", 405), 1);
    }

    #[tokio::test]
    async fn random_traffic_backfill_finds_data_and_shutdown_stops() {
        let traffic =
            Traffic::Random { calls_per_minute: 120.0, history: Duration::from_secs(600), duration_scale: 0.01 };
        let sim = Simulator::new(SimConfig { seed: 7, ..sim_config(traffic, Duration::from_millis(500)) });
        let h = serve(sim).await;
        let sim = &h.sim;
        let tok = h.token().await;
        let now = now_ms();
        // History calls are long over: every record of the first nine minutes is final, and the
        // records served reproduce the truth of that stretch exactly.
        let (from, to) = (now - 600_000, now - 60_000);
        let mut recs = h.all_records(&tok, from, to, "0").await;
        recs.extend(h.all_records(&tok, from, to, "4").await);
        assert!(recs.len() > 900, "about 1 080 calls expected, got {}", recs.len());
        assert!(recs.iter().all(|r| num(&r["state"]) == 3));
        // Both truths from one store state and one instant, so calls ending meanwhile cannot
        // skew the difference.
        let ended_in_window = {
            let at = now_ms();
            let store = lock(&sim.store);
            store.truth(at, Some(from)).ended_calls - store.truth(at, Some(to + 1)).ended_calls
        };
        assert_eq!(recs.len() as u64, ended_in_window);

        let base = h.base.clone();
        h.running.shutdown().await.unwrap();
        assert!(reqwest::get(format!("{base}/sim/stats")).await.is_err());
    }
}
