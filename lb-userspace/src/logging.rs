//! The agent's log on stderr (`--log-level`, `--log-format`).
//!
//! `text`: `tracing`'s default format, one human-readable line per event
//! (colours only on a terminal). `json`: one JSON object per line, with
//! the event's fields flattened beside `timestamp` (RFC 3339, UTC),
//! `level`, `target` and `message`. The access log, which the proxy
//! writes itself (`lb_proxy::access_log`), is told the same format, so
//! its lines have the same keys.

use lb_proxy::access_log::{self, AccessLogFormat};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global `tracing` subscriber (`RUST_LOG` wins over
/// `default_filter`) and sets the access log's format. A second call
/// keeps the first subscriber.
pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .try_init();
            access_log::set_format(AccessLogFormat::Text);
        }
        LogFormat::Json => {
            let _ = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                // No span keys: every line has the same top-level keys.
                .with_current_span(false)
                .with_span_list(false)
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .try_init();
            access_log::set_format(AccessLogFormat::Json);
        }
    }
}
