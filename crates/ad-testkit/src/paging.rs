//! RFC 2696 paging cookies.
//!
//! A cookie is the position of the next matching entry (an order key), the connection it was
//! issued on, and a fingerprint of the request. Nothing is kept server-side, so a paged read of
//! a million generated users costs one page of memory. Like AD, a cookie is only valid on the
//! connection that received it and for the same search; anything else is refused.

use std::hash::{DefaultHasher, Hash, Hasher};

use ldap3_proto::proto::LdapSearchRequest;

const MAGIC: &[u8; 4] = b"ADTK";
const VERSION: u8 = 1;
const LEN: usize = 4 + 1 + 8 + 8 + 8;

/// A decoded paging cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cookie {
    pub(crate) connection: u64,
    pub(crate) position: u64,
    pub(crate) fingerprint: u64,
}

impl Cookie {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.connection.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&self.fingerprint.to_be_bytes());
        out
    }

    /// `None` for anything that is not a cookie of ours.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LEN || bytes.get(..4)? != MAGIC || *bytes.get(4)? != VERSION {
            return None;
        }
        let word = |at: usize| -> Option<u64> {
            let chunk: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_be_bytes(chunk))
        };
        Some(Self {
            connection: word(5)?,
            position: word(13)?,
            fingerprint: word(21)?,
        })
    }
}

/// A fingerprint of what defines a search's result set and shape.
pub(crate) fn fingerprint(req: &LdapSearchRequest, show_deleted: bool) -> u64 {
    let mut h = DefaultHasher::new();
    crate::dn::normalize(&req.base).hash(&mut h);
    (req.scope.clone() as i64).hash(&mut h);
    req.filter.hash(&mut h);
    for a in &req.attrs {
        a.to_ascii_lowercase().hash(&mut h);
    }
    show_deleted.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let c = Cookie {
            connection: 3,
            position: 1 << 40,
            fingerprint: 99,
        };
        assert_eq!(Cookie::decode(&c.encode()), Some(c));
        assert_eq!(Cookie::decode(b""), None);
        assert_eq!(Cookie::decode(&c.encode()[1..]), None);
        let mut bad = c.encode();
        bad[0] = b'X';
        assert_eq!(Cookie::decode(&bad), None);
    }
}
