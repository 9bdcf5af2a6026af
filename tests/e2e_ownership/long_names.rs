//! Long Tenant names: the 16-digit hash of a cut derived name, and the names an older operator
//! gave (see `main.rs`).

use super::*;
use sqlx::Connection;

/// A derived name cut to fit 63 bytes carries a 16-digit hash (64 bits: no namespace can search
/// for a name of its own that derives it), and a Tenant an older operator provisioned under the
/// cut name with 8 digits (recorded in its status) keeps that name through the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_get_a_64_bit_hash_and_an_upgraded_tenant_keeps_its_name() {
    let mut env = Env::start().await;
    let long = "a-very-long-tenant-name-for-the-billing-service";
    let hex = |s: &str| s.bytes().all(|c| c.is_ascii_hexdigit());
    env.create_tenant("default", long, json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready("default", long, T).await;
    let role = t.status.as_ref().unwrap().role.clone().unwrap();
    let (readable, hash) = role.rsplit_once('_').unwrap();
    assert_eq!((hash.len(), hex(hash)), (16, true), "{role}");
    assert_eq!(readable, "tenant_default_a_very_long_tenant_name_for_t");
    let user = env
        .secret_value("default", &format!("{long}-db"), "username")
        .await;
    assert_eq!(user.as_deref(), Some(role.as_str()));
    let mut conn = env
        .connect_with_secret("default", &format!("{long}-db"))
        .await
        .unwrap();
    conn.execute("CREATE TABLE new_named (id int)")
        .await
        .unwrap();

    // As an older operator left it: the status names the cut name with 8 digits.
    env.kill_operator().await;
    let old = "billing-service-of-a-tenant-with-a-long-name";
    let legacy = tenantdb::naming::legacy_derived_base("tenant_", "default", old).unwrap();
    assert_ne!(
        legacy,
        tenantdb::naming::derived_base("tenant_", "default", old)
    );
    env.create_tenant("default", old, json!({"isolation": "schema"}))
        .await;
    env.tenants("default")
        .patch_status(
            old,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"role": legacy, "schema": legacy}})),
        )
        .await
        .unwrap();
    env.start_operator();
    let t = env.wait_ready("default", old, T).await;
    let s = t.status.as_ref().unwrap();
    assert_eq!(s.role.as_deref(), Some(legacy.as_str()));
    assert_eq!(s.schema.as_deref(), Some(legacy.as_str()));
    let user = env
        .secret_value("default", &format!("{old}-db"), "username")
        .await;
    assert_eq!(user.as_deref(), Some(legacy.as_str()));
    let mut conn = env
        .connect_with_secret("default", &format!("{old}-db"))
        .await
        .unwrap();
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(schema, legacy);
    conn.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)")
        .await
        .unwrap();
    drop(conn);

    // Deleted (Retain) and applied again, without its status: found by its ownership marker
    // under the old name, data and all; nothing is made under the new name.
    env.delete_tenant("default", old).await;
    env.wait_gone("default", old, T).await;
    env.create_tenant("default", old, json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready("default", old, T).await;
    assert_eq!(
        t.status.as_ref().unwrap().role.as_deref(),
        Some(legacy.as_str())
    );
    let mut conn = env
        .connect_with_secret("default", &format!("{old}-db"))
        .await
        .unwrap();
    let kept: i32 = sqlx::query_scalar("SELECT id FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 7);
    let current = tenantdb::naming::derived_base("tenant_", "default", old);
    let made: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1 OR rolname = $1 || '_b')",
    )
    .bind(&current)
    .fetch_one(&env.admin_pool().await)
    .await
    .unwrap();
    assert!(!made, "a role {current} was created");
    drop(conn);

    // Deleted with `deletionPolicy: Delete` while its status names no role (lost again): the
    // objects under the old name are the ones dropped.
    env.kill_operator().await;
    let api = env.tenants("default");
    api.patch(
        old,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Delete"}})),
    )
    .await
    .unwrap();
    api.patch_status(
        old,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"role": null, "schema": null}})),
    )
    .await
    .unwrap();
    env.delete_tenant("default", old).await;
    env.start_operator();
    env.wait_gone("default", old, T).await;
    let mut shared = sqlx::PgConnection::connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%') \
              + (SELECT count(*) FROM pg_namespace WHERE nspname = $1)",
    )
    .bind(&legacy)
    .fetch_one(&mut shared)
    .await
    .unwrap();
    assert_eq!(left, 0, "{legacy}: roles or schema left");
}
