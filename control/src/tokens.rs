//! API tokens: who a bearer token stands for. Tokens are kept (in memory and in the store) as
//! SHA-256 digests, never as the text; a presented token is digested and compared with every
//! digest in constant time (`subtle`), so neither the time taken nor a length tells anything.
//! No two principals share a token: every path that adds or changes one refuses a duplicate.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Buyer(String),
}

/// The SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for TokenDigest {
    // Never printed: a digest of a weak token can be guessed offline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// A token a caller chose, checked: 8 to 256 visible ASCII characters (what a bearer header
/// carries unchanged).
pub fn check_token(token: &str) -> Result<(), String> {
    if !(8..=256).contains(&token.len()) {
        return Err(format!("a token has 8 to 256 characters (this one has {})", token.len()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is visible ASCII characters only (no spaces or control characters)".into());
    }
    Ok(())
}

/// A new random token: 32 bytes, hex.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every accepted token's digest and who it stands for.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(TokenDigest, Principal)>,
}

impl Tokens {
    /// Add a principal's token; refused if the digest is taken, or the principal has one.
    pub fn add(&mut self, digest: TokenDigest, who: Principal) -> Result<(), String> {
        if self.contains(digest) {
            return Err("is the same as another token".into());
        }
        if self.entries.iter().any(|(_, p)| *p == who) {
            return Err("this principal has a token already".into());
        }
        self.entries.push((digest, who));
        Ok(())
    }

    /// Replace a principal's token (rotation): the old one stops working at once.
    pub fn replace(&mut self, who: &Principal, digest: TokenDigest) -> Result<(), String> {
        if self.entries.iter().any(|(d, p)| *d == digest && p != who) {
            return Err("is the same as another token".into());
        }
        self.entries.retain(|(_, p)| p != who);
        self.entries.push((digest, who.clone()));
        Ok(())
    }

    pub fn contains(&self, digest: TokenDigest) -> bool {
        self.entries.iter().any(|(d, _)| *d == digest)
    }

    /// Who a presented token stands for. Every digest is compared, in constant time, so timing
    /// tells nothing about which (if any) matched.
    pub fn lookup(&self, given: &str) -> Option<Principal> {
        let digest = TokenDigest::of(given);
        let mut found = None;
        for (d, who) in &self.entries {
            if bool::from(d.0.ct_eq(&digest.0)) {
                found = Some(who.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_lookup() {
        let d = TokenDigest::of("shop-secret");
        assert_eq!(TokenDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(TokenDigest::from_hex("xyz"), None);
        let mut t = Tokens::default();
        t.add(TokenDigest::of("operator-token"), Principal::Operator).unwrap();
        t.add(d, Principal::Buyer("shop".into())).unwrap();
        assert_eq!(t.lookup("shop-secret"), Some(Principal::Buyer("shop".into())));
        assert_eq!(t.lookup("shop-secre"), None);
        assert_eq!(t.lookup("shop-secret "), None);
        // Duplicates are refused, for another principal and on rotation alike.
        assert!(t.add(d, Principal::Buyer("blog".into())).is_err());
        assert!(t.replace(&Principal::Buyer("blog".into()), TokenDigest::of("operator-token")).is_err());
        // Rotation: the old token stops working.
        t.replace(&Principal::Buyer("shop".into()), TokenDigest::of("new-shop-secret")).unwrap();
        assert_eq!(t.lookup("shop-secret"), None);
        assert_eq!(t.lookup("new-shop-secret"), Some(Principal::Buyer("shop".into())));
    }

    #[test]
    fn chosen_tokens_are_checked() {
        assert!(check_token("short").is_err());
        assert!(check_token("has a space").is_err());
        assert!(check_token(&"x".repeat(257)).is_err());
        check_token("a-good-token").unwrap();
        assert_eq!(generate().len(), 64);
        assert_ne!(generate(), generate());
    }
}
