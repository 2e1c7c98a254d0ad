//! `serve`'s pull endpoint: the last successful collection, rendered once when it is published
//! (and its self-metrics after every collection) and served as is to every scrape
//! (`GET /metrics`), and `GET /healthz`, which says whether that collection is fresh. A scrape
//! never reaches the cloud.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::responder::ServeError;
use super::responder::{self, Request, Response};

/// One collection, in both text formats a scraper may ask for.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Prometheus text format 0.0.4.
    pub text: String,
    /// OpenMetrics 1.0 (`# EOF`, counter families without `_total`).
    pub openmetrics: String,
}

/// The page scrapes see: the data of the last successful collection, followed by the
/// self-metrics of the latest collection, successful or not (so a kept page says it is kept).
#[derive(Debug, Default)]
pub struct Published {
    last: Mutex<Option<Kept>>,
}

#[derive(Debug)]
struct Kept {
    /// The data part of the last successful collection.
    data: Page,
    /// When that collection was published.
    at: Instant,
    /// `data` followed by the latest self-metrics.
    page: Arc<Page>,
}

/// `data` followed by `own`, in each format.
fn joined(data: &Page, own: &Page) -> Arc<Page> {
    Arc::new(Page {
        text: format!("{}{}", data.text, own.text),
        openmetrics: format!("{}{}", data.openmetrics, own.openmetrics),
    })
}

impl Published {
    /// A successful collection: its data and self-metrics replace the page.
    pub fn publish(&self, data: Page, own: Page) {
        let page = joined(&data, &own);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Kept {
            data,
            at: Instant::now(),
            page,
        });
    }

    /// A failed collection: the data stay those of the last success (and so does its age),
    /// the self-metrics become this collection's. Before any success there is no page.
    pub fn refresh(&self, own: Page) {
        if let Some(kept) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            kept.page = joined(&kept.data, &own);
        }
    }

    /// The page, and the age of the last successful collection.
    pub fn last(&self) -> Option<(Arc<Page>, Duration)> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|k| (k.page.clone(), k.at.elapsed()))
    }
}

/// The address cannot be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {why}")]
pub struct BindError {
    pub addr: String,
    pub why: String,
}

/// The HTTP server of `serve` (see `responder` for its bounds).
pub struct Server {
    listener: TcpListener,
    /// The address really bound (the port chosen by the system for `:0`).
    pub addr: SocketAddr,
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Server {
    pub fn bind(addr: SocketAddr) -> Result<Server, BindError> {
        let bad = |e: std::io::Error| BindError {
            addr: addr.to_string(),
            why: e.to_string(),
        };
        let listener = TcpListener::bind(addr).map_err(bad)?;
        let addr = listener.local_addr().map_err(bad)?;
        Ok(Server { listener, addr })
    }

    /// Answers requests until `stop` says so. `/healthz` is healthy while the last page is
    /// younger than `fresh_for`.
    pub fn serve(
        &self,
        published: Arc<Published>,
        fresh_for: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), ServeError> {
        let handler = move |req: &Request<'_>| answer(req, &published, fresh_for);
        responder::serve(&self.listener, Arc::new(handler), stop)
    }
}

/// The page in the format asked for.
struct PageBody(Arc<Page>, bool);

impl AsRef<[u8]> for PageBody {
    fn as_ref(&self) -> &[u8] {
        if self.1 {
            self.0.openmetrics.as_bytes()
        } else {
            self.0.text.as_bytes()
        }
    }
}

fn page(page: Arc<Page>, openmetrics: bool) -> Response {
    Response {
        status: 200,
        content_type: if openmetrics {
            OPENMETRICS_FORMAT
        } else {
            TEXT_FORMAT
        },
        headers: Vec::new(),
        body: Box::new(PageBody(page, openmetrics)),
    }
}

/// Whether `Accept` prefers OpenMetrics to the text format (RFC 9110 12.5.1): media types in any
/// case, the highest `q` of each, `q=0` meaning "not this one"; a tie goes to OpenMetrics.
fn wants_openmetrics<'a>(accept: impl Iterator<Item = &'a str>) -> bool {
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for range in accept.flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map(|(_, v)| {
                v.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
            });
        let q = match q {
            None => 1.0,
            Some(Some(q)) => q,
            // A weight that is not one: the range is ignored.
            Some(None) => continue,
        };
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            openmetrics = openmetrics.max(q);
        } else if ["text/plain", "text/*", "*/*"]
            .iter()
            .any(|t| media.eq_ignore_ascii_case(t))
        {
            text = text.max(q);
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

fn answer(req: &Request<'_>, published: &Published, fresh_for: Duration) -> Response {
    if !matches!(req.method, "GET" | "HEAD") {
        // RFC 9110 15.5.6: a 405 says what is allowed.
        let mut r = Response::text(405, "only GET and HEAD\n");
        r.headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    let path = req.target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => match published.last() {
            Some((p, _)) => page(p, wants_openmetrics(req.header("Accept"))),
            None => Response::text(503, "no collection has succeeded yet\n"),
        },
        "/healthz" => match published.last() {
            Some((_, age)) if age < fresh_for => Response::text(200, "ok\n"),
            Some((_, age)) => Response::text(
                503,
                format!(
                    "the last successful collection is {} s old (stale after {} s)\n",
                    age.as_secs(),
                    fresh_for.as_secs()
                ),
            ),
            None => Response::text(503, "no collection has succeeded yet\n"),
        },
        "/" => Response::text(
            200,
            "maas-usage serve: GET /metrics (Prometheus text, or OpenMetrics by Accept), GET /healthz\n",
        ),
        _ => Response::text(404, "not found: try /metrics or /healthz\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_negotiated_by_media_type_and_quality() {
        let om = |accept: &[&str]| wants_openmetrics(accept.iter().copied());
        // Prometheus' own header.
        assert!(om(&[
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ]));
        assert!(om(&["Application/OpenMetrics-Text"]));
        assert!(om(&[
            "text/plain;q=0.5",
            "application/openmetrics-text ; Q=0.9"
        ]));
        for text in [
            &["application/openmetrics-text;q=0, text/plain"][..],
            &["application/openmetrics-text; q=0.0"],
            &["application/openmetrics-text;q=0.3, text/plain;q=0.5"],
            &["text/plain", "*/*"],
            &["application/openmetrics-textual"],
            &[],
        ] {
            assert!(!om(text), "{text:?}");
        }
    }
}
