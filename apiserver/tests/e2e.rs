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
async fn watch_from_resource_version_and_expiry() {
    let (srv, client) = setup_with(20).await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("w1", 1))
        .await
        .unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &widget("w2", 1))
        .await
        .unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 5}})),
    )
    .await
    .unwrap();
    api.delete("w2", &DeleteParams::default()).await.unwrap();

    let wp = WatchParams::default().timeout(2);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    while let Some(ev) = stream.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(w) => seen.push(format!("ADDED {}", w.name_any())),
            WatchEvent::Modified(w) => {
                seen.push(format!("MODIFIED {} {}", w.name_any(), w.spec.size))
            }
            WatchEvent::Deleted(w) => {
                assert!(
                    w.resource_version().unwrap().parse::<u64>().unwrap()
                        > rv.parse::<u64>().unwrap()
                );
                seen.push(format!("DELETED {}", w.name_any()))
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("unexpected error {e:?}"),
        }
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen, ["ADDED w2", "MODIFIED w1 5", "DELETED w2"]);

    // Push the old version out of the 20-event history: 410 Expired inside a 200 stream.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("c{i}")),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn watch_selector_transitions_and_bookmarks() {
    let (srv, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mk = |l: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some("sel".into()),
            labels: Some(BTreeMap::from([("team".into(), l.into())])),
            ..Default::default()
        },
        ..Default::default()
    };
    let wp = WatchParams::default().labels("team=a").timeout(5);
    assert!(wp.bookmarks);
    let mut stream = cms.watch(&wp, "0").await.unwrap().boxed();
    cms.create(&PostParams::default(), &mk("b")).await.unwrap();
    cms.replace(
        "sel",
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                resource_version: None,
                ..mk("a").metadata
            },
            ..mk("a")
        },
    )
    .await
    .unwrap();
    cms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "c"}}})),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    while let Some(ev) = stream.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(c) => seen.push(format!("ADDED {}", c.labels()["team"])),
            WatchEvent::Modified(c) => seen.push(format!("MODIFIED {}", c.labels()["team"])),
            WatchEvent::Deleted(c) => seen.push(format!("DELETED {}", c.labels()["team"])),
            WatchEvent::Bookmark(b) => {
                assert!(!b.metadata.resource_version.is_empty());
                bookmarks += 1;
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
        if seen.len() == 2 && bookmarks > 0 {
            break;
        }
    }
    assert_eq!(seen, ["ADDED a", "DELETED c"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn finalizer_helper_and_deletion() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("f", 1))
        .await
        .unwrap();
    let fin = "test.tenantdb.io/cleanup";
    let run = |obj: Widget| {
        let api = api.clone();
        async move {
            finalizer(&api, fin, Arc::new(obj), |ev| async move {
                Ok::<_, std::io::Error>(match ev {
                    FinalizerEvent::Apply(_) | FinalizerEvent::Cleanup(_) => Action::await_change(),
                })
            })
            .await
        }
    };
    // first call: JSON patch `test /metadata/finalizers == null` + add
    run(api.get("f").await.unwrap()).await.unwrap();
    let w = api.get("f").await.unwrap();
    assert_eq!(w.finalizers(), [fin]);
    // a second finalizer via the "test current list + add /-" branch
    let mut other = w.clone();
    other.metadata.finalizers = Some(vec![fin.into(), "other.io/x".into()]);
    api.replace("f", &PostParams::default(), &other)
        .await
        .unwrap();

    let deleted = api.delete("f", &DeleteParams::default()).await.unwrap();
    let w = deleted
        .left()
        .expect("object returned while finalizers are pending");
    assert!(w.meta().deletion_timestamp.is_some());
    // cleanup removes our finalizer (test + remove by index); the other one keeps it alive
    run(api.get("f").await.unwrap()).await.unwrap();
    let w = api.get("f").await.unwrap();
    assert_eq!(w.finalizers(), ["other.io/x"]);
    // a stale index test fails with 422
    let e = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json!([{"op": "test", "path": "/metadata/finalizers/0", "value": fin}, {"op": "remove", "path": "/metadata/finalizers/0"}])).unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    // deleting again is a no-op that returns the object
    assert!(
        api.delete("f", &DeleteParams::default())
            .await
            .unwrap()
            .is_left()
    );
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
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

#[tokio::test]
async fn garbage_collects_owned_secrets() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let w = api
        .create(&PostParams::default(), &widget("owner", 1))
        .await
        .unwrap();
    let oref: OwnerReference = w.controller_owner_ref(&()).unwrap();
    let s = Secret {
        metadata: ObjectMeta {
            name: Some("owned".into()),
            owner_references: Some(vec![oref.clone()]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "password".to_string(),
            "hunter2".to_string(),
        )])),
        ..Default::default()
    };
    let s = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(s.data.as_ref().unwrap()["password"].0, b"hunter2");
    assert!(s.string_data.is_none());
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    // a grandchild owned by the secret, with a finalizer
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("grandchild".into()),
            owner_references: Some(vec![s.controller_owner_ref(&()).unwrap_or_else(|| {
                OwnerReference {
                    api_version: "v1".into(),
                    kind: "Secret".into(),
                    name: "owned".into(),
                    uid: s.uid().unwrap(),
                    ..Default::default()
                }
            })]),
            finalizers: Some(vec!["x.io/hold".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually(5, "owned secret deleted", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("owned")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let gc = cms.get("grandchild").await.unwrap();
    assert!(
        gc.metadata.deletion_timestamp.is_some(),
        "grandchild with finalizer is marked, not removed"
    );
    srv.shutdown().await;
}

/// `propagationPolicy`: Orphan leaves dependents without the owner's reference; Foreground keeps the
/// owner (deleting, `foregroundDeletion` finalizer) until its blocking dependents are gone, then
/// removes it; an unknown policy is a 400 like the real server's.
#[tokio::test]
async fn delete_propagation_policies() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owned_secret = |name: &str, owner: &Widget| Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![owner.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let params = |p: kube::api::PropagationPolicy| DeleteParams {
        propagation_policy: Some(p),
        ..Default::default()
    };

    // Orphan: the Secret stays, without the reference.
    let w = api
        .create(&PostParams::default(), &widget("orphaner", 1))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &owned_secret("kept", &w))
        .await
        .unwrap();
    api.delete("orphaner", &params(kube::api::PropagationPolicy::Orphan))
        .await
        .unwrap();
    assert!(api.get_opt("orphaner").await.unwrap().is_none());
    let kept = secrets.get("kept").await.unwrap();
    assert!(kept.metadata.owner_references.is_none(), "{kept:?}");
    assert!(kept.metadata.deletion_timestamp.is_none());

    // Foreground: a dependent with a finalizer holds the owner until it is released.
    let w = api
        .create(&PostParams::default(), &widget("fg", 1))
        .await
        .unwrap();
    // Only dependents with blockOwnerDeletion hold the owner (kube's controller_owner_ref does not
    // set it).
    let mut held = owned_secret("held", &w);
    held.metadata.finalizers = Some(vec!["x.io/hold".into()]);
    if let Some(refs) = held.metadata.owner_references.as_mut() {
        refs[0].block_owner_deletion = Some(true);
    }
    secrets.create(&PostParams::default(), &held).await.unwrap();
    secrets
        .create(&PostParams::default(), &owned_secret("free", &w))
        .await
        .unwrap();
    api.delete("fg", &params(kube::api::PropagationPolicy::Foreground))
        .await
        .unwrap();
    let owner = api.get("fg").await.unwrap();
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert_eq!(owner.finalizers(), ["foregroundDeletion"]);
    assert!(secrets.get_opt("free").await.unwrap().is_none());
    let held = secrets.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    secrets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(secrets.get_opt("held").await.unwrap().is_none());
    assert!(
        api.get_opt("fg").await.unwrap().is_none(),
        "the owner goes once its last blocking dependent is gone"
    );

    // Foreground without dependents deletes at once; unknown policies are rejected.
    api.create(&PostParams::default(), &widget("alone", 1))
        .await
        .unwrap();
    api.delete("alone", &params(kube::api::PropagationPolicy::Foreground))
        .await
        .unwrap();
    assert!(api.get_opt("alone").await.unwrap().is_none());
    api.create(&PostParams::default(), &widget("odd", 1))
        .await
        .unwrap();
    let r = client
        .request_text(
            http::Request::delete(
                "/apis/test.tenantdb.io/v1/namespaces/default/widgets/odd?propagationPolicy=Sideways",
            )
            .body(Vec::new())
            .unwrap(),
        )
        .await;
    assert!(
        matches!(&r, Err(kube::Error::Api(s)) if s.code == 400 && s.message.contains("Unsupported value")),
        "{r:?}"
    );
    assert!(api.get_opt("odd").await.unwrap().is_some());
    srv.shutdown().await;
}

#[tokio::test]
async fn lease_update_conflicts() {
    let (srv, client) = setup().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let l = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let l = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut mine = l.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut theirs = l.clone();
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let won = leases
        .replace("leader", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_ne!(won.resource_version(), l.resource_version());
    let e = api_err(
        leases
            .replace("leader", &PostParams::default(), &theirs)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"leader\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        leases
            .get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn event_recorder_publishes() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let w = api
        .create(&PostParams::default(), &widget("ev", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-ctrl".into(),
            instance: Some("pod-1".into()),
        },
    );
    let ev = RtEvent {
        type_: EventType::Normal,
        reason: "Provisioned".into(),
        note: Some("database created".into()),
        action: "Provision".into(),
        secondary: None,
    };
    recorder.publish(&ev, &w.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &w.object_ref(&())).await.unwrap(); // second one PATCHes the series
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Provisioned"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("ev"));
    assert_eq!(e.series.as_ref().unwrap().count, 2);
    srv.shutdown().await;
}

#[derive(Default)]
struct Ctx {
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

async fn reconcile(w: Arc<Widget>, ctx: Arc<(Client, Ctx)>) -> Result<Action, ReconcileError> {
    let (client, counters) = &*ctx;
    counters.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = w.namespace().unwrap();
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);
    let status_api = api.clone();
    finalizer(&api, "test.tenantdb.io/fin", w, |ev| async move {
        match ev {
            FinalizerEvent::Apply(w) => {
                let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
                let s = json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("{}-creds", w.name_any()), "ownerReferences": [w.controller_owner_ref(&()).unwrap()]},
                    "stringData": {"size": w.spec.size.to_string()}});
                secrets.patch(&format!("{}-creds", w.name_any()), &PatchParams::apply("test-ctrl").force(), &Patch::Apply(&s)).await?;
                let st = json!({"apiVersion": "test.tenantdb.io/v1", "kind": "Widget",
                    "status": {"phase": "Ready", "observedGeneration": w.meta().generation}});
                status_api.patch_status(&w.name_any(), &PatchParams::apply("test-ctrl").force(), &Patch::Apply(&st)).await?;
                Ok(Action::requeue(Duration::from_secs(300)))
            }
            FinalizerEvent::Cleanup(_) => {
                counters.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

#[tokio::test]
async fn kube_runtime_controller_end_to_end() {
    let (srv, client) = setup().await;
    let api: Api<Widget> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::all(client.clone());
    let ctx = Arc::new((client.clone(), Ctx::default()));
    let controller = Controller::new(api, watcher::Config::default())
        .owns(secrets, watcher::Config::default())
        .shutdown_on_signal()
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(200)),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("c1", 3))
        .await
        .unwrap();
    let w = eventually(10, "status Ready", || {
        let widgets = widgets.clone();
        async move {
            let w = widgets.get("c1").await.unwrap();
            (w.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")).then_some(w)
        }
    })
    .await;
    assert_eq!(w.finalizers(), ["test.tenantdb.io/fin"]);
    let s = secrets.get("c1-creds").await.unwrap();
    assert_eq!(s.data.unwrap()["size"].0, b"3");

    // spec change => generation 2 => reconcile observes it
    widgets
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    eventually(10, "observedGeneration 2", || {
        let widgets = widgets.clone();
        async move {
            let w = widgets.get("c1").await.unwrap();
            (w.status.and_then(|s| s.observed_generation) == Some(2)).then_some(())
        }
    })
    .await;

    // deleting the owned secret triggers a reconcile that recreates it (.owns)
    secrets
        .delete("c1-creds", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "secret recreated", || {
        let secrets = secrets.clone();
        async move { secrets.get_opt("c1-creds").await.unwrap().map(|_| ()) }
    })
    .await;

    // delete => cleanup via finalizer => object gone, owned secret garbage-collected
    widgets
        .delete("c1", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "widget gone", || {
        let widgets = widgets.clone();
        async move { widgets.get_opt("c1").await.unwrap().is_none().then_some(()) }
    })
    .await;
    eventually(10, "secret collected", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("c1-creds")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(ctx.1.cleanups.load(Ordering::SeqCst), 1);
    assert!(ctx.1.reconciles.load(Ordering::SeqCst) >= 3);
    assert!(srv.stats().count("watch", "widgets", None) >= 1);
    handle.abort();
    srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_watches() {
    let (srv, client) = setup().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(
            api.watch(&WatchParams::default(), "0")
                .await
                .unwrap()
                .boxed(),
        );
    }
    api.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("x".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for s in streams.iter_mut() {
        loop {
            match s.try_next().await.unwrap() {
                Some(WatchEvent::Bookmark(_)) => continue,
                Some(WatchEvent::Added(_)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let url = srv.url();
    tokio::time::timeout(Duration::from_secs(10), srv.shutdown())
        .await
        .expect("shutdown is prompt");
    for mut s in streams {
        // A bookmark already in flight when the server stopped may still be delivered; after that
        // the stream must end (or fail).
        loop {
            let end = tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("stream ends");
            match end {
                Some(Ok(WatchEvent::Bookmark(_))) => continue,
                None | Some(Err(_)) => break,
                Some(Ok(other)) => panic!("unexpected event after shutdown: {other:?}"),
            }
        }
    }
    assert!(
        tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn debug_stats_endpoint_and_crd_registration() {
    let (srv, client) = setup().await;
    // register a CRD through the API, then use it
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let mut crd = serde_json::to_value(Widget::crd()).unwrap();
    crd["metadata"]["name"] = json!("gadgets.test.tenantdb.io");
    crd["spec"]["names"] = json!({"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"});
    crd["spec"]["scope"] = json!("Cluster");
    let created = crds
        .create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    let conds = created.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    let ar = kube::core::ApiResource {
        group: "test.tenantdb.io".into(),
        version: "v1".into(),
        api_version: "test.tenantdb.io/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let gadgets: Api<kube::core::DynamicObject> = Api::all_with(client.clone(), &ar);
    let g =
        kube::core::DynamicObject::new("g1", &ar).data(json!({"spec": {"size": 2, "extra": true}}));
    let g = gadgets.create(&PostParams::default(), &g).await.unwrap();
    assert!(
        g.data["spec"].get("extra").is_none(),
        "unknown fields pruned"
    );
    crds.delete("gadgets.test.tenantdb.io", &DeleteParams::default())
        .await
        .unwrap();
    assert!(gadgets.list(&ListParams::default()).await.is_err());

    let body = client
        .request_text(http::Request::get("/debug/stats").body(Vec::new()).unwrap())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let parsed = tenantdb_apiserver::Stats::from_json(&v);
    assert_eq!(parsed, srv.stats());
    assert_eq!(parsed.count("create", "gadgets", Some("")), 1);
    srv.shutdown().await;
}
