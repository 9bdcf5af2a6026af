//! The admin connection: the settings and the one client, created on first use (so the operator
//! starts while MongoDB is down) and shared by all reconciles. Every operation of the admin asks
//! it for a database handle, and every handle passes the leadership fence first.

use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::mongo::connection::{MongoSettings, uri_password};
use crate::mongo::error::map_error;

/// Settings plus the lazily created client.
pub(super) struct AdminClient {
    settings: MongoSettings,
    client: OnceCell<Client>,
}

impl AdminClient {
    /// Not connected yet: the client is created by the first [`AdminClient::client`] call.
    pub(super) fn new(settings: MongoSettings) -> Self {
        Self {
            settings,
            client: OnceCell::new(),
        }
    }

    /// The connection settings.
    pub(super) fn settings(&self) -> &MongoSettings {
        &self.settings
    }

    /// Whether the client has been created.
    pub(super) fn connected(&self) -> bool {
        self.client.initialized()
    }

    /// The shared client (created on first call; a failed parse is retried next call).
    pub(super) async fn client(&self) -> Result<&Client> {
        // Every MongoDB operation of the operator passes here: none once leadership is in doubt.
        crate::fence::check()?;
        self.client
            .get_or_try_init(|| async {
                let uri_secret = uri_password(&self.settings.admin_uri);
                let secrets: Vec<&str> = uri_secret.iter().map(String::as_str).collect();
                let mut options = ClientOptions::parse(self.settings.admin_uri.trim())
                    .await
                    .map_err(|e| match map_error(&e, &secrets) {
                        Error::Config(m) | Error::Database { message: m, .. } => {
                            Error::Config(format!("invalid MongoDB admin URI: {m}"))
                        }
                        other => other,
                    })?;
                options.server_selection_timeout = Some(self.settings.server_selection_timeout);
                options.connect_timeout = Some(self.settings.connect_timeout);
                options.app_name = Some("tenantdb-operator".to_string());
                options.max_pool_size = Some(8);
                options.min_pool_size = Some(0);
                Client::with_options(options).map_err(|e| map_error(&e, &secrets))
            })
            .await
    }

    /// A handle on database `name` (through [`AdminClient::client`], so after the fence check).
    pub(super) async fn db(&self, name: &str) -> Result<Database> {
        Ok(self.client().await?.database(name))
    }
}
