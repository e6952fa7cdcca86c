//! Who may do what: identities, roles per log and per tenant, read from a
//! policy file that is reloaded while the server runs.
//!
//! A request's principal is, in this order: the bearer token it presents
//! (a static API token, `quire_…`, kept in the policy only as its SHA-256;
//! or an OIDC/JWT token of a configured issuer, RFC 7519, checked against
//! the issuer's JWKS, RFC 7517, its audiences, expiry and revoked ids); else
//! the client certificate its TLS connection verified, named by its DNS
//! and URI subject alternative names (SPIFFE IDs are URIs); else anonymous.
//! Invalid credentials are `UNAUTHENTICATED`, whatever else the request
//! carries; so is an anonymous request for what the public may not do. A
//! principal without the role an action needs is `PERMISSION_DENIED`,
//! naming the role.
//!
//! Roles: writer (append), reader (entry contents, and what an auditor
//! reads), auditor (checkpoints and proofs; public by default), admin
//! (the admin service: creating and freezing logs, the policy itself).
//! [`AccessControl::watch`] re-reads the policy and its key sets every
//! 250 ms and swaps in a changed policy only
//! once it is valid whole; an invalid file keeps the last valid policy and
//! says why in the log and in `quire_access_reloads_total{result="error"}`.
//!
//! Quotas (`quota.rs`) are taken by [`Access::check`] once the role
//! allows the request.
//!
//! The admin service ([`crate::admin`]) replaces the policy file through
//! [`AccessControl::path`] and records its actions with
//! [`AccessControl::note_admin`].
//!
//! An issuer's key set is read from its `jwks_file` and, with a
//! `jwks_url`, kept fetched into that file ([`jwks_fetch`]).
//!
//! Out of scope here: fetching a key set early when a token names a key
//! the set does not hold (the next scheduled fetch brings it).

pub mod audit;
mod credentials;
pub mod jwks_fetch;
mod policy;
mod principal;
mod quota;
mod roles;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use credentials::{new_token, token_hash_hex, MAX_TOKEN_BYTES, TOKEN_PREFIX};
pub use policy::{EventWrite, Policy, MAX_POLICY_BYTES};
pub use principal::Principal;
pub use roles::{Role, Roles};

use crate::api::{Access, Action, ApiError, Caller, Credential, Identity};

/// How often [`AccessControl::watch`] looks for a changed policy.
pub const RELOAD_EVERY: Duration = Duration::from_millis(250);

/// Most checked JWTs and client certificates remembered (so a token's
/// signature is verified once, a certificate's names parsed once, not per
/// request); each memory is cleared when full, and the JWTs' on every
/// reload.
const MEMORY: usize = 4096;

/// What was worked out once about a credential, by its SHA-256: at most
/// [`MEMORY`] of them, forgotten all at once when full.
struct Memory<V>(Mutex<HashMap<[u8; 32], V>>);

impl<V: Clone> Memory<V> {
    fn new() -> Self {
        Memory(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.0.lock().ok().and_then(|m| m.get(key).cloned())
    }

    fn put(&self, key: [u8; 32], value: V) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MEMORY {
                m.clear();
            }
            m.insert(key, value);
        }
    }

    fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

/// The policy in force, with its checked-JWT memory. Cheap to clone.
#[derive(Clone)]
pub struct AccessControl {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    policy: RwLock<Arc<Policy>>,
    /// A checked JWT → its principal and expiry (seconds).
    jwts: Memory<(Principal, u64)>,
    /// A client certificate (DER) → its principal: its names are parsed
    /// once, not per request.
    certificates: Memory<Principal>,
    /// Where refusals and policy changes are recorded, once set.
    audit: std::sync::OnceLock<audit::AuditSink>,
    /// The files of the last policy that failed to load, not retried until
    /// one of them changes.
    refused: Mutex<Option<policy::Sources>>,
}

impl AccessControl {
    /// Loads the policy at `path`.
    ///
    /// # Errors
    /// A policy that cannot be read or is not valid, in words.
    pub fn load(path: &Path) -> Result<Self, String> {
        let policy = Policy::load(path)?;
        Ok(AccessControl {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                policy: RwLock::new(Arc::new(policy)),
                jwts: Memory::new(),
                certificates: Memory::new(),
                audit: std::sync::OnceLock::new(),
                refused: Mutex::new(None),
            }),
        })
    }

    /// Records every refusal and policy change in `sink` from now on (the
    /// first sink set stays), starting with the policy in force.
    pub fn set_audit(&self, sink: audit::AuditSink) {
        if self.inner.audit.set(sink).is_ok() {
            let policy = self.policy();
            self.note(audit::Event::new(
                "policy",
                "ok",
                format!("in force: {}", describe(&policy)),
            ));
        }
    }

    fn note(&self, event: audit::Event) {
        if let Some(sink) = self.inner.audit.get() {
            sink.record(event);
        }
    }

    /// A refusal of `caller`, recorded.
    fn refuse(
        &self,
        caller: &Caller,
        principal: Option<&Principal>,
        origin: Option<&str>,
        e: ApiError,
    ) -> ApiError {
        let code = e.kind().name();
        metrics::counter!("quire_access_refusals_total", "code" => code).increment(1);
        if self.inner.audit.get().is_some() {
            let mut event = audit::Event::new("refused", code, e.to_string());
            event.principal = principal.map(ToString::to_string);
            event.peer = caller.peer.map(|p| p.to_string());
            event.log = origin.map(str::to_owned);
            self.note(event);
        }
        e
    }

    /// Records an admin action `caller` did to `log` (the whole policy
    /// when `None`): `what`, in words. Without a caller, the server did it
    /// (a rollover), and the principal recorded is `server`.
    pub fn note_admin(&self, caller: Option<&Caller>, log: Option<&str>, what: String) {
        if self.inner.audit.get().is_none() {
            return;
        }
        let mut event = audit::Event::new("admin", "ok", what);
        event.principal = match caller {
            Some(c) => self
                .principal(&self.policy(), c)
                .ok()
                .map(|p| p.to_string()),
            None => Some("server".into()),
        };
        event.peer = caller.and_then(|c| c.peer).map(|p| p.to_string());
        event.log = log.map(str::to_owned);
        self.note(event);
    }

    /// The policy file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn policy(&self) -> Arc<Policy> {
        match self.inner.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the policy's files again and swaps in the policy when one
    /// changed and the whole is valid. Returns whether it swapped.
    ///
    /// # Errors
    /// The new policy's problem; the old policy stays in force.
    pub fn reload(&self) -> Result<bool, String> {
        let current = self.policy();
        // A file that cannot be read counts as empty, as `Policy` records it.
        let same = |sources: &[(PathBuf, Vec<u8>)]| {
            sources.iter().all(|(p, bytes)| {
                quire_host::read_bounded(p, MAX_POLICY_BYTES).unwrap_or_default() == *bytes
            })
        };
        if same(&current.sources) {
            return Ok(false);
        }
        if let Ok(refused) = self.inner.refused.lock() {
            if refused.as_deref().is_some_and(same) {
                return Err("unchanged since it was refused".into());
            }
        }
        let mut read = Vec::new();
        match Policy::load_recording(&self.inner.path, &mut read) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                *self
                    .inner
                    .policy
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&policy);
                self.inner.jwts.clear();
                if let Ok(mut refused) = self.inner.refused.lock() {
                    *refused = None;
                }
                metrics::counter!("quire_access_reloads_total", "result" => "ok").increment(1);
                tracing::info!(path = %self.inner.path.display(), "access policy reloaded");
                self.note(audit::Event::new(
                    "policy",
                    "ok",
                    format!("reloaded: {}", describe(&policy)),
                ));
                Ok(true)
            }
            Err(e) => {
                // The files this version was read from: it is not parsed
                // again until one of them changes.
                if let Ok(mut refused) = self.inner.refused.lock() {
                    *refused = Some(read);
                }
                metrics::counter!("quire_access_reloads_total", "result" => "error").increment(1);
                tracing::error!(error = %e, "access policy not reloaded; the previous one stays in force");
                self.note(audit::Event::new(
                    "policy",
                    "error",
                    format!("not reloaded, the previous one stays in force: {e}"),
                ));
                Err(e)
            }
        }
    }

    /// Reloads the policy every [`RELOAD_EVERY`] until `stop` turns true,
    /// and keeps the key sets of issuers with a `jwks_url` fetched
    /// ([`jwks_fetch`]): a fetched key set is written to its file, which
    /// the next reload takes.
    pub async fn watch(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let schedule = Arc::new(Mutex::new(jwks_fetch::Schedule::default()));
        loop {
            let due = schedule
                .lock()
                .map(|mut s| s.take_due(&self.policy().fetched, std::time::Instant::now()))
                .unwrap_or_default();
            for source in due {
                tokio::spawn(jwks_fetch::refresh_scheduled(source, Arc::clone(&schedule)));
            }
            tokio::select! {
                () = tokio::time::sleep(RELOAD_EVERY) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for q in &me.policy().quotas {
                    q.trim();
                }
                me.reload()
            })
            .await;
        }
    }

    /// The principal of `caller` under `policy`.
    fn principal(&self, policy: &Policy, caller: &Caller) -> Result<Principal, ApiError> {
        match &caller.credential {
            Credential::Malformed(why) => Err(ApiError::Unauthenticated((*why).to_owned())),
            Credential::Bearer(token) => self.bearer(policy, token),
            Credential::None => match &caller.identity {
                Identity::Anonymous => Ok(Principal::Anonymous),
                Identity::Certificate(chain) => {
                    let leaf = chain.first().ok_or_else(|| {
                        ApiError::Unauthenticated("an empty certificate chain".into())
                    })?;
                    self.certificate(leaf)
                }
            },
        }
    }

    fn certificate(&self, der: &[u8]) -> Result<Principal, ApiError> {
        let key: [u8; 32] = Sha256::digest(der).into();
        if let Some(p) = self.inner.certificates.get(&key) {
            return Ok(p);
        }
        let principal = Principal::of_certificate(der).map_err(ApiError::Unauthenticated)?;
        self.inner.certificates.put(key, principal.clone());
        Ok(principal)
    }

    fn bearer(&self, policy: &Policy, token: &str) -> Result<Principal, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthenticated(format!(
                "the bearer token is {} bytes, over the {MAX_TOKEN_BYTES}-byte limit",
                token.len()
            )));
        }
        if token.starts_with(TOKEN_PREFIX) {
            return policy
                .tokens
                .check(token)
                .map_err(ApiError::Unauthenticated);
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((p, exp)) = self.inner.jwts.get(&key) {
            if crate::batch::now_ms() / 1000 < exp {
                return Ok(p);
            }
        }
        let (principal, exp) =
            credentials::check_jwt(&policy.issuers, token).map_err(ApiError::Unauthenticated)?;
        self.inner.jwts.put(key, (principal.clone(), exp));
        Ok(principal)
    }
}

/// The files of a policy and their SHA-256, in words.
fn describe(policy: &Policy) -> String {
    policy
        .sources
        .iter()
        .map(|(p, bytes)| {
            format!(
                "{} (sha256 {})",
                p.display(),
                quire_core::Hash(Sha256::digest(bytes).into())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl AccessControl {
    /// The role decision on `caller` doing `action` to `origin` under
    /// `policy`: the caller's principal, or the refusal with the principal
    /// when the credentials were valid (boxed: refusals are the rare path).
    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        policy: &Policy,
        caller: &Caller,
        origin: &str,
        action: Action,
    ) -> Result<Principal, Box<(ApiError, Option<Principal>)>> {
        let principal = self
            .principal(policy, caller)
            .map_err(|e| Box::new((e, None)))?;
        let roles = policy.roles(&principal, origin);
        let need = Role::for_action(action);
        if roles.allows(need) {
            return Ok(principal);
        }
        let e = if principal == Principal::Anonymous {
            ApiError::Unauthenticated(format!(
                "no credentials were presented, and anonymous callers may not {} log {origin:?} (the {} role is needed)",
                action.words(),
                need.name()
            ))
        } else {
            ApiError::Denied {
                caller: principal.to_string(),
                action: action.words(),
                origin: origin.to_owned(),
                why: format!(
                    "the {} role is missing (roles held on this log: {})",
                    need.name(),
                    roles.names()
                ),
            }
        };
        Err(Box::new((e, Some(principal))))
    }
}

impl Access for AccessControl {
    fn check(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
        entries: u64,
    ) -> Result<(), ApiError> {
        let policy = self.policy();
        let principal = self.decide(&policy, caller, origin, action).map_err(|b| {
            let (e, p) = *b;
            self.refuse(caller, p.as_ref(), Some(origin), e)
        })?;
        self.take_quotas(&policy, caller, &principal, origin, entries)
    }

    fn check_events(
        &self,
        caller: &Caller,
        origin: &str,
        kinds: &[&str],
        entries: u64,
    ) -> Result<crate::events::Submitter, ApiError> {
        let policy = self.policy();
        let principal = match self.decide(&policy, caller, origin, Action::Write) {
            Ok(p) => p,
            Err(b) => {
                let (e, p) = *b;
                // A writer limited to event types holds no unlimited
                // writer role: its grants decide.
                let limited = p
                    .as_ref()
                    .map(|p| (p, policy.writes_events(p, origin, kinds)));
                match limited {
                    Some((p, EventWrite::Allowed)) => p.clone(),
                    Some((p, EventWrite::TypeMissing { kind, allowed })) => {
                        let e = ApiError::Denied {
                            caller: p.to_string(),
                            action: Action::Write.words(),
                            origin: origin.to_owned(),
                            why: format!(
                                "the writer role for event type {kind:?} is missing (this principal may write only events of the types {allowed})"
                            ),
                        };
                        return Err(self.refuse(caller, Some(p), Some(origin), e));
                    }
                    _ => return Err(self.refuse(caller, p.as_ref(), Some(origin), e)),
                }
            }
        };
        self.take_quotas(&policy, caller, &principal, origin, entries)?;
        Ok(crate::events::Submitter {
            name: principal.name(),
            tenant: policy.tenant_of(origin),
        })
    }

    fn identify(&self, caller: &Caller, origin: &str) -> crate::events::Submitter {
        let policy = self.policy();
        let name = self
            .principal(&policy, caller)
            .map_or_else(|_| "unauthenticated".to_owned(), |p| p.name());
        crate::events::Submitter {
            name,
            tenant: policy.tenant_of(origin),
        }
    }

    fn may(&self, caller: &Caller, origin: &str, action: Action) -> bool {
        self.decide(&self.policy(), caller, origin, action).is_ok()
    }

    fn note_admin(&self, caller: Option<&Caller>, log: Option<&str>, what: String) {
        AccessControl::note_admin(self, caller, log, what);
    }

    fn authenticate(&self, caller: &Caller) -> Result<(), ApiError> {
        let policy = self.policy();
        self.principal(&policy, caller)
            .map(|_| ())
            .map_err(|e| self.refuse(caller, None, None, e))
    }
}

impl AccessControl {
    /// Takes a request of `entries` entries (0: a read) from every quota
    /// that covers it.
    fn take_quotas(
        &self,
        policy: &Policy,
        caller: &Caller,
        principal: &Principal,
        origin: &str,
        entries: u64,
    ) -> Result<(), ApiError> {
        if policy.quotas.is_empty() {
            return Ok(());
        }
        let key = match (principal, caller.peer) {
            (Principal::Anonymous, Some(peer)) => format!("anonymous@{}", peer.ip()),
            (p, _) => p.to_string(),
        };
        for q in &policy.quotas {
            if let Err((message, retry_after)) = q.admit(principal, &key, origin, entries) {
                metrics::counter!("quire_quota_refusals_total").increment(1);
                let e = ApiError::Quota {
                    message,
                    retry_after,
                };
                return Err(self.refuse(caller, Some(principal), Some(origin), e));
            }
        }
        Ok(())
    }
}
