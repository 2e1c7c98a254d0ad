//! An HTTP(S) endpoint URL, split the way signing needs it (scheme, host, port, base path) and
//! checked the way the spec needs it (no user information, no query, no fragment).

/// Why a URL is not a usable endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` is not a usable endpoint URL: {why}")]
pub struct EndpointError {
    /// The URL as given, with any user information replaced by `***` ([`redact_url`]).
    pub url: String,
    pub why: String,
}

/// The user information of an endpoint URL (`user:pass` in `http://user:pass@host:4318/`):
/// everything between the scheme (or the start) and the last `@` before any `?` or `#`.
/// Conservative on purpose: a password with a raw `/` is still covered.
pub fn userinfo(url: &str) -> Option<&str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    rest[..end].rfind('@').map(|at| &rest[..at])
}

/// `url` with its user information replaced by `***`: `http://***@collector:4318/v1/metrics`.
/// Every URL a message shows goes through it (a URL with a password is refused, and the
/// refusal must not show the password).
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some(info) => url.replacen(&format!("{info}@"), "***@", 1),
        None => url.to_string(),
    }
}

/// An endpoint URL split the way signing needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// Path prefix without a trailing slash (usually empty).
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let bad = |why: &str| EndpointError {
            url: redact_url(url),
            why: why.to_string(),
        };
        let uri: ureq::http::Uri = url.trim().parse().map_err(|e| bad(&format!("{e}")))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| bad("it needs a scheme (https://)"))?;
        if scheme != "https" && scheme != "http" {
            return Err(bad("the scheme must be https or http"));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("it has no host"))?;
        if uri.query().is_some() {
            return Err(bad("it must not carry a query"));
        }
        // The parser drops a fragment: the calls would go to another path than was written.
        if url.contains('#') {
            return Err(bad("it must not carry a fragment (#)"));
        }
        if let Some(auth) = uri.authority() {
            if auth.as_str().contains('@') {
                return Err(bad("it must not carry user information"));
            }
        }
        Ok(Endpoint {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port: uri.port_u16(),
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The `Host` header: `:port` only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        match (self.scheme.as_str(), self.port) {
            (_, None) | ("https", Some(443)) | ("http", Some(80)) => self.host.clone(),
            (_, Some(p)) => format!("{}:{p}", self.host),
        }
    }

    pub fn url(&self, path: &str, query: &str) -> String {
        let mut u = format!(
            "{}://{}{}{}",
            self.scheme,
            self.host_header(),
            self.base_path,
            path
        );
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme,
            self.host_header(),
            self.base_path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_port() {
        let e = Endpoint::parse("https://modelarts.cn-southwest-2.myhuaweicloud.com").unwrap();
        assert_eq!(
            e.host_header(),
            "modelarts.cn-southwest-2.myhuaweicloud.com"
        );
        assert_eq!(
            e.url("/v1/x", ""),
            "https://modelarts.cn-southwest-2.myhuaweicloud.com/v1/x"
        );
        let e = Endpoint::parse("http://127.0.0.1:8080/prefix/").unwrap();
        assert_eq!(e.host_header(), "127.0.0.1:8080");
        assert_eq!(
            e.url("/v3/projects", "name=a"),
            "http://127.0.0.1:8080/prefix/v3/projects?name=a"
        );
        assert_eq!(Endpoint::parse("https://h:443").unwrap().host_header(), "h");
        for bad in [
            "ftp://h",
            "h",
            "https://",
            "https://u:p@h",
            "https://h?x=1",
            "https://h/prefix#frag",
            "https://h#",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let e = Endpoint::parse("http://bob:pw2secret@127.0.0.1:1")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("pw2secret") && e.contains("`http://***@127.0.0.1:1`"),
            "{e}"
        );
    }
}
