//! Authentication: bearer tokens mapped to identities, like kube-apiserver's static token file and
//! service-account tokens. A request without credentials is `system:anonymous` (group
//! `system:unauthenticated`, as with the real server's default `--anonymous-auth=true`); a token
//! nobody issued is 401 `Unauthorized`. Service-account tokens only authenticate while their
//! ServiceAccount object exists (a deleted account's token stops working, like a bound token).

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The admin identity the emulator issues a token for at start (tests, the demo, kubectl).
/// `system:masters` is bound to `cluster-admin` by the bootstrap policy, like kubeadm's admin.conf.
pub const ADMIN_USER: &str = "tenantdb-admin";

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `system:serviceaccount:<ns>:<name>`, `system:anonymous`, or a user name.
    pub name: String,
    /// Group memberships, including the implicit `system:authenticated` / `system:unauthenticated`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The cluster administrator (`system:masters`).
    pub fn admin() -> Self {
        UserInfo {
            name: ADMIN_USER.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// `system:anonymous`.
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The identity of a ServiceAccount's token.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// `(namespace, name)` when this is a ServiceAccount identity.
    pub fn service_account_ref(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix("system:serviceaccount:")?;
        rest.split_once(':')
    }
}

/// Issued tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: BTreeMap<String, UserInfo>,
}

/// Outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authn {
    User(UserInfo),
    /// A bearer token was sent but is not valid: 401.
    Unauthorized,
}

impl Tokens {
    /// Register `token` for `user` (replacing an earlier registration of the same token).
    pub fn insert(&mut self, token: String, user: UserInfo) {
        self.by_token.insert(token, user);
    }

    /// The token issued to a user name, if any.
    pub fn token_of(&self, user: &str) -> Option<&str> {
        self.by_token
            .iter()
            .find(|(_, u)| u.name == user)
            .map(|(t, _)| t.as_str())
    }

    /// Authenticate from the `Authorization` header value (if any). `sa_exists` tells whether a
    /// ServiceAccount object exists (its token is refused once it is gone).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        sa_exists: impl Fn(&str, &str) -> bool,
    ) -> Authn {
        let Some(h) = authorization.map(str::trim).filter(|h| !h.is_empty()) else {
            return Authn::User(UserInfo::anonymous());
        };
        let token = match h.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            // Basic auth and other schemes are not accepted by kube-apiserver either.
            _ => return Authn::Unauthorized,
        };
        match self.by_token.get(token) {
            Some(u) => match u.service_account_ref() {
                Some((ns, name)) if !sa_exists(ns, name) => Authn::Unauthorized,
                _ => Authn::User(u.clone()),
            },
            None => Authn::Unauthorized,
        }
    }
}

/// A random token: 32 bytes from the OS-seeded hasher state, hex (not a secret of any value: the
/// emulator is a local test tool, but tokens must not be guessable across concurrent test servers).
pub fn new_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(64);
    for i in 0..4u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The `401 Unauthorized` Status of the real server.
pub fn unauthorized_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_map_to_identities() {
        let mut t = Tokens::default();
        t.insert("admintoken".into(), UserInfo::admin());
        t.insert("satoken".into(), UserInfo::service_account("ops", "op"));
        assert_eq!(
            t.authenticate(Some("Bearer admintoken"), |_, _| true),
            Authn::User(UserInfo::admin())
        );
        assert_eq!(
            t.authenticate(None, |_, _| true),
            Authn::User(UserInfo::anonymous())
        );
        assert_eq!(
            t.authenticate(Some("Bearer nope"), |_, _| true),
            Authn::Unauthorized
        );
        assert_eq!(
            t.authenticate(Some("Basic YTpi"), |_, _| true),
            Authn::Unauthorized
        );
        let sa = t.authenticate(Some("bearer satoken"), |ns, n| ns == "ops" && n == "op");
        assert_eq!(
            sa,
            Authn::User(UserInfo {
                name: "system:serviceaccount:ops:op".into(),
                groups: vec![
                    "system:serviceaccounts".into(),
                    "system:serviceaccounts:ops".into(),
                    "system:authenticated".into()
                ]
            })
        );
        // The ServiceAccount is gone: its token no longer authenticates.
        assert_eq!(
            t.authenticate(Some("Bearer satoken"), |_, _| false),
            Authn::Unauthorized
        );
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 64);
    }
}
