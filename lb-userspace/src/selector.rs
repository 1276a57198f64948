//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), as
//! the API server validates and matches them: parsed once into a
//! [`Selector`], then matched against label sets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A validated label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// The selector `selector` spells, or why it is invalid: the error
    /// names the field under the selector (`matchExpressions[1].values`).
    pub fn parse(selector: &LabelSelector) -> Result<Self, (String, String)> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = |name: &str| format!("matchExpressions[{i}].{name}");
            let values = expression.values.clone().unwrap_or_default();
            let key = expression.key.clone();
            if key.is_empty() {
                return Err((field("key"), "must not be empty".into()));
            }
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err((field("values"), format!("must not be empty with operator {}", expression.operator)));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err((field("values"), format!("must be empty with operator {}", expression.operator)));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err((field("operator"), format!("{other:?} is not In, NotIn, Exists or DoesNotExist")));
                }
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement (an empty selector
    /// matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        let values = (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect());
        LabelSelectorRequirement { key: key.into(), operator: operator.into(), values }
    }

    #[test]
    fn match_labels_and_expressions_all_apply() {
        let selector = Selector::parse(&LabelSelector {
            match_labels: Some(labels(&[("zone", "a")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["web", "api"]),
                expression("canary", "NotIn", &["true"]),
                expression("rack", "Exists", &[]),
                expression("drain", "DoesNotExist", &[]),
            ]),
        })
        .unwrap();
        assert!(selector.matches(&labels(&[("zone", "a"), ("tier", "api"), ("rack", "1")])));
        assert!(!selector.matches(&labels(&[("zone", "b"), ("tier", "api"), ("rack", "1")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "db"), ("rack", "1")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "api"), ("rack", "1"), ("canary", "true")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "api")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "api"), ("rack", "1"), ("drain", "")])));
        assert!(Selector::parse(&LabelSelector::default()).unwrap().matches(&labels(&[])));
    }

    #[test]
    fn invalid_expressions_name_their_field() {
        let invalid = |e: LabelSelectorRequirement| {
            Selector::parse(&LabelSelector { match_labels: None, match_expressions: Some(vec![e]) }).unwrap_err().0
        };
        assert_eq!(invalid(expression("a", "In", &[])), "matchExpressions[0].values");
        assert_eq!(invalid(expression("a", "Exists", &["x"])), "matchExpressions[0].values");
        assert_eq!(invalid(expression("a", "Gt", &["1"])), "matchExpressions[0].operator");
        assert_eq!(invalid(expression("", "Exists", &[])), "matchExpressions[0].key");
    }
}
