//! Events (`events.k8s.io/v1`) on the objects we reject, so that
//! `kubectl describe ingress …` shows why a rule is not served.
//!
//! A problem is published when it appears (it was not found by the
//! previous compilation), not again while it persists. Each object has a
//! budget (a token bucket: [`BURST`] events, one more every [`REFILL`]) so
//! that an object flapping between broken and fixed cannot flood the API
//! server; kube-runtime's recorder folds repeats of one event within a few
//! minutes into its `series` instead of creating new ones.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::diagnostics::Subject;
use crate::snapshot::Snapshot;

/// Events an object may get at once.
pub const BURST: u32 = 5;
/// The time after which an object may get one more event.
pub const REFILL: Duration = Duration::from_secs(60);
/// The `reportingController` of our Events.
pub const REPORTING_CONTROLLER: &str = "lb.dev/lb";

/// One Event to publish: on `subject`, `reason` (PascalCase) and a note.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub subject: Subject,
    pub reason: String,
    /// What was refused: the field (`spec.rules[0].http.paths[1]`), or a
    /// verb. The recorder folds Events with the same object, reason and
    /// action into one series, so two problems of one object must differ
    /// here (their notes are not compared).
    pub action: String,
    pub note: String,
}

/// Decides which problems become Events.
#[derive(Debug, Default)]
pub struct EventLimiter {
    /// The problems found last time.
    previous: BTreeSet<Problem>,
    budgets: HashMap<Subject, Budget>,
}

#[derive(Debug)]
struct Budget {
    tokens: u32,
    refilled: Instant,
}

impl EventLimiter {
    /// The problems of `current` to publish at `now`: the new ones, within
    /// their objects' budgets. A new one over budget is dropped (it is
    /// logged anyway).
    pub fn admit(&mut self, current: BTreeSet<Problem>, now: Instant) -> Vec<Problem> {
        let mut out = Vec::new();
        for problem in current.difference(&self.previous) {
            let budget = self.budgets.entry(problem.subject.clone()).or_insert(Budget { tokens: BURST, refilled: now });
            let earned = (now.saturating_duration_since(budget.refilled).as_secs() / REFILL.as_secs()) as u32;
            if earned > 0 {
                budget.tokens = (budget.tokens + earned).min(BURST);
                budget.refilled = now;
            }
            if budget.tokens > 0 {
                budget.tokens -= 1;
                out.push(problem.clone());
            }
        }
        self.previous = current;
        out
    }

    /// Forgets what was published (a new leader publishes the problems
    /// that exist when it takes over).
    pub fn reset(&mut self) {
        self.previous.clear();
    }
}

/// Publishes Events through kube-runtime's recorder.
pub struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    /// `instance`: this agent's identity, the Events' `reportingInstance`.
    pub fn new(client: Client, instance: String) -> Self {
        let reporter = Reporter { controller: REPORTING_CONTROLLER.into(), instance: Some(instance) };
        Self { recorder: Recorder::new(client, reporter) }
    }

    /// Publishes a Warning for each problem whose object is in `snapshot`
    /// (an Event must name the object's uid); failures are logged.
    pub async fn publish(&self, problems: &[Problem], snapshot: &Snapshot) {
        for problem in problems {
            let Some(regarding) = reference(snapshot, &problem.subject) else {
                continue;
            };
            let event = Event {
                type_: EventType::Warning,
                reason: problem.reason.clone(),
                note: Some(truncate(&problem.note, 1000)),
                action: truncate(&problem.action, 120),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &regarding).await {
                tracing::warn!(subject = ?problem.subject, "publishing an Event failed: {e}");
            }
        }
    }
}

/// The reference of the object `subject` names, from the snapshot.
fn reference(snapshot: &Snapshot, subject: &Subject) -> Option<ObjectReference> {
    use k8s_openapi::Resource;
    fn find<K: Resource + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
        objects: &crate::snapshot::Objects<K>,
        subject: &Subject,
    ) -> Option<ObjectReference> {
        let object = objects.get(&subject.namespace, &subject.name)?;
        let meta = object.metadata();
        Some(ObjectReference {
            api_version: Some(K::API_VERSION.into()),
            kind: Some(K::KIND.into()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            // Not the version: kube-runtime's recorder folds repeats by
            // reference, and the object changes between them.
            resource_version: None,
            field_path: None,
        })
    }
    match subject.kind.as_str() {
        "Service" => find(&snapshot.services, subject),
        "EndpointSlice" => find(&snapshot.endpoint_slices, subject),
        "Ingress" => find(&snapshot.ingresses, subject),
        "IngressClass" => find(&snapshot.ingress_classes, subject),
        "Secret" => find(&snapshot.secrets, subject),
        _ => None,
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(name: &str, note: &str) -> Problem {
        let subject = Subject { kind: "Ingress".into(), namespace: "default".into(), name: name.into() };
        Problem { subject, reason: "Rejected".into(), action: note.into(), note: note.into() }
    }

    fn set(problems: &[Problem]) -> BTreeSet<Problem> {
        problems.iter().cloned().collect()
    }

    #[test]
    fn new_problems_are_published_once_while_they_persist() {
        let mut limiter = EventLimiter::default();
        let now = Instant::now();
        let a = problem("a", "bad path");
        let b = problem("b", "bad backend");
        let (only_a, both, only_b) =
            (set(std::slice::from_ref(&a)), set(&[a.clone(), b.clone()]), set(std::slice::from_ref(&b)));
        assert_eq!(limiter.admit(only_a, now), vec![a.clone()]);
        assert_eq!(limiter.admit(both.clone(), now), vec![b.clone()]);
        assert!(limiter.admit(both.clone(), now).is_empty());
        // Fixed, then broken again: published again.
        assert!(limiter.admit(only_b, now).is_empty());
        assert_eq!(limiter.admit(both, now), vec![a.clone()]);
        // A new leader publishes what exists.
        limiter.reset();
        assert_eq!(limiter.admit(set(&[a.clone(), b.clone()]), now), [a, b]);
    }

    #[test]
    fn a_flapping_object_is_limited_then_refilled() {
        let mut limiter = EventLimiter::default();
        let start = Instant::now();
        let mut published = 0;
        for i in 0..20 {
            published += limiter.admit(set(&[problem("a", &format!("problem {i}"))]), start).len();
        }
        assert_eq!(published, BURST as usize);
        // Another object has its own budget.
        assert_eq!(limiter.admit(set(&[problem("b", "x")]), start).len(), 1);
        // One more after a refill period.
        let later = start + REFILL;
        assert_eq!(limiter.admit(set(&[problem("a", "new 1")]), later).len(), 1);
        assert_eq!(limiter.admit(set(&[problem("a", "new 2")]), later).len(), 0);
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
