//! Identities for the benchmarks: an access policy for the in-process
//! server and the bearer token its clients send, to measure what checking
//! an identity costs (`quire-bench --auth token|jwt`) against the same
//! scenario with no policy.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// How the benchmark's callers identify themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Auth {
    /// No access policy: the server's default (everyone may do everything).
    None,
    /// A policy that grants nothing publicly; a static API token.
    Token,
    /// The same policy; an Ed25519-signed JWT of a configured issuer.
    Jwt,
}

/// The PKCS#8 DER prefix of an Ed25519 private key (RFC 8410), before its
/// 32-byte seed.
const ED25519_PKCS8: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Writes a policy into `dir` granting `who` (and the token or JWT that
/// proves it) writer and reader on every log, plus `extra`; returns the
/// policy's path and the bearer token. `None` for [`Auth::None`].
///
/// # Errors
/// Files that cannot be written, a JWT that cannot be signed.
pub fn setup(dir: &Path, auth: Auth, extra: &str) -> anyhow::Result<Option<(PathBuf, String)>> {
    let (who, bearer, issuer) = match auth {
        Auth::None => return Ok(None),
        Auth::Token => {
            let (token, _) = quire_server::access::new_token();
            ("token:bench", token, String::new())
        }
        Auth::Jwt => {
            let (token, jwks) = jwt("bench")?;
            std::fs::write(dir.join("bench-jwks.json"), jwks)?;
            (
                "jwt:bench:bench",
                token,
                "[[issuers]]\nname = \"bench\"\nissuer = \"https://bench.invalid\"\naudiences = [\"quire\"]\njwks_file = \"bench-jwks.json\"\n".to_owned(),
            )
        }
    };
    let tokens = if auth == Auth::Token {
        format!(
            "[[tokens]]\nname = \"bench\"\nsha256 = \"{}\"\n",
            quire_server::access::token_hash_hex(&bearer)
        )
    } else {
        String::new()
    };
    let policy = format!(
        "public = []\n{tokens}{issuer}[[grants]]\nwho = \"{who}\"\nroles = [\"writer\", \"reader\"]\nlogs = [\"*\"]\n{extra}"
    );
    let path = dir.join("bench-access.toml");
    std::fs::write(&path, policy)?;
    Ok(Some((path, bearer)))
}

/// A JWT for subject `sub` of issuer `https://bench.invalid`, valid for a
/// day, and the JWKS of its key.
///
/// # Errors
/// A key the JWT library refuses.
pub fn jwt(sub: &str) -> anyhow::Result<(String, String)> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let mut der = ED25519_PKCS8.to_vec();
    der.extend_from_slice(&key.to_bytes());
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let jwks = format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"bench","x":"{x}"}}]}}"#
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("bench".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let claims = serde_json::json!({
        "iss": "https://bench.invalid", "aud": "quire", "sub": sub, "exp": exp
    });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )?;
    Ok((token, jwks))
}
