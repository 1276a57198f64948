//! The access log: one line per request on stderr, in the format `tracing`
//! gives an event of target `lb_proxy::access` (time, level, target,
//! `key=value` fields), so what reads it sees no difference.
//!
//! It is written here rather than through `tracing`, which formatted each
//! line through its field visitors and wrote it with one `write(2)` — about
//! a tenth of the proxy's CPU (BENCHMARKS.md). A line is formatted into a
//! buffer of its thread and appended to a shared buffer, which goes to
//! stderr in one `write(2)` once it holds `FLUSH_BYTES`, every
//! `FLUSH_INTERVAL` (while the proxy runs), and when the proxy returns
//! from [`crate::Proxy::run`]: no line is lost at a clean exit.
//!
//! It is on and off like the `tracing` event it replaces:
//! `RUST_LOG=lb_proxy::access=off` (or a filter below INFO) turns it off.
//!
//! [`set_format`] picks the lines' format for the whole process: `tracing`'s
//! text format (the default), or one JSON object per line with the keys of
//! `tracing-subscriber`'s JSON format with flattened events (`timestamp`,
//! `level`, `target`, `message`, then the request's fields).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::{Method, Version};

/// Lines are written once this much is pending…
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// …or this long after they were formatted, at the latest.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Lines formatted and not yet written.
static PENDING: Mutex<String> = Mutex::new(String::new());
/// Held while writing, so lines leave in the order they were added.
static WRITING: Mutex<()> = Mutex::new(());

/// The format of the access log's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessLogFormat {
    /// As `tracing`'s default format shows an event (the default).
    Text = 0,
    /// One JSON object per line, as `tracing-subscriber`'s JSON format with
    /// flattened events.
    Json = 1,
}

/// The process's [`AccessLogFormat`].
static FORMAT: AtomicU8 = AtomicU8::new(AccessLogFormat::Text as u8);

/// Sets the format of the lines formatted from now on, for the whole
/// process.
pub fn set_format(format: AccessLogFormat) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

/// The format set by [`set_format`].
pub fn format() -> AccessLogFormat {
    match FORMAT.load(Ordering::Relaxed) {
        1 => AccessLogFormat::Json,
        _ => AccessLogFormat::Text,
    }
}

/// One request, as logged.
pub(crate) struct Entry<'a> {
    pub client: IpAddr,
    pub scheme: &'a str,
    pub version: Version,
    pub method: &'a Method,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// The backend's Service and port, or `-`.
    pub backend: &'a dyn std::fmt::Display,
    pub upstream: Option<SocketAddr>,
    pub duration: Duration,
    pub request_id: &'a str,
    pub error: &'a str,
}

/// Whether the access log is on (the `tracing` filter's answer for an INFO
/// event of target `lb_proxy::access`).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "lb_proxy::access", tracing::Level::INFO)
}

/// Formats `entry` and queues its line.
pub(crate) fn record(entry: &Entry<'_>) {
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        match format() {
            AccessLogFormat::Text => format_line(line, SystemTime::now(), entry),
            AccessLogFormat::Json => format_json_line(line, SystemTime::now(), entry),
        }
        let mut pending = lock(&PENDING);
        pending.push_str(line);
        if pending.len() >= FLUSH_BYTES {
            drop(pending);
            flush();
        }
    });
}

/// Writes every queued line.
pub fn flush() {
    let _writing = lock(&WRITING);
    let lines = std::mem::take(&mut *lock(&PENDING));
    if !lines.is_empty() {
        // Nowhere to report a failed write of the log itself.
        let _ = std::io::stderr().lock().write_all(lines.as_bytes());
    }
}

/// Flushes every [`FLUSH_INTERVAL`] until aborted.
pub(crate) async fn flush_periodically() {
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        if !lock(&PENDING).is_empty() {
            flush();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The line `tracing`'s default format gives the event: `&str` fields are
/// quoted and escaped (`Debug`), the others as their `Display`. Written
/// piece by piece rather than through `format_args!`, which cost a tenth
/// of a request's user time: the time's seconds are formatted once per
/// second (per thread), numbers and addresses without the `fmt`
/// machinery.
fn format_line(out: &mut String, at: SystemTime, e: &Entry<'_>) {
    push_timestamp(out, at);
    out.push_str("  INFO lb_proxy::access: client=");
    push_ip(out, e.client.to_canonical());
    out.push_str(" scheme=");
    push_quoted(out, e.scheme);
    out.push_str(" version=");
    out.push_str(version_str(e.version));
    out.push_str(" method=");
    out.push_str(e.method.as_str());
    out.push_str(" host=");
    push_quoted(out, e.host);
    out.push_str(" path=");
    out.push_str(e.path);
    out.push_str(" status=");
    out.push_str(itoa::Buffer::new().format(e.status));
    out.push_str(" backend=");
    let _ = write!(out, "{:?}", Quoted(e.backend));
    out.push_str(" upstream=");
    match e.upstream {
        Some(addr) => {
            out.push('"');
            push_socket_addr(out, addr);
            out.push('"');
        }
        None => out.push_str("\"-\""),
    }
    out.push_str(" duration_ms=");
    push_millis(out, e.duration);
    out.push_str(" request_id=");
    push_quoted(out, e.request_id);
    out.push_str(" error=");
    push_quoted(out, e.error);
    out.push('\n');
}

/// `at` in RFC 3339 with microseconds, UTC (`2025-12-06T05:46:40.123456Z`),
/// as `tracing` writes it; the part up to the seconds is kept per thread.
fn push_timestamp(out: &mut String, at: SystemTime) {
    thread_local! {
        /// The whole seconds since the epoch, and their text with the dot.
        static SECONDS: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SECONDS.with_borrow_mut(|(secs, text)| {
        if *secs != since.as_secs() {
            *secs = since.as_secs();
            text.clear();
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(*secs);
            let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
            text.pop(); // the `Z`
            text.push('.');
        }
        out.push_str(text);
    });
    push_padded(out, since.subsec_micros(), 6);
    out.push('Z');
}

/// `n` with leading zeros to `width` digits.
fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    out.push_str(digits);
}

/// The duration in milliseconds as a decimal with up to six places and no
/// trailing zeros (`1.5`, `0.482913`, `0`): the value `tracing` showed,
/// without a float's rounding noise.
fn push_millis(out: &mut String, duration: Duration) {
    let nanos = duration.as_nanos();
    out.push_str(itoa::Buffer::new().format(nanos / 1_000_000));
    let fraction = (nanos % 1_000_000) as u32;
    if fraction != 0 {
        out.push('.');
        push_padded(out, fraction, 6);
        out.truncate(out.trim_end_matches('0').len());
    }
}

/// An address as its `Display` shows it.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut octet = itoa::Buffer::new();
            for (i, b) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(octet.format(b));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A socket address as its `Display` shows it (`[…]:port` for IPv6).
fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(out, IpAddr::V4(*v4.ip()));
            out.push(':');
            out.push_str(itoa::Buffer::new().format(v4.port()));
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `Version`'s `Debug`.
fn version_str(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        other => {
            debug_assert!(false, "unknown HTTP version {other:?}");
            "HTTP/?"
        }
    }
}

/// A `&str` as its `Debug` shows it, as `tracing` writes a `&str` field:
/// quoted, escaped as `char::escape_debug` except `'`.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    if plain(s) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '\'' => out.push(c),
                c => out.extend(c.escape_debug()),
            }
        }
    }
    out.push('"');
}

/// Printable ASCII other than `"` and `\\`: written as it is.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// The line `tracing-subscriber`'s JSON format (events flattened) gives
/// the event: `timestamp`, `level`, `target`, `message`, then the fields;
/// `status` and `duration_ms` are numbers, `upstream` a string or `null`.
/// Written straight into `out`.
fn format_json_line(out: &mut String, at: SystemTime, e: &Entry<'_>) {
    let _ = write!(
        out,
        "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"target\":\"lb_proxy::access\",\"message\":\"request\",\
         \"client\":\"{}\",\"scheme\":",
        humantime::format_rfc3339_micros(at),
        e.client.to_canonical(),
    );
    push_json_str(out, e.scheme);
    let _ = write!(out, ",\"version\":\"{:?}\",\"method\":", e.version);
    push_json_str(out, e.method.as_str());
    out.push_str(",\"host\":");
    push_json_str(out, e.host);
    out.push_str(",\"path\":");
    push_json_str(out, e.path);
    let _ = write!(out, ",\"status\":{},\"backend\":\"", e.status);
    let _ = write!(JsonEscaped(out), "{}", e.backend);
    out.push_str("\",\"upstream\":");
    match e.upstream {
        Some(addr) => {
            let _ = write!(out, "\"{addr}\"");
        }
        None => out.push_str("null"),
    }
    // `f64`'s `Display` never uses an exponent: a JSON number.
    let _ = write!(out, ",\"duration_ms\":{},\"request_id\":", e.duration.as_secs_f64() * 1000.0);
    push_json_str(out, e.request_id);
    out.push_str(",\"error\":");
    push_json_str(out, e.error);
    out.push_str("}\n");
}

/// `s` as a JSON string: quoted and escaped.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let _ = JsonEscaped(out).write_str(s);
    out.push('"');
}

/// Appends what it is given escaped as inside a JSON string (as
/// `serde_json` does): `"`, `\\` and the control characters U+0000–U+001F;
/// everything else, non-ASCII included, as it is.
struct JsonEscaped<'a>(&'a mut String);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Only ASCII bytes are escaped: `i` is a char boundary.
            self.0.push_str(&s[start..i]);
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.push_str(escape);
            }
            start = i + 1;
        }
        self.0.push_str(&s[start..]);
        Ok(())
    }
}

/// A `Display` value as `tracing` shows a `&str` field: quoted and
/// escaped as `str`'s `Debug` does (formatted straight into the line).
struct Quoted<'a>(&'a dyn std::fmt::Display);

impl std::fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char('"')?;
        write!(Escaped(f), "{}", self.0)?;
        f.write_char('"')
    }
}

/// Writes what it is given escaped as inside a `str`'s `Debug`: as
/// `char::escape_debug`, except that `'` stays as it is.
struct Escaped<'f, 'g>(&'f mut std::fmt::Formatter<'g>);

impl std::fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if plain(s) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\'' => self.0.write_char(c)?,
                c => write!(self.0, "{}", c.escape_debug())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A served HTTP/2 request.
    fn sample(method: &Method) -> Entry<'_> {
        Entry {
            client: "::ffff:192.168.1.2".parse().unwrap(),
            scheme: "https",
            version: Version::HTTP_2,
            method,
            host: "a.com",
            path: "/x?q=1",
            status: 200,
            backend: &"default/web:80",
            upstream: Some("10.244.1.10:8080".parse().unwrap()),
            duration: Duration::from_micros(1500),
            request_id: "abc",
            error: "",
        }
    }

    #[test]
    fn a_line_reads_as_the_tracing_event_did() {
        let method = Method::GET;
        let entry = sample(&method);
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_765_000_000_123_456);
        let mut line = String::new();
        format_line(&mut line, at, &entry);
        assert_eq!(
            line,
            "2025-12-06T05:46:40.123456Z  INFO lb_proxy::access: client=192.168.1.2 scheme=\"https\" \
             version=HTTP/2.0 method=GET host=\"a.com\" path=/x?q=1 status=200 backend=\"default/web:80\" \
             upstream=\"10.244.1.10:8080\" duration_ms=1.5 request_id=\"abc\" error=\"\"\n"
        );
    }

    /// The line as `format_args!` and `tracing`'s field formatting give it
    /// (the formatter before this one): the reference the fast one must
    /// equal.
    fn reference_line(at: SystemTime, e: &Entry<'_>) -> String {
        let upstream = match e.upstream {
            Some(addr) => format!("\"{addr}\""),
            None => "\"-\"".to_string(),
        };
        let quoted = |s: &str| {
            let escaped: String =
                s.chars().map(|c| if c == '\'' { c.to_string() } else { c.escape_debug().to_string() }).collect();
            format!("\"{escaped}\"")
        };
        format!(
            "{}  INFO lb_proxy::access: client={} scheme={:?} version={:?} method={} host={} path={} status={} \
             backend={} upstream={} duration_ms={} request_id={} error={}\n",
            humantime::format_rfc3339_micros(at),
            e.client.to_canonical(),
            e.scheme,
            e.version,
            e.method,
            quoted(e.host),
            e.path,
            e.status,
            quoted(&e.backend.to_string()),
            upstream,
            e.duration.as_nanos() as f64 / 1e6,
            quoted(e.request_id),
            quoted(e.error),
        )
    }

    #[test]
    fn the_fast_line_equals_the_formatted_one() {
        let methods = [Method::GET, Method::from_bytes(b"PURGE").unwrap()];
        let clients: [IpAddr; 4] = [
            "0.0.0.0".parse().unwrap(),
            "255.10.1.200".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        let upstreams = [None, Some("10.244.1.10:8080".parse().unwrap()), Some("[fd00::5]:443".parse().unwrap())];
        let durations = [0, 1, 999, 1_000, 1_500_000, 482_913, 10_000_000, 3_600_000_000_123];
        let times = [0, 999_999, 1_000_000, 1_765_000_000_123_456, 1_765_000_000_999_999];
        let versions = [Version::HTTP_09, Version::HTTP_10, Version::HTTP_11, Version::HTTP_2, Version::HTTP_3];
        let mut line = String::new();
        for (i, (client, micros)) in clients.iter().flat_map(|c| times.iter().map(move |t| (c, t))).enumerate() {
            for (j, nanos) in durations.iter().enumerate() {
                let entry = Entry {
                    client: *client,
                    scheme: if i % 2 == 0 { "http" } else { "https" },
                    version: versions[(i + j) % versions.len()],
                    method: &methods[j % methods.len()],
                    host: ["a.com", "é\\'\"x", "-"][j % 3],
                    path: "/x?q=1",
                    status: [101, 200, 404, 502, 999][(i + j) % 5],
                    backend: &"default/web:80",
                    upstream: upstreams[(i + j) % upstreams.len()],
                    duration: Duration::from_nanos(*nanos),
                    request_id: "0123abc",
                    error: ["", "timed out\t\u{7f}"][j % 2],
                };
                let at = SystemTime::UNIX_EPOCH + Duration::from_micros(*micros);
                line.clear();
                format_line(&mut line, at, &entry);
                assert_eq!(line, reference_line(at, &entry));
            }
        }
    }

    #[test]
    fn quotes_and_control_characters_stay_inside_their_field() {
        let method = Method::POST;
        let entry = Entry {
            client: "127.0.0.1".parse().unwrap(),
            scheme: "http",
            version: Version::HTTP_11,
            method: &method,
            host: "a\"b\nc",
            path: "/",
            status: 502,
            backend: &"-",
            upstream: None,
            duration: Duration::ZERO,
            request_id: "-",
            error: "upstream said \"no\"\r\n",
        };
        let mut line = String::new();
        format_line(&mut line, SystemTime::UNIX_EPOCH, &entry);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains(r#"host="a\"b\nc""#), "{line}");
        assert!(line.contains(r#"upstream="-""#) && line.contains(r#"error="upstream said \"no\"\r\n""#), "{line}");
    }

    /// The keys of every JSON line.
    const JSON_KEYS: [&str; 16] = [
        "timestamp",
        "level",
        "target",
        "message",
        "client",
        "scheme",
        "version",
        "method",
        "host",
        "path",
        "status",
        "backend",
        "upstream",
        "duration_ms",
        "request_id",
        "error",
    ];

    fn json_line(at: SystemTime, entry: &Entry<'_>) -> (String, serde_json::Map<String, serde_json::Value>) {
        let mut line = String::new();
        format_json_line(&mut line, at, entry);
        assert!(line.ends_with('\n') && line.lines().count() == 1, "one line: {line:?}");
        let object = match serde_json::from_str(&line) {
            Ok(serde_json::Value::Object(object)) => object,
            other => panic!("not a JSON object ({other:?}): {line}"),
        };
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = JSON_KEYS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected, "exactly the stable keys: {line}");
        assert!(line.starts_with("{\"timestamp\":\""), "{line}");
        (line, object)
    }

    #[test]
    fn a_json_line_has_the_keys_of_the_tracing_json_format() {
        let method = Method::GET;
        let entry = sample(&method);
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_765_000_000_123_456);
        let (line, object) = json_line(at, &entry);
        assert_eq!(
            serde_json::Value::Object(object),
            serde_json::json!({
                "timestamp": "2025-12-06T05:46:40.123456Z",
                "level": "INFO",
                "target": "lb_proxy::access",
                "message": "request",
                "client": "192.168.1.2",
                "scheme": "https",
                "version": "HTTP/2.0",
                "method": "GET",
                "host": "a.com",
                "path": "/x?q=1",
                "status": 200,
                "backend": "default/web:80",
                "upstream": "10.244.1.10:8080",
                "duration_ms": 1.5,
                "request_id": "abc",
                "error": "",
            }),
            "{line}"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let method = Method::POST;
        let host = "a\"b\\c\nd\u{0}\u{1f}\u{7f}\t\r\u{8}\u{c} caf\u{e9} \u{200b}";
        let path = "/\"quoted\"/back\\slash/\u{1b}[31m";
        let error = "upstream said \"no\"\r\n";
        let entry = Entry {
            client: "127.0.0.1".parse().unwrap(),
            scheme: "http",
            version: Version::HTTP_11,
            method: &method,
            host,
            path,
            status: 502,
            backend: &"ns/we\"ird\\svc:80",
            upstream: None,
            duration: Duration::ZERO,
            request_id: "-",
            error,
        };
        let (line, object) = json_line(SystemTime::UNIX_EPOCH, &entry);
        assert_eq!(object["host"], host, "{line}");
        assert_eq!(object["path"], path, "{line}");
        assert_eq!(object["error"], error, "{line}");
        assert_eq!(object["backend"], "ns/we\"ird\\svc:80", "{line}");
        assert_eq!(object["upstream"], serde_json::Value::Null, "{line}");
        assert_eq!(object["status"], 502, "{line}");
        assert_eq!(object["duration_ms"], 0, "{line}");
        assert_eq!(object["timestamp"], "1970-01-01T00:00:00.000000Z", "{line}");
        // Escaped as serde_json escapes.
        for text in [host, path, error, ""] {
            let mut escaped = String::new();
            push_json_str(&mut escaped, text);
            assert_eq!(escaped, serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn the_format_is_process_wide() {
        assert_eq!(format(), AccessLogFormat::Text, "text by default");
        set_format(AccessLogFormat::Json);
        assert_eq!(format(), AccessLogFormat::Json);
        set_format(AccessLogFormat::Text);
        assert_eq!(format(), AccessLogFormat::Text);
    }

    #[test]
    fn quoted_values_read_as_quoted_strs() {
        for text in ["default/web:80", "-", "it's \"x\"\\ \t\r\n\u{7f} caf\u{e9} \u{301}a \u{200b}", ""] {
            assert_eq!(format!("{:?}", Quoted(&text)), format!("{text:?}"));
        }
    }
}
