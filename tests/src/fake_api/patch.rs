//! Patch bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

use serde_json::Value;

/// How a `PATCH` body is interpreted, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`, applied as a plain merge
    /// patch: lists are replaced wholesale, not merged by their patch keys.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply), applied as a merge
    /// patch without field ownership; creates the object when absent.
    Apply,
    /// `application/json-patch+json`.
    Json,
}

impl PatchKind {
    /// The patch type of a content type, `None` when unsupported (415).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            "application/json-patch+json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch to `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON pointer into its parent pointer and last (unescaped) token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("cannot operate on the whole document".into());
    }
    let i = path.rfind('/').ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((&path[..i], unescape(&path[i + 1..])))
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let i: usize = token.parse().map_err(|_| format!("invalid array index {token:?}"))?;
    let max = if allow_end { len } else { len.saturating_sub(1) };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("array index {i} out of bounds"));
    }
    Ok(i)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, token) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(token, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = array_index(&token, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("path {parent:?} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&token).ok_or_else(|| format!("path {path:?} does not exist")),
        Some(Value::Array(a)) => {
            let i = array_index(&token, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

fn str_field<'a>(op: &'a Value, name: &str) -> Result<&'a str, String> {
    op.get(name).and_then(Value::as_str).ok_or_else(|| format!("operation is missing {name:?}"))
}

/// Applies an RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let path = str_field(op, "path")?;
        let value = || op.get("value").cloned().ok_or_else(|| "operation is missing \"value\"".to_string());
        match str_field(op, "op")? {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                let v = value()?;
                let slot = doc.pointer_mut(path).ok_or_else(|| format!("path {path:?} does not exist"))?;
                *slot = v;
            }
            "move" => {
                let v = remove(doc, str_field(op, "from")?)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let from = str_field(op, "from")?;
                let v = doc.pointer(from).cloned().ok_or_else(|| format!("path {from:?} does not exist"))?;
                add(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("test operation failed at {path:?}"));
                }
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"metadata": {"labels": {"a/b": "1"}}, "l": [1, 2]});
        let p = json!([
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
            {"op": "remove", "path": "/l/0"},
            {"op": "test", "path": "/l", "value": [2, 3]},
            {"op": "add", "path": "/x", "value": {}},
        ]);
        json_patch(&mut d, &p).unwrap();
        assert_eq!(d, json!({"metadata": {"labels": {"a/b": "2"}}, "l": [2, 3], "x": {}}));
        assert!(json_patch(&mut d, &json!([{"op": "replace", "path": "/nope", "value": 1}])).is_err());
    }
}
