//! Deletion: finalizers, garbage collection of owned objects and propagation policies.

use super::*;

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
