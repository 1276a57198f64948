//! What a route does besides forwarding, as typed values: regex paths and
//! rewrites, redirects. The Ingress compiler builds them from annotations
//! (ingress-nginx's); the proxy applies them. Nothing here is ever turned
//! back into text that something else interprets.

mod client;
mod upstream;

use std::fmt;
use std::sync::Arc;

use regex::{Captures, Regex, RegexBuilder};

pub use client::{
    AllowedOrigins, ClientPolicy, Cors, CorsSpec, CorsToken, DEFAULT_BURST_MULTIPLIER, DEFAULT_CORS_HEADERS,
    DEFAULT_CORS_MAX_AGE, DEFAULT_CORS_METHODS, IpNet, IpRanges, Limits, OriginPattern, RateLimit, RatePeriod,
    SourceRanges,
};
pub use upstream::{BackendProtocol, BodySize, DEFAULT_NEXT_UPSTREAM_TRIES, NextUpstream, UpstreamPolicy};

/// The most a compiled path regex may take (the `regex` crate's size
/// limit): a pathological pattern is refused instead of eating memory.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The longest path regex accepted, in bytes.
pub const REGEX_MAX_LEN: usize = 1024;

/// A path matched as ingress-nginx matches paths of a host that uses
/// regexes: case-insensitively, anchored at the start only (`~* "^path"`).
/// Cloning shares the compiled regex.
#[derive(Clone, Debug)]
pub struct PathRegex(Arc<Regex>);

impl PathRegex {
    /// Compiles `path` (as written in the Ingress), or says why it cannot.
    pub fn new(path: &str) -> Result<Self, String> {
        if path.len() > REGEX_MAX_LEN {
            return Err(format!("the path regex is {} bytes long (at most {REGEX_MAX_LEN})", path.len()));
        }
        RegexBuilder::new(&format!("^(?:{path})"))
            .case_insensitive(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|regex| Self(Arc::new(regex)))
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => "the path regex is too complex".to_string(),
                e => format!("not a valid regex: {}", e.to_string().lines().last().unwrap_or_default().trim()),
            })
    }

    pub fn captures<'p>(&self, path: &'p str) -> Option<Captures<'p>> {
        self.0.captures(path)
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.0.is_match(path)
    }

    /// Whether both are the same compiled regex (not only the same pattern).
    pub fn same_compiled(&self, other: &PathRegex) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PathRegex {}

/// `rewrite-target`: the path sent upstream, with `$1`…`$9` standing for
/// the path regex's groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewriteTarget {
    parts: Vec<RewritePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum RewritePart {
    Literal(String),
    Group(usize),
}

impl RewriteTarget {
    /// Parses a target: printable ASCII without spaces (what a path may
    /// hold), `$1`…`$9` as groups; `$` followed by anything else, and `$`
    /// followed by two digits, are refused rather than guessed at.
    pub fn parse(target: &str) -> Result<Self, String> {
        if !target.starts_with('/') {
            return Err("must start with /".into());
        }
        if let Some(c) = target.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!("contains {c:?}: only printable ASCII without spaces is allowed"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = target.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                literal.push(c);
                continue;
            }
            let group = match chars.next() {
                Some(d @ '1'..='9') if !chars.peek().is_some_and(char::is_ascii_digit) => d as usize - '0' as usize,
                _ => return Err("`$` must be followed by one digit 1-9 (a capture group)".into()),
            };
            if !literal.is_empty() {
                parts.push(RewritePart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(RewritePart::Group(group));
        }
        if !literal.is_empty() {
            parts.push(RewritePart::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The target with the groups of `captures` (a missing group is empty).
    pub fn expand(&self, captures: &Captures<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                RewritePart::Literal(s) => out.push_str(s),
                RewritePart::Group(i) => out.push_str(captures.get(*i).map_or("", |m| m.as_str())),
            }
        }
        out
    }
}

/// A fixed redirect (`permanent-redirect`, `temporal-redirect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// An absolute `http`/`https` URL, sent as it is.
    pub location: String,
    /// 3xx.
    pub code: u16,
}

/// When plain HTTP is redirected to HTTPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpsRedirect {
    /// When the host has a certificate (`spec.tls`): ingress-nginx's default.
    #[default]
    WithTls,
    /// Never (`ssl-redirect: "false"`).
    Never,
    /// Always (`force-ssl-redirect: "true"`).
    Always,
}

/// The code of the HTTPS redirect: 308 unless `http-redirect-code` says.
pub const DEFAULT_HTTPS_REDIRECT_CODE: u16 = 308;

/// `affinity: cookie`: a client that shows the cookie keeps reaching the
/// endpoint it names while that endpoint is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAffinity {
    /// `session-cookie-name`, `INGRESSCOOKIE` by default.
    pub name: String,
    /// `session-cookie-path`; `/` by default.
    pub path: String,
    /// `session-cookie-max-age`, seconds.
    pub max_age: Option<u64>,
    /// `session-cookie-expires`, seconds from now.
    pub expires: Option<u64>,
    pub same_site: Option<SameSite>,
    /// `session-cookie-secure`.
    pub secure: bool,
    /// `session-cookie-change-on-failure`: when the endpoint fails, the
    /// cookie is re-issued for the one that answered instead (otherwise
    /// the request still fails over, but the cookie keeps its endpoint).
    pub change_on_failure: bool,
}

/// The default name of the affinity cookie (ingress-nginx's).
pub const DEFAULT_AFFINITY_COOKIE: &str = "INGRESSCOOKIE";

/// `session-cookie-samesite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

/// What the routes of one Ingress do besides forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    pub rewrite: Option<RewriteTarget>,
    pub redirect: Option<Redirect>,
    pub https_redirect: HttpsRedirect,
    pub https_redirect_code: u16,
    pub affinity: Option<CookieAffinity>,
    pub upstream: UpstreamPolicy,
    pub client: ClientPolicy,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        Self {
            rewrite: None,
            redirect: None,
            https_redirect: HttpsRedirect::default(),
            https_redirect_code: DEFAULT_HTTPS_REDIRECT_CODE,
            affinity: None,
            upstream: UpstreamPolicy::default(),
            client: ClientPolicy::default(),
        }
    }
}

impl fmt::Display for RewriteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                RewritePart::Literal(s) => f.write_str(s)?,
                RewritePart::Group(i) => write!(f, "${i}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_paths_are_anchored_at_the_start_and_case_insensitive() {
        let re = PathRegex::new("/api/v1/tours/?(.*)").unwrap();
        assert!(re.is_match("/API/V1/tours/12"));
        assert!(re.is_match("/api/v1/tours"));
        assert!(!re.is_match("/x/api/v1/tours"));
        // An alternation stays inside the anchor.
        let alt = PathRegex::new("/a|/b").unwrap();
        assert!(alt.is_match("/b/c") && !alt.is_match("/c/b"));
    }

    #[test]
    fn bad_and_huge_regexes_are_refused() {
        assert!(PathRegex::new("/a(").unwrap_err().starts_with("not a valid regex"));
        assert_eq!(PathRegex::new("/(a{1000}){1000}").unwrap_err(), "the path regex is too complex");
        assert!(PathRegex::new(&"/a".repeat(600)).unwrap_err().contains("at most 1024"));
    }

    #[test]
    fn rewrite_targets_expand_groups() {
        let re = PathRegex::new("/chatforyouio(/|$)(.*)").unwrap();
        let target = RewriteTarget::parse("/$2").unwrap();
        assert_eq!(target.expand(&re.captures("/chatforyouio/user/create").unwrap()), "/user/create");
        assert_eq!(target.expand(&re.captures("/chatforyouio").unwrap()), "/");
        let missing = RewriteTarget::parse("/x/$3/y").unwrap();
        assert_eq!(missing.expand(&re.captures("/chatforyouio/a").unwrap()), "/x//y");
        assert_eq!(missing.to_string(), "/x/$3/y");
    }

    #[test]
    fn rewrite_targets_refuse_what_is_not_a_path() {
        for bad in ["no-slash", "/a\nb", "/a b", "/$", "/$0", "/$10", "/$x", "/é"] {
            assert!(RewriteTarget::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RewriteTarget::parse("/a;{b}\"'$1").is_ok(), "punctuation is literal");
    }
}
