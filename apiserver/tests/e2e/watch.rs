//! Watches: resuming from a resourceVersion, expiry, selector transitions, bookmarks and shutdown.

use super::*;

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
