//! RBAC authorization from Role/ClusterRole/RoleBinding/ClusterRoleBinding objects in the store,
//! with kube-apiserver's rule matching (`*`, `*/subresource`, `resourceNames`, non-resource URLs,
//! ClusterRole aggregation), binding scopes (a RoleBinding only grants in its namespace), the
//! request-to-verb mapping and the 403 message of `responsewriters.Forbidden`.

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::registry::GroupResource;
use crate::selector::LabelSelector;
use crate::store::State;

pub use crate::registry::RBAC_GROUP;

/// What is being asked (kube's `authorizer.Attributes`).
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    /// Resource request (`/api/…`, `/apis/…` with a resource) or a non-resource path.
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The URL path (non-resource requests).
    pub path: String,
}

/// The decision of the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not allowed; `reason` is RBAC's (empty unless a binding points at a missing role).
    Deny {
        reason: String,
    },
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn gr(group: &str, resource: &str) -> GroupResource {
    (group.to_string(), resource.to_string())
}

/// `rbac.VerbMatches` and friends for one PolicyRule.
pub fn rule_allows(a: &Attributes, rule: &Value) -> bool {
    let verbs = strs(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strs(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*"
                || *u == a.path
                || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
        });
    }
    let groups = strs(rule.get("apiGroups"));
    if !groups.iter().any(|g| *g == "*" || *g == a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strs(rule.get("resources")).iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!a.subresource.is_empty()
                && r.len() == a.subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(rule.get("resourceNames"));
    names.is_empty() || names.contains(&a.name.as_str())
}

/// Whether a binding subject is this user (`appliesToUser`). `binding_ns` is "" for
/// ClusterRoleBindings (a ServiceAccount subject then needs its own namespace).
fn subject_matches(user: &UserInfo, subject: &Value, binding_ns: &str) -> bool {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
    match s("kind") {
        "User" => s("name") == user.name,
        "Group" => user.groups.iter().any(|g| g == s("name")),
        "ServiceAccount" => {
            let ns = if s("namespace").is_empty() {
                binding_ns
            } else {
                s("namespace")
            };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", s("name"))
        }
        _ => false,
    }
}

/// The rules of a ClusterRole; with an `aggregationRule`, only those of the ClusterRoles it selects
/// (the real cluster-role aggregation controller overwrites `rules` with them; here they are
/// computed), its own `rules` ignored.
fn cluster_role_rules(state: &State, role: &Value) -> Vec<Value> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array);
    let mut rules: Vec<Value> = match selectors {
        Some(_) => vec![],
        None => role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    if let Some(selectors) = selectors {
        let sels: Vec<LabelSelector> = selectors
            .iter()
            .filter_map(|s| LabelSelector::from_json(s).ok())
            .collect();
        for (_, other) in state.iter_objects(&gr(RBAC_GROUP, "clusterroles"), None) {
            if std::ptr::eq(&**other, role) {
                continue;
            }
            if sels.iter().any(|s| s.matches(other))
                && let Some(r) = other.get("rules").and_then(Value::as_array)
            {
                rules.extend(r.iter().cloned());
            }
        }
    }
    rules
}

/// Rules granted by a binding's roleRef, or the RBAC error for a missing role.
fn role_ref_rules(state: &State, role_ref: &Value, binding_ns: &str) -> Result<Vec<Value>, String> {
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "ClusterRole" => match state.get_obj(&gr(RBAC_GROUP, "clusterroles"), "", name) {
            Some(r) => Ok(cluster_role_rules(state, &r)),
            None => Err(format!(
                "clusterrole.rbac.authorization.k8s.io \"{name}\" not found"
            )),
        },
        "Role" => match state.get_obj(&gr(RBAC_GROUP, "roles"), binding_ns, name) {
            Some(r) => Ok(r
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()),
            None => Err(format!(
                "role.rbac.authorization.k8s.io \"{name}\" not found"
            )),
        },
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

/// Every rule that applies to `user` for a request in `namespace` ("" = cluster scope), and the
/// errors met on the way (bindings to missing roles).
pub fn rules_for(state: &State, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut visit = |binding: &Value, binding_ns: &str| {
        let applies = binding
            .get("subjects")
            .and_then(Value::as_array)
            .is_some_and(|subs| subs.iter().any(|s| subject_matches(user, s, binding_ns)));
        if !applies {
            return;
        }
        match role_ref_rules(
            state,
            binding.get("roleRef").unwrap_or(&Value::Null),
            binding_ns,
        ) {
            Ok(r) => rules.extend(r),
            Err(e) => errors.push(e),
        }
    };
    for (_, b) in state.iter_objects(&gr(RBAC_GROUP, "clusterrolebindings"), None) {
        visit(b, "");
    }
    if !namespace.is_empty() {
        for (_, b) in state.iter_objects(&gr(RBAC_GROUP, "rolebindings"), Some(namespace)) {
            visit(b, namespace);
        }
    }
    (rules, errors)
}

/// Authorize one request (the RBAC authorizer; nothing else is in the chain).
pub fn authorize(state: &State, user: &UserInfo, a: &Attributes) -> Decision {
    let (rules, errors) = rules_for(state, user, &a.namespace);
    if rules.iter().any(|r| rule_allows(a, r)) {
        return Decision::Allow;
    }
    let reason = if errors.is_empty() {
        String::new()
    } else if errors.len() == 1 {
        format!("RBAC: {}", errors[0])
    } else {
        format!("RBAC: [{}]", errors.join(", "))
    };
    Decision::Deny { reason }
}

/// `forbiddenMessage` of kube-apiserver's authorization filter.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if !a.resource_request {
        return format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            user.name, a.verb, a.group
        )
    } else {
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            user.name, a.verb, a.group, a.namespace
        )
    }
}

/// `apierrors.NewForbidden(gr, name, err)`.
pub fn forbidden(group: &str, resource: &str, name: &str, message: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let text = if name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} \"{name}\" is forbidden: {message}")
    };
    let mut e = ApiError::new(403, "Forbidden", text);
    let mut d = json!({"name": name, "kind": resource});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    e.details = Some(d);
    e
}

/// The 403 of the authorization filter for a denied request.
pub fn denied(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let mut msg = forbidden_message(user, a);
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    if a.resource_request {
        forbidden(&a.group, &a.resource, &a.name, &msg)
    } else {
        ApiError::new(403, "Forbidden", format!("forbidden: {msg}"))
    }
}

/// The bootstrap policy of a fresh cluster that matters here (`cluster-admin` for
/// `system:masters`, discovery and public info for everyone as on the real server).
pub fn bootstrap_policy() -> Vec<Value> {
    let meta = |name: &str| {
        json!({"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
               "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
    };
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": meta(name), "rules": rules})
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": meta(name),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects})
    };
    vec![
        role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                     "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        binding("cluster-admin", &["system:masters"]),
        binding("system:discovery", &["system:authenticated"]),
        binding(
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rule_matching_follows_kube() {
        let rule = json!({"apiGroups": ["tenantdb.io"], "resources": ["tenants", "tenants/status"], "verbs": ["get", "patch"]});
        assert!(rule_allows(
            &attrs("get", "tenantdb.io", "tenants", "", "a", "x"),
            &rule
        ));
        assert!(rule_allows(
            &attrs("patch", "tenantdb.io", "tenants", "status", "a", "x"),
            &rule
        ));
        assert!(!rule_allows(
            &attrs("update", "tenantdb.io", "tenants", "status", "a", "x"),
            &rule
        ));
        assert!(!rule_allows(
            &attrs("get", "", "tenants", "", "a", "x"),
            &rule
        ));
        // The main resource does not grant its subresources.
        let main = json!({"apiGroups": ["tenantdb.io"], "resources": ["tenants"], "verbs": ["*"]});
        assert!(!rule_allows(
            &attrs("patch", "tenantdb.io", "tenants", "status", "a", "x"),
            &main
        ));
        let any_status = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]});
        assert!(rule_allows(
            &attrs("patch", "tenantdb.io", "tenants", "status", "a", "x"),
            &any_status
        ));
        assert!(!rule_allows(
            &attrs("patch", "tenantdb.io", "tenants", "", "a", "x"),
            &any_status
        ));
        // resourceNames: only requests naming one of them.
        let named = json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["op"], "verbs": ["get", "create"]});
        assert!(rule_allows(
            &attrs("get", "coordination.k8s.io", "leases", "", "a", "op"),
            &named
        ));
        assert!(!rule_allows(
            &attrs("get", "coordination.k8s.io", "leases", "", "a", "other"),
            &named
        ));
        assert!(!rule_allows(
            &attrs("create", "coordination.k8s.io", "leases", "", "a", ""),
            &named
        ));
        // Non-resource URLs.
        let nr = json!({"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]});
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert!(rule_allows(&path("/apis/tenantdb.io/v1"), &nr));
        assert!(rule_allows(&path("/version"), &nr));
        assert!(!rule_allows(&path("/api"), &nr));
    }

    #[test]
    fn messages_have_the_real_shape() {
        let u = UserInfo::service_account("tenantdb-system", "tenantdb");
        let a = attrs("create", "", "secrets", "", "team-a", "");
        assert_eq!(
            denied(&u, &a, "").message,
            "secrets is forbidden: User \"system:serviceaccount:tenantdb-system:tenantdb\" cannot create resource \"secrets\" in API group \"\" in the namespace \"team-a\""
        );
        let a = attrs("patch", "tenantdb.io", "tenants", "status", "", "x");
        assert_eq!(
            denied(&u, &a, "").message,
            "tenants.tenantdb.io \"x\" is forbidden: User \"system:serviceaccount:tenantdb-system:tenantdb\" cannot patch resource \"tenants/status\" in API group \"tenantdb.io\" at the cluster scope"
        );
        assert_eq!(denied(&u, &a, "").code, 403);
    }

    #[test]
    fn subjects() {
        let sa = UserInfo::service_account("ops", "op");
        assert!(subject_matches(
            &sa,
            &json!({"kind": "ServiceAccount", "name": "op", "namespace": "ops"}),
            ""
        ));
        assert!(subject_matches(
            &sa,
            &json!({"kind": "ServiceAccount", "name": "op"}),
            "ops"
        ));
        assert!(!subject_matches(
            &sa,
            &json!({"kind": "ServiceAccount", "name": "op"}),
            ""
        ));
        assert!(subject_matches(
            &sa,
            &json!({"kind": "Group", "name": "system:serviceaccounts:ops"}),
            ""
        ));
        assert!(!subject_matches(
            &sa,
            &json!({"kind": "User", "name": "op"}),
            ""
        ));
    }
}
