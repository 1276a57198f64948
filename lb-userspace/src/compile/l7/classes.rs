//! Which Ingresses are ours.
//!
//! Our class names are the configured ingress class and the names of the
//! IngressClasses whose `spec.controller` is our controller. An Ingress is
//! ours when:
//! - its `spec.ingressClassName` is one of them (when it is set, it alone
//!   decides; the API refuses it together with the legacy annotation);
//! - else its `kubernetes.io/ingress.class` annotation is one of them;
//! - else (no class at all) when one of our IngressClasses is annotated
//!   `ingressclass.kubernetes.io/is-default-class: "true"`.
//!
//! Ingresses of other classes belong to other controllers: they are
//! skipped without diagnostics.

use std::borrow::Borrow;
use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::L7Options;

/// The legacy annotation that named an Ingress's class before
/// `spec.ingressClassName`.
pub(super) const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks the IngressClass used by Ingresses without a class.
pub(super) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Our class names, and whether Ingresses without a class are ours.
#[derive(Debug)]
pub(super) struct OurClasses {
    names: BTreeSet<String>,
    claims_unclassed: bool,
}

impl OurClasses {
    pub fn new<'c, C: Borrow<IngressClass> + 'c>(
        classes: impl IntoIterator<Item = &'c C>,
        options: &L7Options,
    ) -> Self {
        let ours: Vec<&IngressClass> = classes
            .into_iter()
            .map(Borrow::borrow)
            .filter(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(options.controller_name.as_str()))
            .collect();
        let mut names: BTreeSet<String> = ours.iter().filter_map(|c| c.metadata.name.clone()).collect();
        names.insert(options.ingress_class.clone());
        let claims_unclassed = ours.iter().any(|c| {
            let annotations = c.metadata.annotations.as_ref();
            annotations.and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).is_some_and(|v| v == "true")
        });
        Self { names, claims_unclassed }
    }

    pub fn claims(&self, ingress: &Ingress) -> bool {
        let class_name = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()).filter(|c| !c.is_empty());
        let annotation = || {
            let annotations = ingress.metadata.annotations.as_ref();
            annotations.and_then(|a| a.get(CLASS_ANNOTATION)).map(String::as_str).filter(|c| !c.is_empty())
        };
        match class_name.or_else(annotation) {
            Some(class) => self.names.contains(class),
            None => self.claims_unclassed,
        }
    }
}
