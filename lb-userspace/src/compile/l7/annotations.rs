//! ingress-nginx's annotations (`nginx.ingress.kubernetes.io/*`), parsed
//! into typed values. A value is never pasted into text that something
//! interprets later: it is parsed, checked and turned into a
//! [`RoutePolicy`] (or refused). The first bad value rejects the whole
//! Ingress, with a diagnostic naming the annotation and the reason; the
//! other Ingresses are not affected. Annotations we do not implement are
//! ignored (logged at debug level).
//!
//! Supported here: `use-regex`, `rewrite-target` (implies `use-regex`),
//! `app-root`, `ssl-redirect`, `force-ssl-redirect`, `http-redirect-code`
//! (a ConfigMap option in ingress-nginx, an annotation here),
//! `permanent-redirect` (+ `-code`), `temporal-redirect` (+ `-code`),
//! `affinity: cookie` with `affinity-mode` and `session-cookie-name`,
//! `-path`, `-max-age`, `-expires`, `-samesite`, `-secure`,
//! `-change-on-failure`. In the submodules: [`upstream`] (backend protocol,
//! upstream vhost, body size, timeouts, next upstream), [`client`] (source
//! ranges, rate and connection limits, CORS), [`canary`].

mod canary;
mod client;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use lb_routes::policy::DEFAULT_AFFINITY_COOKIE;
use lb_routes::{CanaryRule, CookieAffinity, HttpsRedirect, PathType, Redirect, RewriteTarget, RoutePolicy, SameSite};

use super::{IngressRef, PathRegexes};
use crate::diagnostics::Diagnostic;

/// The prefix of ingress-nginx's annotations.
pub(super) const PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// The longest annotation value considered, in bytes.
pub(super) const MAX_VALUE_LEN: usize = 4096;

/// What the annotations of one Ingress ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Annotations {
    /// Its paths are regexes, and so are all paths of its hosts.
    pub use_regex: bool,
    /// `/` of its hosts is redirected (302) here.
    pub app_root: Option<String>,
    pub policy: Arc<RoutePolicy>,
    /// A canary Ingress (`canary: "true"`): which requests its backends
    /// take from the routes of other Ingresses.
    pub canary: Option<CanaryRule>,
}

/// Parses the Ingress's annotations; the first bad one rejects it.
pub(super) fn parse(
    ing: &IngressRef<'_>,
    ingress: &Ingress,
    regexes: &mut PathRegexes,
) -> Result<Annotations, Box<Diagnostic>> {
    parse_values(ing, ingress, regexes).map_err(|Rejection { field, reason }| {
        Box::new(ing.diagnostic(field, format!("{reason}; the Ingress is not served")))
    })
}

/// Why an Ingress is rejected: the field and the reason.
struct Rejection {
    field: String,
    reason: String,
}

fn reject(name: &str, reason: String) -> Rejection {
    Rejection { field: format!("metadata.annotations[{PREFIX}{name}]"), reason }
}

fn parse_values(ing: &IngressRef<'_>, ingress: &Ingress, regexes: &mut PathRegexes) -> Result<Annotations, Rejection> {
    let empty = BTreeMap::new();
    let all = ingress.metadata.annotations.as_ref().unwrap_or(&empty);
    let values = Values(all.iter().filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?, v.as_str()))).collect());
    for (&name, &value) in &values.0 {
        if !is_supported(name) {
            let annotation = format!("{PREFIX}{name}");
            tracing::debug!(ingress = %ing.object_name(), %annotation, "annotation not supported; ignored");
        } else if value.len() > MAX_VALUE_LEN {
            return Err(reject(name, format!("the value is {} bytes long (at most {MAX_VALUE_LEN})", value.len())));
        }
    }
    let rewrite = values.parsed("rewrite-target", RewriteTarget::parse)?;
    let use_regex = values.boolean("use-regex")?.unwrap_or(false) || rewrite.is_some();
    let app_root = values.parsed("app-root", parse_app_root)?;
    let https_redirect = match (values.boolean("force-ssl-redirect")?, values.boolean("ssl-redirect")?) {
        (Some(true), _) => HttpsRedirect::Always,
        (_, Some(false)) => HttpsRedirect::Never,
        _ => HttpsRedirect::WithTls,
    };
    let https_redirect_code = values.code("http-redirect-code", &[301, 302, 307, 308])?.unwrap_or(308);
    let permanent_code = values.code("permanent-redirect-code", &REDIRECT_CODES)?.unwrap_or(301);
    let temporal_code = values.code("temporal-redirect-code", &REDIRECT_CODES)?.unwrap_or(302);
    let permanent = values.parsed("permanent-redirect", parse_url)?;
    let temporal = values.parsed("temporal-redirect", parse_url)?;
    let redirect = match (permanent, temporal) {
        (Some(location), _) => Some(Redirect { location, code: permanent_code }),
        (None, Some(location)) => Some(Redirect { location, code: temporal_code }),
        (None, None) => None,
    };
    let affinity = match values.get("affinity") {
        None => None,
        Some("cookie") => Some(cookie_affinity(&values)?),
        Some(other) => return Err(reject("affinity", format!("{:?}: only \"cookie\" is supported", shorten(other)))),
    };
    if use_regex {
        check_regex_paths(ingress, regexes).map_err(|(field, reason)| Rejection { field, reason })?;
    }
    let upstream = upstream::parse(&values)?;
    let client = client::parse(&values)?;
    let policy = RoutePolicy { rewrite, redirect, https_redirect, https_redirect_code, affinity, upstream, client };
    let canary = canary::parse(&values)?;
    Ok(Annotations { use_regex, app_root, policy: Arc::new(policy), canary })
}

/// The values of ingress-nginx's annotations, by name without the prefix.
struct Values<'a>(BTreeMap<&'a str, &'a str>);

impl<'a> Values<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).copied()
    }

    fn parsed<T>(&self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, Rejection> {
        self.get(name).map(|v| parse(v).map_err(|e| reject(name, e))).transpose()
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, Rejection> {
        self.parsed(name, parse_bool)
    }

    fn code(&self, name: &str, allowed: &[u16]) -> Result<Option<u16>, Rejection> {
        self.parsed(name, |v| parse_code(v, allowed))
    }

    fn seconds(&self, name: &str) -> Result<Option<u64>, Rejection> {
        self.parsed(name, |v| {
            v.trim().parse::<u64>().map_err(|_| format!("{:?} is not a number of seconds", shorten(v)))
        })
    }
}

/// The `session-cookie-*` annotations of `affinity: cookie`.
fn cookie_affinity(values: &Values<'_>) -> Result<CookieAffinity, Rejection> {
    values.parsed("affinity-mode", |mode| match mode {
        "balanced" | "persistent" => Ok(()),
        other => Err(format!("{:?}: \"balanced\" or \"persistent\"", shorten(other))),
    })?;
    let name = values.parsed("session-cookie-name", |name| {
        if is_cookie_token(name) {
            Ok(name.to_string())
        } else {
            Err(format!("{:?} is not a cookie name", shorten(name)))
        }
    })?;
    let path = values.parsed("session-cookie-path", |path| {
        if path.starts_with('/') && path.chars().all(|c| c.is_ascii_graphic() && c != ';') {
            Ok(path.to_string())
        } else {
            Err(format!("{:?} is not a cookie path", shorten(path)))
        }
    })?;
    let same_site = values.parsed("session-cookie-samesite", |v| match v {
        "None" => Ok(SameSite::None),
        "Lax" => Ok(SameSite::Lax),
        "Strict" => Ok(SameSite::Strict),
        other => Err(format!("{:?}: None, Lax or Strict", shorten(other))),
    })?;
    Ok(CookieAffinity {
        name: name.unwrap_or_else(|| DEFAULT_AFFINITY_COOKIE.to_string()),
        path: path.unwrap_or_else(|| "/".to_string()),
        max_age: values.seconds("session-cookie-max-age")?,
        expires: values.seconds("session-cookie-expires")?,
        same_site,
        secure: values.boolean("session-cookie-secure")?.unwrap_or(false),
        change_on_failure: values.boolean("session-cookie-change-on-failure")?.unwrap_or(false),
    })
}

/// RFC 6265 cookie names are RFC 2616 tokens.
fn is_cookie_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

fn is_supported(name: &str) -> bool {
    [SUPPORTED, upstream::NAMES, client::NAMES, canary::NAMES].iter().any(|names| names.contains(&name))
}

const SUPPORTED: &[&str] = &[
    "use-regex",
    "rewrite-target",
    "app-root",
    "ssl-redirect",
    "force-ssl-redirect",
    "http-redirect-code",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
];

const REDIRECT_CODES: [u16; 8] = [300, 301, 302, 303, 304, 305, 307, 308];

/// Go's `strconv.ParseBool`, which ingress-nginx uses.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{:?} is not a boolean (\"true\" or \"false\")", shorten(value))),
    }
}

fn parse_code(value: &str, allowed: &[u16]) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(code) if allowed.contains(&code) => Ok(code),
        _ => Err(format!("{:?} is not one of the status codes {allowed:?}", shorten(value))),
    }
}

/// A path: starts with `/` (not `//`), printable ASCII without spaces, no
/// `.` or `..` segments.
fn parse_app_root(value: &str) -> Result<String, String> {
    if !value.starts_with('/') || value.starts_with("//") {
        return Err(format!("{:?} is not a path starting with a single /", shorten(value)));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("contains {c:?}: only printable ASCII without spaces is allowed"));
    }
    if value.split(['/', '?']).any(|segment| segment == "." || segment == "..") {
        return Err("contains a . or .. segment".into());
    }
    Ok(value.to_string())
}

/// An absolute `http` or `https` URL with a host, printable ASCII without
/// spaces.
fn parse_url(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("contains {c:?}: only printable ASCII without spaces is allowed"));
    }
    let uri: hyper::Uri = value.parse().map_err(|_| format!("{:?} is not a URL", shorten(value)))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(value.to_string()),
        _ => Err(format!("{:?} is not an absolute http or https URL", shorten(value))),
    }
}

/// Every non-`Exact` path of a regex Ingress compiles as a path regex.
fn check_regex_paths(ingress: &Ingress, regexes: &mut PathRegexes) -> Result<(), (String, String)> {
    let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let paths = rule.http.as_ref().map(|h| h.paths.as_slice()).unwrap_or_default();
        for (j, path) in paths.iter().enumerate() {
            if PathType::parse(&path.path_type) == Some(PathType::Exact) {
                continue;
            }
            let written = path.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            regexes.get(written).map_err(|e| (format!("spec.rules[{i}].http.paths[{j}].path"), e))?;
        }
    }
    Ok(())
}

/// At most 64 characters of a value, for messages.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}
