//! A real redis-server on loopback for the fleet's tests: one per test, on a free port, with a
//! temporary directory and an append-only file synced at every write (so a kill -9 and a
//! restart keep what it held, as a production Redis with persistence does). Awaited until it
//! answers PING.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::influx::free_port;
use super::tempdir;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    pub url: String,
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
        };
        r.start_again();
        Some(r)
    }

    /// Starts it (again) on the same port and directory, and waits until it answers PING.
    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
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

    fn ping(&self) -> bool {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    pub fn conn(&self) -> redis::Connection {
        let c = redis::Client::open(self.url.as_str()).unwrap();
        c.get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
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
