//! `serve`'s pull endpoint: the last successful collection, rendered once when it is published
//! and served as is to every scrape (`GET /metrics`), and `GET /healthz`, which says whether
//! that collection is fresh. A scrape never reaches the cloud.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response};

/// One collection, in both text formats a scraper may ask for.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Prometheus text format 0.0.4.
    pub text: String,
    /// OpenMetrics 1.0 (`# EOF`, counter families without `_total`).
    pub openmetrics: String,
}

/// The page scrapes see, and when it was published.
#[derive(Debug, Default)]
pub struct Published {
    last: Mutex<Option<(Arc<Page>, Instant)>>,
}

impl Published {
    /// Replaces what scrapes see.
    pub fn publish(&self, page: Page) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::new(page), Instant::now()));
    }

    /// The last page and its age.
    pub fn last(&self) -> Option<(Arc<Page>, Duration)> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(page, at)| (page.clone(), at.elapsed()))
    }
}

/// The address cannot be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {why}")]
pub struct BindError {
    pub addr: String,
    pub why: String,
}

/// The HTTP server of `serve`.
pub struct Server {
    http: tiny_http::Server,
    /// The address really bound (the port chosen by the system for `:0`).
    pub addr: SocketAddr,
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Server {
    pub fn bind(addr: SocketAddr) -> Result<Server, BindError> {
        let bad = |why: String| BindError {
            addr: addr.to_string(),
            why,
        };
        let http = tiny_http::Server::http(addr).map_err(|e| bad(e.to_string()))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| bad("not an IP socket".into()))?;
        Ok(Server { http, addr })
    }

    /// Answers requests until `stop` says so (checked at least every 100 ms). `/healthz` is
    /// healthy while the last page is younger than `fresh_for`.
    pub fn serve(&self, published: &Published, fresh_for: Duration, stop: &dyn Fn() -> bool) {
        while !stop() {
            match self.http.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(req)) => answer(req, published, fresh_for),
                Ok(None) => {}
                // The listener is gone: nothing more to serve.
                Err(_) => return,
            }
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(req: Request, status: u16, content_type: &str, body: &str) {
    // The length is known: a Content-Length, never chunked transfer, whatever the size.
    let mut r = Response::from_string(body)
        .with_status_code(status)
        .with_chunked_threshold(usize::MAX);
    if let Some(h) = header("Content-Type", content_type) {
        r = r.with_header(h);
    }
    // A scraper that went away is not our problem.
    let _ = req.respond(r);
}

fn wants_openmetrics(req: &Request) -> bool {
    req.headers()
        .iter()
        .filter(|h| h.field.equiv("Accept"))
        .any(|h| h.value.as_str().contains("application/openmetrics-text"))
}

fn answer(req: Request, published: &Published, fresh_for: Duration) {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if !matches!(req.method(), Method::Get | Method::Head) {
        return respond(req, 405, PLAIN, "only GET and HEAD\n");
    }
    let path = req.url().split('?').next().unwrap_or("").to_string();
    match path.as_str() {
        "/metrics" => match published.last() {
            Some((page, _)) if wants_openmetrics(&req) => {
                respond(req, 200, OPENMETRICS_FORMAT, &page.openmetrics)
            }
            Some((page, _)) => respond(req, 200, TEXT_FORMAT, &page.text),
            None => respond(req, 503, PLAIN, "no collection has succeeded yet\n"),
        },
        "/healthz" => match published.last() {
            Some((_, age)) if age < fresh_for => respond(req, 200, PLAIN, "ok\n"),
            Some((_, age)) => respond(
                req,
                503,
                PLAIN,
                &format!(
                    "the last successful collection is {} s old (stale after {} s)\n",
                    age.as_secs(),
                    fresh_for.as_secs()
                ),
            ),
            None => respond(req, 503, PLAIN, "no collection has succeeded yet\n"),
        },
        "/" => respond(
            req,
            200,
            PLAIN,
            "maas-usage serve: GET /metrics (Prometheus text, or OpenMetrics by Accept), GET /healthz\n",
        ),
        _ => respond(req, 404, PLAIN, "not found: try /metrics or /healthz\n"),
    }
}
