//! Canary routes (ingress-nginx's `canary: "true"` Ingresses): a canary
//! Ingress adds, to the route of another Ingress with the same host, path
//! and path type, a second backend that chosen requests go to instead.
//!
//! Which requests, in ingress-nginx's order ([`CanaryRule::picks_canary`]):
//! 1. `canary-by-header`: when the request has the header: with
//!    `canary-by-header-value`, that exact value picks the canary; with
//!    `canary-by-header-pattern`, a match of the regex (unanchored) does;
//!    with neither, `always` picks the canary and `never` the main backend.
//!    Anything else goes on to the next step.
//! 2. `canary-by-cookie`: the cookie's value `always` picks the canary,
//!    `never` the main backend; anything else goes on.
//! 3. `canary-weight` out of `canary-weight-total` (100 by default) of the
//!    remaining requests, at random.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use crate::backend::Backend;
use crate::object::ObjectName;

/// The most a compiled header pattern may take, as for path regexes.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// The longest header pattern accepted, in bytes.
pub const PATTERN_MAX_LEN: usize = 1024;
/// `canary-weight-total` when not given.
pub const DEFAULT_WEIGHT_TOTAL: u32 = 100;

/// The canary of one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// The canary Ingress.
    pub ingress: ObjectName,
    pub backend: Arc<Backend>,
    pub rule: CanaryRule,
}

/// Which requests go to the canary (the canary Ingress's annotations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryRule {
    pub by_header: Option<CanaryHeader>,
    /// `canary-by-cookie`: the cookie's name.
    pub by_cookie: Option<String>,
    /// `canary-weight`: at most `weight_total`.
    pub weight: u32,
    /// `canary-weight-total`: at least 1.
    pub weight_total: u32,
}

/// `canary-by-header` and how its value is matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryHeader {
    /// The header's name, lower case.
    pub name: String,
    pub matcher: HeaderMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderMatch {
    /// `always` / `never` (no `-value` or `-pattern`).
    AlwaysNever,
    /// `canary-by-header-value`: this exact value.
    Value(String),
    /// `canary-by-header-pattern`.
    Pattern(HeaderPattern),
}

/// A `canary-by-header-pattern` regex: unanchored, as `ngx.re.match`.
#[derive(Clone, Debug)]
pub struct HeaderPattern(Regex);

impl HeaderPattern {
    /// Compiles `pattern` under a size limit, or says why it cannot.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.len() > PATTERN_MAX_LEN {
            return Err(format!("the pattern is {} bytes long (at most {PATTERN_MAX_LEN})", pattern.len()));
        }
        RegexBuilder::new(pattern)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map(Self)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => "the pattern is too complex".to_string(),
                e => format!("not a valid regex: {}", e.to_string().lines().last().unwrap_or_default().trim()),
            })
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.0.is_match(value)
    }
}

impl PartialEq for HeaderPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for HeaderPattern {}

/// What one step of the rule says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Canary,
    Main,
    Next,
}

impl CanaryRule {
    /// Whether a request goes to the canary. `header`: the first value of
    /// the `canary-by-header` header (`None` when absent or not text);
    /// `cookie`: the value of the `canary-by-cookie` cookie; `roll`: a
    /// random number in `1..=n` for the `n` it is given.
    pub fn picks_canary(&self, header: Option<&str>, cookie: Option<&str>, roll: impl FnOnce(u32) -> u32) -> bool {
        let by_header = match (&self.by_header, header) {
            (Some(by_header), Some(value)) => by_header.matcher.verdict(value),
            _ => Verdict::Next,
        };
        let verdict = match by_header {
            Verdict::Next => match cookie.filter(|_| self.by_cookie.is_some()) {
                Some("always") => Verdict::Canary,
                Some("never") => Verdict::Main,
                _ => Verdict::Next,
            },
            decided => decided,
        };
        match verdict {
            Verdict::Canary => true,
            Verdict::Main => false,
            Verdict::Next => self.weight > 0 && roll(self.weight_total) <= self.weight,
        }
    }
}

impl HeaderMatch {
    fn verdict(&self, value: &str) -> Verdict {
        match self {
            HeaderMatch::Value(wanted) if wanted == value => Verdict::Canary,
            HeaderMatch::Pattern(pattern) if pattern.is_match(value) => Verdict::Canary,
            HeaderMatch::AlwaysNever if value == "always" => Verdict::Canary,
            HeaderMatch::AlwaysNever if value == "never" => Verdict::Main,
            _ => Verdict::Next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(by_header: Option<HeaderMatch>, by_cookie: bool, weight: u32) -> CanaryRule {
        CanaryRule {
            by_header: by_header.map(|matcher| CanaryHeader { name: "x-canary".into(), matcher }),
            by_cookie: by_cookie.then(|| "canary".to_string()),
            weight,
            weight_total: DEFAULT_WEIGHT_TOTAL,
        }
    }

    /// A roll that must not happen.
    fn no_roll(_: u32) -> u32 {
        panic!("the weight was consulted")
    }

    #[test]
    fn header_always_and_never_decide_before_cookie_and_weight() {
        let r = rule(Some(HeaderMatch::AlwaysNever), true, 100);
        assert!(r.picks_canary(Some("always"), Some("never"), no_roll));
        assert!(!r.picks_canary(Some("never"), Some("always"), no_roll));
        // Another value goes on to the cookie, then the weight.
        assert!(!r.picks_canary(Some("maybe"), Some("never"), no_roll));
        assert!(r.picks_canary(Some("maybe"), None, |_| 100));
    }

    #[test]
    fn header_value_and_pattern_only_pick_the_canary() {
        let by_value = rule(Some(HeaderMatch::Value("v2".into())), true, 0);
        assert!(by_value.picks_canary(Some("v2"), None, no_roll));
        // Not the value: `never` has no special meaning, the cookie decides.
        assert!(by_value.picks_canary(Some("never"), Some("always"), no_roll));
        assert!(!by_value.picks_canary(Some("always"), None, |_| 1));
        let pattern = HeaderMatch::Pattern(HeaderPattern::new("^(beta|v[0-9]+)$").unwrap());
        let by_pattern = rule(Some(pattern), false, 0);
        assert!(by_pattern.picks_canary(Some("v12"), None, no_roll));
        assert!(!by_pattern.picks_canary(Some("gamma"), None, |_| 1));
        let unanchored = rule(Some(HeaderMatch::Pattern(HeaderPattern::new("eta").unwrap())), false, 0);
        assert!(unanchored.picks_canary(Some("beta-users"), None, no_roll));
    }

    #[test]
    fn cookie_counts_only_when_configured() {
        let r = rule(None, true, 0);
        assert!(r.picks_canary(None, Some("always"), no_roll));
        assert!(!r.picks_canary(None, Some("never"), no_roll));
        let without = rule(None, false, 0);
        assert!(!without.picks_canary(None, Some("always"), |_| 1));
    }

    #[test]
    fn weight_compares_a_roll_out_of_the_total() {
        let mut r = rule(None, false, 30);
        r.weight_total = 1000;
        assert!(r.picks_canary(None, None, |n| {
            assert_eq!(n, 1000);
            30
        }));
        assert!(!r.picks_canary(None, None, |_| 31));
        assert!(!rule(None, false, 0).picks_canary(None, None, no_roll));
        assert!(rule(None, false, 100).picks_canary(None, None, |_| 100));
    }

    #[test]
    fn oversized_or_bad_patterns_are_refused() {
        assert!(HeaderPattern::new("(").unwrap_err().starts_with("not a valid regex"));
        assert_eq!(HeaderPattern::new("(a{1000}){1000}").unwrap_err(), "the pattern is too complex");
        assert!(HeaderPattern::new(&"a".repeat(2000)).unwrap_err().contains("at most 1024"));
    }
}
