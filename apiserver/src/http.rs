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
use crate::rbac::{self, Attributes, Decision};
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::store::{
    FieldValidation, ListOpts, ListResult, PatchKind, State as Store, WriteOpts, parse_rv,
};
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse a query string, tolerating empty keys (`?&limit=500`).
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.is_empty() {
            continue;
        }
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

/// Choose the response representation from `Accept`.
fn output_for(headers: &HeaderMap, query: &HashMap<String, String>) -> Result<Output, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    if accept.is_empty() {
        return Ok(Output::Full);
    }
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: HashMap<String, String> = parts
            .filter_map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        if !matches!(
            media.as_str(),
            "application/json" | "*/*" | "application/*" | "application/yaml"
        ) {
            continue;
        }
        match params.get("as").map(String::as_str) {
            None => return Ok(Output::Full),
            Some("Table") if params.get("g").is_none_or(|g| g == "meta.k8s.io") => {
                return Ok(Output::Table(watch::include_object(
                    query.get("includeObject").map(String::as_str),
                )));
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if params.get("g").is_none_or(|g| g == "meta.k8s.io") =>
            {
                return Ok(Output::PartialMetadata);
            }
            Some(_) => continue,
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        format!("only the following media types are accepted: application/json (got {accept:?})"),
    ))
}

fn is_true(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml_or_json(body),
        "application/vnd.kubernetes.protobuf" => crate::proto::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(&media);
            err.message = e;
            err
        }),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn decode_yaml_or_json(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let s = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
    serde_saphyr::from_str::<Value>(s)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
}

fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
        other => return Err(ApiError::unsupported_media_type(other)),
    })
}

/// `prefixFromUserAgent`: the User-Agent up to the first `/`, printable characters only, at most
/// 128 bytes (the manager of writes without `fieldManager`).
fn user_agent_manager(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut out = String::new();
    for c in ua.split('/').next().unwrap_or("").chars() {
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}

fn write_opts(q: &HashMap<String, String>, headers: &HeaderMap) -> WriteOpts {
    WriteOpts {
        user_agent_manager: user_agent_manager(headers),
        force: q.get("force").map(|v| v == "true" || v == "1"),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        field_manager: q.get("fieldManager").cloned(),
        field_validation: match q.get("fieldValidation").map(String::as_str) {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        },
    }
}

fn list_opts(q: &HashMap<String, String>) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q.get("continue").cloned(),
    })
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
            let mut fields =
                FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
                    .map_err(ApiError::bad_request)?;
            if let Some(n) = a.name {
                fields = FieldSelector::parse(&format!(
                    "metadata.name={n}{}",
                    q.get("fieldSelector")
                        .map(|f| format!(",{f}"))
                        .unwrap_or_default()
                ))
                .map_err(ApiError::bad_request)?;
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
            let opts = list_opts(q)?;
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
            let opts = list_opts(q)?;
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
