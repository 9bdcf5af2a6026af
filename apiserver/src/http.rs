//! HTTP routing: Kubernetes REST paths onto the store, discovery and watch.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Authn, UserInfo, unauthorized_status};
use crate::discovery;
use crate::error::ApiError;
use crate::openapi;
use crate::ownerrefs;
pub use crate::params::parse_query;
use crate::params::{
    decode_body, decode_yaml_or_json, dry, field_selector, is_true, list_opts, output_for,
    patch_kind, write_opts,
};
use crate::rbac::{self, Attributes, Decision};
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::store::{ListResult, PatchKind, State as Store, parse_rv};
use crate::table::{self, Output};
use crate::watch::{self, WatchParams};

/// kube-apiserver's `MaxRequestBodyBytes` (3 MiB): larger bodies are 413.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn err_response(e: &ApiError) -> Response {
    json_response(e.status_code(), &e.to_status())
}

pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if !shared.request_latency.is_zero() {
        tokio::time::sleep(shared.request_latency).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return err_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: limit is {MAX_BODY}"),
            ));
        }
    };
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let user = match authenticate(&shared, &parts.headers) {
        Some(u) => u,
        None => {
            tracing::debug!(method = %parts.method, uri = %parts.uri, status = 401, "request");
            return json_response(StatusCode::UNAUTHORIZED, &unauthorized_status());
        }
    };
    let req = Req {
        user: &user,
        path: &path,
        headers: &parts.headers,
    };
    let res = route(&shared, &req, &parts.method, &query, bytes).await;
    let resp = match res {
        Ok(r) => r,
        Err(e) => err_response(&e),
    };
    tracing::debug!(method = %parts.method, uri = %parts.uri, status = resp.status().as_u16(), "request");
    resp
}

/// The identity of a request (`None`: 401). Anonymous requests are `system:anonymous`.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<UserInfo> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let sa_gr = (String::new(), "serviceaccounts".to_string());
    let outcome = shared.tokens().authenticate(h, |ns, name| {
        shared.lock().get_obj(&sa_gr, ns, name).is_some()
    });
    match outcome {
        Authn::User(u) => Some(u),
        Authn::Unauthorized => None,
    }
}

/// Who asks, for which path.
struct Req<'a> {
    user: &'a UserInfo,
    path: &'a str,
    headers: &'a HeaderMap,
}

/// RBAC check (a no-op only when the emulator's own unit tests switched RBAC off).
fn authorize(shared: &Shared, user: &UserInfo, a: &Attributes) -> Result<(), ApiError> {
    if !shared.rbac {
        return Ok(());
    }
    let decision = rbac::authorize(&shared.lock(), user, a);
    shared.record_authorization(user, a, decision == Decision::Allow);
    match decision {
        Decision::Allow => Ok(()),
        Decision::Deny { reason } => Err(rbac::denied(user, a, &reason)),
    }
}

/// Run a write under the lock and collect the warnings it produced.
fn with_warnings<T>(
    shared: &Shared,
    f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
) -> Result<(T, Vec<String>), ApiError> {
    let mut st = shared.lock();
    st.warnings.clear();
    let r = f(&mut st);
    let w = std::mem::take(&mut st.warnings);
    r.map(|v| (v, w))
}

fn warn(mut resp: Response, warnings: Vec<String>) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

async fn route(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    method: &Method,
    q: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = req.path;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET;
    let resource_request = matches!(
        segs.as_slice(),
        ["api", "v1", _, ..] | ["apis", _, _, _, ..]
    );
    // `/debug/stats` is the emulator's own endpoint (no real server has it): not authorized.
    if !resource_request && segs.as_slice() != ["debug", "stats"] {
        let verb = match *method {
            Method::GET | Method::HEAD => "get".to_string(),
            ref m => m.as_str().to_ascii_lowercase(),
        };
        authorize(
            shared,
            req.user,
            &Attributes {
                verb,
                resource_request: false,
                path: path.to_string(),
                ..Default::default()
            },
        )?;
    }
    match segs.as_slice() {
        [] if get => Ok(json_response(
            StatusCode::OK,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/debug/stats", "/healthz", "/livez", "/readyz", "/version"]}),
        )),
        ["version"] if get => Ok(json_response(StatusCode::OK, &discovery::version())),
        ["healthz" | "livez" | "readyz", ..] if get => Ok((StatusCode::OK, "ok").into_response()),
        ["debug", "stats"] if get => Ok(json_response(
            StatusCode::OK,
            &shared.stats_snapshot().to_json(),
        )),
        ["api"] if get => Ok(json_response(
            StatusCode::OK,
            &discovery::core_versions(&shared.addr.to_string()),
        )),
        ["apis"] if get => {
            let doc = discovery::group_list(&shared.lock().registry);
            Ok(json_response(StatusCode::OK, &doc))
        }
        ["openapi", "v3"] if get => Ok(json_response(
            StatusCode::OK,
            &openapi::index(&shared.lock().registry),
        )),
        ["openapi", "v3", "api", v] if get => {
            let doc = openapi::gv_doc(&shared.lock().registry, "", v);
            doc.map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::not_found_path)
        }
        ["openapi", "v3", "apis", g, v] if get => {
            let doc = openapi::gv_doc(&shared.lock().registry, g, v);
            doc.map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::not_found_path)
        }
        ["openapi", ..] => Err(ApiError::not_found_path()),
        ["api", "v1", rest @ ..] => resource(shared, req, method, "", "v1", rest, q, body).await,
        ["apis", g] if get => {
            let doc = discovery::group(&shared.lock().registry, g);
            doc.map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::not_found_path)
        }
        ["apis", g, v, rest @ ..] => resource(shared, req, method, g, v, rest, q, body).await,
        _ => Err(ApiError::not_found_path()),
    }
}

struct Addr<'a> {
    def: ResourceDef,
    version: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if rest.is_empty() {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let doc = discovery::resource_list(&shared.lock().registry, group, version);
        return doc
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::not_found_path);
    }
    let (namespace, plural, tail): (Option<&str>, &str, &[&str]) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(ns), plural, tail)
        }
        [plural, tail @ ..] => (None, plural, tail),
        [] => return Err(ApiError::not_found_path()),
    };
    if tail.len() > 2 {
        return Err(ApiError::not_found_path());
    }
    let def = shared
        .lock()
        .registry
        .resolve(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::not_found_path)?;
    let name = tail.first().copied();
    let sub = tail.get(1).copied();
    if (def.namespaced && namespace.is_none() && name.is_some())
        || (!def.namespaced && namespace.is_some())
    {
        return Err(ApiError::not_found_path());
    }
    if let Some(s) = sub {
        let ok = s == "status"
            && (def.status_subresource || (def.group.is_empty() && def.plural == "namespaces"));
        if !ok {
            return Err(ApiError::not_found_path());
        }
    }
    let a = Addr {
        def,
        version,
        namespace,
        name,
        sub,
    };
    dispatch(shared, req, method, a, q, body).await
}

async fn dispatch(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    method: &Method,
    a: Addr<'_>,
    q: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let headers = req.headers;
    let def = &a.def;
    let ns_for_item = if def.namespaced {
        a.namespace.unwrap_or("")
    } else {
        ""
    };
    // OwnerReferencesPermissionEnforcement of a create, update or patch (see `ownerrefs`).
    let admission = ownerrefs::Write {
        shared,
        user: req.user,
        def,
        ns: ns_for_item,
        subresource: a.sub.unwrap_or(""),
    };
    let watching = is_true(q, "watch");
    let verb = match (method.as_str(), a.name, watching) {
        ("GET", _, true) => "watch",
        ("GET", None, false) => "list",
        ("GET", Some(_), false) => "get",
        ("POST", None, _) => "create",
        ("PUT", Some(_), _) => "update",
        ("PATCH", Some(_), _) => "patch",
        ("DELETE", None, _) => "deletecollection",
        ("DELETE", Some(_), _) if a.sub.is_none() => "delete",
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    // Authorization attributes as kube's RequestInfo computes them: a Namespace's own namespace
    // is its name; lists across all namespaces are cluster-scoped.
    let attrs = Attributes {
        verb: verb.to_string(),
        resource_request: true,
        group: def.group.clone(),
        resource: def.plural.clone(),
        subresource: a.sub.unwrap_or("").to_string(),
        namespace: if def.is("", "namespaces") {
            a.name.unwrap_or("").to_string()
        } else {
            a.namespace.unwrap_or("").to_string()
        },
        name: a.name.unwrap_or("").to_string(),
        path: req.path.to_string(),
    };
    shared.record(
        &req.user.name,
        verb,
        &def.group,
        &def.plural,
        a.sub.unwrap_or(""),
    );
    authorize(shared, req.user, &attrs)?;
    let output = if matches!(verb, "get" | "list" | "watch") {
        output_for(headers, q)?
    } else {
        Output::Full
    };
    let version = a.version;
    let render = |obj: &Value| match output {
        Output::PartialMetadata => table::partial(obj),
        _ => table::present(obj, def, version),
    };
    match verb {
        "watch" => {
            let mut fields = field_selector(def, q)?;
            if let Some(n) = a.name {
                fields = FieldSelector::parse(&format!(
                    "metadata.name={n}{}",
                    q.get("fieldSelector")
                        .map(|f| format!(",{f}"))
                        .unwrap_or_default()
                ))
                .map_err(ApiError::bad_request)?
                .stored_form(def);
            }
            let send_initial = is_true(q, "sendInitialEvents");
            let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
            let from_rv = match rv {
                Some(s) => Some(parse_rv(s).ok_or_else(|| {
                    ApiError::bad_request(format!("invalid resource version {s:?}"))
                })?),
                None => None,
            };
            let p = WatchParams {
                def: def.clone(),
                version: version.to_string(),
                namespace: a.namespace.map(str::to_string),
                labels: LabelSelector::parse(
                    q.get("labelSelector").map(String::as_str).unwrap_or(""),
                )
                .map_err(ApiError::bad_request)?,
                fields,
                output,
                bookmarks: is_true(q, "allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Duration::from_secs),
                initial_events_end: send_initial,
                from_rv: if send_initial { None } else { from_rv },
            };
            let body: Body = watch::start(shared.clone(), p);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        }
        "list" => {
            let opts = list_opts(def, q)?;
            let ListResult {
                items,
                rv,
                continue_token: cont,
                remaining,
            } = shared.lock().list(def, a.namespace, &opts)?;
            let mut lm = json!({"resourceVersion": rv.to_string()});
            if let Some(c) = &cont {
                lm["continue"] = json!(c);
                lm["remainingItemCount"] = json!(remaining);
            }
            let doc = match output {
                Output::Table(inc) => {
                    let refs: Vec<&Value> = items.iter().map(|o| &**o).collect();
                    table::table(def, version, &refs, lm, inc, true)
                }
                Output::PartialMetadata => json!({
                    "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": lm,
                    "items": items.iter().map(|o| table::partial(o)).collect::<Vec<_>>()
                }),
                Output::Full => json!({
                    "kind": def.list_kind, "apiVersion": def.api_version(version), "metadata": lm,
                    "items": items.iter().map(|o| table::present(o, def, version)).collect::<Vec<_>>()
                }),
            };
            Ok(json_response(StatusCode::OK, &doc))
        }
        "get" => {
            let name = a.name.unwrap_or("");
            let obj = shared.lock().get(def, ns_for_item, name)?;
            let doc = match output {
                Output::Table(inc) => {
                    let rv = obj
                        .pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null);
                    table::table(
                        def,
                        version,
                        &[&*obj],
                        json!({"resourceVersion": rv}),
                        inc,
                        true,
                    )
                }
                _ => render(&obj),
            };
            Ok(json_response(StatusCode::OK, &doc))
        }
        "create" => {
            if def.namespaced && a.namespace.is_none() {
                return Err(ApiError::method_not_allowed(
                    "create requires a namespace in the path",
                ));
            }
            let obj = decode_body(headers, &body)?;
            let (created, warnings) = with_warnings(shared, |st| {
                admission.admit(st, &body, None, |st| {
                    st.create(def, version, ns_for_item, obj.clone(), &dry(q, headers))
                })?;
                st.create(def, version, ns_for_item, obj, &write_opts(q, headers))
            })?;
            Ok(warn(
                json_response(StatusCode::CREATED, &render(&created)),
                warnings,
            ))
        }
        "update" => {
            let obj = decode_body(headers, &body)?;
            let name = a.name.unwrap_or("");
            let (updated, warnings) = with_warnings(shared, |st| {
                admission.admit(st, &body, Some(name), |st| {
                    let opts = dry(q, headers);
                    st.update(def, version, ns_for_item, name, obj.clone(), a.sub, &opts)
                })?;
                st.update(
                    def,
                    version,
                    ns_for_item,
                    name,
                    obj,
                    a.sub,
                    &write_opts(q, headers),
                )
            })?;
            Ok(warn(
                json_response(StatusCode::OK, &render(&updated)),
                warnings,
            ))
        }
        "patch" => {
            let kind = patch_kind(headers)?;
            let patch = match kind {
                PatchKind::Apply => decode_yaml_or_json(&body)?,
                _ => serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
            };
            let name = a.name.unwrap_or("");
            let rbac_on = shared.rbac;
            let ((created, obj), warnings) = with_warnings(shared, |st| {
                // An apply that creates the object is authorized as `create` as well (kube's
                // patch handler: `withAuthorization` on the create path), atomically with it.
                if rbac_on
                    && kind == PatchKind::Apply
                    && a.sub.is_none()
                    && st.get_obj(&def.storage_gr(), ns_for_item, name).is_none()
                {
                    let create = Attributes {
                        verb: "create".into(),
                        ..attrs.clone()
                    };
                    let decision = rbac::authorize(st, req.user, &create);
                    shared.record_authorization(req.user, &create, decision == Decision::Allow);
                    if let Decision::Deny { reason } = decision {
                        return Err(rbac::forbidden(&def.group, &def.plural, name, &reason));
                    }
                }
                admission.admit(st, &body, Some(name), |st| {
                    let opts = dry(q, headers);
                    let (_, new) =
                        st.patch(def, version, ns_for_item, name, kind, &patch, a.sub, &opts)?;
                    Ok(new)
                })?;
                st.patch(
                    def,
                    version,
                    ns_for_item,
                    name,
                    kind,
                    &patch,
                    a.sub,
                    &write_opts(q, headers),
                )
            })?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(warn(json_response(code, &render(&obj)), warnings))
        }
        "delete" => {
            let mut opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding DeleteOptions: {e}"))
                })?
            };
            // Query parameters of DeleteOptions (`?propagationPolicy=Orphan`) count as well.
            if let (Some(p), Value::Object(m)) = (q.get("propagationPolicy"), &mut opts) {
                m.entry("propagationPolicy").or_insert_with(|| json!(p));
            }
            let name = a.name.unwrap_or("");
            let dry = write_opts(q, headers).dry_run
                || opts
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|x| x == "All"));
            let obj = shared.lock().delete(def, ns_for_item, name, &opts, dry)?;
            Ok(json_response(StatusCode::OK, &render(&obj)))
        }
        "deletecollection" => {
            let opts = list_opts(def, q)?;
            let items = shared.lock().delete_collection(
                def,
                a.namespace,
                &opts,
                write_opts(q, headers).dry_run,
            )?;
            let doc = json!({
                "kind": def.list_kind, "apiVersion": def.api_version(version),
                "metadata": {"resourceVersion": shared.lock().current_rv().to_string()},
                "items": items.iter().map(|o| table::present(o, def, version)).collect::<Vec<_>>()
            });
            Ok(json_response(StatusCode::OK, &doc))
        }
        _ => Err(ApiError::method_not_allowed("unsupported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_tolerates_empty_keys() {
        let q = parse_query(Some("&limit=500&labelSelector=a%3Db%2Cc+in+(x)&&watch=1"));
        assert_eq!(q.get("limit").map(String::as_str), Some("500"));
        assert_eq!(
            q.get("labelSelector").map(String::as_str),
            Some("a=b,c in (x)")
        );
        assert!(is_true(&q, "watch"));
    }
}
