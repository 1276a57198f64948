//! List requests: selectors, `limit` and `continue` paging.

use serde_json::{Value, json};

use super::resources::{ResourceType, index_of};
use super::selectors::Selector;
use super::status::ApiError;
use super::store::{Store, meta_str};

/// How many paged lists keep their snapshot for `continue` at once.
const MAX_CONTINUATIONS: usize = 64;

/// The rest of a paged list: the snapshot taken by its first page, so every
/// page reports the first page's resourceVersion and sees the same objects
/// (a real server reads the same etcd revision).
#[derive(Debug, Clone)]
pub(crate) struct Continuation {
    rv: u64,
    items: Vec<Value>,
}

fn parse_token(token: &str) -> Option<(u64, usize)> {
    let (id, offset) = token.strip_prefix("fake-continue-")?.split_once('-')?;
    Some((id.parse().ok()?, offset.parse().ok()?))
}

impl Store {
    /// Objects of `res` (in `ns` when given) that `sel` matches, in key order.
    pub(crate) fn matching(&self, res: &'static ResourceType, ns: Option<&str>, sel: &Selector) -> Vec<Value> {
        self.objects[index_of(res)]
            .values()
            .filter(|o| ns.is_none() || meta_str(o, "namespace") == ns)
            .filter(|o| sel.matches(o))
            .cloned()
            .collect()
    }

    /// A `…List` object for a list request.
    pub(crate) fn list(
        &mut self,
        res: &'static ResourceType,
        ns: Option<&str>,
        sel: &Selector,
        limit: Option<usize>,
        token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let limit = limit.filter(|&l| l > 0);
        let (rv, items, offset, id) = match token.filter(|t| !t.is_empty()) {
            Some(token) => {
                let (id, offset) = parse_token(token).ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                let cont = self.continuations.get(&id).filter(|c| c.rv >= self.compacted).ok_or_else(|| {
                    ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter.",
                    )
                })?;
                (cont.rv, cont.items.clone(), offset, Some(id))
            }
            None => (self.rv, self.matching(res, ns, sel), 0, None),
        };
        let end = limit.map_or(items.len(), |l| items.len().min(offset.saturating_add(l)));
        let page: Vec<Value> = items.get(offset..end).unwrap_or_default().to_vec();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if end < items.len() {
            let id = match id {
                Some(id) => id,
                None => {
                    let id = self.next_continue;
                    self.next_continue += 1;
                    if self.continuations.len() >= MAX_CONTINUATIONS {
                        self.continuations.pop_first();
                    }
                    self.continuations.insert(id, Continuation { rv, items: items.clone() });
                    id
                }
            };
            metadata["continue"] = Value::String(format!("fake-continue-{id}-{end}"));
            metadata["remainingItemCount"] = json!(items.len() - end);
        } else if let Some(id) = id {
            self.continuations.remove(&id);
        }
        Ok(json!({"apiVersion": res.api_version(), "kind": res.list_kind(), "metadata": metadata, "items": page}))
    }
}
