//! Certificate chain order: leaf first, then each issuer, the root last.
//!
//! Key Vault keeps a certificate's chain in whatever order it was imported, and applications
//! such as nginx need the leaf first. With `--construct-pem-chain` (the default) the
//! certificates are linked child → parent: by Authority Key Identifier = Subject Key
//! Identifier when both are present (as the Go provider links them), otherwise by issuer name
//! = subject name. The leaf is the one certificate that issued none of the others. A
//! self-signed certificate has no parent: it ends the chain.
//!
//! When the certificates do not form exactly one chain (a gap, a fork, several leaves, a cycle,
//! or one that cannot be parsed) the stored order is kept and the reason is returned, for the
//! caller to log. Certificates are never dropped or duplicated.

use std::fmt;

use der::{Decode as _, Encode as _};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};

/// The order to write certificates in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    /// Indices into the input, each exactly once.
    pub order: Vec<usize>,
    /// Why the stored order was kept, if it was.
    pub problem: Option<ChainProblem>,
}

/// Why a set of certificates is not one chain. Certificates are named by their position in
/// the stored order, from 1, and their subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// A certificate is not valid DER X.509.
    Unreadable {
        /// Which one.
        certificate: String,
    },
    /// Two certificates could each have issued the same one.
    SeveralIssuers {
        /// The certificate issued.
        child: String,
        /// Two of its possible issuers.
        issuers: [String; 2],
    },
    /// More than one certificate issued none of the others.
    SeveralLeaves {
        /// Those certificates.
        leaves: Vec<String>,
    },
    /// Every certificate issued another: they issue each other in a cycle.
    Cycle,
    /// A certificate is not on the path from the leaf up.
    OffChain {
        /// The certificate.
        certificate: String,
        /// The leaf.
        leaf: String,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { certificate } => {
                write!(f, "certificate {certificate} is not valid X.509")
            }
            Self::SeveralIssuers { child, issuers } => write!(
                f,
                "certificate {child} could have been issued by {} or by {}",
                issuers[0], issuers[1]
            ),
            Self::SeveralLeaves { leaves } => write!(
                f,
                "{} certificates issued none of the others: {}",
                leaves.len(),
                leaves.join(", ")
            ),
            Self::Cycle => f.write_str("the certificates issue each other in a cycle"),
            Self::OffChain { certificate, leaf } => write!(
                f,
                "certificate {certificate} is not on the chain that starts at the leaf {leaf}"
            ),
        }
    }
}

/// What linking needs from a certificate.
struct Node {
    subject: Vec<u8>,
    issuer: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    /// Position and subject, for messages.
    label: String,
}

impl Node {
    fn parse(index: usize, der: &[u8]) -> Option<Self> {
        let cert = Certificate::from_der(der).ok()?;
        let tbs = cert.tbs_certificate;

        let mut subject_key_id = None;
        let mut authority_key_id = None;
        for extension in tbs.extensions.iter().flatten() {
            let value = extension.extn_value.as_bytes();
            match extension.extn_id {
                SKI => {
                    let ski = SubjectKeyIdentifier::from_der(value).ok()?;
                    subject_key_id = Some(ski.0.as_bytes().to_vec());
                }
                AKI => {
                    let aki = AuthorityKeyIdentifier::from_der(value).ok()?;
                    authority_key_id = aki.key_identifier.map(|id| id.as_bytes().to_vec());
                }
                _ => {}
            }
        }

        Some(Self {
            subject: tbs.subject.to_der().ok()?,
            issuer: tbs.issuer.to_der().ok()?,
            subject_key_id,
            authority_key_id,
            label: format!("{} ({})", index + 1, tbs.subject),
        })
    }

    /// Whether this certificate names itself as its issuer. Names must match; key
    /// identifiers must too when both are present (a CA re-keyed under the same name is not
    /// self-signed).
    fn is_self_signed(&self) -> bool {
        self.subject == self.issuer
            && match (&self.authority_key_id, &self.subject_key_id) {
                (Some(aki), Some(ski)) => aki == ski,
                _ => true,
            }
    }

    /// Whether `parent` issued this certificate.
    fn issued_by(&self, parent: &Node) -> bool {
        match (&self.authority_key_id, &parent.subject_key_id) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => self.issuer == parent.subject,
        }
    }
}

const SKI: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.14");
const AKI: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.35");

/// The order to write `certificates` (DER) in: the chain from the leaf up, or the stored order
/// and the reason it was kept.
pub fn order<T: AsRef<[u8]>>(certificates: &[T]) -> Ordered {
    let stored = |problem| Ordered {
        order: (0..certificates.len()).collect(),
        problem: Some(problem),
    };
    match chain(certificates) {
        Ok(order) => Ordered {
            order,
            problem: None,
        },
        Err(problem) => stored(problem),
    }
}

fn chain<T: AsRef<[u8]>>(certificates: &[T]) -> Result<Vec<usize>, ChainProblem> {
    let nodes = certificates
        .iter()
        .enumerate()
        .map(|(i, der)| {
            Node::parse(i, der.as_ref()).ok_or_else(|| ChainProblem::Unreadable {
                certificate: (i + 1).to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }

    let parents = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| parent(&nodes, i, node))
        .collect::<Result<Vec<_>, _>>()?;

    let mut has_child = vec![false; nodes.len()];
    for parent in parents.iter().flatten() {
        has_child[*parent] = true;
    }
    let leaves: Vec<usize> = (0..nodes.len()).filter(|i| !has_child[*i]).collect();
    let leaf = match leaves[..] {
        [leaf] => leaf,
        [] => return Err(ChainProblem::Cycle),
        _ => {
            return Err(ChainProblem::SeveralLeaves {
                leaves: leaves.iter().map(|i| nodes[*i].label.clone()).collect(),
            });
        }
    };

    // Walk up from the leaf; with one leaf and at most one parent each, the walk either
    // covers every certificate or leaves some out or loops.
    let mut order = vec![leaf];
    let mut seen = vec![false; nodes.len()];
    seen[leaf] = true;
    let mut current = leaf;
    while let Some(next) = parents[current] {
        if seen[next] {
            return Err(ChainProblem::Cycle);
        }
        seen[next] = true;
        order.push(next);
        current = next;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(ChainProblem::OffChain {
            certificate: nodes[missing].label.clone(),
            leaf: nodes[leaf].label.clone(),
        });
    }
    Ok(order)
}

/// The one certificate that issued `nodes[index]`, if any is present.
fn parent(nodes: &[Node], index: usize, node: &Node) -> Result<Option<usize>, ChainProblem> {
    if node.is_self_signed() {
        return Ok(None);
    }
    let mut candidates = (0..nodes.len()).filter(|j| *j != index && node.issued_by(&nodes[*j]));
    let first = candidates.next();
    if let (Some(first), Some(second)) = (first, candidates.next()) {
        return Err(ChainProblem::SeveralIssuers {
            child: node.label.clone(),
            issuers: [nodes[first].label.clone(), nodes[second].label.clone()],
        });
    }
    Ok(first)
}

#[cfg(test)]
mod tests;
