//! The two exposition formats a scraper may ask for.
//!
//! `prometheus-client` writes OpenMetrics. The Prometheus text format
//! 0.0.4, which every scraper reads, differs for the families lb exports
//! only in OpenMetrics' closing `# EOF` line, which it lacks.

use prometheus_client::registry::Registry;

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// What a request's `Accept` header asks for: OpenMetrics when it names
    /// it, else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The registry's families in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String cannot fail");
    if format == Format::Text
        && let Some(body) = out.strip_suffix("# EOF\n")
    {
        out.truncate(body.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Text);
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
    }
}
