//! MetalLB's objects as the sources hold them: metadata, and the spec as
//! it came (validated where its diagnostics go: [`super::resources`]), so a
//! malformed spec never fails a watch or a file, only its own object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};

/// A `metallb.io/v1beta1` `IPAddressPool`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpAddressPoolObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// A `metallb.io/v1beta1` `L2Advertisement`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct L2AdvertisementObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
}

macro_rules! metallb_resource {
    ($type:ty, $kind:literal, $plural:literal) => {
        impl Resource for $type {
            const API_VERSION: &'static str = "metallb.io/v1beta1";
            const GROUP: &'static str = "metallb.io";
            const KIND: &'static str = $kind;
            const VERSION: &'static str = "v1beta1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = NamespaceResourceScope;
        }

        impl Metadata for $type {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }

        impl $type {
            /// The whole object, as [`super::resources`] parses it.
            pub fn to_value(&self) -> serde_json::Value {
                serde_json::json!({"metadata": self.metadata, "spec": self.spec})
            }
        }
    };
}

metallb_resource!(IpAddressPoolObject, "IPAddressPool", "ipaddresspools");
metallb_resource!(L2AdvertisementObject, "L2Advertisement", "l2advertisements");
