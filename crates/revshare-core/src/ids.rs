//! Validated identifiers. Each is built only through `parse`, so one in hand is valid.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: {rule}")]
pub struct IdError {
    pub value: String,
    pub what: &'static str,
    pub rule: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $rule:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<$name, IdError> {
                if $check(value) {
                    Ok($name(value.to_owned()))
                } else {
                    Err(IdError { value: value.to_owned(), what: $what, rule: $rule })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A party: licensor, host, auditor or arbiter.
    PartyId, "party id", "use 1-63 of a-z 0-9 _ - starting with a letter or digit", is_party_id
);
id_type!(
    /// A model, or an agreement id (same charset).
    ModelId, "model id", "use 1-63 of a-z 0-9 _ - . starting with a letter or digit", is_model_id
);
id_type!(
    /// An application of a model: `customer_service`, `search`, …
    UseCase, "use case", "use a-z 0-9 _ starting with a letter, like \"customer_service\"", is_use_case
);
id_type!(
    /// A serving region.
    Region, "region", "use 1-32 of a-z 0-9 -", is_region
);
id_type!(
    /// A usage record id, unique per host.
    RecordId, "record id", "use 1-128 of A-Z a-z 0-9 . _ : -", is_record_id
);
id_type!(
    /// An agreement id.
    AgreementId, "agreement id", "use 1-63 of a-z 0-9 _ - . starting with a letter or digit", is_model_id
);

/// Equality of two short ids, written so that it compiles to an inline loop: on the settle path
/// it runs for every record, where a `memcmp` call costs more than the comparison.
pub fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(true, |same, (x, y)| same & (x == y))
}

/// `[a-z0-9][a-z0-9_-]{0,62}`
pub fn is_party_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && matches!(b[0], b'a'..=b'z' | b'0'..=b'9')
        && b.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// `[a-z0-9][a-z0-9_.-]{0,62}`
pub fn is_model_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && matches!(b[0], b'a'..=b'z' | b'0'..=b'9')
        && b.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'))
}

/// `[a-z][a-z0-9_]*` (at most 64 characters)
pub fn is_use_case(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len()) && b[0].is_ascii_lowercase() && b.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// `[a-z0-9-]{1,32}`
pub fn is_region(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len()) && b.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// `[A-Za-z0-9._:-]{1,128}`
pub fn is_record_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_id_is_equality() {
        for (a, b) in [("h1", "h1"), ("h1", "h2"), ("h1", "h10"), ("", ""), ("northwind", "northwinD")] {
            assert_eq!(same_id(a, b), a == b, "{a} {b}");
        }
    }

    #[test]
    fn charsets() {
        assert!(is_party_id("northwind") && is_party_id("h1") && is_party_id("a-b_c"));
        assert!(!is_party_id("North") && !is_party_id("-a") && !is_party_id("") && !is_party_id(&"a".repeat(64)));
        assert!(is_model_id("m-70b") && is_model_id("llama-3.1-8b") && !is_party_id("llama-3.1"));
        assert!(is_use_case("customer_service") && !is_use_case("1abc") && !is_use_case("Search"));
        assert!(is_region("eu") && is_region("us-east-1") && !is_region("EU"));
        assert!(is_record_id("evt-h1-12:3.4_5") && !is_record_id("a b") && !is_record_id(&"x".repeat(129)));
        assert_eq!(
            UseCase::parse("Search").map_err(|e| e.to_string()),
            Err("`Search` is not a valid use case: use a-z 0-9 _ starting with a letter, like \"customer_service\"".to_owned())
        );
    }
}
