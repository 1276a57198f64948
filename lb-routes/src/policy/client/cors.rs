//! CORS (`enable-cors`, `cors-allow-origin`, `-methods`, `-headers`,
//! `-credentials`, `cors-expose-headers`, `cors-max-age`) as ingress-nginx
//! answers it: typed origins, methods and header names; the response
//! header values are built once, here, from validated tokens.

use http::HeaderValue;

/// ingress-nginx's default `cors-allow-methods`.
pub const DEFAULT_CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];
/// ingress-nginx's default `cors-allow-headers`.
pub const DEFAULT_CORS_HEADERS: &[&str] = &[
    "DNT",
    "Keep-Alive",
    "User-Agent",
    "X-Requested-With",
    "If-Modified-Since",
    "Cache-Control",
    "Content-Type",
    "Range",
    "Authorization",
];
/// ingress-nginx's default `cors-max-age` (20 days), seconds.
pub const DEFAULT_CORS_MAX_AGE: u64 = 1_728_000;

/// The longest method or header name accepted.
const MAX_TOKEN_LEN: usize = 128;
/// The longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;

/// A method or header name of a CORS header: what ingress-nginx lets
/// through (letters for methods; letters, digits, `-` and `_` for header
/// names; `*` for exposed headers), a subset of HTTP tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsToken(String);

impl CorsToken {
    /// A method: ASCII letters (`GET`, `PROPFIND`).
    pub fn method(s: &str) -> Result<Self, String> {
        Self::checked(s, "a method (ASCII letters)", |b| b.is_ascii_alphabetic())
    }

    /// A header name: ASCII letters, digits, `-` and `_`.
    pub fn header(s: &str) -> Result<Self, String> {
        Self::checked(s, "a header name (ASCII letters, digits, - and _)", is_header_byte)
    }

    /// An exposed header: a header name or `*`.
    pub fn exposed(s: &str) -> Result<Self, String> {
        if s == "*" { Ok(Self(s.to_string())) } else { Self::header(s) }
    }

    fn checked(s: &str, what: &str, allowed: impl Fn(u8) -> bool) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_TOKEN_LEN || !s.bytes().all(allowed) {
            return Err(format!("not {what} of at most {MAX_TOKEN_LEN} characters"));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_header_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Which `Origin`s get CORS headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*` (the default): every request, with `Access-Control-Allow-Origin: *`.
    Any,
    /// Requests whose `Origin` matches one of these; the `Origin` is echoed.
    List(Vec<OriginPattern>),
}

impl AllowedOrigins {
    /// Whether a request with this `Origin` gets CORS headers.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(patterns) => origin.is_some_and(|o| patterns.iter().any(|p| p.matches(o))),
        }
    }
}

/// One allowed origin: `scheme://host[:port]`, where the host may start
/// with `*.` (exactly one more label, as ingress-nginx's `[A-Za-z0-9-]+`).
/// Scheme and host compare case-insensitively; the port as written (an
/// origin without a port does not match one with `:443`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    https: bool,
    wildcard: bool,
    /// Lower case, without the `*.`.
    host: String,
    port: Option<u16>,
}

impl OriginPattern {
    /// Parses `http[s]://[*.]host[:port]` (no path, no user, no trailing
    /// `/`); the host is DNS labels of letters, digits and `-`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (https, wildcard, host, port) = split_origin(s)
            .ok_or("not an origin: http:// or https://, a host name, an optional :port, nothing else")?;
        Ok(Self { https, wildcard, host: host.to_ascii_lowercase(), port })
    }

    /// Whether a request's `Origin` header is this origin.
    pub fn matches(&self, origin: &str) -> bool {
        let Some((https, false, host, port)) = split_origin(origin) else { return false };
        if https != self.https || port != self.port {
            return false;
        }
        if !self.wildcard {
            return host.eq_ignore_ascii_case(&self.host);
        }
        match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(&self.host),
            None => false,
        }
    }
}

/// `(https, wildcard, host, port)` of `http[s]://[*.]host[:port]`.
fn split_origin(s: &str) -> Option<(bool, bool, &str, Option<u16>)> {
    let (scheme, rest) = s.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let (wildcard, rest) = match rest.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port.parse::<u16>().ok()?))
        }
        Some(_) => return None,
        None => (rest, None),
    };
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    (labels_ok && !host.is_empty() && host.len() <= MAX_HOST_LEN).then_some((https, wildcard, host, port))
}

/// What the annotations say, before the header values are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsSpec {
    pub origins: AllowedOrigins,
    pub methods: Vec<CorsToken>,
    pub headers: Vec<CorsToken>,
    /// Empty: no `Access-Control-Expose-Headers`.
    pub expose: Vec<CorsToken>,
    /// `Access-Control-Allow-Credentials: true` when set.
    pub credentials: bool,
    /// Seconds.
    pub max_age: u64,
}

impl Default for CorsSpec {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        let tokens = |list: &[&str]| list.iter().map(|s| CorsToken((*s).to_string())).collect();
        Self {
            origins: AllowedOrigins::Any,
            methods: tokens(DEFAULT_CORS_METHODS),
            headers: tokens(DEFAULT_CORS_HEADERS),
            expose: Vec::new(),
            credentials: true,
            max_age: DEFAULT_CORS_MAX_AGE,
        }
    }
}

/// A route's CORS policy with its response header values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    spec: CorsSpec,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

impl Cors {
    /// Builds the header values: methods joined with `, ` and header names
    /// with `,` (as ingress-nginx's defaults are written).
    pub fn new(spec: CorsSpec) -> Self {
        let join = |tokens: &[CorsToken], separator: &str| {
            let text = tokens.iter().map(CorsToken::as_str).collect::<Vec<_>>().join(separator);
            // Tokens are visible ASCII, so this cannot fail.
            HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        Self {
            allow_methods: join(&spec.methods, ", "),
            allow_headers: join(&spec.headers, ","),
            expose_headers: (!spec.expose.is_empty()).then(|| join(&spec.expose, ",")),
            max_age: HeaderValue::from(spec.max_age),
            spec,
        }
    }

    pub fn spec(&self) -> &CorsSpec {
        &self.spec
    }

    pub fn origins(&self) -> &AllowedOrigins {
        &self.spec.origins
    }

    pub fn credentials(&self) -> bool {
        self.spec.credentials
    }

    /// `Access-Control-Allow-Methods`.
    pub fn allow_methods(&self) -> &HeaderValue {
        &self.allow_methods
    }

    /// `Access-Control-Allow-Headers`.
    pub fn allow_headers(&self) -> &HeaderValue {
        &self.allow_headers
    }

    /// `Access-Control-Expose-Headers`, when set.
    pub fn expose_headers(&self) -> Option<&HeaderValue> {
        self.expose_headers.as_ref()
    }

    /// `Access-Control-Max-Age`.
    pub fn max_age(&self) -> &HeaderValue {
        &self.max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_what_ingress_nginx_accepts() {
        assert!(CorsToken::method("PROPFIND").is_ok());
        assert!(CorsToken::header("X-Custom_1").is_ok());
        assert!(CorsToken::exposed("*").is_ok());
        for bad in ["", "GET;", "G ET", "GET\n", "\"GET\"", "{GET}", "GET'", "X-1"] {
            assert!(CorsToken::method(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "*", "X;Y", "X Y", "X\r\n", "a\"b", "a{b}", "a:b", "é"] {
            assert!(CorsToken::header(bad).is_err(), "{bad:?}");
        }
        assert!(CorsToken::header(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn origins_parse_strictly() {
        for good in ["https://a.com", "http://a.b-c.com:8080", "HTTPS://A.COM", "https://*.a.com", "http://localhost"] {
            assert!(OriginPattern::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "a.com",
            "ftp://a.com",
            "https://",
            "https://a.com/",
            "https://a.com/x",
            "https://a.com:",
            "https://a.com:99999",
            "https://a..com",
            "https://-a.com",
            "https://u@a.com",
            "https://a.com;x",
            "https://a.com\n",
            "https://*",
            "https://a.*.com",
            "https://[::1]",
            "*",
            "null",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let exact = OriginPattern::parse("https://App.Example.com").unwrap();
        assert!(exact.matches("https://app.example.com"));
        assert!(exact.matches("HTTPS://APP.EXAMPLE.COM"));
        assert!(!exact.matches("http://app.example.com"));
        assert!(!exact.matches("https://app.example.com:443"));
        assert!(!exact.matches("https://app.example.com.evil.com"));
        assert!(!exact.matches("https://evilapp.example.com"));
        assert!(!exact.matches("null"));
        let port = OriginPattern::parse("http://a.com:8080").unwrap();
        assert!(port.matches("http://a.com:8080") && !port.matches("http://a.com"));
        let wild = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(wild.matches("https://a.example.com"));
        assert!(wild.matches("https://A-1.Example.com"));
        assert!(!wild.matches("https://example.com"));
        assert!(!wild.matches("https://a.b.example.com"), "one label, as ingress-nginx");
        assert!(!wild.matches("https://a.example.com.evil.com"));
        assert!(!wild.matches("https://*.example.com"));
        let list = AllowedOrigins::List(vec![exact, wild]);
        assert!(list.allows(Some("https://x.example.com")));
        assert!(!list.allows(Some("https://x.other.com")));
        assert!(!list.allows(None));
        assert!(AllowedOrigins::Any.allows(None));
    }

    #[test]
    fn header_values_are_built_once() {
        let cors = Cors::new(CorsSpec::default());
        assert_eq!(cors.allow_methods(), "GET, PUT, POST, DELETE, PATCH, OPTIONS");
        assert_eq!(
            cors.allow_headers(),
            "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
        );
        assert_eq!(cors.max_age(), "1728000");
        assert!(cors.expose_headers().is_none() && cors.credentials());
        let spec = CorsSpec {
            methods: vec![CorsToken::method("GET").unwrap()],
            expose: vec![CorsToken::exposed("X-A").unwrap(), CorsToken::exposed("X-B").unwrap()],
            max_age: 60,
            ..CorsSpec::default()
        };
        let cors = Cors::new(spec);
        assert_eq!(cors.allow_methods(), "GET");
        assert_eq!(cors.expose_headers().unwrap(), "X-A,X-B");
        assert_eq!(cors.max_age(), "60");
    }
}
