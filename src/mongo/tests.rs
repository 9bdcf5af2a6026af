//! Unit tests of the MongoDB admin module: tenant URIs, redaction and outcome types.

use std::time::Duration;

use super::connection::uri_password;
use super::*;

#[test]
fn tenant_uri_encodes() {
    assert_eq!(
        tenant_uri("db.example", 27017, "tenant_a", "tenant_a", "p@ss:w/rd%"),
        "mongodb://tenant_a:p%40ss%3Aw%2Frd%25@db.example:27017/tenant_a?authSource=tenant_a&authMechanism=SCRAM-SHA-256"
    );
    assert!(tenant_uri("::1", 1, "d", "u", "p").contains("@[::1]:1/"));
}

#[test]
fn uris_are_redacted() {
    let s = MongoSettings::new("mongodb://root:s3cret@h1:27017,h2:27017/admin?tls=true");
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("s3cret"), "{dbg}");
    assert!(dbg.contains("root:***@"), "{dbg}");
    assert_eq!(
        uri_password("mongodb://root:s3cret@h1/admin").as_deref(),
        Some("s3cret")
    );
    assert_eq!(uri_password("mongodb://h1/admin"), None);
    let t = MongoTenant {
        database: MongoDbName::new("t").unwrap(),
        user: "t".into(),
        password: "hunter2".into(),
        up_to_version: None,
        read_only: false,
        owner: "tenantdb.io/owner=ns/t".into(),
        uid: None,
        adopt_unmarked: false,
    };
    assert!(!format!("{t:?}").contains("hunter2"));
}

#[test]
fn admin_uri_scheme_is_checked_and_target_sets() {
    let bad = MongoAdmin::with_bundled_migrations(MongoSettings::new("postgres://x:y@h/db"));
    let e = bad.unwrap_err().to_string();
    assert!(!e.contains(":y@"), "{e}");
    let admin =
        MongoAdmin::with_bundled_migrations(MongoSettings::new("mongodb://127.0.0.1:1")).unwrap();
    let latest = admin.migrations().latest_version().unwrap();
    assert_eq!(
        admin.target_set(None).unwrap().latest_version(),
        Some(latest)
    );
    assert_eq!(admin.target_set(Some(1)).unwrap().latest_version(), Some(1));
    assert!(admin.target_set(Some(0)).is_err());
    assert!(admin.target_set(Some(latest + 1)).is_err());
}

#[test]
fn outcome_change_flag() {
    let o = MongoOutcome {
        steps: vec![],
        recorded_versions: vec![],
        version: Some(1),
        user: UserAction::Unchanged,
    };
    assert!(!o.changed());
    assert!(
        MongoOutcome {
            user: UserAction::Created,
            ..o.clone()
        }
        .created_user()
    );
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let mut settings = MongoSettings::new("mongodb://127.0.0.1:1/?directConnection=true");
    settings.server_selection_timeout = Duration::from_millis(200);
    settings.connect_timeout = Duration::from_millis(200);
    let admin = MongoAdmin::with_bundled_migrations(settings).unwrap();
    let e = admin.ping().await.unwrap_err();
    assert_eq!(e.category(), "DatabaseUnavailable", "{e}");
}
