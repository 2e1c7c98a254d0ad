//! A CONNECT proxy on loopback, as HTTPS_PROXY points at: it records what each tunnel asked
//! for and sends every tunnel to one address (so `maas.test`, which no DNS knows, reaches the
//! simulator).
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || tunnel(client, to, &seen));
            }
        });
        ConnectProxy { url, tunnels }
    }
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
