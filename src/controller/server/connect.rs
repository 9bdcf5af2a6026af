//! Stage `connect` of a DatabaseServer: its admin Secret read, its connection options built
//! (endpoint, credentials, TLS), and its [`Server`] (PostgreSQL) or [`MongoServer`] entry
//! created, or kept when nothing it was built from changed.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tracing::{info, warn};

use super::super::Context;
use crate::crd::{DatabaseServer, Engine, TlsMode};
use crate::error::{Error, Result};
use crate::naming::Ident;
use crate::pg::{PgAdmin, PgSettings};
use crate::servers::{MongoServer, Registered, Registry, Server};

/// Default PostgreSQL port.
const PG_PORT: u16 = 5432;
/// Default MongoDB port.
const MONGO_PORT: u16 = 27017;

/// What the connection is built from (never logged: holds the password).
struct Config {
    host: String,
    port: u16,
    username: String,
    password: String,
    admin_database: String,
    shared_database: Ident,
    tls: TlsMode,
    ca: Option<Vec<u8>>,
    tenant_endpoint: (String, u16),
}

impl Config {
    fn hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.host,
            self.port,
            &self.username,
            &self.password,
            &self.admin_database,
            self.shared_database.as_str(),
            self.tls as u8,
            &self.ca,
            &self.tenant_endpoint,
        )
            .hash(&mut h);
        h.finish()
    }
}

/// The Server of a postgres DatabaseServer: the registry's entry when its configuration is
/// unchanged, else a new one (with new pools) that replaces it.
async fn server(ds: &DatabaseServer, ctx: &Context) -> Result<Arc<Server>> {
    let config = config(ds, ctx).await?;
    let hash = config.hash();
    let name = ds.name_any();
    if let Some(existing) = ctx.servers().get(&name)
        && existing.config_hash() == hash
    {
        return Ok(existing);
    }
    let mut options = PgConnectOptions::new()
        .host(&config.host)
        .port(config.port)
        .username(&config.username)
        .password(&config.password)
        .database(&config.admin_database)
        .ssl_mode(match config.tls {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Prefer => PgSslMode::Prefer,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        });
    // The CA also as a file: `pg_dump` and `psql` of a move verify the server with it.
    let mut root_cert = None;
    if let Some(ca) = config.ca {
        let file = crate::pg::login::root_cert_file(&ca).map_err(|e| {
            Error::Config(format!("cannot write the CA certificate to a file: {e}"))
        })?;
        root_cert = Some(file);
        options = options.ssl_root_cert_from_pem(ca);
    }
    let pools = &ctx.settings().pg_pools;
    let settings = PgSettings {
        admin_url: String::new(),
        shared_database: config.shared_database,
        pool_size: pools.pool_size,
        connect_timeout: pools.connect_timeout,
    };
    let pg = PgAdmin::with_options(settings, options, &pools.identity)
        .with_password(Some(config.password.clone()))
        .with_root_cert(root_cert);
    Ok(Arc::new(Server::postgres(
        &name,
        Arc::new(pg),
        config.tenant_endpoint,
        ctx.settings().usage_interval,
        ctx.settings().slow_statement_ms,
        hash,
    )))
}

/// Stage `connect`: the server of a postgres DatabaseServer with `facts`, registered (replacing
/// the entry when its configuration changed; a new leader then ends other instances' sessions on
/// it, as on the default server at start). On error, a registered server stops being a candidate
/// (its last probe is the error; its pools stay for the tenants on it) and an unregistered one is
/// noted as unusable (rediscovery cannot look at it).
pub(super) async fn register(
    ds: &DatabaseServer,
    ctx: &Context,
    facts: crate::servers::Facts,
) -> Result<Arc<Server>> {
    let (server, new) = register_in(ctx.servers(), ds, server(ds, ctx).await, facts)?;
    if new && ctx.settings().leader_election {
        match server.pg().end_other_instances().await {
            Ok(0) => {}
            Ok(n) => {
                info!(server = %server.name(), sessions = n, "ended the sessions of other tenantdb instances")
            }
            Err(e) => {
                warn!(server = %server.name(), error = %e, "could not end the sessions of other tenantdb instances")
            }
        }
    }
    Ok(server)
}

/// Stage `connect` of a mongodb DatabaseServer (see [`register`]).
pub(super) async fn register_mongo(
    ds: &DatabaseServer,
    ctx: &Context,
    facts: crate::servers::Facts,
) -> Result<Arc<MongoServer>> {
    let built = mongo_server(ds, ctx).await;
    register_in(ctx.mongo_servers(), ds, built, facts).map(|(s, _)| s)
}

/// Registers `built` in `registry` with `facts` (see [`register`]); also whether the server was
/// not registered at all before.
fn register_in<S: Registered>(
    registry: &Registry<S>,
    ds: &DatabaseServer,
    built: Result<Arc<S>>,
    facts: crate::servers::Facts,
) -> Result<(Arc<S>, bool)> {
    let name = ds.name_any();
    let server = match built {
        Ok(s) => s,
        Err(e) => {
            match registry.get(&name) {
                Some(s) => s.set_probe(Err(e.to_string())),
                None => registry.set_unusable(&name, Some(e.to_string())),
            }
            return Err(e);
        }
    };
    registry.set_unusable(&name, None);
    let registered = registry.get(&name);
    let replaces = registered.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &server));
    if replaces && let Some(old) = &registered {
        // A new entry (its configuration changed) starts from the facts of the one it replaces:
        // they may be newer than `facts` (the tenant controller's watch writes them too).
        server.set_spec_facts(old.facts());
    }
    server.set_spec_facts(facts);
    if replaces {
        info!(server = %name, engine = ds.spec.engine.as_str(), "database server registered");
        registry.insert(server.clone());
    }
    Ok((server, registered.is_none()))
}

/// The MongoServer of a mongodb DatabaseServer: the registry's entry when its configuration is
/// unchanged, else a new one (with a new client) that replaces it.
async fn mongo_server(ds: &DatabaseServer, ctx: &Context) -> Result<Arc<MongoServer>> {
    let config = config(ds, ctx).await?;
    let hash = config.hash();
    let name = ds.name_any();
    if let Some(existing) = ctx.mongo_servers().get(&name)
        && existing.config_hash() == hash
    {
        return Ok(existing);
    }
    let pct = crate::secret::pct;
    let host = if config.host.contains(':') && !config.host.starts_with('[') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let mut uri = format!(
        "mongodb://{}:{}@{host}:{}/?authSource={}",
        pct(&config.username),
        pct(&config.password),
        config.port,
        pct(&config.admin_database),
    );
    match config.tls {
        // MongoDB has no opportunistic TLS: `prefer` connects without it (as the driver does
        // without a tls option).
        TlsMode::Disable | TlsMode::Prefer => {}
        TlsMode::Require => uri.push_str("&tls=true&tlsAllowInvalidCertificates=true"),
        TlsMode::VerifyFull => {
            uri.push_str("&tls=true");
            if let Some(ca) = &config.ca {
                // The driver reads the CA from a file: one per server and CA, written once.
                let mut h = std::collections::hash_map::DefaultHasher::new();
                ca.hash(&mut h);
                let path = std::env::temp_dir()
                    .join(format!("tenantdb-ca-{name}-{:016x}.pem", h.finish()));
                if !path.exists() {
                    std::fs::write(&path, ca).map_err(|e| {
                        Error::Config(format!("cannot write the CA of server {name}: {e}"))
                    })?;
                }
                // (A temp-dir path: no characters a URI would need encoded.)
                uri.push_str(&format!("&tlsCAFile={}", path.to_string_lossy()));
            }
        }
    }
    let admin =
        crate::mongo::MongoAdmin::with_bundled_migrations(crate::mongo::MongoSettings::new(uri))?;
    Ok(Arc::new(MongoServer::new(
        &name,
        Arc::new(admin),
        config.tenant_endpoint,
        hash,
    )))
}

async fn config(ds: &DatabaseServer, ctx: &Context) -> Result<Config> {
    let spec = &ds.spec;
    let secret_ref = &spec.admin_secret_ref;
    let secret = read_secret(ctx, &secret_ref.name, "admin").await?;
    let user_key = secret_ref.username_key.as_deref().unwrap_or("username");
    let password_key = secret_ref.password_key.as_deref().unwrap_or("password");
    let username = crate::secret::read_key(&secret, user_key).ok_or_else(|| {
        Error::InvalidSpec(format!(
            "admin Secret {} has no key {user_key:?}",
            secret_ref.name
        ))
    })?;
    let password = crate::secret::read_key(&secret, password_key).ok_or_else(|| {
        Error::InvalidSpec(format!(
            "admin Secret {} has no key {password_key:?}",
            secret_ref.name
        ))
    })?;
    let ca = match &spec.endpoint.ca_secret_ref {
        Some(r) => {
            let s = read_secret(ctx, &r.name, "CA").await?;
            let key = r.key.as_deref().unwrap_or("ca.crt");
            Some(
                crate::secret::read_key(&s, key)
                    .ok_or_else(|| {
                        Error::InvalidSpec(format!("CA Secret {} has no key {key:?}", r.name))
                    })?
                    .into_bytes(),
            )
        }
        None if spec.endpoint.tls_mode == TlsMode::VerifyFull => {
            return Err(Error::InvalidSpec(
                "endpoint.tlsMode verify-full needs endpoint.caSecretRef".into(),
            ));
        }
        None => None,
    };
    let port = spec.endpoint.port.unwrap_or(match spec.engine {
        Engine::Postgres => PG_PORT,
        Engine::Mongodb => MONGO_PORT,
    });
    let shared_database = match &spec.shared_database {
        Some(db) => Ident::new(db)?,
        None => Ident::new(&ctx.settings().pg_pools.shared_database)?,
    };
    let tenant_endpoint = match &spec.tenant_endpoint {
        Some(e) => (e.host.clone(), e.port.unwrap_or(port)),
        None => (spec.endpoint.host.clone(), port),
    };
    Ok(Config {
        host: spec.endpoint.host.clone(),
        port,
        username,
        password,
        admin_database: spec.admin_database.clone().unwrap_or_else(|| {
            match spec.engine {
                Engine::Postgres => "postgres",
                Engine::Mongodb => "admin",
            }
            .into()
        }),
        shared_database,
        tls: spec.endpoint.tls_mode,
        ca,
        tenant_endpoint,
    })
}

/// Reads a Secret a DatabaseServer refers to, in the operator's namespace (never another one);
/// `what`: `admin` or `CA`, for the error.
async fn read_secret(ctx: &Context, name: &str, what: &str) -> Result<Secret> {
    let ns = &ctx.settings().operator_namespace;
    Api::<Secret>::namespaced(ctx.client().clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::InvalidSpec(format!("{what} Secret {ns}/{name} not found")))
}
