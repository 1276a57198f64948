//! What the admin listener's `/inspect/*` endpoints answer, in JSON: the
//! shapes `lb inspect -o json` prints (field names are stable: scripts read
//! them).

use serde::{Deserialize, Serialize};

/// `/inspect/services`: every service port view in the data path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServicesReport {
    /// `false` with `--no-xdp` (or while standing by): no service is
    /// programmed here.
    pub data_path: bool,
    pub services: Vec<ServiceReport>,
}

/// One service port as one kind of traffic sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub namespace: String,
    pub name: String,
    /// The Service port's name (empty for a single unnamed port).
    pub port: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// `cluster`: every endpoint; `node`: this node's only (a `Local`
    /// traffic policy).
    pub scope: String,
    /// Its id in the maps (`None`: not programmed, e.g. no id left).
    pub id: Option<u32>,
    pub frontends: Vec<FrontendReport>,
    pub backends: Vec<BackendReport>,
    /// Both directions, since the id was given.
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontendReport {
    /// `address:port/protocol`.
    pub address: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalIP`.
    pub kind: String,
    /// Masqueraded to the node address (`externalTrafficPolicy: Cluster`).
    pub masquerade: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    /// `ip:port`.
    pub address: String,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node.
    pub local: bool,
    /// Its share of the Maglev row (0 to 1).
    pub maglev_share: f64,
}

/// `/inspect/conntrack`: live flows (forward entries), at most `limit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConntrackReport {
    pub entries: u64,
    pub capacity: u32,
    pub flows: Vec<FlowReport>,
    /// More flows matched than `limit`.
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    /// `namespace/name:port/protocol` of its service port
    /// (`namespace/name/protocol` for an unnamed port).
    pub service: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    pub client: String,
    pub frontend: String,
    /// The backend, as the flow was translated.
    pub backend: String,
    /// The source the backend sees: the node address when masqueraded.
    pub source: String,
    pub masquerade: bool,
    /// Seconds since its last packet.
    pub idle_seconds: f64,
}

/// `/inspect/routes`: the proxy's route table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutesReport {
    pub hosts: Vec<HostReport>,
    /// `namespace/name:port` of the default backend, if any.
    pub default_backend: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// Empty for the rules without host.
    pub host: String,
    pub tls_redirect: bool,
    /// The certificate served for it, if any.
    pub certificate: Option<CertificateReport>,
    pub paths: Vec<PathReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificateReport {
    /// `namespace/name` of the Secret.
    pub secret: String,
    /// RFC 3339.
    pub not_after: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    pub path: String,
    /// `Exact`, `Prefix` or `ImplementationSpecific`.
    pub path_type: String,
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// `namespace/name:port`.
    pub backend: String,
    /// The endpoints (`ip:port`) or the ExternalName (`host:port`).
    pub endpoints: Vec<String>,
    pub canary: Option<String>,
    /// The annotations in effect, as ingress-nginx names them, with their
    /// values as parsed.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `/inspect/diagnostics`: every object left out, with the reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsReport {
    pub diagnostics: Vec<DiagnosticReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticReport {
    /// `Ingress default/web`, `services.yaml document 2`, …
    pub object: String,
    /// The field inside it (empty: the whole object).
    pub field: String,
    pub message: String,
}
