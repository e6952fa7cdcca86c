//! Who asks and what for: the [`Caller`] a face builds from what its
//! transport proved, the [`Action`] a request needs, and the [`Access`]
//! the log API asks before every request touches a log ([`OpenAccess`]
//! without a policy; the policy itself is `crate::access`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::ApiError;

/// Who is asking, as the transport proved it.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The peer's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
    /// What the transport proved of the caller's identity.
    pub identity: Identity,
    /// The credential presented with the request (a bearer token), not yet
    /// checked: the [`Access`] policy checks it.
    pub credential: Credential,
}

/// A credential presented with a request, as the face read it.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// None presented.
    #[default]
    None,
    /// A bearer token (`authorization: Bearer …`), unchecked.
    Bearer(Arc<str>),
    /// Something was presented that is not a bearer token: why.
    Malformed(&'static str),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            // Never printed: a token is a secret.
            Credential::Bearer(t) => write!(f, "Bearer(<{} bytes>)", t.len()),
            Credential::Malformed(why) => write!(f, "Malformed({why:?})"),
        }
    }
}

/// What a transport proved of who the caller is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Identity {
    /// Nothing: no client certificate, no token.
    #[default]
    Anonymous,
    /// A TLS client certificate chain the server's client CA verified
    /// (DER, leaf first), shared with the connection it came from.
    Certificate(Arc<Vec<tonic::transport::CertificateDer<'static>>>),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.identity {
            Identity::Anonymous => f.write_str("an anonymous caller")?,
            Identity::Certificate(_) => f.write_str("a caller with a client certificate")?,
        }
        if matches!(self.credential, Credential::Bearer(_)) {
            f.write_str(" and a bearer token")?;
        }
        if let Some(p) = self.peer {
            write!(f, " ({p})")?;
        }
        Ok(())
    }
}

/// What a request does to a log, as the access policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Append entries.
    Write,
    /// Read entry contents.
    ReadEntries,
    /// Read checkpoints and proofs (what auditors and witnesses need).
    Audit,
    /// Manage the log: create, freeze, change who may do what.
    Administer,
}

impl Action {
    /// The action in words, for refusals.
    pub fn words(self) -> &'static str {
        match self {
            Action::Write => "write to",
            Action::ReadEntries => "read the entries of",
            Action::Audit => "read checkpoints and proofs of",
            Action::Administer => "administer",
        }
    }
}

/// Who may do what: asked before every request touches a log.
pub trait Access: Send + Sync + 'static {
    /// Whether `caller` may do `action` to the log `origin` with a request
    /// that writes `entries` entries (0 for a read): its role, then its
    /// quotas, which the request takes from when it is admitted.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] when the caller's credentials are
    /// invalid (or missing where the policy needs them),
    /// [`ApiError::Denied`] naming what is missing, [`ApiError::Quota`]
    /// with the time after which it would conform.
    fn check(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
        entries: u64,
    ) -> Result<(), ApiError>;

    /// Whether `caller` may do `action` to `origin`, asked to decide what
    /// to show (which logs to list), not to refuse a request. The default
    /// asks [`Access::check`]; a policy whose checks have effects (quotas
    /// taken, refusals recorded) answers without them.
    fn may(&self, caller: &Caller, origin: &str, action: Action) -> bool {
        self.check(caller, origin, action, 0).is_ok()
    }

    /// Whether `caller` may write `entries` events of the types `kinds` to
    /// the log `origin` (its role, including a writer role limited to
    /// event types, then its quotas), and who the envelopes record as
    /// their submitter. The default checks [`Access::check`] and records
    /// what the transport proved, with no tenant.
    ///
    /// # Errors
    /// As [`Access::check`]; [`ApiError::Denied`] naming a type the
    /// writer may not write.
    fn check_events(
        &self,
        caller: &Caller,
        origin: &str,
        kinds: &[&str],
        entries: u64,
    ) -> Result<crate::events::Submitter, ApiError> {
        let _ = kinds;
        self.check(caller, origin, Action::Write, entries)?;
        Ok(self.identify(caller, origin))
    }

    /// Who `caller` is on the log `origin`, as an event records it (asked
    /// after [`Access::check`] allowed the request). The default records
    /// what the transport proved, with no tenant.
    fn identify(&self, caller: &Caller, origin: &str) -> crate::events::Submitter {
        let _ = origin;
        crate::events::Submitter {
            name: crate::access::Principal::of_transport(&caller.identity).name(),
            tenant: None,
        }
    }

    /// Records an admin action done through the log API (an erasure) in
    /// the server's audit trail, where there is one (`caller` `None`: the
    /// server's own). The default records nothing.
    fn note_admin(&self, caller: Option<&Caller>, log: Option<&str>, what: String) {
        let _ = (caller, log, what);
    }

    /// Whether `caller`'s credentials are valid, whatever it may do: asked
    /// before a request that names no log it may see is answered.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`].
    fn authenticate(&self, _caller: &Caller) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Without an access policy: everyone may write and read everything (the
/// server's behaviour before roles), and callers on this machine (a
/// loopback address) may administer: an open server is never open to
/// being frozen or reconfigured from the network.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAccess;

impl Access for OpenAccess {
    fn check(&self, caller: &Caller, origin: &str, action: Action, _: u64) -> Result<(), ApiError> {
        if action != Action::Administer || caller.peer.is_some_and(|p| p.ip().is_loopback()) {
            return Ok(());
        }
        Err(ApiError::Denied {
            caller: caller.to_string(),
            action: action.words(),
            origin: origin.to_owned(),
            why: "without an access policy only callers on this machine (a loopback address) may administer logs; configure `access` and grant the admin role".into(),
        })
    }
}
