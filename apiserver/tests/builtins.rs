//! Built-in kinds and CRD registration as strict as kube-apiserver: Events of both APIs in one
//! storage with their limits, Secrets / ConfigMaps / Leases validation, object metadata rules,
//! typed decoding, `generation` on deletion, no new finalizers while deleting, CRD schema checks.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenantdb_apiserver::{Config, RunningServer};

async fn setup() -> (RunningServer, Client) {
    let srv = tenantdb_apiserver::start(Config::default()).await.unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&srv.kubeconfig_yaml("default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (srv, Client::try_from(config).unwrap())
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn event(name: &str, note: &str, reason: &str) -> Event {
    obj(json!({"metadata": {"name": name, "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "reason": reason, "action": "Test",
        "note": note, "reportingController": "tenantdb", "reportingInstance": "i-1",
        "regarding": {"kind": "ConfigMap", "namespace": "default", "name": "x"}}))
}

#[tokio::test]
async fn events_share_one_storage_and_keep_their_limits() {
    let (srv, c) = setup().await;
    let v1: Api<Event> = Api::namespaced(c.clone(), "default");
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    v1.create(&PostParams::default(), &event("e1", "hello", "Started"))
        .await
        .unwrap();
    // The same object through the core API, with core field names.
    let as_core = core.get("e1").await.unwrap();
    assert_eq!(as_core.message.as_deref(), Some("hello"));
    assert_eq!(as_core.involved_object.name.as_deref(), Some("x"));
    assert_eq!(as_core.reporting_component.as_deref(), Some("tenantdb"));
    assert_eq!(
        core.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    // A core Event is an events.k8s.io Event too.
    core.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "c1"}, "involvedObject": {"namespace": "default", "name": "y"},
                    "reason": "Legacy", "message": "from core", "type": "Normal"})),
    )
    .await
    .unwrap();
    let c1 = v1.get("c1").await.unwrap();
    assert_eq!(c1.note.as_deref(), Some("from core"));
    // events.k8s.io: note ≤ 1 KiB, reason/action ≤ 128.
    let err = api_err(
        v1.create(
            &PostParams::default(),
            &event("e2", &"n".repeat(1025), "Started"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "Event.events.k8s.io \"e2\" is invalid: message: Invalid value: \"\": can have at most 1024 characters"
    );
    let err = api_err(
        v1.create(&PostParams::default(), &event("e3", "ok", &"R".repeat(129)))
            .await
            .unwrap_err(),
    );
    assert!(
        err.message
            .contains("reason: Invalid value: \"\": can have at most 128 characters"),
        "{}",
        err.message
    );
    // Updates through events.k8s.io may not change the note; a series may be added.
    let err = api_err(
        v1.patch(
            "e1",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "changed"})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message
            .contains("message: Invalid value: \"changed\": field is immutable"),
        "{}",
        err.message
    );
    v1.patch(
        "e1",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"}}),
        ),
    )
    .await
    .unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn secrets_config_maps_leases_and_metadata() {
    let (srv, c) = setup().await;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    let err = api_err(
        secrets
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "s"}, "stringData": {"bad/key": "v"}})),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.starts_with("Secret \"s\" is invalid: data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters"),
        "{}",
        err.message
    );
    secrets
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}, "immutable": true})),
        )
        .await
        .unwrap();
    let err = api_err(
        secrets
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"type": "kubernetes.io/basic-auth", "stringData": {"k": "w"}}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        err.message
            .contains("type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{}",
        err.message
    );
    // Metadata: label values ≤ 63 and well formed, annotations ≤ 256 KiB in total, names.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let long = "v".repeat(64);
    let err = api_err(
        cms.create(
            &pp,
            &obj(json!({"metadata": {"name": "c", "labels": {"tenant": long}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "ConfigMap \"c\" is invalid: metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters"
        )
    );
    let err = api_err(
        cms.create(
            &pp,
            &obj(
                json!({"metadata": {"name": "c", "annotations": {"big": "x".repeat(256 * 1024)}}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "ConfigMap \"c\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
    );
    let err = api_err(
        cms.create(&pp, &obj(json!({"metadata": {"name": "Not_A_Name"}})))
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains(
            "metadata.name: Invalid value: \"Not_A_Name\": a lowercase RFC 1123 subdomain"
        ),
        "{}",
        err.message
    );
    let err = api_err(
        cms.create(
            &pp,
            &obj(json!({"metadata": {"name": "c"}, "data": {"a b": "x"}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message.contains("data[a b]: Invalid value: \"a b\""),
        "{}",
        err.message
    );
    // Typed decoding: a wrong JSON type is a 400.
    let raw = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"immutable":"yes"}"#
                .to_vec(),
        )
        .unwrap();
    let err = api_err(c.request::<Value>(raw).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            400,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal string into Go struct field ConfigMap.immutable of type bool"
        )
    );
    // Lease spec.
    let leases: Api<Lease> = Api::namespaced(c.clone(), "default");
    let err = api_err(
        leases
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "Lease.coordination.k8s.io \"l\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    );
    // Leases are replaced only with the version read (leader election's optimistic lock);
    // Secrets may be replaced unconditionally.
    let l = leases
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 5}})),
        )
        .await
        .unwrap();
    let mut unconditional = l.clone();
    unconditional.metadata.resource_version = None;
    let err = api_err(leases.replace("l", &pp, &unconditional).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            422,
            "Lease.coordination.k8s.io \"l\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        )
    );
    leases.replace("l", &pp, &l).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let sec = secrets
        .create(&pp, &obj(json!({"metadata": {"name": "unconditional"}})))
        .await
        .unwrap();
    let mut sec = sec;
    sec.metadata.resource_version = None;
    secrets.replace("unconditional", &pp, &sec).await.unwrap();
    srv.shutdown().await;
}

/// The custom resource of [`CRD`].
fn gadget() -> ApiResource {
    ApiResource {
        group: "builtins.tenantdb.io".into(),
        version: "v1".into(),
        api_version: "builtins.tenantdb.io/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    }
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.builtins.tenantdb.io}
spec:
  group: builtins.tenantdb.io
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#;

/// etcd stores at most 1.5 MiB per object (`--max-request-bytes`), below kube-apiserver's 3 MiB
/// request bodies: a larger object is refused on create and on update (a status that grows with
/// the fleet fails here first), and the stored object is left as it was.
#[tokio::test]
async fn objects_past_etcds_limit_are_refused() {
    let (_srv, c) = setup().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let crd: Value = serde_saphyr::from_str(&CRD.replace(
        "              size: {type: integer}",
        "              size: {type: integer}\n            x-kubernetes-preserve-unknown-fields: true",
    ))
    .unwrap();
    crds.create(&PostParams::default(), &obj(crd))
        .await
        .unwrap();
    let ar = gadget();
    let gadgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let mib = "x".repeat(1024 * 1024);
    let big = DynamicObject::new("big", &ar).data(json!({"spec": {"a": mib, "b": mib}}));
    let err = api_err(
        gadgets
            .create(&PostParams::default(), &big)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (500, "etcdserver: request is too large")
    );
    let fits = DynamicObject::new("g", &ar).data(json!({"spec": {"a": mib}}));
    gadgets.create(&PostParams::default(), &fits).await.unwrap();
    let err = api_err(
        gadgets
            .patch(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"b": mib}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500, "{err:?}");
    let g = gadgets.get("g").await.unwrap();
    assert!(g.data["spec"].get("b").is_none(), "unchanged");
}

#[tokio::test]
async fn generation_on_deletion_no_new_finalizers_and_crd_checks() {
    let (srv, c) = setup().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let crd: Value = serde_saphyr::from_str(CRD).unwrap();
    crds.create(&PostParams::default(), &obj(crd.clone()))
        .await
        .unwrap();
    let ar = gadget();
    let gadgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let g = DynamicObject::new("g", &ar).data(json!({"spec": {"size": 1}}));
    let mut g = g;
    g.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let g = gadgets.create(&PostParams::default(), &g).await.unwrap();
    assert_eq!(g.metadata.generation, Some(1));
    // A custom resource is never replaced unconditionally (its strategy's
    // AllowUnconditionalUpdate is false): PUT without a resourceVersion is refused.
    let mut unconditional = g.clone();
    unconditional.metadata.resource_version = None;
    let err = api_err(
        gadgets
            .replace("g", &PostParams::default(), &unconditional)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            422,
            "Gadget.builtins.tenantdb.io \"g\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        )
    );
    let g = gadgets
        .replace("g", &PostParams::default(), &g)
        .await
        .unwrap();
    // Field selectors: the object's name and namespace only on custom resources, a few fields
    // more on some built-in kinds; anything else is a 400, as is a `limit` that is no integer.
    let lp = |f: &str| ListParams::default().fields(f);
    assert_eq!(
        gadgets
            .list(&lp("metadata.name=g"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let err = api_err(gadgets.list(&lp("spec.size=1")).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: spec.size")
    );
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    secrets.list(&lp("type=Opaque")).await.unwrap();
    let err = api_err(secrets.list(&lp("data.k=dg==")).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: data.k")
    );
    let req = http::Request::get("/api/v1/namespaces/default/secrets?limit=ten")
        .body(Vec::new())
        .unwrap();
    let err = api_err(c.request_text(req).await.unwrap_err());
    assert_eq!(err.code, 400, "{err:?}");
    gadgets.delete("g", &DeleteParams::default()).await.unwrap();
    let deleting = gadgets.get("g").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        deleting.metadata.generation,
        Some(2),
        "deletionTimestamp bumps generation"
    );
    let err = api_err(
        gadgets
            .patch(
                "g",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["example.com/hold", "example.com/late"]}}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "Gadget.builtins.tenantdb.io \"g\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/late\"}"
    );
    gadgets
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(gadgets.get_opt("g").await.unwrap().is_none());
    // A non-structural schema, a rule that does not compile, an invalid default: refused.
    let mut bad = crd.clone();
    bad["metadata"]["name"] = json!("widgets.builtins.tenantdb.io");
    bad["spec"]["names"] = json!({"plural": "widgets", "singular": "widget", "kind": "Widget"});
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.size >"}],
        "properties": {"size": {"type": "integer", "default": "ten"}, "free": {"properties": {"a": {"type": "string"}}}}});
    let err = api_err(
        crds.create(&PostParams::default(), &obj(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    for want in [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[free].type: Required value: must not be empty for specified object fields",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default: Invalid value: \"ten\"",
    ] {
        assert!(
            err.message.contains(want),
            "missing {want:?} in {}",
            err.message
        );
    }
    assert!(
        Api::<DynamicObject>::namespaced_with(
            c.clone(),
            "default",
            &ApiResource {
                plural: "widgets".into(),
                kind: "Widget".into(),
                ..ar.clone()
            }
        )
        .list(&ListParams::default())
        .await
        .is_err(),
        "the refused CRD is not served"
    );
    let _ = g.name_any();
    srv.shutdown().await;
}
