//! Proxies on loopback. A CONNECT proxy, as HTTPS_PROXY points at: it records what each tunnel
//! asked for and sends every tunnel to one address (so `maas.test`, which no DNS knows, reaches
//! the simulator). A recording relay: every byte a client sent, for tests of what must never be.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct ConnectProxy {
    pub url: String,
    /// `host:port` of every CONNECT, in order.
    pub tunnels: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub fn start(to: SocketAddr) -> ConnectProxy {
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        let url = accept_each(move |client| tunnel(client, to, &seen));
        ConnectProxy { url, tunnels }
    }
}

/// Listens on a free loopback port and hands every connection to `handle` on a thread of its
/// own; the listener's URL.
fn accept_each(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || handle(client));
        }
    });
    url
}

fn tunnel(client: TcpStream, to: SocketAddr, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    if parts.next() != Some("CONNECT") {
        return;
    }
    seen.lock()
        .unwrap()
        .push(parts.next().unwrap_or("").to_string());
    // The rest of the request head.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    let Ok(upstream) = TcpStream::connect(to) else {
        return;
    };
    let mut client_w = client.try_clone().unwrap();
    if client_w
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
    // Bytes the reader already buffered past the head belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    let _ = up_w.write_all(&buffered);
    let mut client_r = reader.into_inner();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
    });
    let _ = std::io::copy(&mut client_r, &mut up_w);
}

/// A relay on loopback that passes every connection on to one address and keeps every byte the
/// client sent: what a test asserts was (or was never) sent.
pub struct Recorder {
    pub url: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    pub fn start(to: SocketAddr) -> Recorder {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let keep = sent.clone();
        let url = accept_each(move |client| relay(client, to, &keep));
        Recorder { url, sent }
    }

    /// Everything clients sent so far, lossily as text.
    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

fn relay(client: TcpStream, to: SocketAddr, keep: &Mutex<Vec<u8>>) {
    use std::io::Read;
    let Ok(upstream) = TcpStream::connect(to) else {
        return;
    };
    let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
    let mut client_w = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
    });
    let mut client_r = client;
    let mut buf = [0u8; 8192];
    while let Ok(n) = client_r.read(&mut buf) {
        if n == 0 {
            break;
        }
        // Kept before it goes on: the answer cannot come before the record.
        keep.lock().unwrap().extend_from_slice(&buf[..n]);
        if up_w.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = up_w.shutdown(std::net::Shutdown::Write);
}
