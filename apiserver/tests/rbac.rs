//! Authentication and RBAC authorization of the emulator, driven by real kube 5 clients with
//! bearer tokens: verb mapping (apply that creates needs `create`), subresources, resourceNames,
//! RoleBinding scope, wildcards, aggregation, 401/403 shapes, manifests loaded at start.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, Status};
use kube::{Client, CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenantdb_apiserver::{Config, RunningServer};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "rbac-test.tenantdb.io",
    version = "v1",
    kind = "Gizmo",
    namespaced,
    status = "GizmoStatus"
)]
pub struct GizmoSpec {
    pub size: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, Default)]
pub struct GizmoStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

const OPERATOR_RBAC: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: op, namespace: ops}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: op}
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["rbac-test.tenantdb.io"]
  resources: ["gizmos"]
  verbs: ["get", "list"]
- apiGroups: ["rbac-test.tenantdb.io"]
  resources: ["gizmos/status"]
  verbs: ["patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: op}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: op}
subjects:
- {kind: ServiceAccount, name: op, namespace: ops}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: op-lease, namespace: ops}
rules:
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: ["op-lock"]
  verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: op-lease, namespace: ops}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: op-lease}
subjects:
- {kind: ServiceAccount, name: op}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: op, namespace: ops}
spec: {}
"#;

async fn start() -> RunningServer {
    let mut cfg = Config {
        crds: vec![serde_json::to_value(Gizmo::crd()).unwrap()],
        ..Config::default()
    };
    assert_eq!(cfg.load_manifests(OPERATOR_RBAC).unwrap(), 6);
    tenantdb_apiserver::start(cfg).await.unwrap()
}

async fn client(kubeconfig: &str) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

const OP: &str = "system:serviceaccount:ops:op";

/// The server, an admin client and the operator's (ServiceAccount `ops/op`), with namespace
/// `team-a`.
async fn start_with_team_a() -> (RunningServer, Client, Client) {
    let srv = start().await;
    let admin = client(&srv.kubeconfig_yaml("default")).await;
    let op = client(&srv.service_account_kubeconfig_yaml("ops", "op", "default")).await;
    let ns: Api<Namespace> = Api::all(admin.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap(),
    )
    .await
    .unwrap();
    (srv, admin, op)
}

fn secret(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}})
}

#[tokio::test]
async fn apply_that_creates_needs_create_and_patch_alone_updates() {
    let (srv, admin, op) = start_with_team_a().await;
    let secrets: Api<Secret> = Api::namespaced(op.clone(), "team-a");
    let pp = PatchParams::apply("op").force();
    // patch is granted, create is not: an apply that would create the Secret is refused.
    let err = api_err(
        secrets
            .patch("creds", &pp, &Patch::Apply(&secret("creds")))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert_eq!(err.reason, "Forbidden");
    // kube's create-on-patch authorization error carries RBAC's (empty) reason only.
    assert_eq!(err.message, "secrets \"creds\" is forbidden: ");
    // Created by the admin, the same apply is an update and needs only `patch`.
    Api::<Secret>::namespaced(admin.clone(), "team-a")
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret("creds")).unwrap(),
        )
        .await
        .unwrap();
    secrets
        .patch("creds", &pp, &Patch::Apply(&secret("creds")))
        .await
        .unwrap();
    // POST and DELETE are separate verbs.
    let err = api_err(
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(secret("other")).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "secrets is forbidden: User \"{OP}\" cannot create resource \"secrets\" in API group \"\" in the namespace \"team-a\""
        )
    );
    let err = api_err(
        secrets
            .delete("creds", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "secrets \"creds\" is forbidden: User \"{OP}\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"team-a\""
        )
    );
    // Granting create (a second ClusterRole bound to the SA) lets the apply create.
    let roles: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()),
    );
    roles
        .patch(
            "op-create",
            &PatchParams::apply("admin"),
            &Patch::Apply(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "op-create", "labels": {"agg": "op"}},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch"]}]}),
            ),
        )
        .await
        .unwrap();
    // Aggregated into the bound role by label selector: the aggregated rules replace the role's
    // own (the aggregation controller overwrites `rules`).
    roles
        .patch(
            "op",
            &PatchParams::apply("admin").force(),
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "op"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "op"}}]},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "patch"]}]})),
        )
        .await
        .unwrap();
    let created = secrets
        .patch("fresh", &pp, &Patch::Apply(&secret("fresh")))
        .await
        .unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("fresh"));
    let err = api_err(secrets.get("creds").await.unwrap_err());
    assert_eq!(
        err.code, 403,
        "the aggregated role's own get is gone: {err:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn subresources_resource_names_and_binding_scope() {
    let srv = start().await;
    let admin = client(&srv.kubeconfig_yaml("default")).await;
    let op = client(&srv.service_account_kubeconfig_yaml("ops", "op", "default")).await;
    Api::<Gizmo>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &Gizmo::new("g", GizmoSpec { size: 1 }),
        )
        .await
        .unwrap();
    let gizmos: Api<Gizmo> = Api::namespaced(op.clone(), "default");
    // gizmos/status is granted, gizmos (main resource) patch is not.
    let status = json!({"apiVersion": "rbac-test.tenantdb.io/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "status": {"phase": "Ready"}});
    gizmos
        .patch_status(
            "g",
            &PatchParams::apply("op").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    let err = api_err(
        gizmos
            .patch(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "gizmos.rbac-test.tenantdb.io \"g\" is forbidden: User \"{OP}\" cannot patch resource \"gizmos\" in API group \"rbac-test.tenantdb.io\" in the namespace \"default\""
        )
    );
    // A cluster-wide list needs a ClusterRoleBinding: there is one for gizmos.
    Api::<Gizmo>::all(op.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    // Leases: a RoleBinding grants only in its namespace, and get/update only for the named lease.
    let leases: Api<Lease> = Api::namespaced(op.clone(), "ops");
    let lease = |name: &str| -> Lease {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"holderIdentity": "me"}}),
        )
        .unwrap()
    };
    leases
        .create(&PostParams::default(), &lease("op-lock"))
        .await
        .unwrap();
    let mut got = leases.get("op-lock").await.unwrap();
    got.spec.as_mut().unwrap().holder_identity = Some("me-too".into());
    leases
        .replace("op-lock", &PostParams::default(), &got)
        .await
        .unwrap();
    leases
        .create(&PostParams::default(), &lease("other"))
        .await
        .unwrap();
    let err = api_err(leases.get("other").await.unwrap_err());
    assert_eq!(
        err.message,
        format!(
            "leases.coordination.k8s.io \"other\" is forbidden: User \"{OP}\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"ops\""
        )
    );
    // `list` is not granted even in the bound namespace (resourceNames never match a list).
    let err = api_err(leases.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 403);
    let err = api_err(
        Api::<Lease>::namespaced(op.clone(), "default")
            .create(&PostParams::default(), &lease("op-lock"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "leases.coordination.k8s.io is forbidden: User \"{OP}\" cannot create resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
        )
    );
    let err = api_err(
        Api::<Lease>::all(op.clone())
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "leases.coordination.k8s.io is forbidden: User \"{OP}\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" at the cluster scope"
        )
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn authentication_anonymous_wildcards_and_missing_roles() {
    let srv = start().await;
    let admin = client(&srv.kubeconfig_yaml("default")).await;
    // A token nobody issued: 401.
    let bad = client(&srv.kubeconfig_yaml_with_token("default", Some("nope"))).await;
    let err = api_err(
        Api::<Secret>::all(bad)
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
    // No credentials: system:anonymous may read /version, nothing else.
    let anon = client(&srv.kubeconfig_yaml_with_token("default", None)).await;
    anon.apiserver_version().await.unwrap();
    let err = api_err(
        Api::<Secret>::all(anon.clone())
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "secrets is forbidden: User \"system:anonymous\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
    );
    let err = anon
        .request_text(http::Request::get("/apis").body(Vec::new()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        api_err(err).message,
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );
    // A binding to a role that does not exist grants nothing and says so.
    let bindings: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&()),
    );
    bindings
        .patch(
            "dangling",
            &PatchParams::apply("admin"),
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "dangling"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "missing"},
                "subjects": [{"kind": "ServiceAccount", "name": "cm", "namespace": "default"}]})),
        )
        .await
        .unwrap();
    // A ServiceAccount that exists, bound to `*` on configmaps only.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cm"}})).unwrap(),
    )
    .await
    .unwrap();
    let roles: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()),
    );
    roles
        .patch(
            "cm-all",
            &PatchParams::apply("admin"),
            &Patch::Apply(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "cm-all"},
                "rules": [{"apiGroups": ["*"], "resources": ["configmaps"], "verbs": ["*"]}]}),
            ),
        )
        .await
        .unwrap();
    bindings
        .patch(
            "cm-all",
            &PatchParams::apply("admin"),
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "cm-all"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-all"},
                "subjects": [{"kind": "ServiceAccount", "name": "cm", "namespace": "default"}]})),
        )
        .await
        .unwrap();
    let cm = client(&srv.service_account_kubeconfig_yaml("default", "cm", "default")).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::all(cm.clone());
    cms.list(&ListParams::default()).await.unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(cm.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        api_err(
            Api::<Secret>::all(cm.clone())
                .list(&ListParams::default())
                .await
                .unwrap_err()
        )
        .message,
        "secrets is forbidden: User \"system:serviceaccount:default:cm\" cannot list resource \"secrets\" in API group \"\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found"
    );
    // Deleting the ServiceAccount invalidates its token.
    sas.delete("cm", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_err(cms.list(&ListParams::default()).await.unwrap_err()).code,
        401
    );
    // The manifests' namespace was created for the ServiceAccount; the Deployment was skipped.
    Api::<Namespace>::all(admin.clone())
        .get("ops")
        .await
        .unwrap();
    srv.shutdown().await;
}

/// OwnerReferencesPermissionEnforcement (kube-apiserver's admission plugin, on in OpenShift):
/// changing an object's owner references needs `delete` on it (not when creating it), and an owner
/// reference with `blockOwnerDeletion: true` needs `update` on the owner's `finalizers`.
#[tokio::test]
async fn owner_references_need_delete_and_blocking_ones_the_owners_finalizers() {
    let (srv, admin, op) = start_with_team_a().await;
    let g = Api::<Gizmo>::namespaced(admin.clone(), "team-a")
        .create(
            &PostParams::default(),
            &Gizmo::new("g", GizmoSpec { size: 1 }),
        )
        .await
        .unwrap();
    let grant = |name: &'static str, rules: serde_json::Value| {
        let admin = admin.clone();
        async move {
            let pp = PatchParams::apply("admin");
            let roles: Api<DynamicObject> = Api::all_with(
                admin.clone(),
                &ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()),
            );
            roles
                .patch(
                    name,
                    &pp,
                    &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})),
                )
                .await
                .unwrap();
            let bindings: Api<DynamicObject> = Api::all_with(
                admin,
                &ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&()),
            );
            bindings
                .patch(name, &pp, &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding", "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]})))
                .await
                .unwrap();
        }
    };
    grant(
        "op-create",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]),
    )
    .await;
    let owned = |name: &str, block: bool| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "rbac-test.tenantdb.io/v1", "kind": "Gizmo", "name": "g",
            "uid": g.metadata.uid, "controller": true, "blockOwnerDeletion": block}]}}))
        .unwrap()
    };
    let secrets: Api<Secret> = Api::namespaced(op.clone(), "team-a");
    let pp = PostParams::default();
    let err = api_err(
        secrets
            .create(&pp, &owned("blocking", true))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            403,
            "secrets \"blocking\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>"
        )
    );
    // Creating with a non-blocking owner reference needs nothing more; removing it later needs
    // delete on the Secret.
    secrets.create(&pp, &owned("plain", false)).await.unwrap();
    let orphan = Patch::Merge(json!({"metadata": {"ownerReferences": null}}));
    let err = api_err(
        secrets
            .patch("plain", &PatchParams::default(), &orphan)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            403,
            "secrets \"plain\" is forbidden: cannot set an ownerRef on a resource you can't delete: , <nil>"
        )
    );
    // Other writes that leave the owner references alone need nothing more.
    secrets
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    grant(
        "op-owners",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]},
               {"apiGroups": ["rbac-test.tenantdb.io"], "resources": ["gizmos/finalizers"],
                "resourceNames": ["g"], "verbs": ["update"]}]),
    )
    .await;
    secrets.create(&pp, &owned("blocking", true)).await.unwrap();
    let plain = secrets
        .patch("plain", &PatchParams::default(), &orphan)
        .await
        .unwrap();
    assert!(plain.metadata.owner_references.is_none());
    srv.shutdown().await;
}
