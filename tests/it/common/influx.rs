//! A real influxd (InfluxDB 1.x) on loopback for end-to-end tests.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::tempdir;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Influxd {
    child: Child,
    pub url: String,
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_influxd() -> Option<Influxd> {
    if !super::peer_on_path("influxd", "version", "MAAS_USAGE_REQUIRE_INFLUXD") {
        return None;
    }
    let dir = tempdir();
    let (rpc, http) = (free_port(), free_port());
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n",
        d = dir.display()
    );
    let conf = dir.join("influxdb.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new("influxd")
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("influxd starts");
    let db = Influxd {
        child,
        url: format!("http://127.0.0.1:{http}"),
    };
    super::wait_until("influxd to answer /ping", || {
        ureq::get(&format!("{}/ping", db.url))
            .call()
            .is_ok_and(|r| r.status().as_u16() == 204)
    });
    Some(db)
}

pub fn influxql(db: &Influxd, q: &str) -> Value {
    let mut r = ureq::post(&format!("{}/query", db.url))
        .query("db", "maas")
        .send_form([("q", q)])
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// POSTs line protocol to /write (db maas, ns precision); panics unless InfluxDB accepts it all.
pub fn write(db: &Influxd, lp: &str) {
    let resp = ureq::post(&format!("{}/write", db.url))
        .query("db", "maas")
        .query("precision", "ns")
        .send(lp.as_bytes())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "InfluxDB accepted every line");
}
