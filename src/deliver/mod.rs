//! Where the bytes go: stdout, a file replaced atomically or appended to, or an OTLP collector
//! (HTTP or gRPC). A delivery is only what was really written or accepted.

pub mod otlp;
pub mod sink;
