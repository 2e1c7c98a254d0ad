//! HTTP/1.1 requests as the crate's two servers read them, `serve`'s endpoint
//! (`deliver::responder`) and the simulator (`sim::http`): the request head found in a stream
//! of bytes within limits (`HeadBuf`), parsed strictly (RFC 9112: `parse`), the status that
//! refuses a head and its wording, and the status line with its reason phrase. The client side
//! is ureq's.

use std::borrow::Cow;
use std::io::{self, BufRead, ErrorKind};

/// How large a request head may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers together, in bytes; more is `431` (or `414` while the
    /// request line has not ended).
    pub head: usize,
    /// The request line alone, in bytes; more is `414`.
    pub request_line: usize,
}

/// One request's head: what a server routes on.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path and query: as sent, or taken from an absolute-form target
    /// (`http://host:port/path?query`, RFC 9112 3.2.2).
    pub target: Cow<'a, str>,
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Request<'a> {
    /// The values of every header named `name` (case-insensitive).
    pub fn header<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Every header as sent (name as written, value trimmed), in arrival order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.headers.iter().copied()
    }

    /// The target's path and its query (after `?`, may be empty), neither decoded.
    pub fn path_and_query(&self) -> (&str, &str) {
        self.target.split_once('?').unwrap_or((&self.target, ""))
    }
}

/// Where the bytes given to a `HeadBuf` left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The head has not ended yet.
    More,
    /// The head is complete (`HeadBuf::bytes`).
    Complete,
    /// Over the limits: the status that refuses it (`414` or `431`).
    TooLarge(u16),
}

/// A request head as it arrives, kept up to its end and never past the limits.
#[derive(Debug)]
pub struct HeadBuf {
    buf: Vec<u8>,
    limits: Limits,
    state: Progress,
}

impl HeadBuf {
    pub fn new(limits: Limits) -> HeadBuf {
        HeadBuf {
            buf: Vec::with_capacity(1024.min(limits.head)),
            limits,
            state: Progress::More,
        }
    }

    /// Takes bytes from `input` up to the end of the head; says how many it took (what follows
    /// the head, a body or the next request, is left to the caller) and where that left the
    /// head. Once complete or too large, it takes nothing more. A request line over the limit
    /// is found here while it has not ended, and by `parse` once the head is complete.
    pub fn take(&mut self, input: &[u8]) -> (usize, Progress) {
        if self.state != Progress::More {
            return (0, self.state);
        }
        let had = self.buf.len();
        let room = self.limits.head - had;
        self.buf.extend_from_slice(&input[..input.len().min(room)]);
        if let Some(end) = head_end(&self.buf, had.saturating_sub(3)) {
            self.buf.truncate(end);
            self.state = Progress::Complete;
        } else if let Some(status) = over_limits(&self.buf, self.limits) {
            self.state = Progress::TooLarge(status);
        }
        (self.buf.len() - had, self.state)
    }

    /// Whether no byte has arrived.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The complete head's request, or the status that refuses it.
    pub fn parse(&self) -> Result<Request<'_>, u16> {
        parse(&self.buf, self.limits)
    }
}

/// What reading a request head from a stream gave.
#[derive(Debug)]
pub enum Received {
    /// The whole head, with nothing after it taken from the stream.
    Head(HeadBuf),
    /// The peer closed the connection before the first byte (between requests).
    Closed,
    /// The status that refuses it: too large, or cut off by the peer's close (`400`).
    Refused(u16),
}

/// Reads one request head from `reader`, leaving what follows it (a body, the next request) in
/// the reader. For a blocking stream without a deadline of its own (the simulator's).
pub fn read_head(reader: &mut impl BufRead, limits: Limits) -> io::Result<Received> {
    let mut head = HeadBuf::new(limits);
    loop {
        let input = match reader.fill_buf() {
            Ok(input) => input,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if input.is_empty() {
            return Ok(if head.is_empty() {
                Received::Closed
            } else {
                Received::Refused(400)
            });
        }
        let (taken, progress) = head.take(input);
        reader.consume(taken);
        match progress {
            Progress::More => {}
            Progress::Complete => return Ok(Received::Head(head)),
            Progress::TooLarge(status) => return Ok(Received::Refused(status)),
        }
    }
}

/// Where the head ends (just past its empty line), looking from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// Whether a head that has not ended yet is past a limit, and the status that says which:
/// `414` for a request line over its limit (ended or not: it is at least as long as what has
/// come), `431` for a head that fills its limit with a short request line.
fn over_limits(head: &[u8], limits: Limits) -> Option<u16> {
    let start = head
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(head.len());
    let rest = &head[start..];
    let ended = rest.iter().position(|&b| b == b'\n');
    let line = &rest[..ended.unwrap_or(rest.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limits.request_line {
        Some(414)
    } else if head.len() >= limits.head {
        Some(if ended.is_some() { 431 } else { 414 })
    } else {
        None
    }
}

/// A complete request head's request line and headers, or the status that refuses them:
/// `400` for anything malformed (not UTF-8, a request line not of three parts, a header
/// without a colon or with white space in its name, an HTTP/1.1 request without exactly one
/// `Host`), `414` for a request line over the limit, `505` for a version other than 1.0 and
/// 1.1. Empty lines before the request line are ignored (RFC 9112 2.2), and so is a CR before
/// each LF.
pub fn parse(head: &[u8], limits: Limits) -> Result<Request<'_>, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let mut lines = text
        .trim_start_matches(['\r', '\n'])
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or(400u16)?;
    if line.len() > limits.request_line {
        return Err(414);
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || target.is_empty() {
        return Err(400);
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(if version.starts_with("HTTP/") {
            505
        } else {
            400
        });
    }
    let mut headers = Vec::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = l.split_once(':').ok_or(400u16)?;
        if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(400);
        }
        headers.push((name, value.trim()));
    }
    // RFC 9112 3.2: an HTTP/1.1 request without Host, or any with more than one, is 400.
    let hosts = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (hosts == 0 && version == "HTTP/1.1") {
        return Err(400);
    }
    Ok(Request {
        method,
        target: origin_form(target),
        headers,
    })
}

/// The path and query of an absolute-form target (`http://host:port/path?query`, scheme in any
/// case); any other target as it is.
fn origin_form(target: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = target.split_once("://") else {
        return Cow::Borrowed(target);
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Cow::Borrowed(target);
    }
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => Cow::Borrowed(&rest[i..]),
        Some(i) => Cow::Owned(format!("/{}", &rest[i..])),
        None => Cow::Borrowed("/"),
    }
}

/// Why a head was refused with `status`, in a line for the answer's body.
pub fn refusal(status: u16, limits: Limits) -> String {
    match status {
        414 => format!("request line over {} bytes", limits.request_line),
        431 => format!("request head over {} bytes", limits.head),
        408 => "request head too slow".into(),
        _ => reason(status).into(),
    }
}

/// The reason phrase of every status the servers send (empty for any other: the phrase is
/// optional, RFC 9112 4).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// `HTTP/1.1 <status> <reason>` and its CRLF.
pub fn status_line(status: u16) -> String {
    format!("HTTP/1.1 {status} {}\r\n", reason(status))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const L: Limits = Limits {
        head: 16 * 1024,
        request_line: 8 * 1024,
    };

    fn status(head: &[u8]) -> Result<(), u16> {
        parse(head, L).map(|_| ())
    }

    #[test]
    fn heads_are_parsed_and_malformed_ones_refused() {
        let r = parse(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: text/plain\r\n\r\n",
            L,
        )
        .expect("a valid head");
        assert_eq!((r.method, &*r.target), ("GET", "/metrics?x=1"));
        assert_eq!(r.path_and_query(), ("/metrics", "x=1"));
        assert_eq!(r.header("Accept").collect::<Vec<_>>(), ["text/plain"]);
        assert!(
            status(b"\r\nHEAD / HTTP/1.0\n\n").is_ok(),
            "bare LF, leading CRLF"
        );
        for (bad, code) in [
            (&b"GET /\r\n\r\n"[..], 400),
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", 400),
        ] {
            assert_eq!(status(bad), Err(code), "{bad:?}");
        }
    }

    #[test]
    fn an_absolute_form_target_is_read_as_its_path_and_query() {
        // RFC 9112 3.2.2: a server must accept the absolute form.
        for (head, target) in [
            (
                &b"GET http://127.0.0.1:9464/metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                "/metrics",
            ),
            (
                b"GET HTTP://h/healthz?a=b HTTP/1.1\r\nHost: h\r\n\r\n",
                "/healthz?a=b",
            ),
            (b"GET https://h:1?x HTTP/1.1\r\nHost: h\r\n\r\n", "/?x"),
            (b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", "/"),
        ] {
            let got = parse(head, L).map(|r| r.target.into_owned());
            assert_eq!(got, Ok(target.to_string()), "{head:?}");
        }
    }

    #[test]
    fn an_http_1_1_request_needs_exactly_one_host() {
        // RFC 9112 3.2: no Host, or more than one, is 400; HTTP/1.0 may leave it out.
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Err(400)
        );
        assert!(status(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").is_ok());
        assert!(status(b"GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn an_over_long_request_line_is_414() {
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(L.request_line)
        );
        assert_eq!(status(long.as_bytes()), Err(414));
        let fits = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1000));
        assert!(status(fits.as_bytes()).is_ok());
        // Cut off by the head cap: the line never ended (414), or a header did (431); a line
        // over its own cap is 414 as soon as it is seen, ended or not.
        let small = Limits {
            head: 14,
            request_line: 10,
        };
        assert_eq!(over_limits(&[b'a'; 14], small), Some(414));
        assert_eq!(over_limits(b"\r\nGET /aaaaaaa", small), Some(414));
        assert_eq!(over_limits(b"\r\nGET /aaaaa", small), None);
        assert_eq!(over_limits(b"GET / H\r\nX: aaa", small), Some(431));
        assert_eq!(over_limits(b"GET / HTTP/1\r\n", small), Some(414));
        assert_eq!(over_limits(b"GET / HTTP\r\n", small), None);
    }

    #[test]
    fn the_end_of_a_head_is_found_across_reads() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 13), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
    }

    #[test]
    fn a_head_is_taken_up_to_its_end_and_within_its_limits() {
        let mut h = HeadBuf::new(L);
        assert_eq!(h.take(b"GET / HTTP/1.1\r\nHost: a\r"), (24, Progress::More));
        assert_eq!(h.take(b"\n\r\nBODY"), (3, Progress::Complete));
        assert_eq!(h.take(b"more"), (0, Progress::Complete));
        assert_eq!(h.buf.as_slice(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(h.parse().is_ok());

        let small = Limits {
            head: 32,
            request_line: 16,
        };
        let mut line = HeadBuf::new(small);
        assert_eq!(
            line.take(b"GET /aaaaaaaaaaaa"),
            (17, Progress::TooLarge(414))
        );
        let mut head = HeadBuf::new(small);
        let (taken, progress) = head.take(b"GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaa");
        assert_eq!((taken, progress), (32, Progress::TooLarge(431)));
        assert_eq!(head.take(b"\r\n\r\n"), (0, Progress::TooLarge(431)));
        assert_eq!(refusal(431, small), "request head over 32 bytes");
        assert_eq!(refusal(414, small), "request line over 16 bytes");
    }

    #[test]
    fn a_stream_keeps_what_follows_the_head() {
        let mut stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET";
        let mut reader = io::BufReader::with_capacity(7, &mut stream);
        let Ok(Received::Head(head)) = read_head(&mut reader, L) else {
            panic!("a head");
        };
        let r = head.parse().expect("valid");
        assert_eq!(r.header("content-length").next(), Some("2"));
        let mut rest = String::new();
        io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        assert_eq!(rest, "hiGET");
        assert!(matches!(read_head(&mut &b""[..], L), Ok(Received::Closed)));
        assert!(matches!(
            read_head(&mut &b"GET / HT"[..], L),
            Ok(Received::Refused(400))
        ));
    }

    #[test]
    fn every_status_sent_has_its_reason_phrase() {
        for s in [
            200, 400, 401, 403, 404, 405, 408, 414, 429, 431, 500, 502, 503, 504, 505,
        ] {
            assert!(!reason(s).is_empty(), "{s}");
        }
        assert_eq!(
            status_line(431),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        );
        assert_eq!(status_line(299), "HTTP/1.1 299 \r\n");
    }

    /// A token (RFC 9110 5.6.2), as methods and header names are.
    const TOKEN: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";

    fn request() -> impl Strategy<Value = (String, String, Vec<(String, String)>, bool, String)> {
        (
            TOKEN,
            "/[A-Za-z0-9/._~%-]{0,40}(\\?[A-Za-z0-9=&%]{0,20})?",
            prop::collection::vec((TOKEN, "[!-~]([ -~]{0,30}[!-~])?"), 0..6),
            any::<bool>(),
            "(\r\n|\n)",
        )
            .prop_map(|(m, t, h, v11, eol)| {
                let mut headers = vec![("Host".to_string(), "h".to_string())];
                headers.extend(
                    h.into_iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("host")),
                );
                (m, t, headers, v11, eol)
            })
    }

    fn written(m: &str, t: &str, headers: &[(String, String)], v11: bool, eol: &str) -> String {
        let version = if v11 { "HTTP/1.1" } else { "HTTP/1.0" };
        let mut s = format!("{m} {t} {version}{eol}");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}{eol}"));
        }
        s.push_str(eol);
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_are_parsed_or_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Err(s) = parse(&bytes, L) {
                prop_assert!([400, 414, 505].contains(&s), "{}", s);
            }
            let mut h = HeadBuf::new(Limits { head: 256, request_line: 64 });
            let (taken, _) = h.take(&bytes);
            prop_assert!(taken <= bytes.len() && h.buf.as_slice().len() <= 256);
        }

        #[test]
        fn a_written_request_is_read_back((m, t, headers, v11, eol) in request()) {
            let text = written(&m, &t, &headers, v11, &eol);
            let r = parse(text.as_bytes(), L).expect("a well-formed head");
            prop_assert_eq!(r.method, m.as_str());
            prop_assert_eq!(&*r.target, t.as_str());
            let got: Vec<(String, String)> =
                r.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prop_assert_eq!(got, headers);
        }

        #[test]
        fn a_head_in_pieces_is_the_head_in_one((m, t, headers, v11, eol) in request(),
                                              body in "[ -~]{0,40}",
                                              cuts in prop::collection::vec(0usize..400, 0..8)) {
            let head = written(&m, &t, &headers, v11, &eol);
            let stream = format!("{head}{body}");
            let mut whole = HeadBuf::new(L);
            prop_assert_eq!(whole.take(stream.as_bytes()), (head.len(), Progress::Complete));
            let mut pieces = HeadBuf::new(L);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            cuts.push(stream.len());
            let (mut at, mut taken, mut last) = (0, 0, Progress::More);
            for c in cuts {
                let (n, p) = pieces.take(&stream.as_bytes()[at..c]);
                taken += n;
                last = p;
                at = c;
            }
            prop_assert_eq!((taken, last), (head.len(), Progress::Complete));
            prop_assert_eq!(pieces.buf.as_slice(), head.as_bytes());
        }

        #[test]
        fn a_head_over_the_limits_is_refused_by_its_size(extra in 0usize..120, line in any::<bool>()) {
            let small = Limits { head: 128, request_line: 48 };
            let text = if line {
                format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(30 + extra))
            } else {
                format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(96 + extra))
            };
            let mut h = HeadBuf::new(small);
            let refused = match h.take(text.as_bytes()).1 {
                Progress::TooLarge(s) => Some(s),
                Progress::Complete => h.parse().err(),
                Progress::More => unreachable!("the whole head was given"),
            };
            // Over a limit is refused by the limit it passed, by the buffer or the parser.
            let over = if line { 14 + 30 + extra > 48 } else { text.len() > 128 };
            let want = over.then_some(if line { 414 } else { 431 });
            prop_assert_eq!(refused, want, "{}", text.len());
            prop_assert!(h.buf.as_slice().len() <= small.head);
        }
    }
}
