//! The changes: once a second, one of every kind, written into the
//! manifests directory both agents watch (a copy of `manifests/examples`):
//!
//! - **EndpointSlices**: every slice of the loaded Services scales one pod
//!   down and up again over three steps — the pod turns terminating
//!   (`ready: false, serving: true`), is removed, comes back ready — the
//!   pod rotating from cycle to cycle;
//! - **a Service**: `churn-N` (with its slice) is added on even steps and
//!   removed on odd ones;
//! - **an Ingress**: `churn`'s second path changes name at every step while
//!   its `/stable` path, which the load asks, stays;
//! - **a Secret**: the TLS Secret of `https-example.foo.com` gets a new
//!   certificate (issued by the CA the HTTPS load verifies against).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use lb_testbed::l7::{Ingress, ManifestDir, Rule, TestCa, docs, tls_secret};
use lb_testbed::{PodSpec, default_pods};
use serde_json::{Value, json};

/// The host of the Ingress that changes at every step.
pub const CHURN_HOST: &str = "churn.test";
/// Its path that never changes (the load asks it).
pub const STABLE_PATH: &str = "/stable";
/// The TLS example's host (`ingress-tls.yaml`).
pub const TLS_HOST: &str = "https-example.foo.com";
/// The TLS example's Secret.
const TLS_SECRET: &str = "testsecret-tls";

/// Files this module writes.
const SLICES_FILE: &str = "soak-endpointslices.yaml";
const SERVICE_FILE: &str = "soak-service.yaml";
const INGRESS_FILE: &str = "soak-ingress.yaml";
const SECRET_FILE: &str = "ingress-tls-secret.yaml";
/// The examples' slices, replaced by [`SLICES_FILE`].
const EXAMPLE_SLICES: &str = "endpointslices.yaml";
/// The examples' Ingress backends, whose nginx1 slice moves to [`SLICES_FILE`].
const EXAMPLE_BACKENDS: &str = "ingress-backends.yaml";

/// A slice of the examples that the churn scales: its name, Service, port
/// (name, number, protocol) and the pods behind it.
struct Slice {
    name: &'static str,
    service: &'static str,
    port: (&'static str, u16, &'static str),
    pods: &'static [usize],
}

const ALL_PODS: &[usize] = &[0, 1, 2];

/// Every slice of `endpointslices.yaml` and the Ingress examples' nginx1
/// slice (pods 2xkqn and q9wvt), as the examples have them.
const SLICES: [Slice; 6] = [
    Slice { name: "my-service-nodeport-x7k2p", service: "my-service-nodeport", port: ("", 80, "TCP"), pods: ALL_PODS },
    Slice { name: "nginx2-service-m4q9z", service: "nginx2-service", port: ("", 80, "TCP"), pods: ALL_PODS },
    Slice { name: "echo-udp-d8s3w", service: "echo-udp", port: ("dns-like", 5353, "UDP"), pods: ALL_PODS },
    Slice { name: "echo-external-h2n6r", service: "echo-external", port: ("http", 80, "TCP"), pods: ALL_PODS },
    Slice {
        name: "nginx-service-q8d5j",
        service: "nginx-service",
        port: ("name-of-service-port", 80, "TCP"),
        pods: ALL_PODS,
    },
    Slice {
        name: "nginx1-service-clusterip-7x2kq",
        service: "nginx1-service-clusterip",
        port: ("http", 8080, "TCP"),
        pods: &[0, 2],
    },
];

/// Where one pod is in the scaling cycle at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodState {
    Ready,
    Terminating,
    Gone,
}

/// The state of pod `pod` at step `step`: each cycle of three steps takes
/// one pod (the next one each cycle) through ready → terminating → gone.
fn pod_state(step: u64, pod: usize, pods: usize) -> PodState {
    let scaled = (step / 3) as usize % pods;
    match (pod == scaled, step % 3) {
        (true, 1) => PodState::Terminating,
        (true, 2) => PodState::Gone,
        _ => PodState::Ready,
    }
}

/// What step `step` did to the pods' endpoints (`pod X terminating`).
pub fn describe_step(step: u64) -> String {
    let pods = default_pods();
    let scaled = &pods[(step / 3) as usize % pods.len()].name;
    match step % 3 {
        1 => format!("{scaled} turned terminating"),
        2 => format!("{scaled} removed"),
        _ if step == 0 => "every pod ready".into(),
        _ => format!("{} back, ready", pods[((step - 1) / 3) as usize % pods.len()].name),
    }
}

/// The manifests directory and the CA that signs the TLS Secret.
pub struct Churn {
    dir: ManifestDir,
    ca: Arc<TestCa>,
    pods: Vec<PodSpec>,
    step: u64,
}

impl Churn {
    /// Copies the examples into `dir` (the slices this module scales taken
    /// out of them) and writes step 0: every pod ready, the first churn
    /// Service, Ingress and certificate.
    pub fn prepare(dir: &Path, ca: Arc<TestCa>) -> Result<Self> {
        let examples = lb_testbed::example_manifests_dir();
        for entry in std::fs::read_dir(&examples).with_context(|| format!("reading {}", examples.display()))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if !name.ends_with(".yaml") || name == EXAMPLE_SLICES {
                continue;
            }
            let mut text = std::fs::read_to_string(&path)?;
            if name == EXAMPLE_BACKENDS {
                text = without_document(&text, SLICES[5].name);
            }
            std::fs::write(dir.join(name), text)?;
        }
        let mut churn = Self { dir: ManifestDir::new(dir)?, ca, pods: default_pods(), step: 0 };
        churn.write_step()?;
        Ok(churn)
    }

    /// The next step's changes; the files written.
    pub fn step(&mut self) -> Result<u64> {
        self.step += 1;
        self.write_step()
    }

    fn write_step(&mut self) -> Result<u64> {
        let n = self.step;
        let slices: Vec<String> = SLICES.iter().map(|s| self.slice(s, n).to_string()).collect();
        self.dir.write(SLICES_FILE, &docs(&slices))?;
        if n.is_multiple_of(2) {
            self.dir.write(SERVICE_FILE, &churn_service(n, &self.pods))?;
        } else {
            self.dir.remove(SERVICE_FILE)?;
        }
        let edited = format!("/edit-{n}");
        let ingress = Ingress::new("churn").class("nginx").rule(
            Rule::host(CHURN_HOST).prefix(STABLE_PATH, "nginx1-service-clusterip", 80).prefix(
                &edited,
                "nginx2-service-clusterip",
                80,
            ),
        );
        self.dir.write(INGRESS_FILE, &ingress.yaml())?;
        let pair = self.ca.issue(&[TLS_HOST]).context("issuing a certificate")?;
        self.dir.write(SECRET_FILE, &tls_secret(TLS_SECRET, &pair))?;
        Ok(4)
    }

    fn slice(&self, s: &Slice, step: u64) -> Value {
        let endpoints: Vec<Value> = s
            .pods
            .iter()
            .filter_map(|&i| {
                let pod = &self.pods[i];
                let (ready, terminating) = match pod_state(step, i, self.pods.len()) {
                    PodState::Ready => (true, false),
                    PodState::Terminating => (false, true),
                    PodState::Gone => return None,
                };
                Some(endpoint(pod, ready, terminating))
            })
            .collect();
        let (port_name, port, protocol) = s.port;
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": s.name, "namespace": "default", "labels": {"kubernetes.io/service-name": s.service}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": endpoints,
        })
    }
}

fn endpoint(pod: &PodSpec, ready: bool, terminating: bool) -> Value {
    json!({
        "addresses": [pod.ip.to_string()],
        "conditions": {"ready": ready, "serving": true, "terminating": terminating},
        "nodeName": pod.node,
        "targetRef": {"kind": "Pod", "namespace": "default", "name": pod.name},
    })
}

/// Service `churn-N` (ClusterIP and an external IP, port 9000 → the pods'
/// 80) with every pod behind it.
fn churn_service(n: u64, pods: &[PodSpec]) -> String {
    let name = format!("churn-{n}");
    let cluster_ip = Ipv4Addr::new(10, 96, 201, 10 + (n / 2 % 200) as u8);
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "clusterIP": cluster_ip.to_string(),
            "externalIPs": ["198.51.100.20"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 9000, "targetPort": 80}],
        },
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": pods.iter().map(|p| endpoint(p, true, false)).collect::<Vec<_>>(),
    });
    docs(&[service.to_string(), slice.to_string()])
}

/// `text` (a multi-document YAML file) without the document whose
/// `name:` is `name`.
fn without_document(text: &str, name: &str) -> String {
    let needle = format!("name: {name}\n");
    text.split("\n---\n").filter(|doc| !doc.contains(&needle)).collect::<Vec<_>>().join("\n---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cycle_scales_the_next_pod_down_and_up() {
        let states: Vec<Vec<PodState>> = (0..9).map(|s| (0..3).map(|p| pod_state(s, p, 3)).collect()).collect();
        use PodState::*;
        assert_eq!(states[0], [Ready, Ready, Ready]);
        assert_eq!(states[1], [Terminating, Ready, Ready]);
        assert_eq!(states[2], [Gone, Ready, Ready]);
        assert_eq!(states[3], [Ready, Ready, Ready]);
        assert_eq!(states[4], [Ready, Terminating, Ready]);
        assert_eq!(states[8], [Ready, Ready, Gone]);
        // Never more than one pod out: every slice keeps a ready endpoint.
        assert!(states.iter().all(|s| s.iter().filter(|p| **p != Ready).count() <= 1));
    }

    #[test]
    fn steps_are_described_by_what_they_did_to_the_pods() {
        assert_eq!(describe_step(1), "nginx-7c5ddbdf54-2xkqn turned terminating");
        assert_eq!(describe_step(2), "nginx-7c5ddbdf54-2xkqn removed");
        assert_eq!(describe_step(3), "nginx-7c5ddbdf54-2xkqn back, ready");
        assert_eq!(describe_step(4), "nginx-7c5ddbdf54-8rz4m turned terminating");
        assert_eq!(describe_step(9), "nginx-7c5ddbdf54-q9wvt back, ready");
    }

    #[test]
    fn every_step_writes_the_four_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let mut churn = Churn::prepare(dir.path(), Arc::new(TestCa::new().unwrap())).unwrap();
        let files = |d: &Path| {
            let mut names: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        };
        let at_0 = files(dir.path());
        assert!(!at_0.contains(&EXAMPLE_SLICES.to_string()), "{at_0:?}");
        for f in [SLICES_FILE, SERVICE_FILE, INGRESS_FILE, SECRET_FILE, EXAMPLE_BACKENDS] {
            assert!(at_0.contains(&f.to_string()), "{f} missing: {at_0:?}");
        }
        let backends = std::fs::read_to_string(dir.path().join(EXAMPLE_BACKENDS)).unwrap();
        assert!(!backends.contains("nginx1-service-clusterip-7x2kq") && backends.contains("service1-q8n2c"));
        let secret_0 = std::fs::read_to_string(dir.path().join(SECRET_FILE)).unwrap();
        churn.step().unwrap();
        assert!(!dir.path().join(SERVICE_FILE).exists(), "the churn Service goes on odd steps");
        let slices = std::fs::read_to_string(dir.path().join(SLICES_FILE)).unwrap();
        assert_eq!(slices.matches("\"terminating\":true").count(), 6, "pod 0 terminates in every slice: {slices}");
        let ingress = std::fs::read_to_string(dir.path().join(INGRESS_FILE)).unwrap();
        assert!(ingress.contains("/edit-1") && ingress.contains(STABLE_PATH), "{ingress}");
        assert_ne!(std::fs::read_to_string(dir.path().join(SECRET_FILE)).unwrap(), secret_0, "a new certificate");
        churn.step().unwrap();
        let slices = std::fs::read_to_string(dir.path().join(SLICES_FILE)).unwrap();
        assert!(!slices.contains("10.244.1.10"), "pod 0 is gone from every slice");
        assert!(std::fs::read_to_string(dir.path().join(SERVICE_FILE)).unwrap().contains("churn-2"));
    }
}
