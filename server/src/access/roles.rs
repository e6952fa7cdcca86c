//! The roles of the access policy (writer, reader, auditor, admin), the
//! role each action needs, and sets of them as a grant holds them.

use crate::api::Action;

/// What a principal may do to a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Append entries.
    Writer,
    /// Read entry contents (and what an auditor reads).
    Reader,
    /// Read checkpoints and proofs (public by default, as transparency
    /// expects).
    Auditor,
    /// Manage the log: lifecycle, access, retention.
    Admin,
}

impl Role {
    /// Its name in the policy and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Writer => 1,
            Role::Reader => 2,
            Role::Auditor => 4,
            Role::Admin => 8,
        }
    }

    const ALL: [Role; 4] = [Role::Writer, Role::Reader, Role::Auditor, Role::Admin];

    pub(super) fn parse(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role {s:?}: write writer, reader, auditor or admin"))
    }

    /// The role an action needs.
    pub fn for_action(action: Action) -> Self {
        match action {
            Action::Write => Role::Writer,
            Action::ReadEntries => Role::Reader,
            Action::Audit => Role::Auditor,
            Action::Administer => Role::Admin,
        }
    }
}

/// A set of roles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub(super) fn of(roles: &[String]) -> Result<Self, String> {
        roles
            .iter()
            .try_fold(Roles(0), |set, r| Ok(Roles(set.0 | Role::parse(r)?.bit())))
    }

    /// Whether the set allows what `role` allows (a reader may audit).
    pub fn allows(self, role: Role) -> bool {
        self.0 & role.bit() != 0 || (role == Role::Auditor && self.0 & Role::Reader.bit() != 0)
    }

    /// The set without `role`.
    pub(super) fn without(self, role: Role) -> Self {
        Roles(self.0 & !role.bit())
    }

    /// The names of its roles, comma separated, or "none".
    pub fn names(self) -> String {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.0 & r.bit() != 0)
            .map(Role::name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

impl std::ops::BitOr for Roles {
    type Output = Roles;
    fn bitor(self, rhs: Roles) -> Roles {
        Roles(self.0 | rhs.0)
    }
}
