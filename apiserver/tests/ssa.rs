//! Server-side apply as kube-apiserver does it, driven by a kube 5 client: managedFields per
//! manager and operation at Kubernetes' granularity, removal of fields a manager stops applying
//! (unless co-owned), conflicts, schema errors, explicit nulls, and the media types / options the
//! real server refuses.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde_json::{Value, json};
use tenantdb_apiserver::{Config, RunningServer};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.ssa.tenantdb.io}
spec:
  group: ssa.tenantdb.io
  scope: Namespaced
  names: {plural: things, singular: thing, kind: Thing}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              note: {type: string, nullable: true}
              mode: {type: string}
              tags: {type: array, items: {type: string}}
              labels: {type: object, additionalProperties: {type: string}}
          status:
            type: object
            properties:
              phase: {type: string}
              version: {type: integer, nullable: true}
              conditions:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [type]
                items:
                  type: object
                  required: [type]
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

fn ar() -> ApiResource {
    ApiResource {
        group: "ssa.tenantdb.io".into(),
        version: "v1".into(),
        api_version: "ssa.tenantdb.io/v1".into(),
        kind: "Thing".into(),
        plural: "things".into(),
    }
}

async fn setup() -> (RunningServer, Api<DynamicObject>) {
    let crd: Value = serde_saphyr::from_str(CRD).unwrap();
    let srv = tenantdb_apiserver::start(Config {
        crds: vec![crd],
        ..Config::default()
    })
    .await
    .unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&srv.kubeconfig_yaml("default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    (srv, Api::namespaced_with(client, "default", &ar()))
}

fn thing(body: Value) -> Value {
    let mut v =
        json!({"apiVersion": "ssa.tenantdb.io/v1", "kind": "Thing", "metadata": {"name": "t"}});
    for (k, x) in body.as_object().unwrap() {
        if k == "metadata" {
            for (mk, mv) in x.as_object().unwrap() {
                v["metadata"][mk] = mv.clone();
            }
        } else {
            v[k] = x.clone();
        }
    }
    v
}

fn pp(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The managedFields entry of one manager (and subresource).
fn entry(obj: &DynamicObject, manager: &str, sub: &str) -> Value {
    let mf = serde_json::to_value(&obj.metadata.managed_fields).unwrap();
    mf.as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["manager"] == manager
                && e.get("subresource").and_then(Value::as_str).unwrap_or("") == sub
        })
        .cloned()
        .unwrap_or_else(|| panic!("no managedFields entry for {manager:?}/{sub:?}: {mf:#}"))
}

#[tokio::test]
async fn managed_fields_have_kubernetes_granularity() {
    let (srv, api) = setup().await;
    let obj = api
        .patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(json!({"metadata": {"labels": {"app": "x"}},
                "spec": {"size": 1, "tags": ["a", "b"], "labels": {"k": "v"}}}))),
        )
        .await
        .unwrap();
    let e = entry(&obj, "alice", "");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "ssa.tenantdb.io/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["time"].is_string());
    // map keys, scalars and atomic lists are leaves; apiVersion/kind/name are not tracked.
    assert_eq!(
        e["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:labels": {"f:k": {}}, "f:size": {}, "f:tags": {}}})
    );
    // Status via the subresource: list-map items by key.
    let obj = api
        .patch_status(
            "t",
            &pp("controller"),
            &Patch::Apply(thing(json!({"status": {"phase": "Ready",
                "conditions": [{"type": "Ready", "status": "True"}]}}))),
        )
        .await
        .unwrap();
    let e = entry(&obj, "controller", "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:phase": {}, "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
    );
    // A merge patch is an Update operation of its fieldManager, owning what it changed.
    let obj = api
        .patch(
            "t",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"mode": "fast"}})),
        )
        .await
        .unwrap();
    let e = entry(&obj, "editor", "");
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["fieldsV1"], json!({"f:spec": {"f:mode": {}}}));
    // A create is an Update too (`.` marks a container the creator added).
    let created = api
        .create(
            &PostParams {
                field_manager: Some("creator".into()),
                ..Default::default()
            },
            &serde_json::from_value(json!({"apiVersion": "ssa.tenantdb.io/v1", "kind": "Thing",
                "metadata": {"name": "c"}, "spec": {"size": 2}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        entry(&created, "creator", "")["fieldsV1"],
        json!({"f:spec": {".": {}, "f:size": {}}})
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn fields_no_longer_applied_are_removed_unless_co_owned() {
    let (srv, api) = setup().await;
    api.patch(
        "t",
        &pp("alice"),
        &Patch::Apply(thing(
            json!({"spec": {"size": 1, "mode": "a", "labels": {"x": "1", "y": "2"}}}),
        )),
    )
    .await
    .unwrap();
    // bob co-owns spec.mode (same value: no conflict).
    api.patch(
        "t",
        &pp("bob"),
        &Patch::Apply(thing(json!({"spec": {"mode": "a"}}))),
    )
    .await
    .unwrap();
    // alice stops applying mode, labels.y and size.
    let obj = api
        .patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(json!({"spec": {"labels": {"x": "1"}}}))),
        )
        .await
        .unwrap();
    assert_eq!(obj.data["spec"], json!({"mode": "a", "labels": {"x": "1"}}));
    // Status conditions: the controller stops applying one condition type.
    api.patch_status(
        "t",
        &pp("controller"),
        &Patch::Apply(thing(json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}}))),
    )
    .await
    .unwrap();
    let obj = api
        .patch_status(
            "t",
            &pp("controller"),
            &Patch::Apply(thing(
                json!({"status": {"conditions": [{"type": "A", "status": "False"}]}}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        obj.data["status"]["conditions"],
        json!([{"type": "A", "status": "False"}])
    );
    // Re-applying the same configuration is a no-op: same resourceVersion.
    let again = api
        .patch_status(
            "t",
            &pp("controller"),
            &Patch::Apply(thing(
                json!({"status": {"conditions": [{"type": "A", "status": "False"}]}}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        obj.metadata.resource_version
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn conflicts_name_manager_and_field_and_force_takes_over() {
    let (srv, api) = setup().await;
    api.patch(
        "t",
        &pp("alice"),
        &Patch::Apply(thing(json!({"spec": {"size": 1, "mode": "a"}}))),
    )
    .await
    .unwrap();
    let err = api_err(
        api.patch(
            "t",
            &pp("bob"),
            &Patch::Apply(thing(json!({"spec": {"size": 2, "mode": "b"}}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .spec.mode\n- .spec.size"
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].message, "conflict with \"alice\"");
    // An Update manager in a conflict message carries its API version.
    api.patch(
        "t",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"spec": {"tags": ["z"]}})),
    )
    .await
    .unwrap();
    let err = api_err(
        api.patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(
                json!({"spec": {"size": 1, "mode": "a", "tags": ["y"]}}),
            )),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using ssa.tenantdb.io/v1: .spec.tags"
    );
    // Forced, bob takes size and mode; alice no longer owns them.
    let obj = api
        .patch(
            "t",
            &pp("bob").force(),
            &Patch::Apply(thing(json!({"spec": {"size": 2, "mode": "b"}}))),
        )
        .await
        .unwrap();
    assert_eq!(obj.data["spec"]["size"], 2);
    let alice = serde_json::to_value(&obj.metadata.managed_fields).unwrap();
    assert!(
        !alice.to_string().contains("\"manager\":\"alice\""),
        "alice lost every field: {alice}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn schema_errors_nulls_and_refused_requests() {
    let (srv, api) = setup().await;
    // A field the schema does not declare is an error (not pruned).
    let err = api_err(
        api.patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(json!({"spec": {"size": 1, "bogus": true}}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    assert_eq!(
        err.message,
        "failed to create typed patch object (default/t; ssa.tenantdb.io/v1, Kind=Thing): .spec.bogus: field not declared in schema"
    );
    // Explicit null: kept for a nullable field, refused for a non-nullable one.
    let obj = api
        .patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(json!({"spec": {"size": 1, "note": null}}))),
        )
        .await
        .unwrap();
    assert!(
        obj.data["spec"].get("note").is_some_and(Value::is_null),
        "{}",
        obj.data
    );
    let err = api_err(
        api.patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(json!({"spec": {"size": null}}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    assert!(err.message.contains("spec.size"), "{}", err.message);
    // Without apiVersion/kind: 400.
    let err = api_err(
        api.patch(
            "t",
            &pp("alice"),
            &Patch::Apply(json!({"metadata": {"name": "t"}, "spec": {"size": 1}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "invalid object type: /, Kind=")
    );
    // metadata.managedFields in an apply: 400.
    let err = api_err(
        api.patch(
            "t",
            &pp("alice"),
            &Patch::Apply(thing(
                json!({"metadata": {"name": "t", "managedFields": [{"manager": "x"}]}}),
            )),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "metadata.managedFields must be nil")
    );
    // Strategic merge patch on a custom resource: 415.
    let err = api_err(
        api.patch(
            "t",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 3}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 415);
    // force on a non-apply patch: 422 (kube-rs refuses to send it, so a raw request).
    let req =
        http::Request::patch("/apis/ssa.tenantdb.io/v1/namespaces/default/things/t?force=true")
            .header("content-type", "application/merge-patch+json")
            .body(br#"{"spec":{"size":3}}"#.to_vec())
            .unwrap();
    let err = api_err(
        api.clone()
            .into_client()
            .request::<Value>(req)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            422,
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
        )
    );
    srv.shutdown().await;
}
