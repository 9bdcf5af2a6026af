//! A request's parameters: the query string (`fieldSelector`, `limit`, `dryRun`, `force`, …),
//! the body's encoding and the headers that select the output or the patch type, checked the way
//! kube-apiserver checks them.

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde_json::Value;
use std::collections::HashMap;

use crate::error::ApiError;
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{FieldValidation, ListOpts, PatchKind, WriteOpts};
use crate::table::Output;
use crate::watch;

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
pub(crate) fn output_for(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Output, ApiError> {
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

pub(crate) fn is_true(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// The request's `Content-Type` without parameters, lower case (`default` without one).
fn media_type(headers: &HeaderMap, default: &str) -> String {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default);
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(crate) fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let media = media_type(headers, "application/json");
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

pub(crate) fn decode_yaml_or_json(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let s = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
    serde_saphyr::from_str::<Value>(s)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
}

pub(crate) fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    let media = media_type(headers, "");
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
pub(crate) fn user_agent_manager(headers: &HeaderMap) -> String {
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

/// [`write_opts`] of a dry run: the result of a write, computed for an admission check.
pub(crate) fn dry(q: &HashMap<String, String>, headers: &HeaderMap) -> WriteOpts {
    WriteOpts {
        dry_run: true,
        ..write_opts(q, headers)
    }
}

pub(crate) fn write_opts(q: &HashMap<String, String>, headers: &HeaderMap) -> WriteOpts {
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

pub(crate) fn list_opts(
    def: &ResourceDef,
    q: &HashMap<String, String>,
) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        fields: field_selector(def, q)?,
        limit: match q.get("limit") {
            // kube's query parameter conversion refuses what is not an integer.
            Some(l) => Some(l.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "limit: Invalid value: {l:?}: strconv.ParseInt: parsing {l:?}: invalid syntax"
                ))
            })?),
            None => None,
        },
        continue_token: q.get("continue").cloned(),
    })
}

/// The request's `fieldSelector`, refused (400) if malformed or on a field the kind does not
/// select on.
pub(crate) fn field_selector(
    def: &ResourceDef,
    q: &HashMap<String, String>,
) -> Result<FieldSelector, ApiError> {
    let f = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    f.supported_by(def).map_err(ApiError::bad_request)?;
    Ok(f.stored_form(def))
}
