//! kube-runtime against the emulator: Lease conflicts, Events, a controller end to end, the debug
//! endpoint and CRD registration.

use super::*;

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
pub(super) struct Ctx {
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

pub(super) async fn reconcile(
    w: Arc<Widget>,
    ctx: Arc<(Client, Ctx)>,
) -> Result<Action, ReconcileError> {
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
