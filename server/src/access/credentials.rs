//! Bearer tokens: Quire's static API tokens (kept only as SHA-256 hashes)
//! and OIDC/JWT tokens checked against configured issuers (RFC 7519; keys
//! from a JWKS file, RFC 7517).

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use super::principal::Principal;

/// Every static token starts so, to tell it from a JWT at a glance (and to
/// let secret scanners find leaked ones).
pub const TOKEN_PREFIX: &str = "quire_";

/// Longest bearer token read; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A new static token: its secret, shown once, and its hash for the policy.
pub fn new_token() -> (String, String) {
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = token_hash_hex(&token);
    (token, hash)
}

/// The hash a policy keeps of a static token: SHA-256 of its text, hex.
pub fn token_hash_hex(token: &str) -> String {
    quire_core::Hash(Sha256::digest(token.as_bytes()).into()).to_hex()
}

/// The static tokens of a policy, by hash.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    by_hash: HashMap<[u8; 32], (String, bool)>,
}

impl Tokens {
    /// Adds a token by its name, hex SHA-256 and whether it is revoked.
    ///
    /// # Errors
    /// A hash that is not 64 hex digits, or one given twice.
    pub(crate) fn add(&mut self, name: &str, sha256: &str, revoked: bool) -> Result<(), String> {
        let bytes = quire_core::Hash::from_hex(sha256)
            .map(|h| h.0)
            .ok_or_else(|| {
                format!("token {name:?}: sha256 must be 64 hex digits (the SHA-256 of the token)")
            })?;
        if self
            .by_hash
            .insert(bytes, (name.to_owned(), revoked))
            .is_some()
        {
            return Err(format!("token {name:?}: its hash is given twice"));
        }
        Ok(())
    }

    /// The principal of a static token.
    ///
    /// # Errors
    /// An unknown or revoked token, in words.
    pub(crate) fn check(&self, token: &str) -> Result<Principal, String> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.by_hash.get(&hash) {
            Some((name, false)) => Ok(Principal::Token { name: name.clone() }),
            Some((name, true)) => Err(format!("token {name:?} is revoked")),
            None => Err("the API token is not known to this server".into()),
        }
    }
}

/// A configured JWT issuer with its keys.
pub(crate) struct Issuer {
    /// Its name in the policy (`jwt:NAME:…`).
    pub(crate) name: String,
    /// The `iss` its tokens carry.
    pub(crate) iss: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: Vec<(Option<String>, DecodingKey, Option<Algorithm>)>,
    revoked_ids: HashSet<String>,
    leeway_s: u64,
}

impl Issuer {
    /// Whether its key set holds a key.
    pub(crate) fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// An issuer with the keys of `jwks` (a JWKS document; none until a
    /// key set is fetched, see [`Self::has_keys`]).
    ///
    /// # Errors
    /// A JWKS that does not parse, or holds a key that cannot be used, or
    /// an unknown or symmetric algorithm.
    pub(crate) fn new(
        name: &str,
        issuer: &str,
        audiences: Vec<String>,
        algorithms: &[String],
        jwks: &[u8],
        revoked_ids: Vec<String>,
        leeway_s: u64,
    ) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(jwks)
            .map_err(|e| format!("issuer {name:?}: its JWKS does not parse: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("issuer {name:?}: a key of its JWKS cannot be used: {e}"))?;
            let alg = match jwk.common.key_algorithm {
                Some(a) => Some(a.to_string().parse::<Algorithm>().map_err(|e| {
                    format!("issuer {name:?}: a key of its JWKS names algorithm {a}: {e}")
                })?),
                None => None,
            };
            keys.push((jwk.common.key_id.clone(), key, alg));
        }
        let algorithms = if algorithms.is_empty() {
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
            ]
        } else {
            algorithms
                .iter()
                .map(|a| {
                    let alg = a
                        .parse::<Algorithm>()
                        .map_err(|_| format!("issuer {name:?}: unknown algorithm {a:?}"))?;
                    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                        return Err(format!(
                            "issuer {name:?}: {a} is a shared-secret algorithm; only public-key algorithms are accepted"
                        ));
                    }
                    Ok(alg)
                })
                .collect::<Result<_, _>>()?
        };
        if audiences.is_empty() {
            return Err(format!(
                "issuer {name:?}: name the audiences its tokens must be for (audiences = [...])"
            ));
        }
        Ok(Issuer {
            name: name.to_owned(),
            iss: issuer.to_owned(),
            audiences,
            algorithms,
            keys,
            revoked_ids: revoked_ids.into_iter().collect(),
            leeway_s,
        })
    }

    /// Checks a token of this issuer; its principal and expiry (seconds).
    fn check(&self, token: &str) -> Result<(Principal, u64), String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("the JWT's header does not parse: {e}"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!(
                "the JWT is signed with {:?}, not an algorithm issuer {:?} accepts",
                header.alg, self.name
            ));
        }
        let candidates = self.keys.iter().filter(|(kid, _, alg)| {
            (header.kid.is_none() || *kid == header.kid) && alg.is_none_or(|a| a == header.alg)
        });
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.iss]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway_s;
        let mut last = None;
        for (_, key, _) in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    if let Some(id) = &data.claims.jti {
                        if self.revoked_ids.contains(id) {
                            return Err(format!("the JWT {id:?} is revoked"));
                        }
                    }
                    return Ok((
                        Principal::Jwt {
                            issuer: self.name.clone(),
                            subject: data.claims.sub,
                        },
                        data.claims.exp,
                    ));
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    let why = match e.kind() {
                        K::ExpiredSignature => "the JWT has expired".to_owned(),
                        K::ImmatureSignature => "the JWT is not valid yet (nbf)".to_owned(),
                        K::InvalidAudience => format!(
                            "the JWT is not for this server: its audience is none of {}",
                            self.audiences.join(", ")
                        ),
                        K::InvalidIssuer => "the JWT's issuer is wrong".to_owned(),
                        K::MissingRequiredClaim(c) => format!("the JWT has no {c} claim"),
                        K::InvalidSignature => {
                            last = Some(format!(
                                "the JWT's signature does not verify with the keys of issuer {:?}",
                                self.name
                            ));
                            continue;
                        }
                        _ => format!("the JWT is not valid: {e}"),
                    };
                    return Err(why);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            format!(
                "issuer {:?} has no key {} for {:?}",
                self.name,
                header
                    .kid
                    .as_deref()
                    .map_or("without an id".to_owned(), |k| format!("{k:?}")),
                header.alg
            )
        }))
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
}

#[derive(serde::Deserialize)]
struct Unverified {
    #[serde(default)]
    iss: Option<String>,
}

/// Checks a JWT against the issuers: the one its `iss` names must sign it.
/// Returns its principal and expiry (seconds since the epoch).
///
/// # Errors
/// Why the token is refused, in words.
pub(crate) fn check_jwt(issuers: &[Issuer], token: &str) -> Result<(Principal, u64), String> {
    // The `iss` claim, read before any signature is checked, only chooses
    // which issuer's keys must verify the token.
    let payload = token
        .split('.')
        .nth(1)
        .ok_or("the bearer token is neither a Quire API token nor a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "the JWT's payload is not base64url")?;
    let claims: Unverified = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the JWT's payload does not parse: {e}"))?;
    let iss = claims.iss.ok_or("the JWT has no iss claim")?;
    let issuer = issuers.iter().find(|i| i.iss == iss).ok_or_else(|| {
        format!(
            "the JWT's issuer {:?} is not one this server trusts",
            iss.chars().take(256).collect::<String>()
        )
    })?;
    issuer.check(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn static_tokens_are_known_by_hash_only() {
        let (token, hash) = new_token();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(hash, token_hash_hex(&token));
        let mut tokens = Tokens::default();
        tokens.add("ci", &hash, false).unwrap();
        assert_eq!(
            tokens.check(&token).unwrap(),
            Principal::Token { name: "ci".into() }
        );
        assert!(tokens.check(&format!("{token}x")).is_err());
        assert!(tokens.add("again", &hash, false).is_err());
        let (other, other_hash) = new_token();
        tokens.add("old", &other_hash.to_uppercase(), true).unwrap();
        assert_eq!(
            tokens.check(&other).unwrap_err(),
            "token \"old\" is revoked"
        );
        assert!(tokens.add("bad", "xyz", false).is_err());
        assert!(tokens.add("bad", &"g".repeat(64), false).is_err());
    }
}
