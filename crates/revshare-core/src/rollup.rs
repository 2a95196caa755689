//! Exact per-group sums: what settlement needs from the records, in O(groups) space.
//!
//! Records are grouped by (model, use case, region, and scopes: exclusivity scope and restriction).
//! Counts are summed as `u128` (each below 2^63). Revenue is summed without any rounding and
//! without big integers on the hot path: a revenue is `mantissa × 10^-scale` with a mantissa
//! below 10^28 < 2^94 and a scale of at most 28, so the rollup keeps one `u128` sum per scale —
//! 2^34 records per group and scale before any overflow, which is checked. Only settlement turns
//! the sums into rationals.
//!
//! Sums are commutative, so the rollup of a set of records does not depend on their order, and
//! two rollups of disjoint record sets merge into the rollup of their union.

use hashbrown::HashTable;
use num_bigint::BigInt;
use num_rational::BigRational;

use crate::decimal::{Decimal, MAX_DIGITS, pow10};
use crate::ids::same_id;
use crate::usage::UsageRecord;

/// One sum per possible scale, 0 to [`MAX_DIGITS`].
pub const SCALES: usize = 29;
const _: () = assert!(SCALES == 29 && MAX_DIGITS == 28);

/// The group of a record: its line key plus its place among the agreement's scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub model: String,
    pub use_case: String,
    pub region: String,
    /// The records' place among the agreement's scopes (exclusivity, restriction:
    /// [`crate::agreement::Scopes`]).
    pub scope: Option<usize>,
}

/// A group named by borrowed parts.
#[derive(Clone, Copy, Debug)]
pub struct GroupRef<'a> {
    pub model: &'a str,
    pub use_case: &'a str,
    pub region: &'a str,
    pub scope: Option<usize>,
}

/// The exact sums of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSums {
    pub records: u64,
    pub requests: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    revenue_by_scale: [u128; SCALES],
}

impl Default for GroupSums {
    fn default() -> Self {
        GroupSums { records: 0, requests: 0, input_tokens: 0, output_tokens: 0, revenue_by_scale: [0; SCALES] }
    }
}

/// A sum outgrew its integer; it takes billions of records in one group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a group's sums overflowed (more than 2^34 records in one group)")]
pub struct RollupOverflow;

impl GroupSums {
    fn add(&mut self, counts: [u64; 3], revenue: Decimal) -> Result<(), RollupOverflow> {
        let [requests, input_tokens, output_tokens] = counts;
        self.records = self.records.checked_add(1).ok_or(RollupOverflow)?;
        self.requests = self.requests.checked_add(u128::from(requests)).ok_or(RollupOverflow)?;
        self.input_tokens = self.input_tokens.checked_add(u128::from(input_tokens)).ok_or(RollupOverflow)?;
        self.output_tokens = self.output_tokens.checked_add(u128::from(output_tokens)).ok_or(RollupOverflow)?;
        let slot = &mut self.revenue_by_scale[usize::from(revenue.scale())];
        *slot = slot.checked_add(revenue.mantissa()).ok_or(RollupOverflow)?;
        Ok(())
    }

    /// Adds another group's sums.
    pub fn merge(&mut self, other: &GroupSums) -> Result<(), RollupOverflow> {
        self.records = self.records.checked_add(other.records).ok_or(RollupOverflow)?;
        self.requests = self.requests.checked_add(other.requests).ok_or(RollupOverflow)?;
        self.input_tokens = self.input_tokens.checked_add(other.input_tokens).ok_or(RollupOverflow)?;
        self.output_tokens = self.output_tokens.checked_add(other.output_tokens).ok_or(RollupOverflow)?;
        for (mine, theirs) in self.revenue_by_scale.iter_mut().zip(other.revenue_by_scale) {
            *mine = mine.checked_add(theirs).ok_or(RollupOverflow)?;
        }
        Ok(())
    }

    /// The exact revenue of the group.
    pub fn revenue(&self) -> BigRational {
        let mut numer = BigInt::from(0u8);
        let top = MAX_DIGITS;
        for (scale, sum) in (0u32..).zip(self.revenue_by_scale) {
            if sum != 0 {
                numer += BigInt::from(sum) * pow10(top - scale);
            }
        }
        BigRational::new(numer, pow10(top))
    }

    /// The revenue as sums per decimal scale, for storing a rollup.
    pub fn revenue_by_scale(&self) -> &[u128] {
        &self.revenue_by_scale
    }

    /// Rebuilds sums from stored parts.
    pub fn from_parts(
        records: u64,
        requests: u128,
        input_tokens: u128,
        output_tokens: u128,
        revenue_by_scale: &[u128],
    ) -> Option<GroupSums> {
        let revenue_by_scale = <[u128; SCALES]>::try_from(revenue_by_scale).ok()?;
        Some(GroupSums { records, requests, input_tokens, output_tokens, revenue_by_scale })
    }
}

/// Sums of the selected records of one agreement and month, by group.
#[derive(Clone, Default)]
pub struct Rollup {
    groups: Vec<(GroupKey, GroupSums)>,
    index: HashTable<usize>,
}

impl Rollup {
    pub fn new() -> Rollup {
        Rollup::default()
    }

    fn hash(model: &str, use_case: &str, region: &str, scope: Option<usize>) -> u64 {
        use std::hash::BuildHasher;

        foldhash::quality::FixedState::with_seed(0x5eed).hash_one((model, use_case, region, scope))
    }

    fn slot(&mut self, model: &str, use_case: &str, region: &str, scope: Option<usize>) -> &mut GroupSums {
        let hash = Self::hash(model, use_case, region, scope);
        let groups = &self.groups;
        let found = self.index.find(hash, |&i| {
            let k = &groups[i].0;
            k.scope == scope && same_id(&k.model, model) && same_id(&k.use_case, use_case) && same_id(&k.region, region)
        });
        let at = match found {
            Some(&i) => i,
            None => {
                let i = self.groups.len();
                let key = GroupKey { model: model.to_owned(), use_case: use_case.to_owned(), region: region.to_owned(), scope };
                self.groups.push((key, GroupSums::default()));
                let groups = &self.groups;
                self.index.insert_unique(hash, i, |&j| {
                    let k = &groups[j].0;
                    Self::hash(&k.model, &k.use_case, &k.region, k.scope)
                });
                i
            }
        };
        &mut self.groups[at].1
    }

    /// Adds one selected record, in the exclusivity scope `scope`.
    pub fn add(&mut self, record: &UsageRecord<'_>, scope: Option<usize>) -> Result<(), RollupOverflow> {
        let key = GroupRef { model: &record.model, use_case: &record.use_case, region: &record.region, scope };
        self.add_values(key, [record.requests, record.input_tokens, record.output_tokens], record.revenue)
    }

    /// Adds one selected record given by its parts: the group, its [requests, input tokens,
    /// output tokens] and its revenue (for callers that keep records in a compact form).
    pub fn add_values(&mut self, group: GroupRef<'_>, counts: [u64; 3], revenue: Decimal) -> Result<(), RollupOverflow> {
        self.slot(group.model, group.use_case, group.region, group.scope).add(counts, revenue)
    }

    /// Adds stored sums of a group.
    pub fn add_group(&mut self, key: &GroupKey, sums: &GroupSums) -> Result<(), RollupOverflow> {
        self.slot(&key.model, &key.use_case, &key.region, key.scope).merge(sums)
    }

    /// Adds every group of another rollup.
    pub fn merge(&mut self, other: &Rollup) -> Result<(), RollupOverflow> {
        other.groups.iter().try_for_each(|(k, s)| self.add_group(k, s))
    }

    /// The groups, sorted by key.
    pub fn groups(&self) -> Vec<(&GroupKey, &GroupSums)> {
        let mut out: Vec<_> = self.groups.iter().map(|(k, s)| (k, s)).collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Number of records summed.
    pub fn records(&self) -> u64 {
        self.groups.iter().map(|(_, s)| s.records).sum()
    }
}
