//! Where the bytes go: stdout, a file replaced atomically or appended to, an OTLP collector
//! (HTTP or gRPC), or `serve`'s page for scrapers. A delivery is only what was really written,
//! accepted or published.

pub mod otlp;
pub mod responder;
pub mod scrape;
pub mod sink;
