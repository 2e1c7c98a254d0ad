//! In-process OTLP receivers for the tests: HTTP (protobuf and JSON, gzip) and gRPC (tonic).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The raw query string (after `?`), may be empty.
    pub query: String,
    pub content_type: String,
    pub gzip: bool,
    pub headers: Vec<(String, String)>,
    pub request: ExportMetricsServiceRequest,
}

/// What the receiver answers next (default: 200 with an empty response).
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16, &'static str),
    Partial(i64, &'static str),
    /// 302 to this URL.
    Redirect(String),
    /// 200 after this long (the data are received first): an export in flight.
    Slow(std::time::Duration),
}

pub struct HttpReceiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub script: Arc<Mutex<VecDeque<Answer>>>,
    /// Every request that arrived, decodable or not.
    pub hits: Arc<Mutex<u32>>,
    /// Every connection accepted (a failed TLS handshake counts).
    pub connections: Arc<Mutex<u32>>,
}

impl HttpReceiver {
    pub fn start() -> HttpReceiver {
        Self::start_with(None)
    }

    /// An OTLP/HTTP receiver over TLS (`https://`).
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> HttpReceiver {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<VecDeque<Answer>>> = Arc::new(Mutex::new(VecDeque::new()));
        let hits = Arc::new(Mutex::new(0));
        let connections = Arc::new(Mutex::new(0));
        let (r, s, h, c) = (
            received.clone(),
            script.clone(),
            hits.clone(),
            connections.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                *c.lock().unwrap() += 1;
                let (r, s, h, tls) = (r.clone(), s.clone(), h.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(conn, r, s, h),
                    Some(cfg) => {
                        let tls = rustls::ServerConnection::new(cfg).unwrap();
                        serve(rustls::StreamOwned::new(tls, conn), r, s, h)
                    }
                });
            }
        });
        HttpReceiver {
            url,
            received,
            script,
            hits,
            connections,
        }
    }

    pub fn push(&self, a: Answer) {
        self.script.lock().unwrap().push_back(a);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every data point of the metric `name` received so far, gauge or sum, in order of
    /// arrival: (its time in ms, its value as a whole number).
    pub fn points(&self, name: &str) -> Vec<(i64, i64)> {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
        let mut out = Vec::new();
        for r in self.requests() {
            for m in r
                .request
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .filter(|m| m.name == name)
            {
                let points = match &m.data {
                    Some(Data::Gauge(g)) => &g.data_points,
                    Some(Data::Sum(s)) => &s.data_points,
                    _ => continue,
                };
                out.extend(points.iter().filter_map(|p| {
                    let v = match p.value? {
                        Value::AsInt(v) => v,
                        Value::AsDouble(v) => v as i64,
                    };
                    Some(((p.time_unix_nano / 1_000_000) as i64, v))
                }));
            }
        }
        out
    }
}

fn serve<S: Read + Write>(
    conn: S,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    hits: Arc<Mutex<u32>>,
) {
    use maas_usage::sim::http::{read_body, read_head, ReadOutcome};
    let mut reader = BufReader::new(conn);
    loop {
        let mut req = match read_head(&mut reader) {
            Ok(ReadOutcome::Request(r)) => r,
            _ => return,
        };
        if read_body(&mut reader, &mut req).is_err() {
            return;
        }
        *hits.lock().unwrap() += 1;
        let gzip = req.header("content-encoding") == Some("gzip");
        let body = if gzip {
            let mut d = flate2::read::GzDecoder::new(&req.body[..]);
            let mut v = Vec::new();
            d.read_to_end(&mut v).unwrap();
            v
        } else {
            req.body.clone()
        };
        let content_type = req.header("content-type").unwrap_or("").to_string();
        let json = content_type.contains("json");
        let answer = script.lock().unwrap().pop_front();
        if let Some(Answer::Redirect(to)) = &answer {
            let head = format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
            if reader.get_mut().write_all(head.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let (status, payload, ct) = match answer {
            Some(Answer::Status(code, msg)) => {
                let status_pb = encode_status(code, msg);
                (code, status_pb, "application/x-protobuf")
            }
            Some(Answer::Redirect(_)) => unreachable!("answered above"),
            other => {
                let request = if json {
                    serde_json::from_slice::<ExportMetricsServiceRequest>(&body)
                        .expect("valid OTLP/JSON")
                } else {
                    ExportMetricsServiceRequest::decode(&body[..]).expect("valid OTLP protobuf")
                };
                received.lock().unwrap().push(Received {
                    path: req.path.clone(),
                    query: req.query.clone(),
                    content_type: content_type.clone(),
                    gzip,
                    headers: req.headers.clone(),
                    request,
                });
                if let Some(Answer::Slow(pause)) = &other {
                    // sleep allowed: a slow collector is the behaviour this answer simulates.
                    std::thread::sleep(*pause);
                }
                let partial = match other {
                    Some(Answer::Partial(n, msg)) => Some(ExportMetricsPartialSuccess {
                        rejected_data_points: n,
                        error_message: msg.into(),
                    }),
                    _ => None,
                };
                let resp = ExportMetricsServiceResponse {
                    partial_success: partial,
                };
                if json {
                    (200, serde_json::to_vec(&resp).unwrap(), "application/json")
                } else {
                    (200, resp.encode_to_vec(), "application/x-protobuf")
                }
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        let out = reader.get_mut();
        if out
            .write_all(head.as_bytes())
            .and_then(|_| out.write_all(&payload))
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// google.rpc.Status { code = 1 (int32), message = 2 (string) } by hand.
fn encode_status(http: u16, msg: &str) -> Vec<u8> {
    let mut v = vec![0x08];
    let code = if http == 400 { 3u8 } else { 14u8 };
    v.push(code);
    v.push(0x12);
    v.push(msg.len() as u8);
    v.extend_from_slice(msg.as_bytes());
    v
}

#[cfg(feature = "grpc")]
pub mod grpc {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use std::sync::atomic::{AtomicU32, Ordering};
    use tonic::{Request, Response, Status};

    /// (metadata, request) per accepted export.
    pub type Log = Arc<Mutex<Vec<(Vec<(String, String)>, ExportMetricsServiceRequest)>>>;

    pub struct GrpcReceiver {
        pub url: String,
        pub received: Log,
        pub unavailable_first: Arc<AtomicU32>,
    }

    struct Svc {
        received: Log,
        unavailable_first: Arc<AtomicU32>,
    }

    #[tonic::async_trait]
    impl MetricsService for Svc {
        async fn export(
            &self,
            req: Request<ExportMetricsServiceRequest>,
        ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
            if self.unavailable_first.load(Ordering::SeqCst) > 0 {
                self.unavailable_first.fetch_sub(1, Ordering::SeqCst);
                return Err(Status::unavailable("collector warming up"));
            }
            let headers = req
                .metadata()
                .iter()
                .filter_map(|kv| match kv {
                    tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                        Some((k.to_string(), v.to_str().unwrap_or("").to_string()))
                    }
                    _ => None,
                })
                .collect();
            self.received
                .lock()
                .unwrap()
                .push((headers, req.into_inner()));
            Ok(Response::new(ExportMetricsServiceResponse {
                partial_success: None,
            }))
        }
    }

    impl GrpcReceiver {
        pub fn start() -> GrpcReceiver {
            Self::start_with(None)
        }

        /// Over TLS with the test PKI's server certificate; with `mutual`, a client
        /// certificate signed by the test CA is required.
        pub fn start_tls(pki: &crate::common::tls::Pki, mutual: bool) -> GrpcReceiver {
            let mut tls = tonic::transport::ServerTlsConfig::new().identity(
                tonic::transport::Identity::from_pem(&pki.server_cert_pem, &pki.server_key_pem),
            );
            if mutual {
                tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(
                    std::fs::read(&pki.ca_pem).unwrap(),
                ));
            }
            Self::start_with(Some(tls))
        }

        fn start_with(tls: Option<tonic::transport::ServerTlsConfig>) -> GrpcReceiver {
            let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
            std_listener.set_nonblocking(true).unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{}", std_listener.local_addr().unwrap());
            let received = Arc::new(Mutex::new(Vec::new()));
            let unavailable_first = Arc::new(AtomicU32::new(0));
            let svc = Svc {
                received: received.clone(),
                unavailable_first: unavailable_first.clone(),
            };
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let mut builder = tonic::transport::Server::builder();
                    if let Some(tls) = tls {
                        builder = builder.tls_config(tls).unwrap();
                    }
                    builder
                        .add_service(
                            MetricsServiceServer::new(svc)
                                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                        )
                        .serve_with_incoming(incoming)
                        .await
                        .unwrap();
                });
            });
            GrpcReceiver {
                url,
                received,
                unavailable_first,
            }
        }
    }
}

/// OTLP/JSON lines (`--format otlp-json`: in period mode the buckets come a few to a line) as
/// one request: the first line's, with every line's metrics.
pub fn merged_lines(text: &str) -> serde_json::Value {
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let mut first = lines.next().expect("an OTLP/JSON line");
    for line in lines {
        let more = line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        first["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array_mut()
            .expect("metrics")
            .extend(more);
    }
    first
}
