//! The tenant user: created, or reset to exactly its role on its database, SCRAM-SHA-256 and
//! the Tenant's password (checked locally against the stored SCRAM keys, without logging in);
//! and the explicit password rotation.

use mongodb::bson::{Bson, doc};
use tracing::info;

use super::client::AdminClient;
use super::observe::observe_user;
use crate::error::{Error, Result};
use crate::mongo::error::map_error;
use crate::mongo::names::MongoDbName;
use crate::mongo::tenant::{TENANT_MECHANISM, TENANT_READ_ONLY_ROLE, TENANT_ROLE, UserAction};

/// Makes the user exist with exactly `roles: [{role, db}]`, SCRAM-SHA-256 and `password`.
pub(super) async fn ensure_user(
    conn: &AdminClient,
    db: &MongoDbName,
    user: &str,
    password: &str,
    role: &str,
) -> Result<UserAction> {
    if password.is_empty() {
        return Err(Error::InvalidSpec("MongoDB password is empty".to_string()));
    }
    if role != TENANT_ROLE && role != TENANT_READ_ONLY_ROLE {
        return Err(Error::Internal(format!("unexpected tenant role {role}")));
    }
    let database = conn.db(db.as_str()).await?;
    let roles = vec![Bson::Document(doc! {"role": role, "db": db.as_str()})];
    let Some(observed) = observe_user(conn, db, user, Some(password)).await? else {
        database
            .run_command(doc! {
                "createUser": user,
                "pwd": password,
                "roles": roles,
                "mechanisms": [TENANT_MECHANISM],
            })
            .await
            .map_err(|e| map_error(&e, &[password]))?;
        info!(database = %db, user, "created MongoDB user");
        return Ok(UserAction::Created);
    };
    let roles_ok = observed.roles == [(role.to_string(), db.as_str().to_string())];
    let mechanisms_ok = observed.mechanisms == [TENANT_MECHANISM];
    let password_ok = observed.password_matches == Some(true);
    if roles_ok && mechanisms_ok && password_ok {
        return Ok(UserAction::Unchanged);
    }
    let mut update = doc! {"updateUser": user};
    if !roles_ok {
        update.insert("roles", roles);
    }
    if !(mechanisms_ok && password_ok) {
        update.insert("pwd", password);
        update.insert("mechanisms", vec![TENANT_MECHANISM]);
    }
    database
        .run_command(update)
        .await
        .map_err(|e| map_error(&e, &[password]))?;
    let action = UserAction::Updated {
        roles: !roles_ok,
        password: !(mechanisms_ok && password_ok),
    };
    info!(database = %db, user, ?action, "updated MongoDB user");
    Ok(action)
}

/// Sets the user's password unconditionally.
pub(super) async fn set_password(
    conn: &AdminClient,
    db: &MongoDbName,
    user: &str,
    password: &str,
) -> Result<()> {
    if password.is_empty() {
        return Err(Error::InvalidSpec("MongoDB password is empty".to_string()));
    }
    conn.db(db.as_str())
        .await?
        .run_command(doc! {
            "updateUser": user,
            "pwd": password,
            "mechanisms": [TENANT_MECHANISM],
        })
        .await
        .map_err(|e| map_error(&e, &[password]))?;
    info!(database = %db, user, "set MongoDB user password");
    Ok(())
}
