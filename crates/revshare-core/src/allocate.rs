//! Splitting an amount in proportion to weights, by the largest-remainder method.
//!
//! Each part first gets the floor of its exact share (in minor units); the units left over go one
//! each to the parts with the largest remainders, ties broken by ascending party id. So the parts
//! always sum to the whole, and each is within one minor unit of its exact share.

use crate::ids::PartyId;
use crate::money::AmountOverflow;

/// Splits `total` minor units among `weights` (party, points); parties with zero weight get zero.
/// Returns the parts sorted by party id, checked to sum to `total`. `total` must be ≥ 0 and
/// `total × weight` must fit in 128 bits; otherwise an [`AmountOverflow`] naming `at`.
pub fn largest_remainder(total: i128, weights: &[(PartyId, u64)], at: &str) -> Result<Vec<(PartyId, i128)>, AmountOverflow> {
    let overflow = || AmountOverflow::at(at);
    let mut sorted: Vec<(PartyId, u128)> = weights.iter().map(|(p, w)| (p.clone(), u128::from(*w))).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let sum = sorted.iter().try_fold(0u128, |sum, (_, w)| sum.checked_add(*w)).ok_or_else(overflow)?;
    let total_units = u128::try_from(total).map_err(|_| overflow())?;
    if sum == 0 {
        return Ok(sorted.into_iter().map(|(p, _)| (p, 0)).collect());
    }
    // floor and remainder of total × w / sum, exactly.
    let mut parts: Vec<(PartyId, u128, u128)> = sorted
        .into_iter()
        .map(|(p, w)| total_units.checked_mul(w).map(|product| (p, product / sum, product % sum)))
        .collect::<Option<_>>()
        .ok_or_else(overflow)?;
    let given: u128 = parts.iter().map(|(_, floor, _)| floor).sum();
    // Each floor is at most its exact share, so the floors never exceed the total.
    let mut leftover = total_units - given;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Largest remainder first; equal remainders in ascending party id (the stable sort keeps it).
    order.sort_by(|&a, &b| parts[b].2.cmp(&parts[a].2));
    for i in order {
        if leftover == 0 {
            break;
        }
        parts[i].1 += 1;
        leftover -= 1;
    }
    let parts: Vec<(PartyId, i128)> = parts
        .into_iter()
        .map(|(p, part, _)| i128::try_from(part).map(|part| (p, part)))
        .collect::<Result<_, _>>()
        .map_err(|_| overflow())?;
    // The parts are the whole: nothing created, nothing lost.
    let whole = parts.iter().try_fold(0i128, |sum, (_, part)| sum.checked_add(*part));
    if whole != Some(total) {
        return Err(overflow());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(total: i128, w: &[(&str, u64)]) -> Vec<(String, i128)> {
        let weights: Vec<(PartyId, u64)> = w.iter().filter_map(|(p, n)| PartyId::parse(p).ok().map(|p| (p, *n))).collect();
        largest_remainder(total, &weights, "the pool").unwrap_or_default().into_iter().map(|(p, a)| (p.to_string(), a)).collect()
    }

    #[test]
    fn splits_the_worked_example() {
        assert_eq!(split(1736, &[("northwind", 5), ("meridian", 2)]), vec![("meridian".into(), 496), ("northwind".into(), 1240)]);
    }

    #[test]
    fn ties_go_to_the_lower_party_id() {
        assert_eq!(split(100, &[("c", 1), ("b", 1), ("a", 1)]), vec![("a".into(), 34), ("b".into(), 33), ("c".into(), 33)]);
        assert_eq!(split(2, &[("z", 1), ("y", 1), ("x", 1)]), vec![("x".into(), 1), ("y".into(), 1), ("z".into(), 0)]);
    }

    #[test]
    fn refuses_what_it_cannot_split_exactly() {
        let weights: Vec<(PartyId, u64)> = ["a", "b"].iter().filter_map(|p| PartyId::parse(p).ok().map(|p| (p, u64::MAX))).collect();
        // total × weight past 2^128: refused, never clamped.
        assert_eq!(largest_remainder(i128::MAX, &weights, "the pool"), Err(AmountOverflow::at("the pool")));
        assert_eq!(largest_remainder(-1, &weights, "the pool"), Err(AmountOverflow::at("the pool")));
        // The largest total a weight of 2^64 − 1 can split.
        let total = i128::try_from(u128::MAX / u128::from(u64::MAX)).unwrap_or(0);
        let parts = largest_remainder(total, &weights, "the pool").unwrap_or_default();
        assert_eq!(parts.iter().map(|(_, a)| a).sum::<i128>(), total);
    }

    #[test]
    fn zero_and_empty() {
        assert_eq!(split(0, &[("a", 1)]), vec![("a".into(), 0)]);
        assert_eq!(split(10, &[]), Vec::<(String, i128)>::new());
    }
}
