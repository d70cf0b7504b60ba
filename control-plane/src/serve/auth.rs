//! Who may call the center: agents (a client certificate verified against `--client-ca`,
//! or a bearer `--agent-token`) on `/sync/`, operators (the bearer `--admin-key`) on
//! `/api/`.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use super::error::ApiError;

pub use edgeroute_server::tls::ClientCert;

/// The center's credentials, stored as SHA-256 digests.
#[derive(Debug, Clone, Default)]
pub struct CenterAuth {
    agent_tokens: Vec<[u8; 32]>,
    admin_key: Option<[u8; 32]>,
    /// `--no-auth`: everything is open (local experiments only).
    pub open: bool,
    /// A client certificate authenticates an agent (`--client-ca` given).
    pub client_certs: bool,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Comparing digests of equal length in constant time keeps a token's prefix from leaking
/// through timing.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request, if it has one (scheme case-insensitive, per RFC 9110).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl CenterAuth {
    /// From clear-text credentials.
    pub fn new(agent_tokens: &[String], admin_key: Option<&str>, client_certs: bool) -> Self {
        Self {
            agent_tokens: agent_tokens
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| digest(t))
                .collect(),
            admin_key: admin_key.filter(|k| !k.is_empty()).map(digest),
            open: false,
            client_certs,
        }
    }

    /// Whether agents can authenticate at all (a token or a client CA is configured).
    pub fn agents_can_authenticate(&self) -> bool {
        self.open || self.client_certs || !self.agent_tokens.is_empty()
    }

    /// Whether an admin key is configured.
    pub fn has_admin_key(&self) -> bool {
        self.open || self.admin_key.is_some()
    }

    /// Admit an agent's request.
    pub fn agent(&self, headers: &HeaderMap, cert: Option<ClientCert>) -> Result<(), ApiError> {
        if self.open || (self.client_certs && cert.is_some_and(|c| c.verified)) {
            return Ok(());
        }
        let Some(token) = bearer(headers) else {
            return Err(ApiError::unauthorized(
                "an agent must present a client certificate or a bearer agent token",
            ));
        };
        let d = digest(token);
        if self.agent_tokens.iter().any(|t| same(t, &d)) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("unknown agent token"))
        }
    }

    /// Admit an operator's request.
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.open {
            return Ok(());
        }
        let Some(expected) = &self.admin_key else {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Forbidden",
                "the admin API is disabled: start the control plane with --admin-key",
            ));
        };
        match bearer(headers) {
            Some(key) if same(expected, &digest(key)) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("wrong admin key")),
            None => Err(ApiError::unauthorized(
                "missing admin key: send Authorization: Bearer <admin key>",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn tokens_keys_and_certificates_admit_the_right_callers() {
        let auth = CenterAuth::new(&["t1".into(), "t2".into()], Some("adm"), true);
        assert!(auth.agent(&with_bearer("Bearer t2"), None).is_ok());
        assert!(auth.agent(&with_bearer("bearer t1"), None).is_ok());
        assert!(auth.agent(&with_bearer("Bearer nope"), None).is_err());
        assert!(auth.agent(&HeaderMap::new(), None).is_err());
        assert!(
            auth.agent(&HeaderMap::new(), Some(ClientCert { verified: true }))
                .is_ok()
        );
        assert!(
            auth.agent(&HeaderMap::new(), Some(ClientCert { verified: false }))
                .is_err()
        );
        assert!(auth.admin(&with_bearer("Bearer adm")).is_ok());
        assert!(
            auth.admin(&with_bearer("Bearer t1")).is_err(),
            "an agent token is no admin key"
        );
        let no_certs = CenterAuth::new(&[], None, false);
        assert!(
            no_certs
                .agent(&HeaderMap::new(), Some(ClientCert { verified: true }))
                .is_err()
        );
        assert!(!no_certs.agents_can_authenticate());
        assert_eq!(
            no_certs
                .admin(&with_bearer("Bearer x"))
                .unwrap_err()
                .status(),
            axum::http::StatusCode::FORBIDDEN
        );
    }
}
