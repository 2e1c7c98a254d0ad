//! The cost of one call slot of a fleet's request budget as a run takes it: the `redis` crate's
//! blocking connection, EVALSHA of the budget script on two windows (an identity's and its
//! account's), the answer; against a redis-server on loopback, plain (`redis://`) and over TLS
//! with a private CA (`rediss://`, `coordination.ca_file`). `cargo bench --bench fleet` (it
//! says so and does nothing without redis-server on PATH); the numbers are in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use maas_usage::bench_support::redis_budget;

fn main() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: redis-server is not on PATH");
        return;
    }
    divan::main();
    // A static is never dropped: the servers are stopped here.
    if let Some(s) = SERVERS.get() {
        for c in s.children.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The two redis-servers on loopback (stopped at the end of `main`).
struct Servers {
    _dir: tempfile::TempDir,
    children: Mutex<Vec<Child>>,
    plain: String,
    tls: String,
    ca: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start(dir: &Path, listen: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(listen)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files in `dir`.
fn certificates(dir: &Path) -> (String, String, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_pem = write("ca.pem", ca.pem());
    let cert = write("server.pem", cert.pem());
    let key = write("server.key", key.serialize_pem());
    (
        cert.display().to_string(),
        key.display().to_string(),
        ca_pem,
    )
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

fn servers() -> &'static Servers {
    SERVERS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = certificates(dir.path());
        let (plain, tls) = (free_port(), free_port());
        let plain_server = start(dir.path(), &["--port".into(), plain.to_string()]);
        let tls_server = start(
            dir.path(),
            &[
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                tls.to_string(),
                "--tls-cert-file".into(),
                cert,
                "--tls-key-file".into(),
                key,
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        );
        Servers {
            _dir: dir,
            children: Mutex::new(vec![plain_server, tls_server]),
            plain: format!("redis://127.0.0.1:{plain}/0"),
            tls: format!("rediss://127.0.0.1:{tls}/0"),
            ca,
        }
    })
}

/// The budget a run takes its slots from at `url` (waiting until the server answers).
fn budget(url: &str, ca: Option<&Path>) -> impl Fn() {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match redis_budget(url, ca, Duration::from_secs(1)) {
            Ok(take) => return take,
            Err(e) if Instant::now() > until => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

// A short window and a limit never reached: every call takes a slot at once.
#[divan::bench(sample_count = 200, sample_size = 20)]
fn budget_slot_redis(bencher: divan::Bencher) {
    let take = budget(&servers().plain, None);
    bencher.bench(take);
}

#[divan::bench(sample_count = 200, sample_size = 20)]
fn budget_slot_rediss_private_ca(bencher: divan::Bencher) {
    let s = servers();
    let take = budget(&s.tls, Some(&s.ca));
    bencher.bench(take);
}
