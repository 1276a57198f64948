//! Paths: normalising the request path before matching, and Ingress path
//! types.

use std::borrow::Cow;
use std::fmt;

/// An Ingress path's `pathType`. `ImplementationSpecific` is matched as
/// `Prefix` (regex paths arrive with the annotations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

impl PathType {
    /// The Kubernetes name (`Exact`, `Prefix`, `ImplementationSpecific`).
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }

    /// Parses a Kubernetes `pathType` value (case-sensitive, as the API).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            _ => None,
        }
    }
}

impl fmt::Display for PathType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path holds an invalid percent-encoding")]
    BadEncoding,
    #[error("the path holds an encoded NUL, CR, LF or backslash")]
    Forbidden,
    #[error("the path holds a '.' or '..' segment next to an encoded slash (%2F)")]
    DotSegmentAtEncodedSlash,
}

/// The request path as routes see it (without the query):
/// - percent-encoded unreserved characters (`%41`, `%2E`, `%7E`...) are
///   decoded; other encodings (`%2F` among them) stay encoded, uppercased,
///   so an encoded slash never separates path elements;
/// - `.` and `..` segments are removed (RFC 3986 5.2.4; `..` never climbs
///   above `/`);
/// - repeated slashes are kept (they are significant to some backends).
///
/// Errors are answered with 400 by the proxy. Besides their encodings, raw
/// NUL, CR, LF and backslash are refused too: some backends read a
/// backslash as a slash, which would let a request escape the route it was
/// matched with. For the same reason a `.` or `..` between encoded slashes
/// (`/a/..%2F..%2Fetc`, `/a/%2F..`) is refused: a backend that decodes
/// `%2F` before resolving dot segments would climb out of the route, and
/// lb cannot resolve them itself without splitting elements on `%2F`.
/// `%2F` in any other element (`/a/b%2Fc`) is kept as it is.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.bytes().any(is_forbidden) {
        return Err(PathError::Forbidden);
    }
    let decoded = if path.contains('%') { decode_unreserved(path)? } else { Cow::Borrowed(path) };
    if decoded.contains(ENCODED_SLASH) && decoded.split('/').any(has_dot_segment_at_encoded_slash) {
        return Err(PathError::DotSegmentAtEncodedSlash);
    }
    if !decoded.split('/').any(is_dot_segment) {
        return Ok(decoded);
    }
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// The path sent upstream for a request whose path is `original` and
/// [normalises](normalize_path) to `normalized`: the client's own path,
/// byte for byte, unless it holds dot segments (`.`, `..`, also as `%2E`):
/// then the normalised one, so the backend sees the path that was routed
/// and cannot climb out of it.
pub fn upstream_path<'a>(original: &'a str, normalized: &'a str) -> &'a str {
    let decoded = if original.contains('%') { decode_unreserved(original).ok() } else { Some(Cow::Borrowed(original)) };
    match decoded {
        Some(decoded) if !decoded.split('/').any(is_dot_segment) => original,
        _ => normalized,
    }
}

/// NUL, CR, LF and backslash.
fn is_forbidden(byte: u8) -> bool {
    matches!(byte, b'\0' | b'\r' | b'\n' | b'\\')
}

/// RFC 3986 unreserved characters: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_dot_segment(segment: &str) -> bool {
    segment == "." || segment == ".."
}

/// Whether a path element (between two `/`, unreserved encodings already
/// decoded, so `%2E` is `.` and other encodings uppercase) holds a dot
/// segment once `%2F` is read as a slash too.
fn has_dot_segment_at_encoded_slash(element: &str) -> bool {
    element.contains(ENCODED_SLASH) && element.split(ENCODED_SLASH).any(is_dot_segment)
}

/// `/` percent-encoded, as [`decode_unreserved`] leaves it (uppercase).
const ENCODED_SLASH: &str = "%2F";

/// Decodes `%XX` of unreserved characters and uppercases the others;
/// borrowed when nothing changes.
fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        // `path` is valid UTF-8 and '%' is ASCII, so slicing up to the next
        // '%' always falls on character boundaries.
        let Some(offset) = path[i..].find('%') else {
            out.push_str(&path[i..]);
            break;
        };
        out.push_str(&path[i..i + offset]);
        i += offset;
        let (Some(high), Some(low)) = (bytes.get(i + 1).and_then(hex_value), bytes.get(i + 2).and_then(hex_value))
        else {
            return Err(PathError::BadEncoding);
        };
        let byte = (high << 4) | low;
        if is_forbidden(byte) {
            return Err(PathError::Forbidden);
        }
        if is_unreserved(byte) {
            out.push(char::from(byte));
            changed = true;
        } else {
            let upper = [b'%', bytes[i + 1].to_ascii_uppercase(), bytes[i + 2].to_ascii_uppercase()];
            changed |= upper[1..] != bytes[i + 1..i + 3];
            // The three bytes are ASCII.
            out.extend(upper.iter().map(|&b| char::from(b)));
        }
        i += 3;
    }
    Ok(if changed { Cow::Owned(out) } else { Cow::Borrowed(path) })
}

fn hex_value(digit: &u8) -> Option<u8> {
    char::from(*digit).to_digit(16).and_then(|v| u8::try_from(v).ok())
}

/// RFC 3986 5.2.4 on an absolute path, segment by segment: `.` is dropped,
/// `..` drops the segment before it (none at the root). A dot segment at
/// the end leaves a trailing slash, as the RFC's algorithm does.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let mut segments = path[1..].split('/').peekable();
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                output.pop();
                trailing_slash = last;
            }
            other => output.push(other),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &output {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing_slash || normalized.is_empty() {
        normalized.push('/');
    }
    normalized
}

/// The key a `Prefix` rule path is matched by: the normalised path without
/// one trailing slash (`/foo/` and `/foo` are the same rule), empty for `/`.
/// A request path matches when it equals the key or continues it with `/`.
pub(crate) fn prefix_key(normalized: &str) -> &str {
    normalized.strip_suffix('/').unwrap_or(normalized)
}

/// The prefix keys a request path could match, most path elements first:
/// the path itself, then the path cut before each `/`, down to `""`.
pub(crate) fn prefix_candidates(path: &str) -> impl Iterator<Item = &str> {
    std::iter::once(path).chain(path.rmatch_indices('/').map(move |(i, _)| &path[..i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(path: &str) -> String {
        normalize_path(path).unwrap().into_owned()
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        for path in ["/", "/foo", "/foo/", "/foo//bar", "/a%2Fb", "/%C3%A9", "/.well-known/x", "/a..b/...", "/é"] {
            assert!(matches!(normalize_path(path), Ok(Cow::Borrowed(p)) if p == path), "{path}");
        }
    }

    #[test]
    fn decodes_unreserved_and_uppercases_the_rest() {
        assert_eq!(normalized("/%41%62%30%2D%2e%5F%7e"), "/Ab0-._~");
        assert_eq!(normalized("/a%2fb"), "/a%2Fb");
        assert_eq!(normalized("/a%2Fb"), "/a%2Fb");
        assert_eq!(normalized("/%c3%a9"), "/%C3%A9");
        assert_eq!(normalized("/%20x%3f"), "/%20x%3F");
    }

    #[test]
    fn removes_dot_segments() {
        assert_eq!(normalized("/a/./b"), "/a/b");
        assert_eq!(normalized("/a/../b"), "/b");
        assert_eq!(normalized("/a/b/.."), "/a/");
        assert_eq!(normalized("/a/b/."), "/a/b/");
        assert_eq!(normalized("/.."), "/");
        assert_eq!(normalized("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalized("/a/../../b"), "/b");
        assert_eq!(normalized("/a//../b"), "/a/b");
        assert_eq!(normalized("/."), "/");
        assert_eq!(normalized("/a/.."), "/");
        // Encoded dots are decoded first, so they are dot segments too.
        assert_eq!(normalized("/a/%2e%2E/b"), "/b");
        assert_eq!(normalized("/a/.%2e"), "/");
    }

    #[test]
    fn keeps_repeated_slashes() {
        assert_eq!(normalized("//a///b/"), "//a///b/");
        assert_eq!(normalized("//./a"), "//a");
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        assert_eq!(normalized("/a%2Fb"), "/a%2Fb");
        assert_eq!(normalized("/a/b%2fc"), "/a/b%2Fc");
        assert_eq!(normalized("/a/b%2Fc/../d"), "/a/d");
    }

    /// Paths whose elements hold `.` or `..` once `%2F` is read as a slash
    /// (dots also as `%2E`) are refused; `%2F` elsewhere is accepted.
    #[test]
    fn dot_segments_at_encoded_slashes_are_refused() {
        let refused = [
            "/a/..%2f..%2fetc/passwd",
            "/a/..%2F..%2Fetc/passwd",
            "/a/%2F..",
            "/a/%2f.",
            "/a/..%2F",
            "/a/.%2F",
            "/a%2F..%2Fb",
            "/a/b%2F..%2Fc",
            "/a/%2F%2F..",
            "/a/%2e%2e%2fetc",
            "/a/.%2E%2Fetc",
            "/a/%2E%2F",
            "/%2F..",
            "/a/x%2F.%2Fy",
        ];
        for path in refused {
            assert_eq!(normalize_path(path), Err(PathError::DotSegmentAtEncodedSlash), "{path}");
        }
        // Backslashes are refused whatever surrounds them.
        for path in ["/a/..%5c..%5cetc", "/a/%5C..", "/a\\..\\b"] {
            assert_eq!(normalize_path(path), Err(PathError::Forbidden), "{path}");
        }
        let accepted = [
            ("/a/b%2Fc", "/a/b%2Fc"),
            ("/a/b%2fc", "/a/b%2Fc"),
            ("/a/%2F", "/a/%2F"),
            ("/a/b%2F", "/a/b%2F"),
            ("/a/...%2Fb", "/a/...%2Fb"),
            ("/a/..b%2Fc", "/a/..b%2Fc"),
            ("/a/.well-known%2Fx", "/a/.well-known%2Fx"),
            ("/a/%2Fb.", "/a/%2Fb."),
            ("/a/%2E%2E.%2Fb", "/a/...%2Fb"),
            ("/a/../b%2Fc", "/b%2Fc"),
            ("/a/%2e/b%2Fc", "/a/b%2Fc"),
        ];
        for (path, want) in accepted {
            assert_eq!(normalize_path(path).as_deref(), Ok(want), "{path}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(normalize_path(""), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("foo"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/a%"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a%2"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a%%41"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a%+1"), Err(PathError::BadEncoding));
        for forbidden in ["/a%00", "/a%0d", "/a%0A", "/a%5c..", "/a%5C", "/a\\b", "/a\0", "/a\nb", "/a\r"] {
            assert_eq!(normalize_path(forbidden), Err(PathError::Forbidden), "{forbidden:?}");
        }
    }

    #[test]
    fn path_types_round_trip() {
        for t in [PathType::Exact, PathType::Prefix, PathType::ImplementationSpecific] {
            assert_eq!(PathType::parse(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(PathType::parse("prefix"), None);
    }

    #[test]
    fn prefix_keys_and_candidates() {
        assert_eq!(prefix_key("/"), "");
        assert_eq!(prefix_key("/foo/"), "/foo");
        assert_eq!(prefix_key("/foo"), "/foo");
        let candidates: Vec<_> = prefix_candidates("/foo/bar/").collect();
        assert_eq!(candidates, ["/foo/bar/", "/foo/bar", "/foo", ""]);
        let candidates: Vec<_> = prefix_candidates("/").collect();
        assert_eq!(candidates, ["/", ""]);
    }

    #[test]
    fn the_upstream_path_is_the_clients_unless_it_climbs() {
        for (original, want) in [
            ("/x%41y", "/x%41y"),
            ("/%7euser/a%2fb", "/%7euser/a%2fb"),
            ("//a//b", "//a//b"),
            ("/a/../b", "/b"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/a/./b%41", "/a/bA"),
        ] {
            let normalized = normalize_path(original).unwrap();
            assert_eq!(upstream_path(original, &normalized), want, "{original}");
        }
    }
}
