//! The `OwnerReferencesPermissionEnforcement` admission plugin (kube-apiserver's
//! `plugin/pkg/admission/gc`), always on here: it is on in OpenShift and in hardened clusters, and
//! a chart that works with it works without it.
//!
//! - A write that changes an object's `metadata.ownerReferences`, other than its creation, needs
//!   `delete` on the object ("cannot set an ownerRef on a resource you can't delete").
//! - Each owner reference that newly has `blockOwnerDeletion: true` needs `update` on the owner's
//!   `finalizers` subresource, by the owner's name ("cannot set blockOwnerDeletion if an
//!   ownerReference refers to a resource you can't set finalizers on").

use serde_json::Value;
use std::sync::Arc;

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::rbac::{self, Attributes, Decision};
use crate::registry::{Registry, ResourceDef};
use crate::shared::Shared;
use crate::store::State as Store;

/// One authorization the plugin asks for, with the message of its refusal.
pub struct Required {
    pub attributes: Attributes,
    pub refusal: String,
}

fn refs(obj: Option<&Value>) -> Vec<&Value> {
    obj.and_then(|o| o.pointer("/metadata/ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn blocking(r: &Value) -> bool {
    r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
}

fn field<'a>(r: &'a Value, f: &str) -> &'a str {
    r.get(f).and_then(Value::as_str).unwrap_or("")
}

/// What the write `old → new` of `def`'s object `ns/name` (through `subresource`, `""` for the
/// object) needs; `old` is `None` for a creation. An owner whose kind is not served is refused, as
/// kube-apiserver refuses one it finds no REST mapping for.
pub fn required(
    registry: &Registry,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    subresource: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<Vec<Required>, String> {
    let (before, after) = (refs(old), refs(Some(new)));
    if before == after {
        return Ok(vec![]);
    }
    let mut out = vec![];
    if old.is_some() {
        out.push(Required {
            attributes: resource_request("delete", def, subresource, ns, name),
            refusal: "cannot set an ownerRef on a resource you can't delete".into(),
        });
    }
    for r in after.iter().filter(|r| blocking(r)) {
        let uid = field(r, "uid");
        if before.iter().any(|b| blocking(b) && field(b, "uid") == uid) {
            continue;
        }
        let (api_version, kind) = (field(r, "apiVersion"), field(r, "kind"));
        let Some((owner, _)) = registry.by_kind(api_version, kind) else {
            return Err(format!(
                "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}: no matches for kind {kind:?} in version {api_version:?}"
            ));
        };
        let owner_ns = if owner.namespaced { ns } else { "" };
        out.push(Required {
            attributes: resource_request("update", owner, "finalizers", owner_ns, field(r, "name")),
            refusal: "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on".into(),
        });
    }
    Ok(out)
}

fn resource_request(verb: &str, def: &ResourceDef, sub: &str, ns: &str, name: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        resource_request: true,
        group: def.group.clone(),
        resource: def.plural.clone(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
        path: String::new(),
    }
}

/// Whether a request body names owner references.
fn mentions(body: &[u8]) -> bool {
    body.windows(b"ownerReferences".len())
        .any(|w| w == b"ownerReferences")
}

/// A write request to admit: who writes which kind, where, through which subresource.
pub struct Write<'a> {
    pub shared: &'a Shared,
    pub user: &'a UserInfo,
    pub def: &'a ResourceDef,
    pub ns: &'a str,
    pub subresource: &'a str,
}

impl Write<'_> {
    /// Admits the write of `body` to object `name` (`None` for a create: the name the write
    /// gives it) before it is made: when it may change owner references (see [`concerned`]) and
    /// RBAC is on, its result is computed by `preview` (the same write as a dry run), and what
    /// [`required`] asks for of `old → new` is authorized (each check recorded like the request's
    /// own); the first refusal is the request's 403.
    pub fn admit(
        &self,
        st: &mut Store,
        body: &[u8],
        name: Option<&str>,
        preview: impl FnOnce(&mut Store) -> Result<Arc<Value>, ApiError>,
    ) -> Result<(), ApiError> {
        let Write {
            shared,
            user,
            def,
            ns,
            subresource,
        } = *self;
        let old = name.and_then(|n| st.get_obj(&def.storage_gr(), ns, n));
        if !shared.rbac || !concerned(body, old.as_deref()) {
            return Ok(());
        }
        let new = preview(st)?;
        // The write itself warns again.
        st.warnings.clear();
        let name = name.or_else(|| new.pointer("/metadata/name").and_then(Value::as_str));
        let at = (ns, name.unwrap_or(""), subresource);
        admit(shared, st, user, def, at, old.as_deref(), &new)
    }
}

fn admit(
    shared: &Shared,
    st: &Store,
    user: &UserInfo,
    def: &ResourceDef,
    (ns, name, subresource): (&str, &str, &str),
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let required = required(&st.registry, def, ns, name, subresource, old, new)
        .map_err(|m| rbac::forbidden(&def.group, &def.plural, name, &m))?;
    for r in required {
        let decision = rbac::authorize(st, user, &r.attributes);
        shared.record_authorization(user, &r.attributes, decision == Decision::Allow);
        if let Decision::Deny { reason } = decision {
            // kube-apiserver: `fmt.Errorf("…: %v, %v", reason, err)`.
            return Err(rbac::forbidden(
                &def.group,
                &def.plural,
                name,
                &format!("{}: {reason}, <nil>", r.refusal),
            ));
        }
    }
    Ok(())
}

/// Whether the write needs the check: the body names owner references, or the object has some
/// (a replace or an apply that leaves them out removes them).
fn concerned(body: &[u8], old: Option<&Value>) -> bool {
    mentions(body) || !refs(old).is_empty()
}
