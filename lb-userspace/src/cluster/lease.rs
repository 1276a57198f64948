//! A Lease held by client-go's leader-election algorithm: what the leader
//! election and each node's liveness Lease share.
//!
//! Every holder reads the Lease every retry period. The holder renews it;
//! the others wait until it has not changed for a lease duration *as
//! measured on their own clock* (so clock skew between nodes does not
//! matter), then take it over by replacing it with the resourceVersion
//! they read: the API server lets only one replacement of a version
//! succeed. The decisions are pure ([`decide`], [`held`]); [`LeaseHolder`]
//! is the thin loop of reads and writes around them.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

/// Where the Lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This agent's holder identity.
    pub identity: String,
    /// How long a Lease that is not renewed keeps others away.
    pub duration: Duration,
    /// A leader that could not renew for this long stops leading.
    pub renew_deadline: Duration,
    /// How often the Lease is read (and renewed).
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// There is none: create it, held by us.
    Create,
    /// Replace it with one held by us (renewing ours, or taking over one
    /// that expired or was released).
    Acquire { renewing: bool },
    /// Someone else holds it.
    Follow { holder: String },
}

/// The holder record last read, and when (on our clock) it last changed.
#[derive(Debug)]
pub(super) struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

/// Decides what to do with `lease` (as just read) at `now`.
pub(super) fn decide(lease: Option<&Lease>, identity: &str, observed: &mut Option<Observed>, now: Instant) -> Step {
    let Some(lease) = lease else {
        *observed = None;
        return Step::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let record = (spec.holder_identity.clone().filter(|h| !h.is_empty()), spec.renew_time.clone());
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed { record: record.clone(), since: now });
    }
    let Some(holder) = record.0 else {
        return Step::Acquire { renewing: false };
    };
    if holder == identity {
        return Step::Acquire { renewing: true };
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let since = observed.as_ref().map_or(now, |o| o.since);
    if now.duration_since(since) >= duration { Step::Acquire { renewing: false } } else { Step::Follow { holder } }
}

/// The Lease held by us, from the one read (keeping its resourceVersion,
/// so that the replacement fails if someone else wrote it meanwhile).
pub(super) fn held(current: Option<&Lease>, settings: &LeaseSettings, renewing: bool) -> Lease {
    let now = MicroTime(Timestamp::now());
    let old = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let transitions = old.lease_transitions.unwrap_or(0);
    Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.identity.clone()),
            lease_duration_seconds: Some(settings.duration.as_secs().max(1) as i32),
            acquire_time: if renewing { old.acquire_time.or_else(|| Some(now.clone())) } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if renewing || current.is_none() { transitions } else { transitions + 1 }),
            ..LeaseSpec::default()
        }),
    }
}

/// Why a round did not decide.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the API server did not answer within the retry period")]
    TimedOut,
}

/// One agent's hold on one Lease.
pub(super) struct LeaseHolder {
    api: Api<Lease>,
    pub(super) settings: LeaseSettings,
    observed: Option<Observed>,
    /// When we last renewed (or acquired) the Lease.
    last_renewal: Option<Instant>,
    /// The holder we last reported following (to log changes only).
    follows: Option<String>,
}

impl LeaseHolder {
    pub(super) fn new(client: Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self { api, settings, observed: None, last_renewal: None, follows: None }
    }

    /// One read-decide-write round; whether we hold the Lease after it. A
    /// round that takes longer than the retry period counts as failed; a
    /// failed round keeps a Lease we held only within the renew deadline.
    pub(super) async fn round(&mut self) -> bool {
        let attempt = tokio::time::timeout(self.settings.retry_period, self.try_hold()).await;
        match attempt.unwrap_or_else(|_| Err(RoundError::TimedOut)) {
            Ok(true) => {
                self.last_renewal = Some(Instant::now());
                true
            }
            Ok(false) => {
                self.last_renewal = None;
                false
            }
            Err(e) => {
                warn!(lease = %self.settings.name, "holding the Lease: {e}");
                self.last_renewal.is_some_and(|at| at.elapsed() < self.settings.renew_deadline)
            }
        }
    }

    /// Ok(true): we hold the Lease now; Ok(false): someone else does (or
    /// won the race); Err: the API server could not be asked.
    async fn try_hold(&mut self) -> Result<bool, RoundError> {
        let current = self.api.get_opt(&self.settings.name).await?;
        let step = decide(current.as_ref(), &self.settings.identity, &mut self.observed, Instant::now());
        let written = match step {
            Step::Follow { holder } => {
                if self.follows.as_ref() != Some(&holder) {
                    info!(lease = %self.settings.name, %holder, "the Lease is held by another agent");
                    self.follows = Some(holder);
                }
                return Ok(false);
            }
            Step::Create => {
                let lease = held(None, &self.settings, false);
                self.api.create(&PostParams::default(), &lease).await
            }
            Step::Acquire { renewing } => {
                let lease = held(current.as_ref(), &self.settings, renewing);
                self.api.replace(&self.settings.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => {
                self.follows = None;
                Ok(true)
            }
            // Someone else wrote it first (409), or created it (409).
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up, so that another agent takes over at once. The
    /// released record keeps others' observers waiting `duration` more
    /// (at least 1 s): 1 s for the leader's, a whole lease for a node's.
    pub(super) async fn release(&mut self, duration: Duration) {
        let Ok(Some(current)) = self.api.get_opt(&self.settings.name).await else { return };
        let ours = current.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.settings.identity);
        if !ours {
            return;
        }
        let mut released = current.clone();
        let spec = released.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(duration.as_secs().max(1) as i32);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.settings.name, &PostParams::default(), &released).await {
            Ok(_) => info!(lease = %self.settings.name, "released the lease"),
            Err(e) => warn!(lease = %self.settings.name, "releasing the lease: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_at_second: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("lb-leader".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed_at_second).unwrap())),
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", &mut None, Instant::now()), Step::Create);
    }

    #[test]
    fn our_lease_is_renewed_and_a_released_one_taken() {
        let now = Instant::now();
        assert_eq!(decide(Some(&lease(Some("a"), 1)), "a", &mut None, now), Step::Acquire { renewing: true });
        assert_eq!(decide(Some(&lease(None, 1)), "a", &mut None, now), Step::Acquire { renewing: false });
        assert_eq!(decide(Some(&lease(Some(""), 1)), "a", &mut None, now), Step::Acquire { renewing: false });
    }

    #[test]
    fn another_holder_is_followed_until_its_record_stops_changing_for_a_lease_duration() {
        let start = Instant::now();
        let mut observed = None;
        let follow = Step::Follow { holder: "b".into() };
        assert_eq!(decide(Some(&lease(Some("b"), 100)), "a", &mut observed, start), follow);
        // b renews at +10 s: the wait starts again.
        let t10 = start + Duration::from_secs(10);
        assert_eq!(decide(Some(&lease(Some("b"), 110)), "a", &mut observed, t10), follow);
        // 14 s after the last change: still b's, whatever the timestamps say.
        assert_eq!(decide(Some(&lease(Some("b"), 110)), "a", &mut observed, t10 + Duration::from_secs(14)), follow);
        // 15 s without change: expired.
        let t25 = t10 + Duration::from_secs(15);
        assert_eq!(decide(Some(&lease(Some("b"), 110)), "a", &mut observed, t25), Step::Acquire { renewing: false });
    }

    #[test]
    fn taking_over_counts_a_transition_and_keeps_the_resource_version() {
        let settings = LeaseSettings::new("lb-system".into(), "lb-leader".into(), "a".into());
        let old = lease(Some("b"), 1);
        let taken = held(Some(&old), &settings, false);
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
        let renewed = held(Some(&lease(Some("a"), 1)), &settings, true).spec.unwrap();
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(held(None, &settings, false).spec.unwrap().lease_transitions, Some(0));
    }
}
