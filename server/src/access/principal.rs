//! Who a caller is once its credentials were checked, and the names a
//! policy's grants match it by.

use std::fmt;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A checked identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A client certificate the server's client CA verified, by the DNS
    /// and URI names of its subject alternative names (`dns:…`, `uri:…`;
    /// a SPIFFE ID is a URI name).
    Certificate {
        /// Its names, `dns:` or `uri:` prefixed.
        names: Vec<String>,
    },
    /// A static API token, by its name in the policy.
    Token {
        /// The token's name.
        name: String,
    },
    /// An OIDC/JWT bearer token of a configured issuer.
    Jwt {
        /// The issuer's name in the policy (not its URL).
        issuer: String,
        /// The token's `sub` claim.
        subject: String,
    },
}

impl Principal {
    /// The principal of a client certificate (DER, the leaf of its chain).
    ///
    /// # Errors
    /// A certificate that does not parse (the TLS stack verified it, so
    /// this is a certificate the parser cannot read).
    pub fn of_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the client certificate cannot be read: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.push(format!("dns:{d}")),
                    GeneralName::URI(u) => names.push(format!("uri:{u}")),
                    _ => {}
                }
            }
        }
        Ok(Principal::Certificate { names })
    }

    /// Its name as a grant's `who` writes it, and as an event's envelope
    /// records its submitter: `anonymous`, `token:NAME`, `dns:NAME` or
    /// `uri:URI` (a certificate's names, comma separated), or
    /// `jwt:ISSUER:SUBJECT`.
    pub fn name(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Certificate { names } if names.is_empty() => "certificate".into(),
            Principal::Certificate { names } => names.join(","),
            Principal::Token { name } => format!("token:{name}"),
            Principal::Jwt { issuer, subject } => format!("jwt:{issuer}:{subject}"),
        }
    }

    /// What the transport alone proved (without an access policy, bearer
    /// tokens are not checked and so not taken).
    pub fn of_transport(identity: &crate::api::Identity) -> Self {
        match identity {
            crate::api::Identity::Anonymous => Principal::Anonymous,
            crate::api::Identity::Certificate(chain) => chain
                .first()
                .and_then(|leaf| Principal::of_certificate(leaf).ok())
                .unwrap_or(Principal::Certificate { names: Vec::new() }),
        }
    }

    /// Whether `who` names this principal.
    pub(crate) fn is(&self, who: &Who) -> bool {
        match (who, self) {
            (Who::Anonymous, Principal::Anonymous) => true,
            (Who::Authenticated, p) => *p != Principal::Anonymous,
            (Who::Token(n), Principal::Token { name }) => n == name,
            (Who::CertName(n), Principal::Certificate { names }) => names.contains(n),
            (
                Who::Jwt { issuer, subject },
                Principal::Jwt {
                    issuer: i,
                    subject: s,
                },
            ) => issuer == i && subject.as_ref().is_none_or(|want| want == s),
            _ => false,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("an anonymous caller"),
            Principal::Certificate { names } if names.is_empty() => {
                f.write_str("a client certificate with no DNS or URI name")
            }
            Principal::Certificate { names } => {
                write!(f, "client certificate {}", names.join(", "))
            }
            Principal::Token { name } => write!(f, "token {name:?}"),
            Principal::Jwt { issuer, subject } => {
                write!(f, "subject {subject:?} of issuer {issuer:?}")
            }
        }
    }
}

/// Whom a grant names, as written in the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// `anonymous`: callers with no credentials.
    Anonymous,
    /// `authenticated`: any caller with valid credentials.
    Authenticated,
    /// `token:NAME`.
    Token(String),
    /// `dns:NAME` or `uri:URI`: a client certificate with that name.
    CertName(String),
    /// `jwt:ISSUER:SUBJECT`, or `jwt:ISSUER:*` for every subject.
    Jwt {
        issuer: String,
        subject: Option<String>,
    },
}

impl Who {
    /// Parses a grant's `who`.
    ///
    /// # Errors
    /// A string of none of the forms, in words.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a principal: write anonymous, authenticated, token:NAME, dns:NAME, uri:URI, jwt:ISSUER:SUBJECT or jwt:ISSUER:*"
            )
        };
        match s {
            "anonymous" => return Ok(Who::Anonymous),
            "authenticated" => return Ok(Who::Authenticated),
            _ => {}
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "token" => Ok(Who::Token(rest.to_owned())),
            "dns" | "uri" => Ok(Who::CertName(s.to_owned())),
            "jwt" => {
                let (issuer, subject) = rest.split_once(':').ok_or_else(bad)?;
                if issuer.is_empty() || subject.is_empty() {
                    return Err(bad());
                }
                Ok(Who::Jwt {
                    issuer: issuer.to_owned(),
                    subject: (subject != "*").then(|| subject.to_owned()),
                })
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grants_name_principals() {
        let cert = Principal::Certificate {
            names: vec!["dns:w.example".into(), "uri:spiffe://t/ci".into()],
        };
        assert!(cert.is(&Who::parse("uri:spiffe://t/ci").unwrap()));
        assert!(cert.is(&Who::parse("dns:w.example").unwrap()));
        assert!(!cert.is(&Who::parse("dns:x.example").unwrap()));
        assert!(cert.is(&Who::Authenticated));
        assert!(!Principal::Anonymous.is(&Who::Authenticated));
        assert!(Principal::Anonymous.is(&Who::Anonymous));
        let jwt = Principal::Jwt {
            issuer: "corp".into(),
            subject: "alice".into(),
        };
        assert!(jwt.is(&Who::parse("jwt:corp:*").unwrap()));
        assert!(jwt.is(&Who::parse("jwt:corp:alice").unwrap()));
        assert!(!jwt.is(&Who::parse("jwt:corp:bob").unwrap()));
        assert!(!jwt.is(&Who::parse("jwt:other:*").unwrap()));
        let tok = Principal::Token { name: "ci".into() };
        assert!(tok.is(&Who::parse("token:ci").unwrap()));
        assert!(!tok.is(&Who::parse("token:cd").unwrap()));
        for bad in ["", "token:", "jwt:corp", "jwt::x", "email:a@b", "root"] {
            assert!(Who::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn certificate_names_come_from_its_sans() {
        let mut params = rcgen::CertificateParams::new(vec!["w.example".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://t/ns/ci").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let p = Principal::of_certificate(cert.der()).unwrap();
        assert_eq!(
            p,
            Principal::Certificate {
                names: vec!["dns:w.example".into(), "uri:spiffe://t/ns/ci".into()]
            }
        );
        assert!(Principal::of_certificate(b"not a certificate").is_err());
    }
}
