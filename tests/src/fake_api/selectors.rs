//! `labelSelector` and `fieldSelector` query parameters.

use serde_json::Value;

use super::resources::ResourceType;

/// One label requirement.
#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// One field requirement: dotted path, whether it must equal, value.
#[derive(Debug, Clone)]
struct FieldReq {
    path: String,
    equal: bool,
    value: String,
}

/// A parsed `labelSelector` plus `fieldSelector` (their conjunction). The empty
/// selector matches everything.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn valid_key(k: &str) -> Result<String, String> {
    if k.is_empty() || k.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)) {
        Err(format!("invalid label key {k:?}"))
    } else {
        Ok(k.to_string())
    }
}

fn parse_label_term(t: &str) -> Result<LabelReq, String> {
    if let Some(open) = t.find('(') {
        let close = t.rfind(')').filter(|&c| c > open).ok_or_else(|| format!("unbalanced parentheses in {t:?}"))?;
        let head: Vec<&str> = t[..open].split_whitespace().collect();
        let values: Vec<String> =
            t[open + 1..close].split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
        return match head.as_slice() {
            [k, "in"] => Ok(LabelReq::In(valid_key(k)?, values)),
            [k, "notin"] => Ok(LabelReq::NotIn(valid_key(k)?, values)),
            _ => Err(format!("unable to parse requirement {t:?}")),
        };
    }
    if let Some(k) = t.strip_prefix('!') {
        return Ok(LabelReq::NotExists(valid_key(k.trim())?));
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(LabelReq::NotEq(valid_key(k.trim())?, v.trim().to_string()));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Ok(LabelReq::Eq(valid_key(k.trim())?, v.trim().to_string()));
    }
    Ok(LabelReq::Exists(valid_key(t)?))
}

impl Selector {
    /// Parses both selectors for objects of `res`; the error is the message of
    /// a 400 BadRequest (unsupported field label, malformed requirement).
    pub fn parse(res: &ResourceType, label: Option<&str>, field: Option<&str>) -> Result<Self, String> {
        let mut sel = Selector::default();
        for t in split_terms(label.unwrap_or("")) {
            sel.labels.push(parse_label_term(t)?);
        }
        for t in split_terms(field.unwrap_or("")) {
            let (path, equal, value) = if let Some((k, v)) = t.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector: {t:?}"));
            };
            let path = path.trim();
            if !(path == "metadata.name" || path == "metadata.namespace" || res.fields.contains(&path)) {
                return Err(format!("field label not supported: {path}"));
            }
            sel.fields.push(FieldReq { path: path.to_string(), equal, value: value.trim().to_string() });
        }
        Ok(sel)
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok && self.fields.iter().all(|f| (field_value(obj, &f.path) == f.value) == f.equal)
    }
}

/// The string value of a field label: strings as is, numbers and booleans
/// printed, absent fields empty (`spec.unschedulable` unset is `""`, as the
/// real server's `false`-by-default fields are not modelled).
fn field_value(obj: &Value, path: &str) -> String {
    let path = if path == "source" { "source.component" } else { path };
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) => cur.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::by_plural;
    use super::*;
    use serde_json::json;

    fn sel(l: &str, f: &str) -> Selector {
        Selector::parse(by_plural("", "v1", "secrets").unwrap(), Some(l), Some(f)).unwrap()
    }

    #[test]
    fn labels_and_fields() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x", "tier": "web"}}, "type": "kubernetes.io/tls"});
        assert!(sel("app=x,tier", "").matches(&o));
        assert!(sel("app==x,!missing,tier in (web, db)", "type=kubernetes.io/tls").matches(&o));
        assert!(!sel("app!=x", "").matches(&o));
        assert!(sel("other!=x,tier notin (db)", "metadata.name!=b,metadata.namespace=ns").matches(&o));
        assert!(!sel("", "metadata.name=b").matches(&o));
        assert!(!sel("missing", "").matches(&o));
        assert!(Selector::parse(by_plural("", "v1", "services").unwrap(), None, Some("type=x")).is_err());
    }
}
