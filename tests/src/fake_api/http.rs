//! Request handling: URL routing, verbs, bodies, responses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use super::patch::PatchKind;
use super::requests::RecordedRequest;
use super::resources::{self, ResourceType};
use super::selectors::Selector;
use super::status::ApiError;
use super::watch::{WatchBody, WatchRequest};

pub(crate) type RespBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// What a path names.
enum Target {
    /// A fixed JSON document (`/api`, `/version`).
    Doc(Value),
    /// `/apis`: the groups served.
    Groups,
    /// `/api/{version}` or `/apis/{group}/{version}`: its resources.
    GroupVersion(String, String),
    /// `/healthz` and friends.
    Ok,
    /// A resource collection or object.
    Resource(&'static ResourceType),
    NotFound,
}

/// A parsed path.
struct Route {
    target: Target,
    group: String,
    resource: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Route {
    fn simple(target: Target) -> Self {
        Route { target, group: String::new(), resource: String::new(), ns: None, name: None, sub: None }
    }
}

fn parse_path(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let doc = |d: Option<Value>| Route::simple(d.map_or(Target::NotFound, Target::Doc));
    match segs.as_slice() {
        ["version"] => doc(Some(json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-lb-fake", "gitCommit": "0", "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        }))),
        ["healthz" | "readyz" | "livez"] => Route::simple(Target::Ok),
        ["api"] => doc(Some(resources::core_versions())),
        ["apis"] => Route::simple(Target::Groups),
        ["api", v] => Route::simple(Target::GroupVersion(String::new(), v.to_string())),
        ["apis", g, v] => Route::simple(Target::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::simple(Target::NotFound),
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, ..]
            if resources::by_plural(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Route::simple(Target::NotFound),
    };
    let res = resources::by_plural(group, version, plural);
    let valid = res.is_some_and(|r| {
        !(r.namespaced && ns.is_none() && name.is_some())
            && sub.as_deref().is_none_or(|s| s == "status" && r.has_status)
    });
    let target = match res {
        Some(r) if valid => Target::Resource(r),
        _ => Target::NotFound,
    };
    Route { target, group: group.to_string(), resource: plural.to_string(), ns, name, sub }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Self {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

fn json_response(code: u16, body: &Value) -> Response<RespBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("serializable"));
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(bytes).map_err(|never| match never {}).boxed_unsync())
        .expect("valid response")
}

/// The result of a request, decided under the store lock.
enum Outcome {
    Json(u16, Value),
    Text(&'static str),
    Watch(WatchBody),
    /// Close the connection without answering.
    Refuse,
}

fn err(e: ApiError) -> Outcome {
    Outcome::Json(e.code, e.to_status())
}

fn not_found() -> Outcome {
    err(ApiError::new(404, "NotFound", "the server could not find the requested resource"))
}

/// Serves one request (recording it). An error makes hyper close the
/// connection without a response.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> std::io::Result<Response<RespBody>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query_str = parts.uri.query().unwrap_or("").to_string();
    let query = Query::parse(&query_str);
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let route = parse_path(&path);
    let watch = query.flag("watch");
    let verb = match (&route.target, &parts.method, route.name.is_some()) {
        (Target::Resource(_) | Target::NotFound, &Method::GET, false) if watch => "watch",
        (Target::Resource(_) | Target::NotFound, &Method::GET, false) => "list",
        (_, &Method::GET, _) => "get",
        (_, &Method::POST, false) => "create",
        (_, &Method::PUT, true) => "update",
        (_, &Method::PATCH, true) => "patch",
        (_, &Method::DELETE, true) => "delete",
        (_, &Method::DELETE, false) => "deletecollection",
        _ => "",
    };
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let is_apply = content_type.as_deref().is_some_and(|c| c.starts_with("application/apply-patch"));
    let parsed: Result<Option<Value>, String> = if bytes.is_empty() {
        Ok(None)
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(_) if is_apply => serde_norway::from_slice::<Value>(&bytes).map(Some).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let mut store = shared.lock();
    let outcome = if store.refusing {
        Outcome::Refuse
    } else if store.unavailable {
        err(ApiError::new(503, "ServiceUnavailable", "the fake API server is unavailable (set_unavailable)"))
    } else {
        match (&route.target, &parsed) {
            (_, Err(e)) => err(ApiError::bad_request(format!("invalid request body: {e}"))),
            (_, _) if verb.is_empty() => {
                err(ApiError::new(405, "MethodNotAllowed", format!("{} is not allowed on {path}", parts.method)))
            }
            (Target::NotFound, _) => not_found(),
            (Target::Resource(res), _) if !res.served(&store.installed_crds) => not_found(),
            (Target::Ok, _) => Outcome::Text("ok"),
            (Target::Doc(d), _) => Outcome::Json(200, d.clone()),
            (Target::Groups, _) => Outcome::Json(200, resources::group_list(&store.installed_crds)),
            (Target::GroupVersion(g, v), _) => match resources::resource_list(g, v, &store.installed_crds) {
                Some(list) => Outcome::Json(200, list),
                None => not_found(),
            },
            (Target::Resource(res), Ok(body)) => {
                let ctx = Ctx { res, route: &route, query: &query, content_type: content_type.as_deref(), body };
                execute(&mut store, verb, &ctx)
            }
        }
    };
    let status = match &outcome {
        Outcome::Json(code, _) => *code,
        Outcome::Text(_) | Outcome::Watch(_) => 200,
        Outcome::Refuse => 0,
    };
    store.requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path,
        query: query_str,
        verb: verb.to_string(),
        group: route.group.clone(),
        resource: route.resource.clone(),
        subresource: route.sub.clone(),
        namespace: route.ns.clone(),
        name: route.name.clone(),
        content_type,
        body: parsed.ok().flatten(),
        status,
    });
    store.notify();
    drop(store);
    Ok(match outcome {
        Outcome::Json(code, v) => json_response(code, &v),
        Outcome::Text(t) => {
            Response::new(Full::new(Bytes::from_static(t.as_bytes())).map_err(|n| match n {}).boxed_unsync())
        }
        Outcome::Watch(body) => Response::builder()
            .header("content-type", "application/json")
            .body(body.boxed_unsync())
            .expect("valid response"),
        Outcome::Refuse => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "fake API: refusing (set_refusing)",
            ));
        }
    })
}

/// A resource request.
struct Ctx<'a> {
    res: &'static ResourceType,
    route: &'a Route,
    query: &'a Query,
    content_type: Option<&'a str>,
    body: &'a Option<Value>,
}

fn execute(store: &mut super::store::Store, verb: &str, c: &Ctx<'_>) -> Outcome {
    let (res, ns, name) = (c.res, c.route.ns.as_deref(), c.route.name.as_deref().unwrap_or(""));
    let status_only = c.route.sub.is_some();
    let body = || c.body.clone().ok_or_else(|| ApiError::bad_request("a request body is required"));
    let sel = || {
        Selector::parse(res, c.query.get("labelSelector"), c.query.get("fieldSelector")).map_err(ApiError::bad_request)
    };
    let result = match verb {
        "get" => store.get(res, ns, name).cloned().map(|o| (200, o)).ok_or_else(|| ApiError::not_found(res, name)),
        "list" => sel().and_then(|s| {
            let limit = c.query.get("limit").and_then(|l| l.parse().ok());
            store.list(res, ns, &s, limit, c.query.get("continue")).map(|l| (200, l))
        }),
        "watch" => {
            let opened = sel().and_then(|sel| {
                store.start_watch(WatchRequest {
                    res,
                    ns,
                    sel,
                    resource_version: c.query.get("resourceVersion"),
                    bookmarks: c.query.flag("allowWatchBookmarks"),
                    send_initial_events: c.query.flag("sendInitialEvents"),
                })
            });
            let timeout = c.query.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(Duration::from_secs);
            return match opened {
                Ok(rx) => Outcome::Watch(WatchBody::new(rx, timeout)),
                Err(e) => err(e),
            };
        }
        "create" => body().and_then(|b| store.create(res, ns, b)).map(|o| (201, o)),
        "update" => {
            let mode = if status_only { super::store::UpdateMode::Status } else { super::store::UpdateMode::Object };
            body().and_then(|b| store.update(res, ns, name, b, mode)).map(|o| (200, o))
        }
        "patch" => match c.content_type.and_then(PatchKind::from_content_type) {
            None => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format: {}", c.content_type.unwrap_or("")),
            )),
            Some(kind) => body()
                .and_then(|b| store.patch(res, ns, name, kind, &b, status_only))
                .map(|(o, created)| (if created { 201 } else { 200 }, o)),
        },
        "delete" => {
            let pre = c.body.as_ref().and_then(|b| b.get("preconditions"));
            store.delete(res, ns, name, pre).map(|o| (200, o))
        }
        "deletecollection" => sel().map(|s| {
            let mut items = Vec::new();
            for obj in store.matching(res, ns, &s) {
                let (ons, oname) = (super::store::meta_str(&obj, "namespace"), super::store::meta_str(&obj, "name"));
                if let Ok(o) = store.delete(res, ons, oname.unwrap_or(""), None) {
                    items.push(o);
                }
            }
            let meta = json!({"resourceVersion": store.rv.to_string()});
            (200, json!({"apiVersion": res.api_version(), "kind": res.list_kind(), "metadata": meta, "items": items}))
        }),
        _ => Err(ApiError::new(405, "MethodNotAllowed", "method not allowed")),
    };
    match result {
        Ok((code, v)) => Outcome::Json(code, v),
        Err(e) => err(e),
    }
}
