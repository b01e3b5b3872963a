//! What a buyer sets for itself through the API (`PUT /v1/customers/{id}/settings`): its
//! estimate, overflow, origins with their weights and assignment, and TTL, laid over the
//! customer's entry (the config file's, or the one the API added). Stored apart from that
//! entry, so the operator can hand a customer back to its entry (`DELETE .../settings`) and
//! an edited config file still shows through the fields the buyer never set.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{Assignment, CustomerConfig, Overflow};

/// Fields a buyer set; a field left out keeps the entry's. `origin_weights` and
/// `origin_cname` may be sent as `null` to take them away (equal weights, no CNAME).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerSettings {
    /// The buyer's estimate: the share of its queries a new contract starts with on the
    /// proxies (the entry's `fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub overflow: Option<Overflow>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub origin_addresses: Option<Vec<IpAddr>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub origin_weights: Option<Option<Vec<u32>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub origin_cname: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub assignment: Option<Assignment>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub ttl: Option<u32>,
}

/// A field that may be left out but not sent as `null` (the API document says which are
/// which).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A field that may be left out (`None`) or sent as `null` (`Some(None)`: take it away).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl CustomerSettings {
    pub fn is_empty(&self) -> bool {
        *self == CustomerSettings::default()
    }

    /// These settings with `change`'s fields over them.
    pub fn merged(&self, change: &CustomerSettings) -> CustomerSettings {
        CustomerSettings {
            estimate: change.estimate.or(self.estimate),
            overflow: change.overflow.or(self.overflow),
            origin_addresses: change.origin_addresses.clone().or_else(|| self.origin_addresses.clone()),
            // New addresses without weights: the weights set before were for the old ones.
            origin_weights: match (&change.origin_addresses, &change.origin_weights) {
                (_, Some(w)) => Some(w.clone()),
                (Some(_), None) => None,
                (None, None) => self.origin_weights.clone(),
            },
            origin_cname: change.origin_cname.clone().or_else(|| self.origin_cname.clone()),
            assignment: change.assignment.or(self.assignment),
            ttl: change.ttl.or(self.ttl),
        }
    }

    /// The customer entry `base` with these settings laid over it. New origin addresses
    /// without weights drop the entry's weights (they were one per old address).
    pub fn apply(&self, base: &CustomerConfig) -> CustomerConfig {
        let mut c = base.clone();
        if let Some(f) = self.estimate {
            c.fraction = f;
        }
        if let Some(o) = self.overflow {
            c.overflow = o;
        }
        if let Some(a) = &self.origin_addresses {
            c.origin_addresses = a.clone();
            if self.origin_weights.is_none() {
                c.origin_weights = None;
            }
        }
        if let Some(w) = &self.origin_weights {
            c.origin_weights = w.clone();
        }
        if let Some(n) = &self.origin_cname {
            c.origin_cname = n.clone();
        }
        if let Some(a) = self.assignment {
            c.assignment = a;
        }
        if let Some(t) = self.ttl {
            c.ttl = t;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CustomerConfig {
        serde_json::from_value(serde_json::json!({
            "id": "shop", "names": ["www.cdn.example.net."], "origin_addresses": ["203.0.113.10", "203.0.113.11"],
            "origin_weights": [3, 1], "overflow": "origin", "assignment": "weighted", "fraction": 0.25, "ttl": 30
        }))
        .unwrap()
    }

    #[test]
    fn fields_left_out_keep_the_entry_and_null_takes_away() {
        let s: CustomerSettings =
            serde_json::from_str(r#"{"estimate": 0.4, "origin_cname": "origin.shop.example.org."}"#).unwrap();
        let c = s.apply(&base());
        assert_eq!((c.fraction, c.ttl, c.origin_weights.clone()), (0.4, 30, Some(vec![3, 1])));
        assert_eq!(c.origin_cname.as_deref(), Some("origin.shop.example.org."));
        let cleared = s.merged(&serde_json::from_str(r#"{"origin_cname": null, "ttl": 10}"#).unwrap());
        let c = cleared.apply(&base());
        assert_eq!((c.fraction, c.ttl, c.origin_cname), (0.4, 10, None), "the estimate stays, the CNAME goes");
        // Stored and read back, a null stays a null (not "left out").
        let back: CustomerSettings = serde_json::from_str(&serde_json::to_string(&cleared).unwrap()).unwrap();
        assert_eq!(back, cleared);
        assert!(CustomerSettings::default().is_empty() && !back.is_empty());
    }

    #[test]
    fn new_origins_without_weights_drop_the_old_weights() {
        let s: CustomerSettings = serde_json::from_str(r#"{"origin_addresses": ["198.51.100.7"]}"#).unwrap();
        let c = s.apply(&base());
        assert_eq!((c.origin_addresses.len(), c.origin_weights), (1, None));
        let s: CustomerSettings =
            serde_json::from_str(r#"{"origin_addresses": ["198.51.100.7"], "origin_weights": [2]}"#).unwrap();
        assert_eq!(s.apply(&base()).origin_weights, Some(vec![2]));
        let again =
            s.merged(&serde_json::from_str(r#"{"origin_addresses": ["198.51.100.7", "198.51.100.8"]}"#).unwrap());
        assert_eq!(again.apply(&base()).origin_weights, None, "the weights were for the old addresses");
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in [r#"{"estimate": null}"#, r#"{"ttl": -1}"#, r#"{"names": []}"#, r#"{"overflow": "x"}"#] {
            assert!(serde_json::from_str::<CustomerSettings>(bad).is_err(), "{bad}");
        }
    }
}
