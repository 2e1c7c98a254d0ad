//! A small HTTP/1.1 responder on `std::net`, bounded in every direction, for `serve`'s scrape
//! endpoint: a fixed pool of workers behind a short queue (a connection beyond both is answered
//! `503` and closed at once), one request per connection (`Connection: close`), a request head
//! of at most `MAX_HEAD` bytes that must arrive within `HEAD_TIMEOUT` of the accept (a total
//! deadline: bytes trickling in do not extend it), and an answer that must be taken within
//! `WRITE_TIMEOUT`. A client that is slow, idle, or never reads holds one worker for a bounded
//! time and never the others; a slow head holds it for `HEAD_TIMEOUT` at most, so fewer than
//! `WORKERS` such clients delay no scrape, and more delay one by about `HEAD_TIMEOUT`. No
//! request makes memory grow past `MAX_HEAD`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

pub use crate::http::Request;
use crate::http::{self, HeadBuf, Limits, Progress};

/// Threads answering requests (each serves one connection at a time). Cheap (a small stack
/// each), and they are what a client with a slow head can hold.
pub const WORKERS: usize = 32;
/// Connections accepted and waiting for a worker; one more (beyond `WORKERS + QUEUE` accepted
/// and not yet closed) is answered `503` and closed. Counted, not left to a bounded channel,
/// so that a burst of connections is not refused while workers are idle but not yet awake.
pub const QUEUE: usize = 32;
/// The request line and headers together, in bytes; more is `431`.
pub const MAX_HEAD: usize = 16 * 1024;
/// The request line alone, in bytes; more is `414`.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
const LIMITS: Limits = Limits {
    head: MAX_HEAD,
    request_line: MAX_REQUEST_LINE,
};
/// From accept to the end of the request head; then `408` (or a silent close when nothing came).
/// A scraper sends its head at once, so this only bounds clients that do not.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The least a queued connection gets to send its head once a worker takes it, however long it
/// waited (a scraper sends its head at once, so it is already there).
const HEAD_GRACE: Duration = Duration::from_millis(250);
/// For writing the whole answer; a client that reads slower is cut off.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After the answer: how long, and how much, is read and dropped before closing, so that what
/// the client still sends does not turn the close into a reset that loses the answer. A client
/// that reads its answer closes at once; one that does not costs its worker this long.
const LINGER: Duration = Duration::from_millis(500);
/// The same after a refusal (`400`, `408`, `431`, ...): the client is already misbehaving, so
/// only what is in flight is drained.
const REFUSAL_LINGER: Duration = Duration::from_millis(100);
const LINGER_BYTES: usize = 64 * 1024;
/// How long the accepting loop waits for a connection before it looks at `stop` again. A
/// connection wakes it at once (poll(2)), so this only bounds how late a shutdown is noticed.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// After a failed accept (a connection reset before it was accepted, out of descriptors): a
/// pause, so that a fault that persists does not spin the thread.
const ACCEPT_FAULT_PAUSE: Duration = Duration::from_millis(10);

/// An answer: always with a length, never chunked; the body is left out for HEAD.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Further headers (e.g. `Allow`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Box<dyn AsRef<[u8]> + Send>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: Box::new(body.into()),
        }
    }
}

/// What answers requests; shared by the workers.
pub type Handler = dyn Fn(&Request<'_>) -> Response + Send + Sync;

/// The workers could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the HTTP workers: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot accept connections on {addr}: {source}")]
    Listener {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("every HTTP worker has stopped")]
    NoWorkers,
}

type Job = (TcpStream, Instant, Open);

/// One accepted connection, counted in `open` until it is closed (or its worker unwinds).
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections on `listener` and hands them to `WORKERS` threads until `stop` says so
/// (checked at least every `STOP_CHECK`; a connection is accepted as soon as it arrives). The
/// workers are not joined: one busy with a slow client finishes on its own deadline, or ends
/// with the process.
pub fn serve(
    listener: &TcpListener,
    handler: Arc<Handler>,
    stop: &dyn Fn() -> bool,
) -> Result<(), ServeError> {
    let listener_err = |source| ServeError::Listener {
        addr: listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        source,
    };
    listener.set_nonblocking(true).map_err(listener_err)?;
    let (tx, rx): (Sender<Job>, Receiver<Job>) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let open = Arc::new(AtomicUsize::new(0));
    for i in 0..WORKERS {
        let (rx, handler) = (rx.clone(), handler.clone());
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || work(&rx, &*handler))
            .map_err(ServeError::Spawn)?;
    }
    while !stop() {
        if !wait_for_connection(listener, STOP_CHECK) {
            continue;
        }
        match listener.accept() {
            Ok((conn, _)) => {
                // Only this thread adds to `open`, so the check cannot be raced past the cap.
                if open.load(Ordering::Acquire) >= WORKERS + QUEUE {
                    busy(conn);
                    continue;
                }
                open.fetch_add(1, Ordering::AcqRel);
                let job = (conn, Instant::now(), Open(open.clone()));
                if tx.send(job).is_err() {
                    return Err(ServeError::NoWorkers);
                }
            }
            // Gone before it was taken (another wake-up had it, or it was reset).
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            // A passing fault (a connection reset before it was accepted, out of descriptors).
            Err(_) => std::thread::sleep(ACCEPT_FAULT_PAUSE),
        }
    }
    Ok(())
}

/// Whether `listener` has a connection to accept, waiting for one up to `timeout` (poll(2)).
fn wait_for_connection(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // An error (EINTR from a signal) is no connection: the caller looks at `stop` first.
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

fn work(rx: &Mutex<Receiver<Job>>, handler: &Handler) {
    loop {
        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok((conn, accepted, open)) => {
                connection(conn, accepted, handler);
                drop(open);
            }
            // The server stopped.
            Err(_) => return,
        }
    }
}

/// No worker and no room in the queue: say so without waiting for anything, and close.
fn busy(mut conn: TcpStream) {
    let _ = conn.set_nonblocking(true);
    let body = "busy: too many connections\n";
    let _ = write!(
        conn,
        "{}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        http::status_line(503),
        body.len()
    );
}

/// Why no request head was read.
enum HeadError {
    /// The client closed first, or the connection failed.
    Gone,
    /// The deadline passed: after some bytes (`true`) or none.
    TimedOut(bool),
    /// Over `MAX_HEAD`, or a request line over `MAX_REQUEST_LINE`: the status to refuse it.
    TooLarge(u16),
}

fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Reads up to the end of the request head, within `LIMITS`, by `deadline`. What follows it (a
/// body, pipelined requests) is not kept.
fn read_head(conn: &mut TcpStream, deadline: Instant) -> Result<HeadBuf, HeadError> {
    let mut head = HeadBuf::new(LIMITS);
    let mut chunk = [0u8; 2048];
    loop {
        let Some(wait) = left(deadline) else {
            return Err(HeadError::TimedOut(!head.is_empty()));
        };
        conn.set_read_timeout(Some(wait))
            .map_err(|_| HeadError::Gone)?;
        match conn.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => match head.take(&chunk[..n]).1 {
                Progress::More => {}
                Progress::Complete => return Ok(head),
                Progress::TooLarge(status) => return Err(HeadError::TooLarge(status)),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(HeadError::Gone),
        }
    }
}

/// Writes all of `bytes` by `deadline`, or fails.
fn write_by(conn: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let wait = left(deadline).ok_or(ErrorKind::TimedOut)?;
        conn.set_write_timeout(Some(wait))?;
        match conn.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn respond(conn: &mut TcpStream, r: &Response, with_body: bool) -> std::io::Result<()> {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let body = (*r.body).as_ref();
    let mut head = format!(
        "{}Content-Type: {}\r\nContent-Length: {}\r\n",
        http::status_line(r.status),
        r.content_type,
        body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    write_by(conn, head.as_bytes(), deadline)?;
    if with_body {
        write_by(conn, body, deadline)?;
    }
    conn.flush()
}

/// Reads and drops what the client still sends (bounded), so the close is a clean one.
fn linger(conn: &mut TcpStream, how_long: Duration) {
    if conn.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + how_long;
    let mut drained = 0;
    let mut chunk = [0u8; 2048];
    while drained < LINGER_BYTES {
        let Some(wait) = left(deadline) else { return };
        if conn.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Answers a head that is refused with `status` (and why), and says how long to linger.
fn refuse(conn: &mut TcpStream, status: u16) -> std::io::Result<Duration> {
    let r = Response::text(status, format!("{}\n", http::refusal(status, LIMITS)));
    respond(conn, &r, true).map(|()| REFUSAL_LINGER)
}

fn connection(mut conn: TcpStream, accepted: Instant, handler: &Handler) {
    // Accepted from a non-blocking listener: blocking, with the deadlines below.
    if conn.set_nonblocking(false).is_err() {
        return;
    }
    let _ = conn.set_nodelay(true);
    let deadline = (accepted + HEAD_TIMEOUT).max(Instant::now() + HEAD_GRACE);
    let answered = match read_head(&mut conn, deadline) {
        Ok(head) => match head.parse() {
            Ok(req) => {
                let r = handler(&req);
                respond(&mut conn, &r, req.method != "HEAD").map(|()| LINGER)
            }
            Err(status) => refuse(&mut conn, status),
        },
        Err(HeadError::TooLarge(status)) => refuse(&mut conn, status),
        Err(HeadError::TimedOut(true)) => refuse(&mut conn, 408),
        Err(HeadError::TimedOut(false)) | Err(HeadError::Gone) => return,
    };
    if let Ok(how_long) = answered {
        linger(&mut conn, how_long);
    }
}
