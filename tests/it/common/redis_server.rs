//! A real redis-server on loopback for the fleet's tests: one per test, on a free port, with a
//! temporary directory and an append-only file synced at every write (so a kill -9 and a
//! restart keep what it held, as a production Redis with persistence does). Awaited until it
//! answers PING. Or with TLS only (`start_tls`): the test CA's certificate for 127.0.0.1, and
//! optionally a client certificate required (mutual TLS).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::influx::free_port;
use super::tempdir;
use super::tls::Pki;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    pub url: String,
    /// The listener's arguments: `--port P`, or TLS's.
    listen: Vec<String>,
    /// What the harness's own client trusts and shows (TLS).
    tls: Option<redis::TlsCertificates>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// A fresh server, or `None` when redis-server is missing (and not required).
    pub fn start() -> Option<RedisServer> {
        if !super::peer_on_path("redis-server", "--version", "MAAS_USAGE_REQUIRE_REDIS") {
            return None;
        }
        let port = free_port();
        let mut r = RedisServer {
            child: None,
            port,
            dir: tempdir(),
            url: format!("redis://127.0.0.1:{port}/0"),
            listen: vec!["--port".into(), port.to_string()],
            tls: None,
        };
        r.start_again();
        Some(r)
    }

    /// A fresh server speaking TLS only (`rediss://`), its certificate signed by `pki`'s CA;
    /// `mutual`: it requires a client certificate signed by that CA too.
    pub fn start_tls(pki: &Pki, mutual: bool) -> Option<RedisServer> {
        if !super::peer_on_path("redis-server", "--version", "MAAS_USAGE_REQUIRE_REDIS") {
            return None;
        }
        let (port, dir) = (free_port(), tempdir());
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (cert, key) = (
            write("server.pem", &pki.server_cert_pem),
            write("server.key", &pki.server_key_pem),
        );
        let listen = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            cert,
            "--tls-key-file".into(),
            key,
            "--tls-ca-cert-file".into(),
            pki.ca_pem.display().to_string(),
            "--tls-auth-clients".into(),
            if mutual { "yes" } else { "no" }.into(),
        ];
        let read = |p: &PathBuf| std::fs::read(p).unwrap();
        let tls = redis::TlsCertificates {
            client_tls: mutual.then(|| redis::ClientTlsConfig {
                client_cert: read(&pki.client_cert_pem),
                client_key: read(&pki.client_key_pem),
            }),
            root_cert: Some(read(&pki.ca_pem)),
        };
        let mut r = RedisServer {
            child: None,
            port,
            dir,
            url: format!("rediss://127.0.0.1:{port}/0"),
            listen,
            tls: Some(tls),
        };
        r.start_again();
        Some(r)
    }

    /// Starts it (again) on the same port and directory, and waits until it answers PING.
    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(&self.listen)
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--protected-mode", "no", "--logfile", "redis.log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        super::wait_until("redis-server to answer PING", || self.ping());
    }

    /// kill -9, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9 and start again (what it held survives: the append-only file).
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    fn client(&self) -> redis::Client {
        match &self.tls {
            Some(tls) => redis::Client::build_with_tls(self.url.as_str(), tls.clone()),
            None => redis::Client::open(self.url.as_str()),
        }
        .unwrap()
    }

    fn ping(&self) -> bool {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(1))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    /// Creates the ACL user of docs/operations.md (its `redis-cli ACL SETUSER` line, as
    /// written there) with `password`.
    pub fn documented_acl_user(&self, password: &str) {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
        let text = std::fs::read_to_string(docs).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("redis-cli ACL SETUSER "))
            .expect("docs/operations.md gives a `redis-cli ACL SETUSER` line");
        let args: Vec<String> = line
            .split_whitespace()
            .map(|a| a.trim_matches('\'').replace("PASSWORD", password))
            .collect();
        let mut all = vec!["ACL", "SETUSER"];
        all.extend(args.iter().map(String::as_str));
        let _: () = self.cmd(&all);
    }

    /// Runs a command (`FLUSHALL`, `KEYS *`, ...).
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut self.conn()).unwrap()
    }
}
