//! End-to-end tests: a real `kube::Client` (kube 5) against the emulator.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ObjectMeta, Status};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as RtEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tenantdb_apiserver::{Config, RunningServer};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.tenantdb.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
pub struct WidgetSpec {
    pub size: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn crd_with_enum() -> serde_json::Value {
    let mut crd = serde_json::to_value(Widget::crd()).unwrap();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    spec["mode"] = json!({"type": "string", "nullable": true, "enum": ["fast", "slow"], "default": "slow",
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]});
    spec["size"]["minimum"] = json!(1);
    crd
}

async fn setup_with(history: usize) -> (RunningServer, Client) {
    let cfg = Config {
        crds: vec![crd_with_enum()],
        watch_history: history,
        ..Config::default()
    };
    let srv = tenantdb_apiserver::start(cfg).await.unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&srv.kubeconfig_yaml("default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    (srv, client)
}

async fn setup() -> (RunningServer, Client) {
    setup_with(10_000).await
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(name, WidgetSpec { size, mode: None })
}

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll `f` until it returns Some, failing after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn discovery_and_version() {
    let (srv, client) = setup().await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, tenantdb_apiserver::GIT_VERSION);
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&kube::core::GroupVersionKind::gvk(
            "test.tenantdb.io",
            "v1",
            "Widget",
        ))
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(discovery.has_group("coordination.k8s.io"));
    srv.shutdown().await;
}

#[tokio::test]
async fn crud_and_errors() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let meta = created.meta();
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(
        created.spec.mode.as_deref(),
        Some("slow"),
        "schema default applied"
    );
    let e = api_err(
        api.create(&PostParams::default(), &widget("a", 1))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "widgets.test.tenantdb.io \"a\" already exists");
    let e = api_err(api.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert!(api.get_opt("nope").await.unwrap().is_none());

    // replace with a stale resourceVersion => 409 Conflict
    let mut w = api.get("a").await.unwrap();
    w.spec.size = 2;
    let updated = api.replace("a", &PostParams::default(), &w).await.unwrap();
    assert_eq!(updated.meta().generation, Some(2));
    w.spec.size = 3;
    let e = api_err(
        api.replace("a", &PostParams::default(), &w)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));

    // validation: enum and minimum, in the real server's words
    let mut bad = widget("bad", 0);
    bad.spec.mode = Some("turbo".into());
    let e = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "Widget.test.tenantdb.io \"bad\" is invalid: [spec.mode: Unsupported value: \"turbo\": supported values: \"fast\", \"slow\", spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1]"
    );
    let e = api_err(
        api.create(&PostParams::default(), &widget("Bad_Name", 1))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("a lowercase RFC 1123 subdomain"),
        "{}",
        e.message
    );

    // CEL transition rule (x-kubernetes-validations: self == oldSelf)
    let e = api_err(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "fast"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Widget.test.tenantdb.io \"a\" is invalid: spec.mode: Invalid value: \"string\": mode is immutable"
    );

    // namespaces must exist
    let other: Api<Widget> = Api::namespaced(client.clone(), "missing");
    let e = api_err(
        other
            .create(&PostParams::default(), &widget("x", 1))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    assert_eq!(e.message, "namespaces \"missing\" not found");

    // generateName
    let mut g = widget("", 1);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let g = api.create(&PostParams::default(), &g).await.unwrap();
    assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);

    // delete without finalizers: gone
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    let e = api_err(api.delete("a", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(e.code, 404);

    let stats = srv.stats();
    assert!(stats.count("create", "widgets", Some("")) >= 5);
    assert_eq!(stats.count("delete", "widgets", None), 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn list_paging_and_selectors() {
    let (srv, client) = setup().await;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some("other".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let labels = BTreeMap::from([
            ("idx".to_string(), format!("{}", i % 3)),
            ("app".to_string(), "t".to_string()),
        ]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("cm-{i:02}")),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    Api::<ConfigMap>::namespaced(client.clone(), "other")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("elsewhere".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        let rv = page.metadata.resource_version.clone().unwrap();
        assert!(!rv.is_empty());
        first_rv.get_or_insert(rv);
        names.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = ListParams::default().limit(10).continue_token(&c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert!(names.windows(2).all(|w| w[0] < w[1]));

    let sel = cms
        .list(&ListParams::default().labels("idx in (1,2),app=t"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 16);
    let sel = cms
        .list(&ListParams::default().labels("idx!=0,!nothere"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 16);
    let sel = cms
        .list(&ListParams::default().fields("metadata.name=cm-03"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 1);
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        26
    );
    let other = all
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .unwrap();
    assert_eq!(other.items.len(), 1);
    // metadata-only list (what `.owns()` / metadata_watcher use)
    let meta = cms
        .list_metadata(&ListParams::default().limit(5))
        .await
        .unwrap();
    assert_eq!(meta.items.len(), 5);
    assert!(meta.items[0].metadata.resource_version.is_some());
    srv.shutdown().await;
}

#[tokio::test]
async fn status_subresource_generation_and_noop_apply() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let mut w = widget("s", 1);
    w.status = Some(WidgetStatus {
        phase: Some("ignored-on-create".into()),
        observed_generation: None,
    });
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(
        w.status, None,
        "status is dropped on create when it is a subresource"
    );

    let pp = PatchParams::apply("test-ctrl").force();
    let st = json!({"apiVersion": "test.tenantdb.io/v1", "kind": "Widget", "status": {"phase": "Ready", "observedGeneration": 1}});
    let a = api
        .patch_status("s", &pp, &Patch::Apply(&st))
        .await
        .unwrap();
    assert_eq!(a.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(
        a.meta().generation,
        Some(1),
        "status changes do not bump generation"
    );
    let before = srv.stats();
    let b = api
        .patch_status("s", &pp, &Patch::Apply(&st))
        .await
        .unwrap();
    assert_eq!(
        a.resource_version(),
        b.resource_version(),
        "no-op apply keeps resourceVersion"
    );
    assert_eq!(
        srv.stats()
            .since(&before)
            .count("patch", "widgets", Some("status")),
        1
    );
    assert_eq!(srv.stats().since(&before).writes("widgets", Some("")), 0);

    // status in a main-resource patch is ignored; spec in a status patch is ignored
    let c = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Hacked"}, "metadata": {"labels": {"x": "y"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(
        c.meta().generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    let d = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 9}, "status": {"phase": "Done"}})),
        )
        .await
        .unwrap();
    assert_eq!(d.spec.size, 1);
    assert_eq!(d.status.as_ref().unwrap().phase.as_deref(), Some("Done"));
    let e = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(e.meta().generation, Some(2), "spec changes bump generation");

    // replace_status with a stale rv conflicts
    let mut stale = d.clone();
    stale.status = Some(WidgetStatus {
        phase: Some("Old".into()),
        observed_generation: None,
    });
    let err = api_err(
        api.replace_status("s", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);

    // SSA create when missing => 201 via kube (returns the object)
    let applied = api
        .patch(
            "new",
            &PatchParams::apply("test-ctrl"),
            &Patch::Apply(json!({"apiVersion": "test.tenantdb.io/v1", "kind": "Widget", "metadata": {"name": "new"}, "spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.meta().generation, Some(1));
    srv.shutdown().await;
}

mod deletion;
mod runtime;
mod watch;
