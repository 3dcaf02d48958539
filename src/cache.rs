//! A bounded cache of validated tokens, so a client reusing its token (as MCP clients
//! do, for up to an hour) costs no signature check after the first request.
//!
//! * Keyed by SHA-256 of the token: the token itself is never stored.
//! * An entry is used only while its token is within `exp`/`nbf` (with the leeway);
//!   claims that do not depend on time (issuer, audience, signature) were checked when
//!   it was stored, and scopes are checked on every request.
//! * Entries are dropped when their signing key leaves the JWKS ([`TokenCache::retain_keys`]).
//! * At [`TokenCache::capacity`] entries, expired ones are swept and then the oldest go.

use crate::jwks::KeySet;
use crate::token::Principal;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

pub type TokenHash = [u8; 32];

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
pub struct TokenCache {
    entries: HashMap<TokenHash, Principal>,
    order: VecDeque<TokenHash>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal for a token seen before, if it is still within its lifetime.
    pub fn get(&mut self, key: &TokenHash, now: i64, leeway: i64) -> Option<&Principal> {
        let live = match self.entries.get(key) {
            None => return None,
            Some(p) => {
                now <= p.exp.saturating_add(leeway)
                    && p.nbf.is_none_or(|n| now.saturating_add(leeway) >= n)
            }
        };
        if !live {
            self.entries.remove(key);
            return None;
        }
        self.entries.get(key)
    }

    pub fn insert(&mut self, key: TokenHash, principal: Principal, now: i64, leeway: i64) {
        if self.entries.len() >= self.capacity {
            self.entries
                .retain(|_, p| now <= p.exp.saturating_add(leeway));
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
            while self.entries.len() >= self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
        }
        if self.entries.insert(key, principal).is_none() {
            self.order.push_back(key);
        }
        // Keep the order queue from growing past the entries it tracks.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Drop entries whose signing key is no longer in the set.
    pub fn retain_keys(&mut self, keys: &KeySet) {
        self.entries
            .retain(|_, p| keys.contains_kid(p.kid.as_deref()));
        let entries = &self.entries;
        self.order.retain(|k| entries.contains_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::{Family, Key};

    fn principal(exp: i64, kid: &str) -> Principal {
        Principal {
            subject: Some("u".into()),
            client_id: None,
            scopes: vec![],
            exp,
            nbf: None,
            kid: Some(kid.into()),
        }
    }

    #[test]
    fn hit_until_expiry_then_gone() {
        let mut c = TokenCache::new(4);
        let k = hash("token-a");
        c.insert(k, principal(100, "a"), 0, 5);
        assert!(c.get(&k, 100, 5).is_some());
        assert!(c.get(&k, 105, 5).is_some());
        assert!(c.get(&k, 106, 5).is_none());
        assert!(c.is_empty());
        assert!(c.get(&hash("token-b"), 0, 5).is_none());
    }

    #[test]
    fn bounded_with_expired_swept_first_then_oldest() {
        let mut c = TokenCache::new(3);
        c.insert(hash("old"), principal(10, "a"), 0, 0);
        c.insert(hash("x"), principal(1000, "a"), 0, 0);
        c.insert(hash("y"), principal(1000, "a"), 0, 0);
        c.insert(hash("z"), principal(1000, "a"), 50, 0);
        assert_eq!(c.len(), 3);
        assert!(
            c.get(&hash("x"), 50, 0).is_some(),
            "expired entry went first"
        );
        c.insert(hash("w"), principal(1000, "a"), 50, 0);
        assert_eq!(c.len(), 3);
        assert!(c.get(&hash("x"), 50, 0).is_none(), "then the oldest");
        for i in 0..100 {
            c.insert(hash(&i.to_string()), principal(1000, "a"), 50, 0);
        }
        assert_eq!(c.len(), 3);
        assert!(c.order.len() <= 6);
    }

    #[test]
    fn entries_leave_with_their_key() {
        let mut c = TokenCache::new(8);
        c.insert(hash("a"), principal(1000, "k1"), 0, 0);
        c.insert(hash("b"), principal(1000, "k2"), 0, 0);
        let keys = KeySet {
            keys: vec![Key {
                kid: Some("k2".into()),
                family: Family::Rsa,
                alg: None,
                public_jwk: serde_json::json!({}),
            }],
            skipped: vec![],
        };
        c.retain_keys(&keys);
        assert!(c.get(&hash("a"), 1, 0).is_none());
        assert!(c.get(&hash("b"), 1, 0).is_some());
    }
}
