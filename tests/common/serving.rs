//! Long-running children of the binary (`serve`, `demo --serve`, the simulator): their stderr
//! lines awaited, their endpoint asked over HTTP/1.1 on loopback, SIGTERM and the exit status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{authed, NOW};

/// Generous: these bound waiting for something that happens, they are not margins asserted.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Serve {
    pub child: Child,
    /// Where it listens (`host:port`), from its `listening on http://` line.
    pub addr: String,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    /// `serve` on a free port with the canary credentials, `--now NOW`, `spec` and `state`.
    pub fn start(spec: &std::path::Path, state: &std::path::Path, interval: &str) -> Serve {
        Self::start_with(spec, state, interval, |_| {})
    }

    /// As `start`, with `adjust` applied to the command first (its environment).
    pub fn start_with(
        spec: &std::path::Path,
        state: &std::path::Path,
        interval: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> Serve {
        let mut cmd = authed();
        adjust(&mut cmd);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--interval", interval])
            .args(["--now", NOW, "--spec"])
            .arg(spec)
            .arg("--state-dir")
            .arg(state);
        Self::spawn(cmd)
    }

    /// Runs `cmd` (a `serve`, or `demo --serve`) and waits for the address it listens on.
    pub fn spawn(cmd: Command) -> Serve {
        let mut s = Self::launch(cmd);
        let line = s.wait_for_line("listening on http://");
        s.addr = line
            .split("listening on http://")
            .nth(1)
            .unwrap()
            .trim()
            .to_string();
        s
    }

    /// Runs `cmd` with stdout and stderr piped, its stderr lines read as they come.
    pub fn launch(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Serve {
            child,
            addr: String::new(),
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// The first stderr line containing `needle` (waiting for it).
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let until = Instant::now() + PATIENCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no `{needle}` on stderr; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    pub fn get(&self, path: &str, accept: Option<&str>) -> Answer {
        http(&self.addr, "GET", path, accept)
    }

    /// Polls `path` until it answers `status`.
    pub fn wait_for(&self, path: &str, status: u16) -> Answer {
        let until = Instant::now() + PATIENCE;
        loop {
            let a = self.get(path, None);
            if a.status == status {
                return a;
            }
            assert!(
                Instant::now() < until,
                "{path} never answered {status}: {a:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status and the rest of stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let until = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < until, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        // A server writes nothing on stdout (a test that reads it took it).
        if let Some(mut stdout) = self.child.stdout.take() {
            let mut out = String::new();
            stdout.read_to_string(&mut out).unwrap();
            assert!(out.is_empty(), "serve writes nothing on stdout: {out}");
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
pub fn http(addr: &str, method: &str, path: &str, accept: Option<&str>) -> Answer {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}
