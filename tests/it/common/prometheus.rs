//! A real Prometheus server (Debian's `prometheus`) on loopback, scraping a target every
//! second, and its HTTP query API. Skipped without the binary unless MAAS_USAGE_REQUIRE_PROMTOOL
//! is set (CI installs promtool and the server from one package).

use std::process::{Child, Command, Stdio};

use super::serving::PATIENCE;
use super::tempdir;
use super::wait_until;

pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:port` of its web API.
    pub addr: String,
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET over HTTP/1.0 (Prometheus answers 1.1 requests chunked): the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts it scraping `target` (`host:port`, path /metrics) every second, and waits until
    /// it is ready. `None` when it is not installed and not required.
    pub fn start(target: &str) -> Option<Prometheus> {
        let dir = tempdir();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: maas-usage\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(_) => {
                assert!(
                    std::env::var("MAAS_USAGE_REQUIRE_PROMTOOL").is_err(),
                    "prometheus is required but not on PATH"
                );
                eprintln!("skipped: prometheus not on PATH");
                return None;
            }
        };
        let mut p = Prometheus { child, addr };
        wait_until("prometheus to be ready", || {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("prometheus ended: {status}");
            }
            std::net::TcpStream::connect(&p.addr).is_ok() && get(&p.addr, "/-/ready").0 == 200
        });
        Some(p)
    }

    /// An instant query: the whole answer (`status`, `data.result`, or `error`).
    pub fn query(&self, expr: &str) -> serde_json::Value {
        let (_, body) = get(&self.addr, &format!("/api/v1/query?query={}", encode(expr)));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Waits until `expr` has a result (the first scrapes have landed).
    pub fn wait_for(&self, expr: &str) {
        wait_until(&format!("{expr} to have data"), || {
            self.query(expr)["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
