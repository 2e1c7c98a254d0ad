//! A MaaS + IAM + Cloud Eye simulator on loopback: the same signature check, the same answers and
//! the same failure modes as the real services, so every path of the product is tested offline.
//!
//! Use it in-process (`Simulator::start`) from tests, or as `maas-usage simulator`.

pub mod cloud_eye;
pub mod faults;
pub mod http;
mod log;
pub mod metadata;
pub mod model;
pub mod scale;
pub mod sts;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use crate::budget::WindowLog;
use crate::cloud::sign;
use crate::text::percent_decode;
pub use cloud_eye::{CloudEyeSim, Forged};
use faults::{scripted, send};
pub use faults::{Faults, Scripted};
use http::{ReadOutcome, Request};
pub use log::Logged;
pub use model::Dataset;
pub use scale::Size;
pub use sts::{SimAgency, StsSim};

/// The credentials the demo and the simulator accept by default. Not a secret: they only open
/// the simulator.
pub const DEMO_AK: &str = "DEMOACCESSKEY0000001";
pub const DEMO_SK: &str = "demo-secret-key-for-the-built-in-simulator";
pub const DEMO_PROJECT_ID: &str = "0123456789abcdef0123456789abcdef";
pub const DEMO_REGION: &str = "cn-southwest-2";

#[derive(Clone, Debug)]
pub struct SimCredential {
    pub ak: String,
    pub sk: String,
    /// When set, requests must carry this `X-Security-Token`.
    pub token: Option<String>,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub credentials: Vec<SimCredential>,
    /// (region, project id) pairs IAM lists.
    pub projects: Vec<(String, String)>,
    /// The data clock: buckets exist up to this instant. `None` is the real time.
    pub now: Option<DateTime<Utc>>,
    pub dataset: Dataset,
    pub faults: Faults,
    /// Append one JSON line per request here.
    pub log_file: Option<PathBuf>,
    /// Serve the metadata service, handing out temporary credentials valid this long.
    pub metadata: Option<Duration>,
    /// The metadata service hands out the same credentials again until they near their end (as
    /// ECS does), instead of fresh ones (a new temporary AK) at every fetch.
    pub metadata_reuse: bool,
    /// Cloud Eye (SYS.MaaS) switches: ListMetrics' page cap and looping markers, forged
    /// datapoints, the instance names' status.
    pub cloud_eye: CloudEyeSim,
    /// STS AssumeAgency: the agencies, and the other accounts' keys it accepts.
    pub sts: StsSim,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            credentials: vec![SimCredential {
                ak: DEMO_AK.into(),
                sk: DEMO_SK.into(),
                token: None,
            }],
            projects: vec![(DEMO_REGION.into(), DEMO_PROJECT_ID.into())],
            now: None,
            dataset: Dataset::default(),
            faults: Faults::default(),
            log_file: None,
            metadata: None,
            metadata_reuse: false,
            cloud_eye: CloudEyeSim::default(),
            sts: StsSim::default(),
        }
    }
}

struct Shared {
    config: Mutex<SimConfig>,
    log: Mutex<Vec<Logged>>,
    admitted: Mutex<WindowLog>,
    origin: Instant,
    rng: Mutex<u64>,
    request_seq: AtomicU64,
    /// Requests whose head has been read (answered or not yet).
    arrivals: AtomicU64,
    /// Connections accepted (a TLS handshake that fails still counts).
    connections: AtomicU64,
    /// Correctly signed requests so far (`Faults::reject_signatures_after`).
    signed: AtomicU64,
    /// The metadata service's temporary credentials.
    issuer: metadata::Issuer,
    /// STS's temporary credentials.
    sts_issuer: metadata::Issuer,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Simulator {
    /// Binds `listen` (use port 0 for any) and serves in background threads until dropped.
    pub fn start(listen: &str, config: SimConfig) -> std::io::Result<Simulator> {
        Self::start_with(listen, config, None)
    }

    /// As [`Simulator::start`], serving HTTPS with `tls` (tests bring their own certificates).
    pub fn start_tls(
        listen: &str,
        config: SimConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Simulator> {
        Self::start_with(listen, config, Some(tls))
    }

    fn start_with(
        listen: &str,
        config: SimConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let seed = config.dataset.seed | 1;
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            log: Mutex::new(Vec::new()),
            admitted: Mutex::new(WindowLog::default()),
            origin: Instant::now(),
            rng: Mutex::new(seed),
            request_seq: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            signed: AtomicU64::new(0),
            issuer: metadata::Issuer::default(),
            sts_issuer: metadata::Issuer::with_prefix("STS"),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("sim-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    s.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = conn.set_nodelay(true);
                    let s = s.clone();
                    let tls = tls.clone();
                    let _ = std::thread::Builder::new()
                        .name("sim-conn".into())
                        .spawn(move || match tls {
                            None => serve(conn, &s),
                            Some(cfg) => {
                                if let Ok(tls) = rustls::ServerConnection::new(cfg) {
                                    serve(rustls::StreamOwned::new(tls, conn), &s)
                                }
                            }
                        });
                }
            })?;
        Ok(Simulator { addr, shared, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the configuration of a running simulator.
    pub fn configure(&self, f: impl FnOnce(&mut SimConfig)) {
        f(&mut lock(&self.shared.config));
    }

    pub fn push_script(&self, s: Scripted) {
        lock(&self.shared.config).faults.script.push_back(s);
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.shared.log).clone()
    }

    /// Requests that have arrived, including those still waiting for their answer (tests use it
    /// to act while a call is in flight).
    pub fn arrivals(&self) -> u64 {
        self.shared.arrivals.load(Ordering::SeqCst)
    }

    /// Temporary credentials the metadata service handed out (distinct ones).
    pub fn credentials_issued(&self) -> u64 {
        self.shared.issuer.count()
    }

    /// When the last temporary credentials the metadata service handed out expire (tests wait
    /// for that moment instead of sleeping through a credential's life).
    pub fn credentials_expire_at(&self) -> Option<DateTime<Utc>> {
        self.shared.issuer.last_expiry()
    }

    /// Answers the metadata service gave (the same credentials again count each time).
    pub fn metadata_fetches(&self) -> u64 {
        self.shared.issuer.fetches()
    }

    /// Temporary credentials STS handed out (one per assumption granted).
    pub fn agencies_assumed(&self) -> u64 {
        self.shared.sts_issuer.count()
    }

    /// Connections accepted, whether or not a request came through them.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// The exact answer for a selection at the simulator's data clock.
    pub fn expected(&self, sel: &model::Selection<'_>) -> crate::domain::Usage {
        let cfg = lock(&self.shared.config);
        cfg.dataset.answer(sel, data_now(&cfg))
    }

    /// [`Dataset::model_usage`] at the simulator's data clock: a model's (`key` None) or one
    /// API key NAME's exact usage over the minutes starting in `[start_ms, end_ms)`.
    pub fn model_usage(
        &self,
        model_id: &str,
        key: Option<&str>,
        start_ms: i64,
        end_ms: i64,
    ) -> crate::domain::Usage {
        let cfg = lock(&self.shared.config);
        cfg.dataset
            .model_usage(model_id, key, start_ms, end_ms, data_now(&cfg))
    }
}

/// The data clock in epoch milliseconds: buckets exist up to it.
fn data_now(cfg: &SimConfig) -> i64 {
    cfg.now.unwrap_or_else(Utc::now).timestamp_millis()
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// What to send back.
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
    fault: Option<Scripted>,
}

impl Reply {
    fn json(status: u16, body: String) -> Self {
        Reply {
            status,
            body,
            headers: Vec::new(),
            fault: None,
        }
    }
    fn error(status: u16, code: &str, msg: &str, rid: &str) -> Self {
        let body = serde_json::json!({"error_code": code, "error_msg": msg, "request_id": rid})
            .to_string();
        Reply::json(status, body)
    }
}

fn serve<S: Read + Write>(stream: S, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut req = match http::read_head(&mut reader) {
            Ok(ReadOutcome::Request(r)) => r,
            Ok(ReadOutcome::Closed) | Err(_) => return,
            Ok(ReadOutcome::Bad(status, why)) => {
                let body = format!("{{\"error_code\":\"APIGW.0100\",\"error_msg\":\"{why}\"}}");
                let _ = http::write_all(
                    reader.get_mut(),
                    &[
                        http::head(status, "-", body.len(), &[], true),
                        body.into_bytes(),
                    ]
                    .concat(),
                );
                return;
            }
        };
        shared.arrivals.fetch_add(1, Ordering::SeqCst);
        let arrived = Instant::now();
        let rid = format!(
            "{:032x}",
            shared.request_seq.fetch_add(1, Ordering::Relaxed) + 1
        );
        let script = lock(&shared.config).faults.script.pop_front();
        if script == Some(Scripted::Reset) {
            log_request(shared, &req, (0, 0), arrived, Instant::now());
            // Dropping with the body unread makes the kernel answer with RST.
            return;
        }
        if http::read_body(&mut reader, &mut req).is_err() {
            return;
        }
        let reply = match script {
            Some(s) => scripted(s),
            None => handle(&req, shared, &rid),
        };
        // The latency is the server's, counted from the request's arrival: an answer that took
        // longer to compute is not delayed further, so a benchmark's bound of calls x latency
        // is what a client waits, not latency plus the simulator's own work. Its log line (the
        // request's body copied as JSON) is written within that time too, saying when the
        // answer goes.
        let latency = lock(&shared.config).faults.latency;
        let answer_at = (arrived + latency).max(Instant::now());
        let sizes = (reply.status, reply.body.len());
        log_request(shared, &req, sizes, arrived, answer_at);
        std::thread::sleep(answer_at.saturating_duration_since(Instant::now()));
        if !send(reader.get_mut(), reply, &rid) {
            return;
        }
    }
}

/// Keeps `req` in the log (and its file, with `--log`), answered `at`.
fn log_request(shared: &Shared, req: &Request, sizes: (u16, usize), arrived: Instant, at: Instant) {
    let file = lock(&shared.config).log_file.clone();
    log::record(&shared.log, file.as_deref(), req, sizes, (arrived, at));
}

fn next_unit(shared: &Shared) -> f64 {
    let mut s = lock(&shared.rng);
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Checks the signature like the API gateway, with the keys of `cfg.credentials`, of `callers`
/// (other accounts' keys, which STS alone accepts) and those `issuers` handed out; returns the
/// 401 reply on failure.
fn authenticate(
    req: &Request,
    cfg: &SimConfig,
    callers: &[SimCredential],
    issuers: [&metadata::Issuer; 2],
    rid: &str,
) -> Result<(), Reply> {
    let deny = |code: &str, msg: String| Err(Reply::error(401, code, &msg, rid));
    let Some(auth) = req
        .header("authorization")
        .and_then(sign::parse_authorization)
    else {
        return deny(
            "APIGW.0301",
            "Incorrect IAM authentication information: Authorization header missing or malformed"
                .into(),
        );
    };
    let Some(date) = req.header("x-sdk-date") else {
        return deny(
            "APIGW.0301",
            "Incorrect IAM authentication information: X-Sdk-Date missing".into(),
        );
    };
    let Ok(when) = NaiveDateTime::parse_from_str(date, sign::SDK_DATE_FORMAT) else {
        return deny(
            "APIGW.0301",
            "Incorrect IAM authentication information: X-Sdk-Date malformed".into(),
        );
    };
    let server_now = Utc::now() + cfg.faults.clock_skew;
    if (server_now - when.and_utc()).num_seconds().abs() > 15 * 60 {
        return deny("APIGW.0303", "Incorrect app authentication information: the request has expired (X-Sdk-Date is more than 15 minutes from the server time)".into());
    }
    let signed = &auth.signed_headers;
    if !signed.iter().any(|h| h == "host") || !signed.iter().any(|h| h == "x-sdk-date") {
        return deny(
            "APIGW.0301",
            "Incorrect IAM authentication information: host and x-sdk-date must be signed".into(),
        );
    }
    let known = cfg.credentials.iter().chain(callers);
    let cred = match known.into_iter().find(|c| c.ak == auth.access) {
        Some(c) => c.clone(),
        None => match issuers.iter().find_map(|i| i.find(&auth.access)) {
            Some((_, true)) => {
                return deny(
                    "APIGW.0301",
                    "Incorrect IAM authentication information: the security token has expired"
                        .into(),
                )
            }
            Some((c, false)) => c,
            None => {
                return deny(
                    "APIGW.0301",
                    "Incorrect IAM authentication information: unknown access key".into(),
                )
            }
        },
    };
    if let Some(token) = &cred.token {
        if req.header("x-security-token") != Some(token.as_str())
            || !signed.iter().any(|h| h == "x-security-token")
        {
            return deny(
                "APIGW.0301",
                "Incorrect IAM authentication information: security token missing or invalid"
                    .into(),
            );
        }
    }
    let headers: Vec<(String, String)> = signed
        .iter()
        .map(|name| (name.clone(), req.header(name).unwrap_or("").to_string()))
        .collect();
    let query = query_pairs(&req.query);
    let input = sign::SignInput {
        method: &req.method,
        path: &req.path,
        query: &query,
        headers: &headers,
        body: &req.body,
    };
    let (canonical, _) = sign::canonical_request(&input);
    let expected = sign::signature(cred.sk.as_bytes(), &sign::string_to_sign(date, &canonical));
    if !sign::constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        // The real gateway echoes its canonical request with `|` for newlines; so does this one,
        // which keeps the client's redaction of server messages honest.
        return deny(
            "APIGW.0301",
            format!(
                "Incorrect IAM authentication information: verify aksk signature fail, canonicalRequest: {}",
                canonical.replace('\n', "|")
            ),
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct StatsBody {
    service_type: Option<i64>,
    infer_type: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    #[allow(dead_code)]
    timezone: Option<String>,
    api_keys: Option<Vec<String>>,
    ips: Option<Vec<String>>,
}

fn handle(req: &Request, shared: &Shared, rid: &str) -> Reply {
    let cfg = lock(&shared.config).clone();
    // The metadata service is the instance's own: unsigned.
    if req.method == "GET" && req.path == crate::cloud::metadata::PATH {
        return match cfg.metadata {
            Some(lifetime) => Reply::json(200, shared.issuer.issue(lifetime, cfg.metadata_reuse)),
            None => Reply::error(404, "NotFound", "no metadata service here", rid),
        };
    }
    let sts = req.method == "POST" && req.path == crate::cloud::sts::PATH;
    let callers: &[SimCredential] = if sts { &cfg.sts.callers } else { &[] };
    let issuers = [&shared.issuer, &shared.sts_issuer];
    if let Err(reply) = authenticate(req, &cfg, callers, issuers, rid) {
        return reply;
    }
    if let Some(n) = cfg.faults.reject_signatures_after {
        if shared.signed.fetch_add(1, Ordering::SeqCst) >= n {
            return Reply::error(
                401,
                "APIGW.0301",
                "Incorrect IAM authentication information: the access key is disabled",
                rid,
            );
        }
    }
    if let Some(limit) = cfg.faults.rate_limit {
        let now_ms = shared.origin.elapsed().as_millis() as u64;
        let window_ms = cfg.faults.rate_window.as_millis() as u64;
        if lock(&shared.admitted)
            .try_take(now_ms, limit, window_ms)
            .is_err()
        {
            let mut r = Reply::error(429, "APIGW.0308", &format!("The throttling threshold has been reached: policy user over ratelimit, limit:{limit}"), rid);
            if let Some(s) = cfg.faults.retry_after {
                r.headers.push(("Retry-After".into(), s.to_string()));
            }
            return r;
        }
    }
    if cfg.faults.fail_ratio > 0.0 && next_unit(shared) < cfg.faults.fail_ratio {
        return Reply::error(
            503,
            "APIGW.0202",
            "The service is temporarily unavailable",
            rid,
        );
    }
    if sts {
        return sts::assume(req, &cfg.sts, &shared.sts_issuer, rid);
    }
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["v3", "projects"]) => {
            let name = query_pairs(&req.query)
                .into_iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v);
            let projects: Vec<serde_json::Value> = cfg
                .projects
                .iter()
                .filter(|(region, _)| name.as_ref().is_none_or(|n| n == region))
                .map(|(region, id)| serde_json::json!({"id": id, "name": region, "domain_id": "d0main1d", "enabled": true}))
                .collect();
            Reply::json(
                200,
                serde_json::json!({"projects": projects, "links": {"self": "/v3/projects"}})
                    .to_string(),
            )
        }
        ("POST", ["v1", project, "maas", "monitoring", "show-statistics"]) => {
            in_project(project, shared, &cfg, rid, || {
                statistics(&req.body, &cfg, rid)
            })
        }
        ("GET", ["V1.0", project, "metrics"]) => in_project(project, shared, &cfg, rid, || {
            cloud_eye::list_metrics(&req.query, &cfg.dataset, &cfg.cloud_eye, rid)
        }),
        ("POST", ["V1.0", project, "batch-query-metric-data"]) => {
            in_project(project, shared, &cfg, rid, || {
                cloud_eye::batch_query(&req.body, &cfg.dataset, &cfg.cloud_eye, data_now(&cfg), rid)
            })
        }
        ("POST", ["v1", project, "maas", "monitor", "instances"]) => {
            match cloud_eye::forced_instances_status(&cfg.cloud_eye, rid) {
                Some(reply) => reply,
                None => in_project(project, shared, &cfg, rid, || {
                    cloud_eye::instances(&req.body, &cfg.dataset, rid)
                }),
            }
        }
        _ => not_published(rid),
    }
}

fn not_published(rid: &str) -> Reply {
    Reply::error(
        404,
        "APIGW.0101",
        "The API does not exist or has not been published in the environment",
        rid,
    )
}

/// 404 for an unknown project, else `answer()`, cut in half at the malformed ratio.
fn in_project(
    project: &str,
    shared: &Shared,
    cfg: &SimConfig,
    rid: &str,
    answer: impl FnOnce() -> Reply,
) -> Reply {
    if !cfg.projects.iter().any(|(_, id)| id == project) {
        return Reply::error(404, "ModelArts.0104", "project not found", rid);
    }
    let mut reply = answer();
    if reply.status == 200
        && cfg.faults.malformed_ratio > 0.0
        && next_unit(shared) < cfg.faults.malformed_ratio
    {
        reply.fault = Some(Scripted::Malformed);
    }
    reply
}

fn statistics(body: &[u8], cfg: &SimConfig, rid: &str) -> Reply {
    let bad = |msg: &str| Reply::error(400, "ModelArts.4101", msg, rid);
    let Ok(b) = serde_json::from_slice::<StatsBody>(body) else {
        return bad("request body is not valid JSON");
    };
    let st = match b.service_type {
        Some(st @ (1 | 2 | 4)) => st as u8,
        None => 2,
        Some(_) => return bad("service_type must be one of [1 2 4]"),
    };
    let batch = match b.infer_type.as_deref() {
        Some("real_time") | None => false,
        Some("batch") => true,
        Some(_) => return bad("infer_type must be one of [real_time batch]"),
    };
    let (Some(start), Some(end)) = (b.start_time, b.end_time) else {
        return bad("start_time and end_time are required");
    };
    if start <= 0 || start > end {
        return bad("start_time must be > 0 and <= end_time");
    }
    let sel = model::Selection {
        service_type: st,
        batch,
        start_ms: start,
        end_ms: end,
        api_keys: b.api_keys.as_deref(),
        ips: b.ips.as_deref(),
    };
    Reply::json(
        200,
        model::answer_json(&cfg.dataset.answer(&sel, data_now(cfg)), batch),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_keeps_each_line_whole_under_concurrent_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let sim = Simulator::start(
            "127.0.0.1:0",
            SimConfig {
                log_file: Some(path.clone()),
                ..SimConfig::default()
            },
        )
        .unwrap();
        let addr = sim.addr();
        // Bodies full of characters JSON escapes: each line is written in many pieces unless
        // it is written whole.
        let (threads, each) = (8, 10);
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut sizes = Vec::new();
                    for i in 0..each {
                        let body = format!("{t}-{i}:{}", "\"\\\n".repeat(4000));
                        let mut c = TcpStream::connect(addr).unwrap();
                        let head = format!(
                            "POST /log-{t}-{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        c.write_all(head.as_bytes()).unwrap();
                        c.write_all(body.as_bytes()).unwrap();
                        // No more requests: the simulator answers, then closes.
                        c.shutdown(std::net::Shutdown::Write).unwrap();
                        let mut answer = Vec::new();
                        let _ = c.read_to_end(&mut answer);
                        let body = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        sizes.push(answer.len() - body);
                    }
                    sizes
                })
            })
            .collect();
        let mut sizes = Vec::new();
        for w in workers {
            sizes.extend(w.join().unwrap());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), threads * each);
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a broken line ({e}): {}", &l[..l.len().min(200)]));
            assert!(v["path"].as_str().unwrap().starts_with("/log-"));
            // The size of the answer's body, which is the same for every one of these 404s.
            assert_eq!(
                v["bytes"].as_u64(),
                Some(sizes[0] as u64),
                "{}",
                &l[..l.len().min(200)]
            );
        }
        assert!(sizes[0] > 0 && sizes.iter().all(|s| *s == sizes[0]));
    }
}
