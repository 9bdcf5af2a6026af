//! SCRAM-SHA-256 password verifiers (RFC 5802 / RFC 7677, PostgreSQL's `rolpassword` format).
//!
//! The operator never sends a plaintext password to PostgreSQL: it computes the verifier itself and
//! sends `PASSWORD 'SCRAM-SHA-256$…'`, so server logs (`log_statement = ddl`) never contain a
//! usable password. It can also check whether a Secret's password still matches the role's stored
//! verifier without logging in.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// PostgreSQL's default iteration count.
pub const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], msg: &[u8]) -> Option<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(msg);
    Some(mac.finalize().into_bytes().into())
}

fn keys(password: &str, salt: &[u8], iterations: u32) -> Option<([u8; 32], [u8; 32])> {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2::<HmacSha256>(password.as_bytes(), salt, iterations, &mut salted).ok()?;
    let client_key = hmac(&salted, b"Client Key")?;
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, b"Server Key")?;
    Some((stored_key, server_key))
}

/// Builds a verifier with a random 16-byte salt. `None` only if the HMAC cannot be keyed (never for
/// SHA-256).
pub fn verifier(password: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    verifier_with_salt(password, &salt, ITERATIONS)
}

/// Builds a verifier with the given salt and iteration count.
pub fn verifier_with_salt(password: &str, salt: &[u8], iterations: u32) -> Option<String> {
    let (stored, server) = keys(password, salt, iterations)?;
    Some(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored),
        B64.encode(server)
    ))
}

/// Whether `password` matches a stored SCRAM-SHA-256 verifier. Malformed verifiers (or MD5 ones)
/// never match.
pub fn matches(password: &str, stored_verifier: &str) -> bool {
    let Some(rest) = stored_verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((params, keys_part)) = rest.split_once('$') else {
        return false;
    };
    let Some((iter, salt)) = params.split_once(':') else {
        return false;
    };
    let Some((stored_b64, server_b64)) = keys_part.split_once(':') else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(stored), Ok(server)) = (
        iter.parse::<u32>(),
        B64.decode(salt),
        B64.decode(stored_b64),
        B64.decode(server_b64),
    ) else {
        return false;
    };
    if iterations == 0 || iterations > 1_000_000 {
        return false;
    }
    match keys(password, &salt, iterations) {
        Some((s, v)) => s.as_slice() == stored.as_slice() && v.as_slice() == server.as_slice(),
        None => false,
    }
}

/// A new random password: 32 characters from `[A-Za-z0-9]` (~190 bits) from the OS-seeded CSPRNG.
/// Alphanumeric so that it is safe in URIs and shells without escaping.
pub fn generate_password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_matches_postgres() {
        // Verifier produced by PostgreSQL 15 for password "pencil" with this salt.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = verifier_with_salt("pencil", &salt, 4096).unwrap();
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn roundtrip_and_mismatch() {
        let v = verifier("s3cret").unwrap();
        assert!(matches("s3cret", &v));
        assert!(!matches("s3cret!", &v));
        assert!(!matches("s3cret", "md5abcdef"));
        assert!(!matches("s3cret", "SCRAM-SHA-256$x"));
    }

    /// Splits a verifier into (iterations, salt).
    fn params(v: &str) -> (u32, Vec<u8>) {
        let rest = v.strip_prefix("SCRAM-SHA-256$").unwrap();
        let (params, _) = rest.split_once('$').unwrap();
        let (iter, salt) = params.split_once(':').unwrap();
        (iter.parse().unwrap(), B64.decode(salt).unwrap())
    }

    #[test]
    fn verifiers_use_4096_iterations_and_a_fresh_salt_each_time() {
        let a = verifier("one password").unwrap();
        let b = verifier("one password").unwrap();
        assert_ne!(a, b, "two verifiers of one password must differ");
        let (ia, sa) = params(&a);
        let (ib, sb) = params(&b);
        assert_eq!(
            (ia, ib),
            (4096, 4096),
            "PostgreSQL's default iteration count"
        );
        assert_eq!((sa.len(), sb.len()), (16, 16), "16-byte salts");
        assert_ne!(sa, sb, "a fresh salt per verifier");
        assert!(matches("one password", &a) && matches("one password", &b));
    }

    #[test]
    fn passwords_are_random_and_alphanumeric() {
        let a = generate_password();
        let b = generate_password();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
