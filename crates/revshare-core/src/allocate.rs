//! Splitting an amount in proportion to weights, by the largest-remainder method.
//!
//! Each part first gets the floor of its exact share (in minor units); the units left over go one
//! each to the parts with the largest remainders, ties broken by ascending party id. So the parts
//! always sum to the whole, and each is within one minor unit of its exact share.

use crate::ids::PartyId;

/// Splits `total` minor units among `weights` (party, points); parties with zero weight get zero.
/// Returns the parts sorted by party id. `total` must be ≥ 0.
pub fn largest_remainder(total: i128, weights: &[(PartyId, u64)]) -> Vec<(PartyId, i128)> {
    let mut sorted: Vec<(PartyId, u128)> = weights.iter().map(|(p, w)| (p.clone(), u128::from(*w))).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let sum: u128 = sorted.iter().map(|(_, w)| w).sum();
    let total_units = u128::try_from(total).unwrap_or(0);
    if sum == 0 {
        return sorted.into_iter().map(|(p, _)| (p, 0)).collect();
    }
    // floor and remainder of total × w / sum, exactly: total < 2^127 / 2^64 is ample for money.
    let mut parts: Vec<(PartyId, u128, u128)> = sorted
        .into_iter()
        .map(|(p, w)| {
            let product = total_units.saturating_mul(w);
            (p, product / sum, product % sum)
        })
        .collect();
    let given: u128 = parts.iter().map(|(_, floor, _)| floor).sum();
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
    parts.into_iter().map(|(p, floor, _)| (p, i128::try_from(floor).unwrap_or(i128::MAX))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(total: i128, w: &[(&str, u64)]) -> Vec<(String, i128)> {
        let weights: Vec<(PartyId, u64)> = w.iter().filter_map(|(p, n)| PartyId::parse(p).ok().map(|p| (p, *n))).collect();
        largest_remainder(total, &weights).into_iter().map(|(p, a)| (p.to_string(), a)).collect()
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
    fn zero_and_empty() {
        assert_eq!(split(0, &[("a", 1)]), vec![("a".into(), 0)]);
        assert_eq!(split(10, &[]), Vec::<(String, i128)>::new());
    }
}
