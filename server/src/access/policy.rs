//! The access policy file, checked whole before it is used: roles granted
//! per log and per tenant, static tokens by hash, JWT issuers.
//!
//! ```toml
//! public = ["auditor"]        # roles of every caller (the default)
//!
//! [[tenants]]
//! name = "acme"
//! logs = ["acme.example/*"]   # exact origins, or prefixes ending in *
//!
//! [[tokens]]                  # `quire-server token --name ci` makes one
//! name = "ci"
//! sha256 = "…64 hex digits…"
//! revoked = false
//!
//! [[issuers]]                 # OIDC/JWT
//! name = "corp"
//! issuer = "https://login.corp.example"
//! audiences = ["quire"]
//! jwks_file = "corp-jwks.json"
//! jwks_url = "https://login.corp.example/.well-known/jwks.json"  # optional:
//!                             # fetched into jwks_file every jwks_refresh_s
//! jwks_refresh_s = 300
//! jwks_ca_file = "corp-ca.pem" # optional; default: the system's CAs
//! algorithms = ["RS256", "ES256"]   # default: every public-key one
//! revoked_ids = []                  # jti claims refused
//! leeway_s = 30
//!
//! [[quotas]]                 # see `quota`
//! who = "token:ci"
//! entries_per_s = 1000
//! per = "principal"
//!
//! [[grants]]
//! who = "token:ci"            # anonymous, authenticated, token:NAME,
//!                             # dns:NAME, uri:URI, jwt:ISSUER:SUBJECT|*
//! roles = ["writer"]          # writer, reader, auditor, admin
//! tenants = ["acme"]          # and/or logs = ["origin", "prefix*", "*"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::credentials::{Issuer, Tokens};
use super::principal::{Principal, Who};
use super::quota::{Quota, QuotaFile};
use super::roles::{Role, Roles};

/// Largest policy or JWKS file read (by bytes read), checked before parsing.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_public")]
    public: Vec<String>,
    #[serde(default)]
    tenants: Vec<TenantFile>,
    #[serde(default)]
    tokens: Vec<TokenFile>,
    #[serde(default)]
    issuers: Vec<IssuerFile>,
    #[serde(default)]
    grants: Vec<GrantFile>,
    #[serde(default)]
    quotas: Vec<QuotaFile>,
}

fn default_public() -> Vec<String> {
    vec!["auditor".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    name: String,
    logs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    sha256: String,
    #[serde(default)]
    revoked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerFile {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    jwks_file: PathBuf,
    /// Where the key set is fetched (kept in `jwks_file`).
    #[serde(default)]
    jwks_url: Option<String>,
    /// How often it is fetched, seconds.
    #[serde(default = "default_refresh")]
    jwks_refresh_s: u64,
    /// The CA (PEM) the URL's certificate must chain to.
    #[serde(default)]
    jwks_ca_file: Option<PathBuf>,
    #[serde(default)]
    algorithms: Vec<String>,
    #[serde(default)]
    revoked_ids: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway_s: u64,
}

fn default_leeway() -> u64 {
    30
}

fn default_refresh() -> u64 {
    300
}

/// The shortest `jwks_refresh_s`.
const MIN_REFRESH_S: u64 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    who: String,
    roles: Vec<String>,
    #[serde(default)]
    logs: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
    /// Limits the grant's writer role to events of these types (exact, or
    /// prefixes ending in `*`); empty: no limit.
    #[serde(default)]
    event_types: Vec<String>,
}

/// What grants limited to event types say of a write of events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventWrite {
    /// Every type is granted.
    Allowed,
    /// No grant limited to event types covers the log.
    NoGrant,
    /// A type no grant covers.
    TypeMissing {
        /// The type.
        kind: String,
        /// The types the grants cover, comma separated.
        allowed: String,
    },
}

/// Origins a grant or tenant covers: exact, or a prefix (`…*`).
#[derive(Clone, Debug)]
pub(crate) enum Origins {
    Exact(String),
    Prefix(String),
}

impl std::fmt::Display for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origins::Exact(o) => f.write_str(o),
            Origins::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl Grant {
    /// Its roles, but a writer role limited to event types.
    fn unlimited_roles(&self) -> Roles {
        if self.event_types.is_empty() {
            self.roles
        } else {
            self.roles.without(Role::Writer)
        }
    }
}

impl Origins {
    pub(crate) fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(prefix) => Origins::Prefix(prefix.to_owned()),
            None => Origins::Exact(s.to_owned()),
        }
    }

    pub(crate) fn covers(&self, origin: &str) -> bool {
        match self {
            Origins::Exact(o) => o == origin,
            Origins::Prefix(p) => origin.starts_with(p.as_str()),
        }
    }
}

/// Tenants by name, each with the origins it covers.
pub(crate) type Tenants = std::collections::HashMap<String, Vec<Origins>>;

/// The origins that `logs` and the tenants named in `tenants` cover.
///
/// # Errors
/// A tenant that is not defined.
pub(crate) fn scope(
    logs: &[String],
    tenants: &[String],
    defined: &Tenants,
) -> Result<Vec<Origins>, String> {
    let mut scope: Vec<Origins> = logs.iter().map(|l| Origins::parse(l)).collect();
    for t in tenants {
        let origins = defined
            .get(t)
            .ok_or_else(|| format!("no tenant is named {t:?}"))?;
        scope.extend(origins.iter().cloned());
    }
    Ok(scope)
}

struct Grant {
    who: Who,
    roles: Roles,
    scope: Vec<Origins>,
    /// The event types its writer role is limited to (empty: none).
    event_types: Vec<Origins>,
}

/// Files read, each with the bytes read (none when it could not be read).
pub(crate) type Sources = Vec<(PathBuf, Vec<u8>)>;

/// A checked policy.
pub struct Policy {
    public: Roles,
    pub(crate) tokens: Tokens,
    pub(crate) issuers: Vec<Issuer>,
    grants: Vec<Grant>,
    pub(crate) quotas: Vec<Quota>,
    /// Tenants by name (sorted), each with the origins it covers.
    tenant_scopes: Vec<(String, Vec<Origins>)>,
    /// The files it was read from, with their bytes: a change of any is a
    /// new policy.
    pub(crate) sources: Sources,
    /// The key sets kept fetched from their issuers' URLs.
    pub(crate) fetched: Vec<super::jwks_fetch::JwksSource>,
}

impl Policy {
    /// Reads and checks the policy at `path` and the JWKS files it names
    /// (relative to the policy's folder).
    ///
    /// # Errors
    /// A file that cannot be read or is over [`MAX_POLICY_BYTES`], or a
    /// policy that is not valid, in words naming the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        Self::load_recording(path, &mut Vec::new())
    }

    /// [`Self::load`], with every file it reads added to `read` with its
    /// bytes (none for a file that could not be read) whether or not the
    /// policy is valid.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub(crate) fn load_recording(path: &Path, read: &mut Sources) -> Result<Self, String> {
        let mut take = |p: &Path| {
            let got = quire_host::read_bounded(p, MAX_POLICY_BYTES).map_err(|e| format!("{e}"));
            read.push((
                p.to_owned(),
                got.as_ref().map_or_else(|_| Vec::new(), Clone::clone),
            ));
            got
        };
        let text = take(path)?;
        let policy = Self::parse(path, &text, take)?;
        Ok(Policy {
            sources: read.clone(),
            ..policy
        })
    }

    /// Checks `text` as the policy file at `path` would be (its JWKS
    /// files read relative to `path`'s folder), without using it.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn validate(path: &Path, text: &[u8]) -> Result<(), String> {
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(format!(
                "the policy is {} bytes; the limit is {MAX_POLICY_BYTES}",
                text.len()
            ));
        }
        Self::parse(path, text, |p| {
            quire_host::read_bounded(p, MAX_POLICY_BYTES).map_err(|e| format!("{e}"))
        })
        .map(|_| ())
    }

    fn parse(
        path: &Path,
        text: &[u8],
        mut take: impl FnMut(&Path) -> Result<Vec<u8>, String>,
    ) -> Result<Self, String> {
        let file: PolicyFile = std::str::from_utf8(text)
            .map_err(|_| format!("{}: not UTF-8 text", path.display()))
            .and_then(|t| toml::from_str(t).map_err(|e| format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let fetched = file
            .issuers
            .iter()
            .filter_map(|i| {
                i.jwks_url
                    .as_ref()
                    .map(|url| super::jwks_fetch::JwksSource {
                        issuer: i.name.clone(),
                        url: url.clone(),
                        file: dir.join(&i.jwks_file),
                        every: std::time::Duration::from_secs(i.jwks_refresh_s),
                        ca_file: i.jwks_ca_file.as_ref().map(|c| dir.join(c)),
                    })
            })
            .collect();
        let policy = Self::check(file, |jwks| take(&dir.join(jwks)))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Policy { fetched, ..policy })
    }

    fn check(
        file: PolicyFile,
        mut jwks: impl FnMut(&Path) -> Result<Vec<u8>, String>,
    ) -> Result<Self, String> {
        let public = Roles::of(&file.public).map_err(|e| format!("public: {e}"))?;
        let mut tenants = Tenants::new();
        for t in &file.tenants {
            if t.logs.is_empty() {
                return Err(format!("tenant {:?} lists no logs", t.name));
            }
            if tenants
                .insert(
                    t.name.clone(),
                    t.logs.iter().map(|l| Origins::parse(l)).collect::<Vec<_>>(),
                )
                .is_some()
            {
                return Err(format!("tenant {:?} is defined twice", t.name));
            }
        }
        let mut tokens = Tokens::default();
        let mut names = std::collections::HashSet::new();
        for t in &file.tokens {
            if !names.insert(t.name.as_str()) {
                return Err(format!("token {:?} is defined twice", t.name));
            }
            tokens.add(&t.name, &t.sha256, t.revoked)?;
        }
        let issuers = issuers(file.issuers, &mut jwks)?;
        let mut grants = Vec::new();
        for (n, g) in file.grants.iter().enumerate() {
            let at = |e: String| format!("grant {} (who = {:?}): {e}", n + 1, g.who);
            let who = Who::parse(&g.who).map_err(at)?;
            match &who {
                Who::Token(name) if !names.contains(name.as_str()) => {
                    return Err(at(format!("no token is named {name:?}")));
                }
                Who::Jwt { issuer, .. } if !issuers.iter().any(|i| &i.name == issuer) => {
                    return Err(at(format!("no issuer is named {issuer:?}")));
                }
                _ => {}
            }
            let roles = Roles::of(&g.roles).map_err(at)?;
            if roles == Roles::default() {
                return Err(at("it grants no role".into()));
            }
            let scope = scope(&g.logs, &g.tenants, &tenants).map_err(at)?;
            if scope.is_empty() {
                return Err(at(
                    "it names no logs or tenants (write logs = [\"*\"] for every log)".into(),
                ));
            }
            if !g.event_types.is_empty() && !roles.allows(Role::Writer) {
                return Err(at(
                    "event_types limits the writer role, which it does not grant".into(),
                ));
            }
            if let Some(t) = g.event_types.iter().find(|t| t.is_empty() || t.len() > 129) {
                return Err(at(format!(
                    "event type {t:?} must be 1 to 128 bytes (and an optional final *)"
                )));
            }
            grants.push(Grant {
                who,
                roles,
                scope,
                event_types: g.event_types.iter().map(|t| Origins::parse(t)).collect(),
            });
        }
        let quotas = file
            .quotas
            .iter()
            .enumerate()
            .map(|(n, q)| Quota::check(n + 1, q, &tenants))
            .collect::<Result<_, _>>()?;
        let mut tenant_scopes: Vec<(String, Vec<Origins>)> = tenants.into_iter().collect();
        tenant_scopes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Policy {
            public,
            tokens,
            issuers,
            grants,
            quotas,
            tenant_scopes,
            sources: Vec::new(),
            fetched: Vec::new(),
        })
    }

    /// The roles `principal` holds on the log `origin` (a writer role
    /// limited to event types is not among them: see
    /// [`Policy::writes_events`]).
    pub fn roles(&self, principal: &Principal, origin: &str) -> Roles {
        self.grants_of(principal, origin)
            .fold(self.public, |set, g| set | g.unlimited_roles())
    }

    fn grants_of<'a>(
        &'a self,
        principal: &'a Principal,
        origin: &'a str,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants
            .iter()
            .filter(move |g| principal.is(&g.who) && g.scope.iter().any(|o| o.covers(origin)))
    }

    /// Whether `principal`, whose roles on `origin` lack an unlimited
    /// writer, may write events of each type of `kinds` there by grants
    /// limited to event types.
    pub fn writes_events(&self, principal: &Principal, origin: &str, kinds: &[&str]) -> EventWrite {
        let limited: Vec<&Origins> = self
            .grants_of(principal, origin)
            .filter(|g| g.roles.allows(Role::Writer))
            .flat_map(|g| g.event_types.iter())
            .collect();
        if limited.is_empty() {
            return EventWrite::NoGrant;
        }
        match kinds.iter().find(|k| !limited.iter().any(|o| o.covers(k))) {
            None => EventWrite::Allowed,
            Some(k) => EventWrite::TypeMissing {
                kind: (*k).to_owned(),
                allowed: limited
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        }
    }

    /// The tenant whose logs include `origin` (the first by name, when
    /// several do).
    pub fn tenant_of(&self, origin: &str) -> Option<String> {
        self.tenant_scopes
            .iter()
            .find(|(_, scope)| scope.iter().any(|o| o.covers(origin)))
            .map(|(name, _)| name.clone())
    }

    /// The roles every caller holds.
    pub fn public(&self) -> Roles {
        self.public
    }
}

/// The issuers of a policy file, each with its key set from `jwks`.
fn issuers(
    files: Vec<IssuerFile>,
    jwks: &mut impl FnMut(&Path) -> Result<Vec<u8>, String>,
) -> Result<Vec<Issuer>, String> {
    let mut issuers: Vec<Issuer> = Vec::new();
    for i in files {
        if issuers
            .iter()
            .any(|o| o.name == i.name || o.iss == i.issuer)
        {
            return Err(format!("issuer {:?} is defined twice", i.name));
        }
        let keys = match (jwks(&i.jwks_file), &i.jwks_url) {
            // Not fetched yet: no keys until the first fetch.
            (Err(_), Some(_)) => br#"{"keys":[]}"#.to_vec(),
            (Ok(bytes), Some(_)) if bytes.is_empty() => br#"{"keys":[]}"#.to_vec(),
            (got, _) => got.map_err(|e| format!("issuer {:?}: {e}", i.name))?,
        };
        if let Some(url) = &i.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "issuer {:?}: jwks_url {url:?} must start with https:// (or http://)",
                    i.name
                ));
            }
            if !(MIN_REFRESH_S..=86_400).contains(&i.jwks_refresh_s) {
                return Err(format!(
                    "issuer {:?}: jwks_refresh_s = {} must be {MIN_REFRESH_S} to 86400",
                    i.name, i.jwks_refresh_s
                ));
            }
        }
        let issuer = Issuer::new(
            &i.name,
            &i.issuer,
            i.audiences,
            &i.algorithms,
            &keys,
            i.revoked_ids,
            i.leeway_s,
        )?;
        // A key set kept fetched may be empty until its first fetch;
        // a file alone must hold a key.
        if !issuer.has_keys() && i.jwks_url.is_none() {
            return Err(format!("issuer {:?}: its JWKS holds no key", i.name));
        }
        issuers.push(issuer);
    }
    Ok(issuers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(text: &str) -> Result<Policy, String> {
        Policy::check(toml::from_str(text).map_err(|e| e.to_string())?, |_| {
            Err("no JWKS here".into())
        })
    }

    #[test]
    fn grants_cover_logs_and_tenants() {
        let hash = "ab".repeat(32);
        let p = policy(&format!(
            r#"
            [[tenants]]
            name = "acme"
            logs = ["acme.example/*"]
            [[tokens]]
            name = "ci"
            sha256 = "{hash}"
            [[grants]]
            who = "token:ci"
            roles = ["writer"]
            tenants = ["acme"]
            [[grants]]
            who = "uri:spiffe://t/reader"
            roles = ["reader"]
            logs = ["other.example/log"]
            "#
        ))
        .unwrap();
        let ci = Principal::Token { name: "ci".into() };
        let r = p.roles(&ci, "acme.example/2026-12");
        assert!(r.allows(Role::Writer) && r.allows(Role::Auditor) && !r.allows(Role::Reader));
        assert!(!p.roles(&ci, "other.example/log").allows(Role::Writer));
        let reader = Principal::Certificate {
            names: vec!["uri:spiffe://t/reader".into()],
        };
        let r = p.roles(&reader, "other.example/log");
        assert!(r.allows(Role::Reader) && r.allows(Role::Auditor) && !r.allows(Role::Writer));
        assert_eq!(p.roles(&Principal::Anonymous, "x").names(), "auditor");
    }

    #[test]
    fn invalid_policies_are_refused_by_name() {
        for (text, says) in [
            ("public = [\"boss\"]", "unknown role \"boss\""),
            ("[[grants]]\nwho = \"token:nope\"\nroles = [\"writer\"]\nlogs = [\"*\"]", "no token is named \"nope\""),
            ("[[grants]]\nwho = \"anonymous\"\nroles = [\"writer\"]", "names no logs or tenants"),
            ("[[grants]]\nwho = \"anonymous\"\nroles = [\"reader\"]\nlogs = [\"*\"]\nevent_types = [\"a\"]", "event_types limits the writer role, which it does not grant"),
            ("[[grants]]\nwho = \"anonymous\"\nroles = [\"writer\"]\nlogs = [\"*\"]\nevent_types = [\"\"]", "event type \"\" must be 1 to 128 bytes"),
            ("[[grants]]\nwho = \"anonymous\"\nroles = []\nlogs = [\"*\"]", "grants no role"),
            ("[[grants]]\nwho = \"anonymous\"\nroles = [\"reader\"]\ntenants = [\"t\"]", "no tenant is named \"t\""),
            ("[[grants]]\nwho = \"jwt:corp:*\"\nroles = [\"reader\"]\nlogs = [\"*\"]", "no issuer is named \"corp\""),
            ("[[tokens]]\nname = \"a\"\nsha256 = \"00\"", "64 hex digits"),
            ("[[issuers]]\nname = \"corp\"\nissuer = \"https://i\"\naudiences = [\"q\"]\njwks_file = \"k.json\"", "no JWKS here"),
            ("[[issuers]]\nname = \"corp\"\nissuer = \"https://i\"\naudiences = [\"q\"]\njwks_file = \"k.json\"\njwks_url = \"ftp://i/k\"", "must start with https://"),
            ("[[issuers]]\nname = \"corp\"\nissuer = \"https://i\"\naudiences = [\"q\"]\njwks_file = \"k.json\"\njwks_url = \"https://i/k\"\njwks_refresh_s = 0", "jwks_refresh_s = 0 must be 1 to 86400"),
        ] {
            let e = policy(text).err().unwrap_or_default();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(policy("unknown = 1").is_err());
        // A key set kept fetched may be absent until its first fetch.
        let p = policy("[[issuers]]\nname = \"corp\"\nissuer = \"https://i\"\naudiences = [\"q\"]\njwks_file = \"k.json\"\njwks_url = \"https://i/k\"").unwrap();
        assert!(!p.issuers[0].has_keys());
    }
}
