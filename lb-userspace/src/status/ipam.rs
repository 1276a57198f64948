//! IPAM: addresses from the configured pools for Services of type
//! LoadBalancer, the way MetalLB hands them out. Pure: pools and Services
//! in, the desired address of every managed Service out.
//!
//! - **Off without pools.** If no pool is configured, nothing is managed:
//!   the [`Allocation`] is empty and the status writer touches no Service.
//! - **Managed Services** are those of `spec.type: LoadBalancer` whose
//!   `spec.loadBalancerClass` equals [`IpamOptions::load_balancer_class`]
//!   (`None` manages only Services without a class). Each managed Service
//!   ends up in exactly one of [`Allocation::assignments`] (its one
//!   address) or [`Allocation::problems`] (why it has none; its status
//!   should then hold no address). Unmanaged Services are in neither.
//! - **IPv4 only.** A Service whose `spec.ipFamilies` is set without
//!   `IPv4` gets [`ProblemReason::Ipv6Only`]; an unset list means IPv4.
//! - **Pools.** The [`POOL_ANNOTATION`] (else MetalLB's
//!   [`METALLB_POOL_ANNOTATION`]) names the pool a Service draws from, even
//!   one with `autoAssign: false`; an unknown name is
//!   [`ProblemReason::UnknownPool`]. Without it, new addresses come from the
//!   pools with `autoAssign: true`: first those whose `serviceAllocation`
//!   admits the Service (by priority, lower first, unprioritised last),
//!   then those without one, in configuration order. A pool with a
//!   `serviceAllocation` never serves a Service it does not admit (not by
//!   annotation, request or held address: [`ProblemReason::PoolNotAdmitted`]).
//!   Its `namespaceSelectors` match the labels in the [`NamespaceLabels`]
//!   given.
//! - **Requests.** `spec.loadBalancerIP` (deprecated, still used) or
//!   MetalLB's [`METALLB_IPS_ANNOTATION`] (its one IPv4 entry; not both)
//!   asks for one address. It must be IPv4 ([`ProblemReason::InvalidAddress`]) and
//!   lie in the annotated pool, or without the annotation in any pool,
//!   `autoAssign: false` ones included ([`ProblemReason::AddressNotInPool`]).
//!   If another Service holds it: [`ProblemReason::AddressInUse`].
//! - **Stickiness.** A Service keeps the first IPv4 address of its
//!   `status.loadBalancer.ingress` if the annotated pool (without the
//!   annotation, any pool: `autoAssign` only governs new addresses)
//!   contains it, it is the requested one when there is a request, and no
//!   Service before it keeps it. Otherwise it is given a new address.
//! - **Order.** Services are taken oldest first (`metadata.creationTimestamp`,
//!   a missing one counting as oldest, then namespace, then name), in three
//!   passes: those keeping their address, then those requesting one, then
//!   the others, who get the lowest free address of the first of their
//!   pools that has one (skipping `.0` and `.255` with `avoidBuggyIPs`), or
//!   [`ProblemReason::PoolExhausted`]. So the result depends only on the
//!   set of Services, not on the order they are given in, and a running
//!   Service never loses its address to a newer one.
//! - **No sharing.** An address goes to one Service only (MetalLB's
//!   `allow-shared-ip` is not supported).

mod pools;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Namespace, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::diagnostics::object_ref;
use crate::snapshot::{Objects, object_key};
pub use pools::{AddressPool, AddressRange, RangeError, ServiceAllocation, is_buggy};

/// Each namespace's labels, for pools' `namespaceSelectors`.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// The label the API server puts on every Namespace, naming it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The labels of `namespaces`, each with [`NAMESPACE_NAME_LABEL`] as the
/// API server sets it (so a Namespace of a manifests file selects as it
/// would in a cluster). A namespace without a Namespace object has no
/// labels: only pools naming it in `serviceAllocation.namespaces` admit its
/// Services.
pub fn namespace_labels(namespaces: &Objects<Namespace>) -> NamespaceLabels {
    namespaces
        .iter()
        .filter_map(|namespace| {
            let name = namespace.metadata.name.clone().filter(|n| !n.is_empty())?;
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
            Some((name, labels))
        })
        .collect()
}

/// The annotation naming the pool a Service's address comes from.
pub const POOL_ANNOTATION: &str = "lb.dev/address-pool";
/// MetalLB's annotation for the same, honoured as well (the first of the
/// two that is set wins).
pub const METALLB_POOL_ANNOTATION: &str = "metallb.io/address-pool";
/// MetalLB's annotation requesting addresses (comma-separated, one per
/// family), the successor of `spec.loadBalancerIP`.
pub const METALLB_IPS_ANNOTATION: &str = "metallb.io/loadBalancerIPs";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpamOptions {
    /// The `spec.loadBalancerClass` of the Services to manage; `None`
    /// manages the Services without a class.
    pub load_balancer_class: Option<String>,
}

/// What [`allocate`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Desired `status.loadBalancer.ingress` IPs of every Service this IPAM manages, keyed by (namespace, name).
    pub assignments: BTreeMap<(String, String), Ipv4Addr>,
    /// Services managed but left without an address, and why (for Events
    /// on the Service), by namespace and name.
    pub problems: Vec<AllocationProblem>,
}

impl Allocation {
    /// Whether the Service is managed: given an address or a problem. The
    /// status of a Service that is not managed must be left alone.
    pub fn is_managed(&self, namespace: &str, name: &str) -> bool {
        self.assignments.contains_key(&(namespace.to_string(), name.to_string()))
            || self.problems.iter().any(|p| p.namespace == namespace && p.name == name)
    }
}

/// Why a managed Service was left without an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationProblem {
    pub namespace: String,
    pub name: String,
    pub reason: ProblemReason,
    /// A sentence for the user, naming the field concerned.
    pub message: String,
}

/// `Service namespace/name: message`.
impl fmt::Display for AllocationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", object_ref("Service", &self.namespace, &self.name), self.message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemReason {
    /// Every address of the Service's pools is taken.
    PoolExhausted,
    /// The requested address is held by another Service.
    AddressInUse,
    /// The pool annotation names no configured pool.
    UnknownPool,
    /// The requested address is not in the Service's pool (or in none).
    AddressNotInPool,
    /// No pool has `autoAssign: true` and the Service names none.
    NoPool,
    /// The Service's IP families do not include IPv4.
    Ipv6Only,
    /// `spec.loadBalancerIP` is not an IPv4 address.
    InvalidAddress,
    /// The annotated pool's `serviceAllocation` does not admit the Service.
    PoolNotAdmitted,
}

impl ProblemReason {
    /// The `reason` of the Event reporting the problem.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PoolExhausted => "PoolExhausted",
            Self::AddressInUse => "AddressInUse",
            Self::UnknownPool => "UnknownAddressPool",
            Self::AddressNotInPool => "AddressNotInPool",
            Self::NoPool => "NoAutoAssignPool",
            Self::Ipv6Only => "IPv6NotSupported",
            Self::InvalidAddress => "InvalidLoadBalancerIP",
            Self::PoolNotAdmitted => "AddressPoolNotAllowed",
        }
    }
}

/// Decides the address of every Service this IPAM manages (see the module
/// documentation for the rules).
pub fn allocate<'s, S: Borrow<Service> + 's>(
    pools: &[AddressPool],
    services: impl IntoIterator<Item = &'s S>,
    namespaces: &NamespaceLabels,
    options: &IpamOptions,
) -> Allocation {
    if pools.is_empty() {
        return Allocation::default();
    }
    let mut allocator = Allocator {
        pools,
        holders: HashMap::new(),
        cursors: vec![Some(Ipv4Addr::UNSPECIFIED); pools.len()],
        allocation: Allocation::default(),
    };
    let mut claims = Vec::new();
    for service in services {
        match Claim::of(service.borrow(), pools, namespaces, options) {
            None => {}
            Some(Ok(claim)) => claims.push(claim),
            Some(Err(problem)) => allocator.allocation.problems.push(problem),
        }
    }
    claims.sort_by(|a, b| a.order().cmp(&b.order()));

    let mut pending = Vec::new();
    for claim in claims {
        match claim.held.filter(|&ip| claim.may_keep(ip, pools) && !allocator.holders.contains_key(&ip)) {
            Some(ip) => allocator.assign(&claim, ip),
            None => pending.push(claim),
        }
    }
    let (requesting, automatic): (Vec<_>, Vec<_>) = pending.into_iter().partition(|claim| claim.request.is_some());
    for claim in &requesting {
        allocator.requested(claim);
    }
    for claim in &automatic {
        allocator.automatic(claim);
    }

    let mut allocation = allocator.allocation;
    allocation.problems.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    allocation
}

/// A managed Service, as IPAM sees it.
struct Claim<'a> {
    namespace: &'a str,
    name: &'a str,
    created: Option<&'a Time>,
    /// The index of the annotated pool, if the Service names one.
    pool: Option<usize>,
    /// `spec.loadBalancerIP`, checked to lie in the Service's pools.
    request: Option<Ipv4Addr>,
    /// The IPv4 address the Service's status holds.
    held: Option<Ipv4Addr>,
    /// Per pool: whether its `serviceAllocation` (if any) admits the
    /// Service.
    admitted: Vec<bool>,
}

impl<'a> Claim<'a> {
    /// The claim of `service`, the problem that leaves it without an
    /// address, or `None` if the Service is not managed.
    fn of(
        service: &'a Service,
        pools: &[AddressPool],
        namespaces: &NamespaceLabels,
        options: &IpamOptions,
    ) -> Option<Result<Claim<'a>, AllocationProblem>> {
        let spec = service.spec.as_ref()?;
        let (namespace, name) = object_key(&service.metadata);
        let managed = spec.type_.as_deref() == Some("LoadBalancer")
            && spec.load_balancer_class == options.load_balancer_class
            && !name.is_empty();
        if !managed {
            return None;
        }
        let namespace = if namespace.is_empty() { "default" } else { namespace };
        let empty = BTreeMap::new();
        let labels = service.metadata.labels.as_ref().unwrap_or(&empty);
        let admitted: Vec<bool> = pools
            .iter()
            .map(|pool| pool.allocation.as_ref().is_none_or(|a| a.admits(namespace, namespaces.get(namespace), labels)))
            .collect();
        let checked = check_ip_families(spec).and_then(|()| {
            let pool = annotated_pool(service, pools, &admitted)?;
            Ok((pool, requested_address(service, spec, pool, pools, &admitted)?))
        });
        Some(match checked {
            Ok((pool, request)) => Ok(Claim {
                namespace,
                name,
                created: service.metadata.creation_timestamp.as_ref(),
                pool,
                request,
                held: held_address(service),
                admitted,
            }),
            Err((reason, message)) => {
                Err(AllocationProblem { namespace: namespace.into(), name: name.into(), reason, message })
            }
        })
    }

    /// Oldest first, then by namespace and name.
    fn order(&self) -> (Option<&Time>, &str, &str) {
        (self.created, self.namespace, self.name)
    }

    /// Whether the Service may keep `ip`, which its status holds.
    fn may_keep(&self, ip: Ipv4Addr, pools: &[AddressPool]) -> bool {
        let in_pool = match self.pool {
            Some(index) => pools[index].contains(ip),
            None => pools.iter().zip(&self.admitted).any(|(pool, admitted)| *admitted && pool.contains(ip)),
        };
        in_pool && self.request.is_none_or(|request| request == ip)
    }

    fn problem(&self, reason: ProblemReason, message: String) -> AllocationProblem {
        AllocationProblem { namespace: self.namespace.into(), name: self.name.into(), reason, message }
    }
}

/// Why a Service cannot be given an address, whatever the others hold.
type Unfit = (ProblemReason, String);

fn check_ip_families(spec: &ServiceSpec) -> Result<(), Unfit> {
    let families = spec.ip_families.as_deref().unwrap_or_default();
    if families.is_empty() || families.iter().any(|family| family == "IPv4") {
        return Ok(());
    }
    Err((ProblemReason::Ipv6Only, format!("spec.ipFamilies is {families:?}; only IPv4 addresses are allocated")))
}

/// The index of the pool the Service's annotation names (lb's, else
/// MetalLB's), if it has one.
fn annotated_pool(service: &Service, pools: &[AddressPool], admitted: &[bool]) -> Result<Option<usize>, Unfit> {
    let annotations = service.metadata.annotations.as_ref();
    let named =
        [POOL_ANNOTATION, METALLB_POOL_ANNOTATION].into_iter().find_map(|key| Some((key, annotations?.get(key)?)));
    let Some((key, wanted)) = named else { return Ok(None) };
    match pools.iter().position(|pool| &pool.name == wanted) {
        Some(index) if admitted[index] => Ok(Some(index)),
        Some(_) => {
            let message =
                format!("annotation {key} names pool {wanted:?}, whose serviceAllocation does not admit this Service");
            Err((ProblemReason::PoolNotAdmitted, message))
        }
        None => {
            let message = format!("annotation {key} names pool {wanted:?}, which is not configured");
            Err((ProblemReason::UnknownPool, message))
        }
    }
}

/// The address a Service asks for, and where it asks: MetalLB's
/// annotation (its IPv4 entry) or `spec.loadBalancerIP`, not both.
fn request_text(service: &Service, spec: &ServiceSpec) -> Result<Option<(String, &'static str)>, Unfit> {
    let from_spec = spec.load_balancer_ip.as_deref().filter(|text| !text.is_empty());
    let annotation = service.metadata.annotations.as_ref().and_then(|a| a.get(METALLB_IPS_ANNOTATION));
    let Some(list) = annotation else { return Ok(from_spec.map(|text| (text.to_string(), "spec.loadBalancerIP"))) };
    if from_spec.is_some() {
        let message = format!("both spec.loadBalancerIP and annotation {METALLB_IPS_ANNOTATION} are set; use one");
        return Err((ProblemReason::InvalidAddress, message));
    }
    let entries: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let ipv4: Vec<&str> = entries.iter().copied().filter(|e| !e.contains(':')).collect();
    match ipv4.as_slice() {
        [one] => Ok(Some((one.to_string(), METALLB_IPS_ANNOTATION))),
        [] if !entries.is_empty() => {
            let message = format!(
                "annotation {METALLB_IPS_ANNOTATION} {list:?} holds no IPv4 address; only IPv4 addresses are allocated"
            );
            Err((ProblemReason::InvalidAddress, message))
        }
        [] => Err((ProblemReason::InvalidAddress, format!("annotation {METALLB_IPS_ANNOTATION} is empty"))),
        _ => {
            let message = format!(
                "annotation {METALLB_IPS_ANNOTATION} {list:?} holds more than one IPv4 address; a Service gets one"
            );
            Err((ProblemReason::InvalidAddress, message))
        }
    }
}

/// The requested address (`spec.loadBalancerIP` or MetalLB's
/// annotation), if any, once checked to lie in the Service's pool (the
/// annotated one, else any).
fn requested_address(
    service: &Service,
    spec: &ServiceSpec,
    pool: Option<usize>,
    pools: &[AddressPool],
    admitted: &[bool],
) -> Result<Option<Ipv4Addr>, Unfit> {
    let Some((text, source)) = request_text(service, spec)? else { return Ok(None) };
    let ip = match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip,
        Ok(IpAddr::V6(_)) => {
            let message = format!("{source} {text:?} is IPv6; only IPv4 addresses are allocated");
            return Err((ProblemReason::InvalidAddress, message));
        }
        Err(_) => {
            return Err((ProblemReason::InvalidAddress, format!("{source} {text:?} is not an IPv4 address")));
        }
    };
    let (in_pool, within) = match pool {
        Some(index) => {
            let pool = &pools[index];
            (pool.contains(ip), format!("pool {:?} (named by the Service's annotation)", pool.name))
        }
        None => {
            let admitting = pools.iter().zip(admitted).any(|(pool, admitted)| *admitted && pool.contains(ip));
            if let Some(pool) = pools.iter().zip(admitted).find(|(pool, admitted)| !**admitted && pool.contains(ip)) {
                let message = format!(
                    "{source} {ip} is in pool {:?}, whose serviceAllocation does not admit this Service",
                    pool.0.name
                );
                return if admitting { Ok(Some(ip)) } else { Err((ProblemReason::PoolNotAdmitted, message)) };
            }
            (admitting, "any address pool".to_string())
        }
    };
    if in_pool {
        return Ok(Some(ip));
    }
    let avoided = pools.iter().any(|p| p.avoid_buggy_ips && is_buggy(ip) && p.ranges.iter().any(|r| r.contains(ip)));
    let note = if avoided { " (the pool avoids addresses ending in .0 and .255)" } else { "" };
    Err((ProblemReason::AddressNotInPool, format!("{source} {ip} is not in {within}{note}")))
}

/// The first IPv4 address of the Service's `status.loadBalancer.ingress`.
fn held_address(service: &Service) -> Option<Ipv4Addr> {
    let ingress = service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    ingress.iter().find_map(|ingress| ingress.ip.as_deref()?.parse().ok())
}

struct Allocator<'a> {
    pools: &'a [AddressPool],
    /// Address → the Service given it.
    holders: HashMap<Ipv4Addr, (&'a str, &'a str)>,
    /// Per pool, the address from which free ones may be found (every
    /// address below is taken), or `None` once the pool is full. Valid
    /// because addresses are only ever taken, never given back.
    cursors: Vec<Option<Ipv4Addr>>,
    allocation: Allocation,
}

impl<'a> Allocator<'a> {
    fn assign(&mut self, claim: &Claim<'a>, ip: Ipv4Addr) {
        self.holders.insert(ip, (claim.namespace, claim.name));
        self.allocation.assignments.insert((claim.namespace.into(), claim.name.into()), ip);
    }

    fn requested(&mut self, claim: &Claim<'a>) {
        let Some(ip) = claim.request else { return };
        match self.holders.get(&ip) {
            None => self.assign(claim, ip),
            Some(&(namespace, name)) => {
                let holder = object_ref("Service", namespace, name);
                let message = format!("spec.loadBalancerIP {ip} is already assigned to {holder}");
                self.allocation.problems.push(claim.problem(ProblemReason::AddressInUse, message));
            }
        }
    }

    fn automatic(&mut self, claim: &Claim<'a>) {
        let candidates: Vec<usize> = match claim.pool {
            Some(index) => vec![index],
            None => self.automatic_pools(claim),
        };
        if candidates.is_empty() {
            let pinned = if self.pools.iter().any(|pool| pool.allocation.is_some()) {
                " (pools with a serviceAllocation count only for the Services they admit)"
            } else {
                ""
            };
            let message = format!(
                "no address pool has autoAssign enabled{pinned}; name one with the {POOL_ANNOTATION} annotation \
                 or request an address with spec.loadBalancerIP"
            );
            return self.allocation.problems.push(claim.problem(ProblemReason::NoPool, message));
        }
        for &index in &candidates {
            if let Some(ip) = self.lowest_free(index) {
                return self.assign(claim, ip);
            }
        }
        let names: Vec<String> = candidates.iter().map(|&index| format!("{:?}", self.pools[index].name)).collect();
        let pools = if names.len() == 1 { "pool" } else { "pools" };
        let message = format!("no free address in {pools} {}", names.join(", "));
        self.allocation.problems.push(claim.problem(ProblemReason::PoolExhausted, message));
    }

    /// The pools a Service naming none draws from, in order (MetalLB's):
    /// those whose `serviceAllocation` admits it, by priority (lower first,
    /// unprioritised last, then in configuration order), then those without
    /// a `serviceAllocation`, in configuration order; `autoAssign` ones
    /// only.
    fn automatic_pools(&self, claim: &Claim<'a>) -> Vec<usize> {
        let auto = |index: &usize| self.pools[*index].auto_assign;
        let mut pinned: Vec<usize> = (0..self.pools.len())
            .filter(auto)
            .filter(|&i| self.pools[i].allocation.is_some() && claim.admitted[i])
            .collect();
        pinned.sort_by_key(|&i| self.pools[i].allocation.as_ref().and_then(|a| a.priority).map_or((1, 0), |p| (0, p)));
        let open = (0..self.pools.len()).filter(auto).filter(|&i| self.pools[i].allocation.is_none());
        pinned.into_iter().chain(open).collect()
    }

    fn lowest_free(&mut self, index: usize) -> Option<Ipv4Addr> {
        let start = self.cursors[index]?;
        let ip = self.pools[index].lowest_free(start, |ip| self.holders.contains_key(&ip));
        self.cursors[index] = ip;
        ip
    }
}
