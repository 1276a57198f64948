//! The two exposition formats a scraper may ask for.
//!
//! `prometheus-client` writes OpenMetrics. The Prometheus text format
//! 0.0.4, which every scraper reads, differs for the families lb exports
//! in two things: it has no closing `# EOF` line, and a counter family is
//! named as its sample is (`# TYPE process_cpu_seconds_total counter`,
//! where OpenMetrics names the family without `_total`).

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
    match format {
        Format::OpenMetrics => out,
        Format::Text => to_text_0_0_4(&out),
    }
}

/// OpenMetrics text as the 0.0.4 format writes it.
fn to_text_0_0_4(open_metrics: &str) -> String {
    let counters: Vec<&str> =
        open_metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
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

    #[test]
    fn counter_families_take_their_samples_name_in_0_0_4() {
        let open_metrics = "# HELP a_seconds A.\n# TYPE a_seconds counter\na_seconds_total 1.5\n\
                            # HELP b B.\n# TYPE b gauge\nb 2\n# EOF\n";
        let text = "# HELP a_seconds_total A.\n# TYPE a_seconds_total counter\na_seconds_total 1.5\n\
                    # HELP b B.\n# TYPE b gauge\nb 2\n";
        assert_eq!(to_text_0_0_4(open_metrics), text);
    }
}
