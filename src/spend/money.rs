//! Exact money: ISO 4217 currency codes, decimal prices read as written, and costs as integers.
//!
//! A cost is an integer count of femto-units (10^-15) of the currency. That scale is the one at
//! which every cost is exact: a price has at most 9 decimals and applies per 1K or 1M tokens, so
//! the price of one token is a whole number of 10^-15 units (0.1 CNY per 1M tokens is 100,000
//! femto-CNY a token, where micro-units would already round it). Sums are integer additions
//! (exact, associative, checked against overflow); a cost becomes a decimal string, or an `f64`
//! for an emitter, once, at the end.

use std::fmt;
use std::ops::Add;

/// Femto-units in one unit of a currency.
pub const FEMTO: u128 = 1_000_000_000_000_000;
/// The most decimals a price may have.
pub const PRICE_DECIMALS: u32 = 9;

/// The active ISO 4217 codes with their minor units (decimals people write amounts with), funds
/// codes included, precious metals and testing codes (XAU, XTS, ...) left out.
#[rustfmt::skip]
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2),
    ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2),
    ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4), ("CLP", 0), ("CNY", 2), ("COP", 2),
    ("COU", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2),
    ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2),
    ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2), ("GNF", 0),
    ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2), ("HUF", 2), ("IDR", 2),
    ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2),
    ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2),
    ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2),
    ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2),
    ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2),
    ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2),
    ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2),
    ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2),
    ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2),
    ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4), ("UZS", 2), ("VED", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XCG", 2), ("XOF", 0),
    ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// An ISO 4217 currency: its code and its minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    pub code: &'static str,
    /// Decimals amounts are shown with (2 for CNY, 0 for JPY).
    pub minor_units: u8,
}

impl Currency {
    /// The currency of an ISO 4217 code (upper case, as the standard writes it).
    pub fn parse(code: &str) -> Option<Currency> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|&(code, minor_units)| Currency { code, minor_units })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// Why a decimal was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("`{0}` is not a decimal number (digits, and a point followed by digits)")]
    Syntax(String),
    #[error("`{0}` is negative; a price is 0 or more")]
    Negative(String),
    #[error("`{0}` has more than {PRICE_DECIMALS} decimals")]
    TooPrecise(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// A non-negative decimal with at most 9 decimals, held exactly as nano-units (10^-9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal {
    pub nanos: u64,
}

impl Decimal {
    /// Reads `text` exactly as written: `2`, `2.0`, `0.1` (one tenth, exactly), `.5`.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let t = text.trim();
        if t.starts_with('-') {
            return Err(DecimalError::Negative(t.into()));
        }
        let t = t.strip_prefix('+').unwrap_or(t);
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return Err(DecimalError::Syntax(text.into()));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > PRICE_DECIMALS as usize {
            return Err(DecimalError::TooPrecise(text.into()));
        }
        let int = int.trim_start_matches('0');
        let whole: u64 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| DecimalError::TooLarge(text.into()))?
        };
        let frac_nanos: u64 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<9}");
            padded
                .parse()
                .map_err(|_| DecimalError::Syntax(text.into()))?
        };
        whole
            .checked_mul(1_000_000_000)
            .and_then(|w| w.checked_add(frac_nanos))
            .map(|nanos| Decimal { nanos })
            .ok_or_else(|| DecimalError::TooLarge(text.into()))
    }

    /// A number the YAML reader gave as a double: its shortest form, which is the text written
    /// for any decimal of up to 15 significant digits, is read exactly; a longer one is refused
    /// rather than rounded.
    pub fn from_f64(v: f64) -> Result<Decimal, DecimalError> {
        let text = format!("{v}");
        if !v.is_finite() {
            return Err(DecimalError::Syntax(text));
        }
        let significant = text
            .bytes()
            .filter(u8::is_ascii_digit)
            .skip_while(|b| *b == b'0')
            .count();
        if significant > 15 {
            return Err(DecimalError::TooPrecise(text));
        }
        Decimal::parse(&text)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&scaled(u128::from(self.nanos), 1_000_000_000))
    }
}

/// `value / unit` (a power of ten) as an exact decimal, trailing zeros trimmed.
fn scaled(value: u128, unit: u128) -> String {
    let int = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return int.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// An amount of money, exact: femto-units (10^-15) of the table's currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    pub femto: u128,
}

/// A sum or product past `u128` (10^23 units of a currency: not an account's spend).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cost past 10^23 units: the figures cannot be an account's")]
pub struct Overflow;

impl Cost {
    pub const ZERO: Cost = Cost { femto: 0 };

    /// A whole or decimal amount (a budget's `amount`).
    pub fn of(amount: Decimal) -> Cost {
        Cost {
            femto: u128::from(amount.nanos) * (FEMTO / 1_000_000_000),
        }
    }

    /// `tokens` at `per_token` femto-units each.
    pub fn tokens(tokens: u64, per_token: u128) -> Result<Cost, Overflow> {
        u128::from(tokens)
            .checked_mul(per_token)
            .map(|femto| Cost { femto })
            .ok_or(Overflow)
    }

    pub fn checked_add(self, other: Cost) -> Result<Cost, Overflow> {
        self.femto
            .checked_add(other.femto)
            .map(|femto| Cost { femto })
            .ok_or(Overflow)
    }

    /// The exact decimal, in units of the currency (`0.0000021`, `1234.5`).
    pub fn to_decimal_string(self) -> String {
        scaled(self.femto, FEMTO)
    }

    /// For an emitter that carries doubles: the double nearest the exact decimal.
    pub fn to_f64(self) -> f64 {
        self.to_decimal_string().parse().unwrap_or(f64::MAX)
    }

    /// Rounded half away from zero to `decimals` (a currency's minor units), for people.
    pub fn rounded(self, decimals: u8) -> String {
        let unit = FEMTO / 10u128.pow(u32::from(decimals.min(15)));
        let units = (self.femto + unit / 2) / unit;
        let int = units / 10u128.pow(u32::from(decimals));
        let frac = units % 10u128.pow(u32::from(decimals));
        if decimals == 0 {
            int.to_string()
        } else {
            format!("{int}.{frac:0width$}", width = usize::from(decimals))
        }
    }

    /// `self / other` as a double (0 when `other` is zero).
    pub fn ratio(self, other: Cost) -> f64 {
        if other.femto == 0 {
            return 0.0;
        }
        self.femto as f64 / other.femto as f64
    }
}

impl Add for Cost {
    type Output = Cost;
    /// Saturating: sums of costs an account can have never get near the bound; use
    /// [`Cost::checked_add`] where the figures come from outside.
    fn add(self, other: Cost) -> Cost {
        Cost {
            femto: self.femto.saturating_add(other.femto),
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, Add::add)
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currencies_are_iso_codes() {
        assert_eq!(Currency::parse("CNY").map(|c| c.minor_units), Some(2));
        assert_eq!(Currency::parse("JPY").map(|c| c.minor_units), Some(0));
        assert_eq!(Currency::parse("KWD").map(|c| c.minor_units), Some(3));
        for bad in ["cny", "RMB", "XAU", "", "USDT"] {
            assert_eq!(Currency::parse(bad), None, "{bad}");
        }
        let mut codes: Vec<&str> = CURRENCIES.iter().map(|(c, _)| *c).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        codes.retain(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()));
        assert!(codes.is_empty(), "{codes:?}");
    }

    #[test]
    fn decimals_are_read_as_written() {
        for (text, nanos) in [
            ("0.1", 100_000_000),
            ("2", 2_000_000_000),
            ("2.0", 2_000_000_000),
            (".5", 500_000_000),
            ("0.000000001", 1),
            ("1.230", 1_230_000_000),
            ("007.5", 7_500_000_000),
        ] {
            assert_eq!(Decimal::parse(text), Ok(Decimal { nanos }), "{text}");
        }
        assert!(matches!(
            Decimal::parse("-1"),
            Err(DecimalError::Negative(_))
        ));
        assert!(matches!(
            Decimal::parse("0.0000000001"),
            Err(DecimalError::TooPrecise(_))
        ));
        for bad in ["", ".", "1e3", "1.2.3", "abc", "1,5"] {
            assert!(
                matches!(Decimal::parse(bad), Err(DecimalError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Decimal::parse("99999999999999999999"),
            Err(DecimalError::TooLarge(_))
        ));
        assert_eq!(Decimal::from_f64(0.1), Decimal::parse("0.1"));
        assert_eq!(Decimal::from_f64(2.0), Decimal::parse("2"));
        assert!(Decimal::from_f64(0.1 + 0.2).is_err(), "17 digits: refused");
        // 9 decimals, but 18 digits: no double holds it, so its text is not what was written.
        #[allow(clippy::excessive_precision)]
        let long = 123456789.123456789_f64;
        assert!(
            Decimal::from_f64(long).is_err(),
            "{long}: refused, not rounded"
        );
        assert!(Decimal::from_f64(f64::NAN).is_err());
    }

    #[test]
    fn one_tenth_is_exactly_one_tenth() {
        // Ten times 0.1 CNY per 1M tokens for 1M tokens: 1 CNY, not 0.9999999999999999.
        let tenth = Decimal::parse("0.1").unwrap();
        let per_token = u128::from(tenth.nanos) * (FEMTO / 1_000_000_000) / 1_000_000;
        let one: Cost = (0..10)
            .map(|_| Cost::tokens(1_000_000, per_token).unwrap())
            .sum();
        assert_eq!(one.to_decimal_string(), "1");
        assert_eq!(one.to_f64(), 1.0);
        let f: f64 = (0..10).map(|_| 0.1).sum();
        assert_ne!(f, 1.0, "what doubles would have given");
    }

    #[test]
    fn costs_print_exactly_and_round_for_people() {
        let c = Cost {
            femto: 1_234_567_000_000_000_000,
        };
        assert_eq!(c.to_decimal_string(), "1234.567");
        assert_eq!(c.rounded(2), "1234.57");
        assert_eq!(c.rounded(0), "1235");
        assert_eq!(
            Cost {
                femto: 2_100_000_000
            }
            .to_decimal_string(),
            "0.0000021"
        );
        assert_eq!(Cost::ZERO.rounded(2), "0.00");
        assert_eq!(
            Cost::of(Decimal::parse("5000").unwrap()).rounded(2),
            "5000.00"
        );
        assert!(Cost::tokens(u64::MAX, u128::MAX / 2).is_err());
        assert!(Cost { femto: u128::MAX }
            .checked_add(Cost { femto: 1 })
            .is_err());
    }

    fn decimal_text() -> impl Strategy<Value = (String, u64)> {
        (0u64..1_000_000, 0u32..=9, 0u64..1_000_000_000).prop_map(|(int, places, frac)| {
            let frac = frac % 10u64.pow(places);
            let text = if places == 0 {
                int.to_string()
            } else {
                format!("{int}.{frac:0width$}", width = places as usize)
            };
            let nanos = int * 1_000_000_000 + frac * 10u64.pow(9 - places);
            (text, nanos)
        })
    }

    proptest! {
        /// Any decimal of at most 9 places is read exactly, prints back as its value, and its
        /// shortest double reads back the same.
        #[test]
        fn decimals_round_trip((text, nanos) in decimal_text()) {
            let d = Decimal::parse(&text).unwrap();
            prop_assert_eq!(d.nanos, nanos);
            prop_assert_eq!(Decimal::parse(&d.to_string()).unwrap(), d);
            let v: f64 = text.parse().unwrap();
            prop_assert_eq!(Decimal::from_f64(v).unwrap(), d);
        }

        /// Sums of costs are exact: any grouping, any order, the same femto-units, and the
        /// exact decimal of a sum is the sum of the exact decimals.
        #[test]
        fn sums_are_exact_and_associative(
            parts in prop::collection::vec((0u64..1_000_000_000, 0u128..10_000_000_000_000), 1..40),
            cut in 0usize..40,
        ) {
            let costs: Vec<Cost> = parts
                .iter()
                .map(|(t, p)| Cost::tokens(*t, *p).unwrap())
                .collect();
            let whole: Cost = costs.iter().copied().sum();
            let cut = cut.min(costs.len());
            let (a, b) = costs.split_at(cut);
            let left: Cost = a.iter().copied().sum();
            let right: Cost = b.iter().copied().sum();
            prop_assert_eq!(left.checked_add(right).unwrap(), whole);
            let reversed: Cost = costs.iter().rev().copied().sum();
            prop_assert_eq!(reversed, whole);
            let expected: u128 = parts.iter().map(|(t, p)| u128::from(*t) * p).sum();
            prop_assert_eq!(whole.femto, expected);
            let text = whole.to_decimal_string();
            let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
            let back = int.parse::<u128>().unwrap() * FEMTO
                + format!("{frac:0<15}").parse::<u128>().unwrap();
            prop_assert_eq!(back, whole.femto);
        }
    }
}
