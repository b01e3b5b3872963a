//! Market units: prices in integer micro-units, so sums and comparisons are exact.

use serde::{Deserialize, Serialize};

/// A price per million requests, in millionths of the currency unit ("micros").
/// `Price(2_500_000)` is 2.50 per million requests.
/// In JSON it is a decimal number (`2.5`), checked on the way in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub u64);

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_decimal())
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        Price::from_decimal(x).map_err(serde::de::Error::custom)
    }
}

impl Price {
    /// The largest price accepted: one million currency units per million requests.
    pub const MAX: Price = Price(1_000_000 * MICROS);

    /// From a decimal price as written in the API and config (e.g. `2.5`).
    pub fn from_decimal(x: f64) -> Result<Price, String> {
        if !x.is_finite() || x < 0.0 {
            return Err(format!("price {x} must be a finite number >= 0"));
        }
        let micros = (x * MICROS as f64).round();
        if micros > Price::MAX.0 as f64 {
            return Err(format!("price {x} is above the maximum of {}", Price::MAX.as_decimal()));
        }
        Ok(Price(micros as u64))
    }

    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / MICROS as f64
    }
}

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:06}", self.0 / MICROS, self.0 % MICROS)
    }
}

/// Micros in one currency unit.
pub const MICROS: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trip_and_charges() {
        assert_eq!(Price::from_decimal(2.5).unwrap(), Price(2_500_000));
        assert_eq!(Price::from_decimal(0.000001).unwrap(), Price(1));
        assert_eq!(Price(2_500_000).to_string(), "2.500000");
        assert!(Price::from_decimal(-1.0).is_err());
        assert!(Price::from_decimal(f64::NAN).is_err());
        assert!(Price::from_decimal(1e12).is_err());
        assert_eq!(serde_json::to_string(&Price(2_500_000)).unwrap(), "2.5");
        assert_eq!(serde_json::from_str::<Price>("0.25").unwrap(), Price(250_000));
        assert!(serde_json::from_str::<Price>("-3").is_err());
    }
}
