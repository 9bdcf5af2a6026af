//! Server-side apply (`application/apply-patch+yaml`) and the PATCH options kube validates:
//! the request checks of kube's apply patcher, the field manager (`managed.rs`), kubectl's
//! client-side-apply upgrade, and the create / update that follows.

use serde_json::{Value, json};
use std::sync::Arc;

use crate::error::ApiError;
use crate::managed::{self, ApplyError, ManagerId, Operation};
use crate::registry::ResourceDef;
use crate::store::{State, WriteOpts, from_storage, meta_mut, meta_str, target};
use crate::write::{Ownership, scope_of};

impl State {
    /// Server-side apply (`application/apply-patch+yaml`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        body: &Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<(bool, Arc<Value>), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "error decoding YAML: apply patch body must be an object, got {}",
                body
            )));
        }
        if body.pointer("/metadata/managedFields").is_some() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        // `versionCheckManager`: apiVersion and kind must be exactly the request's.
        let av = def.api_version(version);
        let body_av = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
        if body_av != av || body_kind != def.kind {
            let (g, v) = body_av.split_once('/').unwrap_or(("", body_av));
            return Err(ApiError::bad_request(format!(
                "invalid object type: {g}/{v}, Kind={body_kind}"
            )));
        }
        let body_ns = meta_str(body, "namespace");
        if def.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let ty = def.ty(version);
        let id = ManagerId::new(
            opts.manager(),
            Operation::Apply,
            "",
            subresource.unwrap_or(""),
        );
        let scope = scope_of(def, subresource);
        let live = self
            .get_obj(&def.storage_gr(), ns, name)
            .map(|o| from_storage(def, o));
        if live.is_none() && subresource.is_some() {
            return Err(ApiError::not_found(&target(def, name)));
        }
        let empty = json!({});
        let live_value: &Value = live.as_deref().unwrap_or(&empty);
        let mut managers = live
            .as_deref()
            .and_then(managed::decode)
            .unwrap_or_default();
        let before = managers.clone();
        let force = opts.force == Some(true);
        let mut applied =
            managed::apply(live_value, body, &ty, &mut managers, &id, &av, force, scope);
        // `lastAppliedManager`: `kubectl apply --server-side` (manager "kubectl") upgrading an
        // object from client-side apply takes the fields its last-applied annotation lists.
        if let Err(ApplyError::Conflicts(c)) = &applied
            && opts.manager() == "kubectl"
            && let Some(allowed) = last_applied_fields(live_value, &ty)
            && c.iter().all(|(_, p)| allowed.has(p))
        {
            managers = before.clone();
            applied = managed::apply(live_value, body, &ty, &mut managers, &id, &av, true, scope);
        }
        let merged = match applied {
            // `lastAppliedUpdater`: kubectl's server-side apply keeps an existing last-applied
            // annotation in sync with what it applied.
            Ok(Some(mut m)) if opts.manager() == "kubectl" && has_last_applied(live_value) => {
                let mut cfg = body.clone();
                if let Some(Value::Object(a)) = cfg.pointer_mut("/metadata/annotations") {
                    a.remove(LAST_APPLIED);
                }
                meta_mut(&mut m)
                    .entry("annotations")
                    .or_insert_with(|| json!({}))[LAST_APPLIED] = json!(cfg.to_string());
                Some(m)
            }
            Ok(m) => m,
            Err(ApplyError::Typing(errs)) => {
                let nsn = if def.namespaced {
                    format!("{ns}/{name}")
                } else {
                    format!("/{name}")
                };
                let (g, v) = av.split_once('/').unwrap_or(("", av.as_str()));
                return Err(ApiError::new(
                    500,
                    "",
                    format!(
                        "failed to create typed patch object ({nsn}; {g}/{v}, Kind={}): {}",
                        def.kind,
                        crate::smd::render_errors(&errs)
                    ),
                ));
            }
            Err(ApplyError::Conflicts(c)) => {
                return Err(managed::conflict_error(&target(def, name), &c));
            }
        };
        match live {
            None => {
                let obj = merged.unwrap_or(empty);
                let obj_name = meta_str(&obj, "name").to_string();
                if obj_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({obj_name}) does not match the name on the URL ({name})"
                    )));
                }
                let created =
                    self.create_owned(def, version, ns, obj, opts, Ownership::Applied(managers))?;
                Ok((true, created))
            }
            Some(old) => {
                let new = match merged {
                    Some(n) => n,
                    None if managers == before => return Ok((false, old)),
                    None => (*old).clone(),
                };
                let obj_name = meta_str(&new, "name").to_string();
                if obj_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({obj_name}) does not match the name on the URL ({name})"
                    )));
                }
                let updated = self.finish_update(
                    def,
                    version,
                    old,
                    new,
                    subresource,
                    opts,
                    Ownership::Applied(managers),
                )?;
                Ok((false, updated))
            }
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn has_last_applied(live: &Value) -> bool {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// The field set of the live object's last-applied-configuration annotation.
fn last_applied_fields(live: &Value, ty: &crate::schema::Ty) -> Option<crate::fieldpath::Set> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let v: Value = serde_json::from_str(text).ok()?;
    Some(crate::smd::field_set(&v, ty))
}
