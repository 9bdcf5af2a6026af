//! Writes: create, update (PUT), patch (JSON, merge, strategic merge, server-side apply), with
//! server-side defaulting, validation and managed-fields bookkeeping.

use base64::Engine as _;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::cel;
use crate::error::{ApiError, FieldError, Target};
use crate::events;
use crate::kinds;
use crate::managed::{self, Managed, ManagerId, Operation, Scope};
use crate::objectmeta::{self, MetaRules, NameRule};
use crate::patch;
use crate::registry::{CRD_GROUP, GroupResource, ResourceDef, crd_status};
use crate::store::{
    FieldValidation, PatchKind, State, WriteOpts, finalizers_empty, from_storage, is_deleting,
    meta, meta_mut, meta_str, now_rfc3339, spec_part, target,
};
use crate::validation;

impl State {
    // ----- writes ----------------------------------------------------------------------------

    /// Server-side defaulting, validation and bookkeeping common to create and update.
    pub(crate) fn prepare(
        &mut self,
        def: &ResourceDef,
        version: &str,
        obj: &mut Value,
        old: Option<&Value>,
        fv: FieldValidation,
        decoded: bool,
    ) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").to_string();
        let t = target(def, &name);
        if let Value::Object(m) = obj {
            m.insert("apiVersion".into(), json!(def.api_version(version)));
            m.insert("kind".into(), json!(def.kind));
        }
        // Built-in kinds are decoded into Go types: unknown fields per `fieldValidation`, JSON
        // type errors are 400s, `null` is the zero value.
        if !def.is_crd && decoded {
            let unknown = kinds::decode(obj, &def.ty(version), &def.kind).map_err(|e| {
                ApiError::bad_request(format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
                    kind = def.kind
                ))
            })?;
            self.report_unknown(def, version, &unknown, fv)?;
        }
        // Secrets: fold stringData into data.
        if def.group.is_empty() && def.plural == "secrets" {
            fold_string_data(obj)
                .map_err(|e| ApiError::invalid(&def.kind_group(), &name, &t, &[e]))?;
            if let Value::Object(m) = obj {
                m.entry("type").or_insert_with(|| json!("Opaque"));
            }
        }
        if def.group.is_empty() && def.plural == "namespaces" {
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if let Value::Object(m) = obj {
                let status = m.entry("status").or_insert_with(|| json!({}));
                if status.get("phase").is_none() {
                    status["phase"] = json!("Active");
                }
            }
        }
        let mut errs = match meta_rules(def) {
            Some(rules) => objectmeta::validate_object_meta(obj, rules),
            None => Vec::new(),
        };
        if let Some(old) = old {
            errs.extend(objectmeta::validate_object_meta_update(obj, old));
        }
        errs.extend(validate_kind(def, obj, old));
        if def.is_crd
            && let Some(schema) = def.schemas.get(version)
        {
            // A decoded request (create, update, non-apply patch) drops `null`s of non-nullable
            // fields; an apply result is not decoded, so such a `null` is a validation error.
            let processed = validation::process_custom_resource_with(obj, schema, decoded);
            let schema_errs = match old {
                // Ratcheting: errors on values this update did not change are dropped.
                Some(old) => cel::ratchet_schema_errors(processed.errors, obj, old, schema),
                None => processed.errors,
            };
            // CEL rules run unless a type error makes the object unusable for them.
            let blocking = schema_errs
                .iter()
                .any(|e| e.reason == "FieldValueTypeInvalid");
            errs.extend(schema_errs);
            if def.cel_versions.iter().any(|v| v == version) {
                if blocking {
                    errs.push(FieldError::invalid(
                        "<nil>",
                        &Value::Null,
                        "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                    ));
                } else {
                    errs.extend(cel::validate_cel(obj, schema, old));
                }
            }
            self.report_unknown(def, version, &processed.pruned, fv)?;
        }
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            errs.extend(crate::crd_check::check(obj));
            match ResourceDef::from_crd(obj) {
                Ok(d) => {
                    let want = format!("{}.{}", d.plural, d.group);
                    if name != want {
                        errs.push(FieldError::invalid(
                            "metadata.name",
                            &json!(name),
                            "must be spec.names.plural+\".\"+spec.group",
                        ));
                    }
                    if let Some(existing) = self.registry.get(&d.group, &d.plural)
                        && !existing.is_crd
                    {
                        errs.push(FieldError::invalid(
                            "spec.names.plural",
                            &json!(d.plural),
                            "conflicts with a built-in resource",
                        ));
                    }
                }
                Err(e) => errs.push(FieldError::invalid("spec", &json!(null), e.to_string())),
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&def.kind_group(), &name, &t, &errs));
        }
        Ok(())
    }

    /// Unknown (pruned) fields: warnings, a strict-decoding 400, or nothing (`fieldValidation`).
    fn report_unknown(
        &mut self,
        def: &ResourceDef,
        version: &str,
        pruned: &[String],
        fv: FieldValidation,
    ) -> Result<(), ApiError> {
        if pruned.is_empty() {
            return Ok(());
        }
        let unknown: Vec<String> = pruned
            .iter()
            .map(|p| format!("unknown field {p:?}"))
            .collect();
        match fv {
            FieldValidation::Ignore => Ok(()),
            FieldValidation::Warn => {
                self.warnings.extend(unknown);
                Ok(())
            }
            FieldValidation::Strict => Err(ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                unknown.join(", "),
                kind = def.kind
            ))),
        }
    }

    pub(crate) fn check_namespace(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let ns_gr: GroupResource = (String::new(), "namespaces".into());
        match self.get_obj(&ns_gr, "", ns) {
            None => Err(ApiError::not_found(&Target {
                group: "",
                resource: "namespaces",
                name: ns,
            })),
            Some(n) if is_deleting(&n) => Err(ApiError::forbidden(
                &target(def, name),
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// POST a new object (`ns` is "" for cluster-scoped resources).
    pub fn create(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        obj: Value,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        self.create_owned(def, version, ns, obj, opts, Ownership::Update)
    }

    pub(crate) fn create_owned(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
        ownership: Ownership,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_kind(def, version, &obj)?;
        let body_ns = meta_str(&obj, "namespace").to_string();
        if def.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        } else if !body_ns.is_empty() {
            meta_mut(&mut obj).remove("namespace");
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let gen_name = meta_str(&obj, "generateName").to_string();
            if !gen_name.is_empty() {
                let mut prefix = gen_name;
                prefix.truncate(58);
                name = format!("{prefix}{}", self.random_suffix());
            }
        }
        self.check_namespace(def, ns, &name)?;
        let requested = managed::base_for_update(None, &obj, false);
        let uid = self.new_uid();
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            if def.namespaced {
                m.insert("namespace".into(), json!(ns));
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            m.remove("managedFields");
            if def.is_crd {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if def.status_subresource
            && let Value::Object(m) = &mut obj
        {
            m.remove("status");
        }
        let decoded = matches!(ownership, Ownership::Update);
        self.prepare(def, version, &mut obj, None, opts.field_validation, decoded)?;
        let av = def.api_version(version);
        let managers = match ownership {
            Ownership::Update => {
                let mut m = requested;
                let id = ManagerId::new(opts.manager(), Operation::Update, &av, "");
                managed::update(
                    None,
                    &obj,
                    &def.ty(version),
                    &mut m,
                    &id,
                    &av,
                    scope_of(def, None),
                );
                m
            }
            Ownership::Applied(m) => m,
        };
        set_managed(&mut obj, &managers);
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            obj["status"] = crd_status(&obj, &now_rfc3339());
        }
        if self
            .get_obj(
                &def.storage_gr(),
                if def.namespaced { ns } else { "" },
                &name,
            )
            .is_some()
        {
            return Err(ApiError::already_exists(&target(def, &name)));
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        check_stored_size(&obj)?;
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            self.register_crd(&obj)?;
        }
        Ok(self.store(def, obj, None))
    }

    pub(crate) fn register_crd(&mut self, crd: &Value) -> Result<(), ApiError> {
        let d = ResourceDef::from_crd(crd).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.registry.defs.insert(d.gr(), d);
        Ok(())
    }

    /// Finish an update: server-owned fields, subresource rules, validation, managed fields,
    /// no-op detection, and "finalizers emptied on a deleting object" => delete.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_update(
        &mut self,
        def: &ResourceDef,
        version: &str,
        old: Arc<Value>,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
        ownership: Ownership,
    ) -> Result<Arc<Value>, ApiError> {
        let name = meta_str(&old, "name").to_string();
        let t = target(def, &name);
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        // resourceVersion precondition
        let want_rv = meta_str(&new, "resourceVersion").to_string();
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&t));
        }
        let new_uid = meta_str(&new, "uid");
        if !new_uid.is_empty() && new_uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                &t,
                &format!(
                    "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        let requested = managed::base_for_update(Some(&old), &new, subresource.is_some());
        if subresource == Some("status") {
            // only .status changes
            let status = new.get("status").cloned();
            new = (*old).clone();
            if let Value::Object(m) = &mut new {
                match status {
                    Some(s) => {
                        m.insert("status".into(), s);
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
        } else if def.status_subresource
            && let Value::Object(m) = &mut new
        {
            match old.get("status") {
                Some(s) => {
                    m.insert("status".into(), s.clone());
                }
                None => {
                    m.remove("status");
                }
            }
        }
        if def.group == CRD_GROUP
            && def.plural == "customresourcedefinitions"
            && let Some(s) = old.get("status")
            && subresource != Some("status")
        {
            new["status"] = s.clone();
        }
        {
            let om = meta(&old).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
            ] {
                match om.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.insert(
                "resourceVersion".into(),
                om.get("resourceVersion").cloned().unwrap_or(Value::Null),
            );
            m.remove("selfLink");
        }
        let decoded = matches!(ownership, Ownership::Update);
        self.prepare(
            def,
            version,
            &mut new,
            Some(&old),
            opts.field_validation,
            decoded,
        )?;
        if def.is_crd
            && spec_part(&new, def.status_subresource) != spec_part(&old, def.status_subresource)
        {
            let g = meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let av = def.api_version(version);
        let managers = match ownership {
            Ownership::Update => {
                let mut m = requested;
                let id = ManagerId::new(
                    opts.manager(),
                    Operation::Update,
                    &av,
                    subresource.unwrap_or(""),
                );
                managed::update(
                    Some(&old),
                    &new,
                    &def.ty(version),
                    &mut m,
                    &id,
                    &av,
                    scope_of(def, subresource),
                );
                m
            }
            Ownership::Applied(m) => m,
        };
        set_managed(&mut new, &managers);
        // Compare ignoring apiVersion differences between served versions.
        let mut old_cmp = (*old).clone();
        if let Value::Object(m) = &mut old_cmp {
            m.insert("apiVersion".into(), json!(def.api_version(version)));
        }
        if new == old_cmp {
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        if is_deleting(&new) && finalizers_empty(&new) {
            return Ok(self.remove(def, new));
        }
        check_stored_size(&new)?;
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            self.register_crd(&new)?;
        }
        Ok(self.store(def, new, Some(old)))
    }

    /// PUT (replace) an object or its status.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        check_kind(def, version, &obj)?;
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&obj, "namespace");
        if def.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old = from_storage(def, self.get(def, ns, name)?);
        // kube-apiserver's store refuses an unconditional replace of kinds whose strategy does not
        // allow one (custom resources and their subresources, CRDs, Leases):
        // `metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`.
        if meta_str(&obj, "resourceVersion").is_empty() && !allows_unconditional_update(def) {
            let t = target(def, name);
            return Err(ApiError::invalid(
                &def.kind_group(),
                name,
                &t,
                &[FieldError {
                    // Go's `%#v` of the uint64 0 it parsed.
                    value: Some("0x0".into()),
                    ..FieldError::invalid(
                        "metadata.resourceVersion",
                        &Value::Null,
                        "must be specified for an update",
                    )
                }],
            ));
        }
        self.finish_update(def, version, old, obj, subresource, opts, Ownership::Update)
    }

    /// PATCH an object or its status. Returns (created?, object).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<(bool, Arc<Value>), ApiError> {
        crate::options::validate_patch_options(kind, opts)?;
        if kind == PatchKind::Strategic && def.is_crd {
            // Custom resources have no patch strategies: the real server does not accept SMP.
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        if kind == PatchKind::Apply {
            return self.apply(def, version, ns, name, body, subresource, opts);
        }
        let old = match self.get_obj(&def.storage_gr(), ns, name) {
            Some(o) => from_storage(def, o),
            None => return Err(ApiError::not_found(&target(def, name))),
        };
        let mut new = (*old).clone();
        match kind {
            PatchKind::Json => patch::json_patch(&mut new, body).map_err(|e| {
                let mut err = ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                );
                err.details = Some(json!({"name": name, "kind": def.plural}));
                err
            })?,
            PatchKind::Merge => patch::merge_patch(&mut new, body),
            PatchKind::Strategic => patch::strategic_merge_patch(&mut new, body),
            // Returned above (an apply may create the object); kept total without a panic.
            PatchKind::Apply => {
                return self.apply(def, version, ns, name, body, subresource, opts);
            }
        }
        Ok((
            false,
            self.finish_update(def, version, old, new, subresource, opts, Ownership::Update)?,
        ))
    }
}

/// Who owns what a write changes.
pub(crate) enum Ownership {
    /// An Update operation of the request's manager (create, PUT, JSON/merge/strategic patch).
    Update,
    /// An apply, whose managers are already computed.
    Applied(Managed),
}

/// The part of an object an endpoint writes (kube's reset fields).
pub(crate) fn scope_of(def: &ResourceDef, subresource: Option<&str>) -> Scope {
    match subresource {
        Some(_) => Scope::OnlyStatus,
        None if def.status_subresource => Scope::ExceptStatus,
        None => Scope::Everything,
    }
}

fn set_managed(obj: &mut Value, managers: &Managed) {
    let m = meta_mut(obj);
    if managers.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), managed::encode(managers));
    }
}

/// The kind-specific validation of built-in kinds.
fn validate_kind(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => kinds::validate_secret(obj, old),
        ("", "configmaps") => kinds::validate_config_map(obj, old),
        ("coordination.k8s.io", "leases") => kinds::validate_lease(obj),
        (crate::registry::RBAC_GROUP, "roles") => kinds::validate_rules(obj, false),
        (crate::registry::RBAC_GROUP, "clusterroles") => kinds::validate_rules(obj, true),
        (crate::registry::RBAC_GROUP, "rolebindings") => kinds::validate_binding(obj, old, false),
        (crate::registry::RBAC_GROUP, "clusterrolebindings") => {
            kinds::validate_binding(obj, old, true)
        }
        ("" | events::EVENTS_GROUP, "events") => {
            let strict = def.group == events::EVENTS_GROUP;
            let new = events::to_core(obj);
            match old {
                Some(o) => events::validate_update(&new, &events::to_core(o), strict),
                None => events::validate_create(&new, strict),
            }
        }
        _ => Vec::new(),
    }
}

/// How `metadata` of a kind is validated (`None`: core/v1 Events, whose legacy validation checks
/// no metadata).
fn meta_rules(def: &ResourceDef) -> Option<MetaRules> {
    let core = def.group.is_empty();
    let name = match (def.group.as_str(), def.plural.as_str()) {
        ("", "events") => return None,
        ("", "namespaces") => NameRule::Label,
        (crate::registry::RBAC_GROUP, _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    };
    Some(MetaRules {
        name,
        namespaced: def.namespaced,
        core_finalizers: core || def.is("events.k8s.io", "events"),
    })
}

fn check_kind(def: &ResourceDef, version: &str, obj: &Value) -> Result<(), ApiError> {
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({k}) does not match the resource {} ({})",
            def.plural, def.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != def.api_version(version)
        && !def.versions.iter().any(|v| def.api_version(v) == av)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version(version)
        )));
    }
    Ok(())
}

/// Secret `stringData` is write-only: merged into base64 `data` (stringData wins), then dropped.
/// `data` values must be valid base64.
fn fold_string_data(obj: &mut Value) -> Result<(), FieldError> {
    let Value::Object(m) = obj else { return Ok(()) };
    if let Some(Value::Object(data)) = m.get("data") {
        for (k, v) in data {
            let ok = v
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(FieldError::invalid(
                    &format!("data[{k}]"),
                    v,
                    "illegal base64 data",
                ));
            }
        }
    }
    if let Some(sd) = m.remove("stringData") {
        let Value::Object(sd) = sd else {
            return Err(FieldError::type_invalid(
                "stringData",
                &sd,
                "must be an object",
            ));
        };
        let data = m.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in sd {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data[k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
        }
    }
    Ok(())
}

/// Whether a PUT without `metadata.resourceVersion` is accepted (the registry strategy's
/// `AllowUnconditionalUpdate`): not for custom resources, CRDs and Leases.
fn allows_unconditional_update(def: &ResourceDef) -> bool {
    !(def.is_crd
        || (def.group == CRD_GROUP && def.plural == "customresourcedefinitions")
        || (def.group == "coordination.k8s.io" && def.plural == "leases"))
}

/// etcd's default `--max-request-bytes` (1.5 MiB): kube-apiserver cannot store a larger object,
/// whatever its request body (up to 3 MiB) was, and answers with etcd's error as an internal
/// error. A dry run never reaches etcd.
const MAX_STORED_OBJECT: usize = 3 * 512 * 1024;

fn check_stored_size(obj: &Value) -> Result<(), ApiError> {
    let size = serde_json::to_vec(obj).map(|v| v.len()).unwrap_or(0);
    if size > MAX_STORED_OBJECT {
        return Err(ApiError::new(
            500,
            "InternalError",
            "etcdserver: request is too large",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_folds() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "y", "a": "z"}});
        fold_string_data(&mut s).unwrap();
        assert_eq!(s, json!({"data": {"a": "eg==", "b": "eQ=="}}));
        let mut bad = json!({"data": {"a": "not base64!"}});
        assert!(fold_string_data(&mut bad).is_err());
    }
}
