//! Whether an OpenAPI document covers a router: the route list is read from
//! the router itself, not written down a second time.
//!
//! axum has no route listing, but its `Debug` output names every path with
//! its route id and, for each route, the methods it answers (the `Allow`
//! header it would send). That is what [`routes_of`] reads; it panics when
//! the output has a shape it does not know, so a changed axum fails the
//! test instead of passing it with an empty list.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// One route: a path (axum's `{param}` syntax) and an upper-case method.
pub type Route = (String, String);

/// What the router's `Debug` output shows: path per route id, and methods
/// per route id where a route is a plain method router.
struct Shown {
    paths: BTreeMap<u64, String>,
    methods: BTreeMap<u64, Vec<String>>,
}

/// Every path the router serves, layered or not.
pub fn paths_of<S>(router: &Router<S>) -> BTreeSet<String> {
    read(router).paths.into_values().collect()
}

/// Every (path, method) the router answers, HEAD left out (axum adds it to
/// every GET). Call it before layers are added: a layer hides the methods.
pub fn routes_of<S>(router: &Router<S>) -> BTreeSet<Route> {
    let Shown { paths, methods } = read(router);
    let mut routes = BTreeSet::new();
    for (id, path) in paths {
        let list = methods.get(&id).unwrap_or_else(|| {
            panic!("{path} is not a plain method router (a layer hides its methods)")
        });
        assert!(!list.is_empty(), "{path} answers no method");
        for method in list {
            routes.insert((path.clone(), method.clone()));
        }
    }
    routes
}

fn read<S>(router: &Router<S>) -> Shown {
    let debug = format!("{router:?}");
    let start = debug
        .find("path_router: PathRouter {")
        .expect("axum's Router Debug names its path_router");
    let end = debug[start..]
        .find("fallback_router:")
        .map_or(debug.len(), |i| start + i);
    let part = &debug[start..end];

    let mut methods: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut paths: BTreeMap<u64, String> = BTreeMap::new();
    let mut rest = part;
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let close = rest.find(')').expect("RouteId(n)");
        let id: u64 = rest[..close].parse().expect("a numeric route id");
        let after = rest[close + 1..].strip_prefix(": ").expect("RouteId(n): …");
        if let Some(quoted) = after.strip_prefix('"') {
            let path_end = quoted.find('"').expect("a quoted path");
            paths.insert(id, quoted[..path_end].to_owned());
        } else if after.starts_with("MethodRouter(") {
            let body_end = after.find('}').expect("MethodRouter { … }");
            let body = &after[..body_end];
            let header = body
                .split("allow_header: Bytes(b\"")
                .nth(1)
                .and_then(|h| h.split('"').next())
                .unwrap_or_else(|| panic!("route {id} shows no Allow header: {body}"));
            let list = header
                .split(',')
                .filter(|m| !m.is_empty() && *m != "HEAD")
                .map(str::to_owned)
                .collect();
            methods.insert(id, list);
        } else {
            assert!(
                after.starts_with("Route("),
                "route {id} has an unknown shape: {after:.80}"
            );
        }
    }
    assert!(
        !paths.is_empty(),
        "no paths found in the router's Debug output"
    );
    Shown { paths, methods }
}

/// Every (path, method) the document describes.
pub fn documented(doc: &OpenApi) -> BTreeSet<Route> {
    let value = serde_json::to_value(doc).expect("an OpenAPI document serializes");
    let mut routes = BTreeSet::new();
    for (path, item) in value["paths"].as_object().into_iter().flatten() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                routes.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    routes
}

/// Every `$ref` in the document that names no schema it holds.
pub fn dangling_refs(doc: &OpenApi) -> Vec<String> {
    fn walk(value: &serde_json::Value, root: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    let found = r
                        .strip_prefix('#')
                        .and_then(|pointer| root.pointer(pointer))
                        .is_some();
                    if !found {
                        out.push(r.clone());
                    }
                }
                map.values().for_each(|v| walk(v, root, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, root, out)),
            _ => {}
        }
    }
    let value = serde_json::to_value(doc).expect("an OpenAPI document serializes");
    let mut out = Vec::new();
    walk(&value, &value, &mut out);
    out
}

/// Panics, listing the differences, unless `doc` describes exactly the routes
/// `router` answers, and every schema it refers to is in it.
pub fn assert_documents_exactly<S>(router: &Router<S>, doc: &OpenApi) {
    let dangling = dangling_refs(doc);
    assert!(
        dangling.is_empty(),
        "references to missing schemas: {dangling:?}"
    );
    let served = routes_of(router);
    let described = documented(doc);
    let missing: Vec<_> = served.difference(&described).collect();
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}; documented but not served: {extra:?}"
    );
}

/// For a service whose router is built from one documented route list
/// (`api`): the list's router answers exactly what its document describes;
/// the served router has the same paths; `GET /openapi.json` serves the
/// list's document with `more` (the SDK's) merged in, and nothing else.
/// Returns the served document for further checks.
pub async fn assert_service_documented<S: Clone + Send + Sync + 'static>(
    served: &Router,
    api: impl Fn() -> OpenApiRouter<S>,
    more: Option<OpenApi>,
) -> serde_json::Value {
    let (own, _) = api().split_for_parts();
    let own_doc = rollcall_http::openapi::whole(api(), None);
    let whole = rollcall_http::openapi::whole(api(), more.clone());
    assert_documents_exactly(&own, &own_doc);
    assert_eq!(
        paths_of(served),
        paths_of(&own),
        "the served router's paths"
    );
    let answer = crate::router::call(served, "GET", "/openapi.json", "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json, serde_json::to_value(&whole).expect("serializes"));
    let mut expected = documented(&own_doc);
    expected.extend(more.as_ref().map(documented).unwrap_or_default());
    assert_eq!(documented(&whole), expected);
    assert!(
        dangling_refs(&whole).is_empty(),
        "{:?}",
        dangling_refs(&whole)
    );
    json
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};

    use super::*;

    async fn ok() {}

    #[test]
    fn reads_paths_and_methods_from_a_router() {
        let router: Router = Router::new()
            .route("/a", get(ok).post(ok))
            .route("/b/{id}", post(ok).delete(ok));
        let routes = routes_of(&router);
        let expected: BTreeSet<Route> = [
            ("/a", "GET"),
            ("/a", "POST"),
            ("/b/{id}", "DELETE"),
            ("/b/{id}", "POST"),
        ]
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.to_owned()))
        .collect();
        assert_eq!(routes, expected);
        let layered = router.layer(tower::layer::util::Identity::new());
        assert_eq!(
            paths_of(&layered),
            ["/a", "/b/{id}"].map(str::to_owned).into_iter().collect()
        );
    }

    #[test]
    #[should_panic(expected = "served but not documented")]
    fn a_route_missing_from_the_document_fails() {
        let router: Router = Router::new().route("/a", get(ok));
        assert_documents_exactly(&router, &OpenApi::default());
    }
}
