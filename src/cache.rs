//! A bounded cache of validated tokens, so a client reusing its token (as MCP clients
//! do, for up to an hour) costs no signature check after the first request.
//!
//! * Keyed by SHA-256 of the token: the token itself is never stored.
//! * An entry is used only while its token is within `exp`/`nbf` (with the leeway);
//!   claims that do not depend on time (issuer, audience, signature) were checked when
//!   it was stored, and scopes are checked on every request.
//! * Entries are dropped when their signing key leaves the JWKS ([`TokenCache::retain_keys`]).
//! * At capacity the oldest entry goes; expired entries are swept
//!   every `capacity` inserts. Both are amortised O(1) per request.

use crate::jwks::KeySet;
use crate::token::Principal;

/// What a cache entry must tell: whether it is still usable, and which key made it.
pub trait Entry {
    fn live(&self, now: i64, leeway: i64) -> bool;
    fn kid(&self) -> Option<&str>;
}

impl Entry for Principal {
    fn live(&self, now: i64, leeway: i64) -> bool {
        now <= self.exp.saturating_add(leeway)
            && self.nbf.is_none_or(|n| now.saturating_add(leeway) >= n)
    }
    fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// A token whose signature did not verify, remembered briefly so the same forged
/// bytes sent again cost no signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub until: i64,
    pub kid: Option<String>,
}

impl Entry for Refusal {
    fn live(&self, now: i64, _leeway: i64) -> bool {
        now < self.until
    }
    fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

pub type TokenHash = [u8; 32];

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex of a digest (or part of one), for keys built from it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
pub struct TokenCache<V: Entry = Principal> {
    entries: HashMap<TokenHash, V>,
    /// Insertion order, oldest first; may hold keys already removed (lazy deletion).
    order: VecDeque<TokenHash>,
    capacity: usize,
    inserts_since_sweep: usize,
}

impl<V: Entry> TokenCache<V> {
    pub fn new(capacity: usize) -> TokenCache<V> {
        TokenCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            inserts_since_sweep: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a token seen before, if it is still live.
    /// A shared borrow: the caller decides with the entry in place (no copy per
    /// request). An entry found dead stays until the next sweep or its eviction.
    pub fn get(&self, key: &TokenHash, now: i64, leeway: i64) -> Option<&V> {
        self.entries.get(key).filter(|e| e.live(now, leeway))
    }

    /// Store a validated token. O(1) amortised: at capacity the oldest live entry
    /// goes (the order queue is cleaned lazily), and expired entries are swept once
    /// per `capacity` inserts, not on every insert.
    pub fn insert(&mut self, key: TokenHash, entry: V, now: i64, leeway: i64) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= self.capacity {
            self.inserts_since_sweep = 0;
            self.entries.retain(|_, p| p.live(now, leeway));
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            match self.order.pop_front() {
                // A key already removed (expired, or gone with its JWKS key) is skipped.
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        if self.entries.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
    }

    /// Take an entry out (the order queue forgets it lazily).
    pub fn remove(&mut self, key: &TokenHash) -> Option<V> {
        self.entries.remove(key)
    }

    /// Drop entries whose signing key is no longer in the set.
    pub fn retain_keys(&mut self, keys: &KeySet) {
        self.entries.retain(|_, p| keys.contains_kid(p.kid()));
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
            jkt: None,
        }
    }

    #[test]
    fn hit_until_expiry_then_missed() {
        let mut c = TokenCache::new(4);
        let k = hash("token-a");
        c.insert(k, principal(100, "a"), 0, 5);
        assert!(c.get(&k, 100, 5).is_some());
        assert!(c.get(&k, 105, 5).is_some());
        assert!(c.get(&k, 106, 5).is_none());
        assert_eq!(c.len(), 1, "a dead entry waits for the sweep");
        assert!(c.get(&hash("token-b"), 0, 5).is_none());
    }

    #[test]
    fn bounded_oldest_first_and_expired_swept_periodically() {
        let mut c = TokenCache::new(3);
        c.insert(hash("x"), principal(1000, "a"), 0, 0);
        c.insert(hash("y"), principal(1000, "a"), 0, 0);
        c.insert(hash("z"), principal(1000, "a"), 0, 0);
        c.insert(hash("w"), principal(1000, "a"), 0, 0);
        assert_eq!(c.len(), 3);
        assert!(c.get(&hash("x"), 50, 0).is_none(), "the oldest went");
        assert!(c.get(&hash("w"), 50, 0).is_some());
        for i in 0..100 {
            c.insert(hash(&i.to_string()), principal(1000, "a"), 50, 0);
        }
        assert_eq!(c.len(), 3);
        assert!(
            c.order.len() <= 2 * 3 + 1,
            "the order queue stays bounded: {}",
            c.order.len()
        );
        // Expired entries do not survive a sweep even if never looked up.
        let mut c = TokenCache::new(4);
        c.insert(hash("old1"), principal(10, "a"), 0, 0);
        c.insert(hash("old2"), principal(10, "a"), 0, 0);
        c.insert(hash("new1"), principal(1000, "a"), 100, 0);
        c.insert(hash("new2"), principal(1000, "a"), 100, 0);
        assert_eq!(c.len(), 2, "the fourth insert swept the expired two");
    }

    #[test]
    fn reinserting_a_key_does_not_evict_others() {
        let mut c = TokenCache::new(2);
        c.insert(hash("a"), principal(1000, "a"), 0, 0);
        c.insert(hash("b"), principal(1000, "a"), 0, 0);
        c.insert(hash("b"), principal(1000, "a"), 0, 0);
        assert!(c.get(&hash("a"), 1, 0).is_some());
        assert!(c.get(&hash("b"), 1, 0).is_some());
    }

    #[test]
    fn refusals_last_until_their_deadline() {
        let mut c: TokenCache<Refusal> = TokenCache::new(2);
        c.insert(
            hash("forged"),
            Refusal {
                until: 60,
                kid: None,
            },
            0,
            0,
        );
        assert!(c.get(&hash("forged"), 59, 300).is_some());
        assert!(
            c.get(&hash("forged"), 60, 300).is_none(),
            "no leeway on refusals"
        );
    }

    #[test]
    fn entries_leave_with_their_key() {
        let mut c = TokenCache::new(8);
        c.insert(hash("a"), principal(1000, "k1"), 0, 0);
        c.insert(hash("b"), principal(1000, "k2"), 0, 0);
        let keys = KeySet {
            keys: vec![Key {
                id: "0.0".into(),
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
