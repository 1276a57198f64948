//! The per-core view of the max-rate runs: what each subject's CPU, the
//! backend's and h2load's did in every window, the capacity of the
//! generator and backend without a proxy, and the notes that say whether
//! the proxies were the limit.

use serde::Serialize;

use super::cpu::Window;
use super::load::Proto;
use crate::markdown::fmt_value;
use crate::stats::median;

/// Below this many CPU-seconds per second a subject is not saturated.
pub const SATURATED: f64 = 0.85;
/// Above this share of the direct capacity, a subject's rate may be bounded
/// by the generator and backend rather than by itself.
pub const NEAR_CEILING: f64 = 0.8;

/// `set few h1 tls=off`.
pub fn label(set: &str, proto: Proto, tls: bool) -> String {
    format!("{set} {} tls={}", proto.as_str(), if tls { "on" } else { "off" })
}

/// One subject's max-rate window.
#[derive(Clone, Debug)]
pub struct Sample {
    pub scenario: String,
    pub proto: Proto,
    pub tls: bool,
    pub subject: &'static str,
    pub rps: f64,
    pub window: Window,
    pub proxy_cpu: Option<usize>,
    pub generator_cpu: Option<usize>,
}

/// h2load straight to the static backend, one max-rate shape.
#[derive(Clone, Debug, Serialize)]
pub struct DirectRun {
    pub proto: Proto,
    pub tls: bool,
    pub rps: f64,
    /// CPU-seconds per second of the backend and of h2load, and the
    /// generator CPU's busy fraction, in the run's window.
    pub backend_cpu: f64,
    pub h2load_cpu: f64,
    pub generator_cpu_busy: Option<f64>,
}

/// The capacity of the generator's CPU without a proxy.
#[derive(Clone, Debug, Serialize)]
pub struct Direct {
    /// h2load straight to one lb-echo pod (HTTP/1.1, plaintext): the
    /// backend the max-rate runs used before.
    pub echo_h1_rps: f64,
    pub backend: Vec<DirectRun>,
}

impl Direct {
    pub fn get(&self, proto: Proto, tls: bool) -> Option<&DirectRun> {
        self.backend.iter().find(|d| d.proto == proto && d.tls == tls)
    }
}

#[derive(Default)]
pub struct CpuLog {
    samples: Vec<Sample>,
}

/// Medians of one subject's windows in one scenario.
#[derive(Clone, Debug, PartialEq)]
struct Summary {
    rps: f64,
    proxy: f64,
    backends: f64,
    generator: f64,
    proxy_busy: Option<f64>,
    generator_busy: Option<f64>,
}

fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| median(&v))
}

fn two(v: f64) -> String {
    format!("{v:.2}")
}

/// `0.34–0.45`, `1.00` when all are equal, `—` when there are none.
fn range(values: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    let (Some(lo), Some(hi)) = (v.iter().copied().reduce(f64::min), v.iter().copied().reduce(f64::max)) else {
        return "—".into();
    };
    if two(lo) == two(hi) { two(lo) } else { format!("{}–{}", two(lo), two(hi)) }
}

impl CpuLog {
    pub fn add(&mut self, s: Sample) {
        self.samples.push(s);
    }

    /// Scenarios in first-seen order.
    fn scenarios(&self) -> Vec<(&str, Proto, bool)> {
        let mut out: Vec<(&str, Proto, bool)> = Vec::new();
        for s in &self.samples {
            if !out.iter().any(|o| o.0 == s.scenario) {
                out.push((&s.scenario, s.proto, s.tls));
            }
        }
        out
    }

    /// Subjects of `scenario` in first-seen order, with their medians.
    fn summaries(&self, scenario: &str) -> Vec<(&'static str, Summary)> {
        let mut subjects: Vec<&'static str> = Vec::new();
        for s in self.samples.iter().filter(|s| s.scenario == scenario) {
            if !subjects.contains(&s.subject) {
                subjects.push(s.subject);
            }
        }
        subjects
            .into_iter()
            .map(|subject| {
                let of: Vec<&Sample> =
                    self.samples.iter().filter(|s| s.scenario == scenario && s.subject == subject).collect();
                let m = |f: &dyn Fn(&Sample) -> Option<f64>| median_of(of.iter().map(|s| f(s)));
                let summary = Summary {
                    rps: m(&|s| Some(s.rps)).unwrap_or(0.0),
                    proxy: m(&|s| Some(s.window.proxy_util())).unwrap_or(0.0),
                    backends: m(&|s| Some(s.window.backends_util())).unwrap_or(0.0),
                    generator: m(&|s| Some(s.window.generator_util())).unwrap_or(0.0),
                    proxy_busy: m(&|s| s.window.busy(s.proxy_cpu)),
                    generator_busy: m(&|s| s.window.busy(s.generator_cpu)),
                };
                (subject, summary)
            })
            .collect()
    }

    /// The notes: CPU use in every scenario, which subjects were not
    /// saturated, and how close the fastest came to the direct capacity.
    pub fn notes(&self, direct: Option<&Direct>) -> Vec<String> {
        let mut notes = Vec::new();
        if self.samples.is_empty() {
            return notes;
        }
        let mut cpu = Vec::new();
        // (what, its CPU's busy share, the generator CPU's).
        let mut unsaturated: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();
        let mut windows = 0;
        // The most h2load and the backend used together in a window.
        let mut generator_side = 0.0f64;
        // (share of the direct capacity, scenario, subject, rps, direct).
        let mut closest: Option<(f64, String, &str, f64, f64)> = None;
        for (scenario, proto, tls) in self.scenarios() {
            let subjects = self.summaries(scenario);
            let proxies: Vec<String> = subjects.iter().map(|(s, m)| format!("{s} {}", two(m.proxy))).collect();
            let max = |f: &dyn Fn(&Summary) -> Option<f64>| {
                subjects.iter().filter_map(|(_, m)| f(m)).reduce(f64::max).map(two).unwrap_or_else(|| "—".into())
            };
            cpu.push(format!(
                "{scenario}: {} (backend ≤ {}, h2load ≤ {}, generator CPU busy ≤ {})",
                proxies.join(", "),
                max(&|m| Some(m.backends)),
                max(&|m| Some(m.generator)),
                max(&|m| m.generator_busy),
            ));
            for (subject, m) in &subjects {
                windows += 1;
                generator_side = generator_side.max(m.backends + m.generator);
                if m.proxy < SATURATED {
                    unsaturated.push((format!("{subject} in {scenario}"), m.proxy_busy, m.generator_busy));
                }
                if let Some(d) = direct.and_then(|d| d.get(proto, tls)).filter(|d| d.rps > 0.0) {
                    let share = m.rps / d.rps;
                    if closest.as_ref().is_none_or(|c| share > c.0) {
                        closest = Some((share, scenario.to_string(), subject, m.rps, d.rps));
                    }
                }
            }
        }
        notes.push(format!(
            "CPU in the max-rate windows (medians of the rounds, CPU-seconds per second over the middle 80% of h2load's \
             measured phase; proxy = all the subject's processes and threads, 1.0 = its whole CPU; backend and h2load \
             run on the generator CPU, whose busy share counts everything that ran there): {}.",
            cpu.join("; ")
        ));
        if unsaturated.is_empty() {
            notes.push(format!(
                "Every subject used at least {SATURATED} of its CPU in every max-rate scenario: the proxies were the \
                 limit of their own req/s."
            ));
        } else {
            let who = if unsaturated.len() == windows {
                "no subject in any scenario".to_string()
            } else {
                let names: Vec<&str> = unsaturated.iter().map(|u| u.0.as_str()).collect();
                format!("{} of {windows}: {}", unsaturated.len(), names.join(", "))
            };
            notes.push(format!(
                "Not saturated — under {SATURATED} CPU-seconds per second of the proxy ({who} reached it), while the \
                 proxy's CPU was busy {} and the generator CPU {} of the time (other programs on the machine count \
                 there too). Such a req/s is bounded by something else than the proxy (its CPU shared with other \
                 programs, or the generator); requests per CPU-second still compare.",
                range(unsaturated.iter().filter_map(|u| u.1)),
                range(unsaturated.iter().filter_map(|u| u.2)),
            ));
        }
        if let (Some(d), Some((share, scenario, subject, rps, ceiling))) = (direct, closest) {
            let runs: Vec<String> = d
                .backend
                .iter()
                .map(|r| {
                    format!("{} tls={} {} req/s", r.proto.as_str(), if r.tls { "on" } else { "off" }, fmt_value(r.rps))
                })
                .collect();
            let verdict = if share > NEAR_CEILING {
                format!(
                    "above {:.0}% of it, so there the generator and backend may be what limits the fastest subjects \
                     (their requests per CPU-second are not affected)",
                    NEAR_CEILING * 100.0
                )
            } else {
                "so the backend and generator are not the limit of any subject's rate".into()
            };
            notes.push(format!(
                "Generator and backend without a proxy: h2load straight to the static backend, with the max-rate runs' \
                 shapes, reached {} (over TLS the backend also pays for TLS, which it does not behind a proxy: a lower \
                 bound), h2load and the backend using {} CPU-seconds per second together; behind the proxies they \
                 used at most {}. The closest any subject came is {subject} in {scenario}, {} req/s = {:.0}% of {} \
                 req/s, {verdict}. For comparison, h2load straight to one lb-echo pod reached {} req/s (HTTP/1.1).",
                runs.join(", "),
                range(d.backend.iter().map(|r| r.backend_cpu + r.h2load_cpu)),
                two(generator_side),
                fmt_value(rps),
                share * 100.0,
                fmt_value(ceiling),
                fmt_value(d.echo_h1_rps),
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(scenario: &str, subject: &'static str, rps: f64, proxy_s: f64) -> Sample {
        Sample {
            scenario: scenario.into(),
            proto: Proto::H1,
            tls: false,
            subject,
            rps,
            window: Window {
                wall_s: 2.0,
                proxy_s,
                backends_s: 0.2,
                generator_s: 0.8,
                cpu_busy: vec![proxy_s / 2.0, 0.6],
            },
            proxy_cpu: Some(0),
            generator_cpu: Some(1),
        }
    }

    #[test]
    fn notes_say_who_was_saturated_and_how_close_to_the_ceiling() {
        let mut log = CpuLog::default();
        let s = label("few", Proto::H1, false);
        assert_eq!(s, "few h1 tls=off");
        for (rps, cpu) in [(20_000.0, 1.96), (22_000.0, 2.0), (21_000.0, 1.98)] {
            log.add(sample(&s, "lb", rps, cpu));
        }
        log.add(sample(&s, "nginx", 30_000.0, 1.2));
        let sums = log.summaries(&s);
        assert_eq!(sums[0].0, "lb");
        assert_eq!(sums[0].1.rps, 21_000.0);
        assert!((sums[0].1.proxy - 0.99).abs() < 1e-9);
        assert_eq!(sums[1].1.generator_busy, Some(0.6));
        let direct = Direct {
            echo_h1_rps: 53_000.0,
            backend: vec![DirectRun {
                proto: Proto::H1,
                tls: false,
                rps: 100_000.0,
                backend_cpu: 0.3,
                h2load_cpu: 0.6,
                generator_cpu_busy: Some(1.0),
            }],
        };
        let notes = log.notes(Some(&direct));
        assert_eq!(notes.len(), 3, "{notes:#?}");
        assert!(
            notes[0].contains("few h1 tls=off: lb 0.99, nginx 0.60 (backend ≤ 0.10, h2load ≤ 0.40"),
            "{}",
            notes[0]
        );
        assert!(notes[1].contains("(1 of 2: nginx in few h1 tls=off reached it), while the proxy's CPU was busy 0.60 and the generator CPU 0.60"), "{}", notes[1]);
        assert!(notes[2].contains("nginx in few h1 tls=off, 30,000 req/s = 30% of 100,000 req/s"), "{}", notes[2]);
        assert!(
            notes[2].contains("using 0.90 CPU-seconds per second together; behind the proxies they used at most 0.50."),
            "{}",
            notes[2]
        );
        assert!(notes[2].contains("not the limit") && notes[2].contains("53,000"), "{}", notes[2]);
        let mut near = CpuLog::default();
        near.add(sample(&s, "HAProxy", 90_000.0, 2.0));
        let notes = near.notes(Some(&direct));
        assert!(notes[1].starts_with("Every subject used"), "{}", notes[1]);
        assert!(notes[2].contains("90%") && notes[2].contains("may be what limits"), "{}", notes[2]);
        assert!(CpuLog::default().notes(Some(&direct)).is_empty());
        let mut idle = CpuLog::default();
        idle.add(sample(&s, "lb", 10_000.0, 0.8));
        idle.add(sample(&s, "nginx", 10_000.0, 1.0));
        let notes = idle.notes(None);
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(
            notes[1].contains("(no subject in any scenario reached it), while the proxy's CPU was busy 0.40–0.50"),
            "{}",
            notes[1]
        );
        assert_eq!(range([0.5, 0.5].into_iter()), "0.50");
        assert_eq!(range(std::iter::empty()), "—");
    }
}
