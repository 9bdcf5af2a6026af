//! Garbage collection: asynchronous with `Config::gc_delay` (dependents outlive their owner for a
//! while, like with the real garbage collector), and dangling owner references removed from a
//! dependent that still has another owner. And `Config::request_latency`: every request is
//! delayed before it is handled (benchmarks emulate an API server across a network with it).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::{Duration, Instant};
use tenantdb_apiserver::Config;

async fn client(srv: &tenantdb_apiserver::RunningServer) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&srv.kubeconfig_yaml("default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn owner_ref(cm: &ConfigMap) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": cm.name_any(),
           "uid": cm.metadata.uid.clone().unwrap()})
}

#[tokio::test]
async fn asynchronous_collection_and_dangling_references() {
    let delay = Duration::from_millis(400);
    let srv = tenantdb_apiserver::start(Config {
        gc_delay: Some(delay),
        ..Config::default()
    })
    .await
    .unwrap();
    let c = client(&srv).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let mk = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}})).unwrap()
    };
    let a = cms.create(&PostParams::default(), &mk("a")).await.unwrap();
    let b = cms.create(&PostParams::default(), &mk("b")).await.unwrap();
    let only_a: Secret = serde_json::from_value(
        json!({"metadata": {"name": "only-a", "ownerReferences": [owner_ref(&a)]}}),
    )
    .unwrap();
    let both: Secret = serde_json::from_value(
        json!({"metadata": {"name": "both", "ownerReferences": [owner_ref(&a), owner_ref(&b)]}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &only_a)
        .await
        .unwrap();
    secrets.create(&PostParams::default(), &both).await.unwrap();
    let deleted = Instant::now();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    // Right after the owner is gone, its dependent is still there (collection is asynchronous).
    assert!(secrets.get_opt("only-a").await.unwrap().is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    while secrets.get_opt("only-a").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "dependent never collected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        deleted.elapsed() >= delay,
        "collected before the delay: {:?}",
        deleted.elapsed()
    );
    // The dependent with a live owner stays, without the dangling reference.
    let both = secrets.get("both").await.unwrap();
    let refs: Vec<String> = both
        .owner_references()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(refs, ["b"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn every_request_waits_for_the_configured_latency() {
    let latency = Duration::from_millis(60);
    let srv = tenantdb_apiserver::start(Config {
        request_latency: latency,
        ..Config::default()
    })
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client(&srv).await, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    // The first request also opens the connection: time the ones after it.
    cms.create(&PostParams::default(), &cm).await.unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        cms.get("a").await.unwrap();
        assert!(t.elapsed() >= latency, "a GET took {:?}", t.elapsed());
    }
    let t = Instant::now();
    cms.list(&Default::default()).await.unwrap();
    assert!(t.elapsed() >= latency, "a LIST took {:?}", t.elapsed());
}
