//! Agreements: versions, amendments, the exclusivity rule, and which agreement a record falls
//! under.
//!
//! The TOML text of every version is stored as given, with its version and digest; reading an
//! agreement parses the stored text again, so the store never holds a second, drifting form of
//! the terms. Versions of one id form a chain: a new id starts at 1, an amendment is the latest
//! version + 1 between the same licensor and host, and earlier versions are kept. Registering the
//! exact same version again is a no-op.
//!
//! Decisions where the SPEC is silent:
//! - The **agreement of a record** is found through the record's (resolved) model: its owner is
//!   the licensor, and among the *latest* versions of that licensor's agreements with the
//!   record's host, the one in effect at the record time. An amendment replaces the terms,
//!   effective range included; a superseded version never applies to new records.
//! - Two agreements between the same licensor and host may not be in effect at the same instant,
//!   or a record would belong to both and be billed twice; the second is refused, naming the first.
//! - Registering an agreement (new or amended) re-places every stored record of its licensor's
//!   models and its host and rebuilds their rollups, so records that arrived before the agreement,
//!   or under a version with other exclusivity scopes, are rolled up under the terms now in force.
//!   This costs one pass over that host's records for the licensor, once per registration.
//! - An agreement must list only registered models of its licensor.

use std::collections::BTreeMap;

use revshare_core::agreement::{Agreement, parse_agreement};
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::time::Period;
use revshare_core::usage::UsageRecord;

use crate::error::StoreError;
use crate::log;
use crate::registry::{Role, model, require_role};
use crate::rollups::{self, Deltas};
use crate::segments::{self, NewRecord, Place, RolledUp};

/// A stored record's place under the agreements now in force, and whether it is late there.
type NewPlace<'a> = (Option<Match<'a>>, bool);
use crate::sql::{Columns, Param, Sql, first, rows};
use crate::statements::closed;
use revshare_core::transparency;

/// Where a record is rolled up: its agreement, month and scopes (exclusivity scope, restriction:
/// `revshare_core::agreement::Scopes`). Borrowed and held inline, so placing a record (every
/// record of every batch) allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Match<'a> {
    pub agreement_id: &'a str,
    pub month: MonthText,
    pub scope: Option<usize>,
}

/// A month's text as the store keeps it (`YYYY-MM`, as [`Period`] writes it), held inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MonthText {
    len: u8,
    text: [u8; MonthText::MAX],
}

impl MonthText {
    /// The longest text held: any `i32` year, its sign and the month.
    const MAX: usize = 16;

    pub fn of(period: Period) -> MonthText {
        let mut month = MonthText { len: 0, text: [0; MonthText::MAX] };
        match u16::try_from(period.year()) {
            // Every record's year (RFC 3339 allows 0000–9999), without the formatter.
            Ok(year @ 0..=9999) => {
                let digits = [year / 1000, year / 100 % 10, year / 10 % 10, year % 10];
                for (at, digit) in digits.into_iter().enumerate() {
                    month.text[at] = b'0' + u8::try_from(digit).unwrap_or(0);
                }
                let m = u8::try_from(period.month()).unwrap_or(0);
                month.text[4..7].copy_from_slice(&[b'-', b'0' + m / 10, b'0' + m % 10]);
                month.len = 7;
            }
            _ => month.put(&period.to_string()),
        }
        month
    }

    /// A month's text as stored, if it is no longer than any the store writes.
    pub fn stored(text: &str) -> Option<MonthText> {
        let mut month = MonthText { len: 0, text: [0; MonthText::MAX] };
        (text.len() <= MonthText::MAX).then(|| {
            month.put(text);
            month
        })
    }

    fn put(&mut self, text: &str) {
        let len = text.len().min(MonthText::MAX);
        self.text[..len].copy_from_slice(&text.as_bytes()[..len]);
        self.len = u8::try_from(len).unwrap_or(0);
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// The agreement among `agreements` (latest versions of the licensor owning the record's model)
/// that a record with a resolved model falls under, and its place in the rollups.
pub(crate) fn place<'a>(agreements: &'a [Agreement], record: &UsageRecord<'_>) -> Option<(&'a Agreement, Match<'a>)> {
    let agreement = agreements.iter().find(|a| a.host().as_str() == record.host && a.in_effect_at(record.time))?;
    let scope = agreement.scopes(&record.model, &record.use_case, &record.region, record.time);
    let month = MonthText::of(Period::of(record.time));
    Some((agreement, Match { agreement_id: agreement.id().as_str(), month, scope }))
}

fn read_stored(row: &dyn Columns) -> Result<Agreement, StoreError> {
    let id = row.text(0)?;
    let version = row.int(1)?;
    let source = row.text(2)?;
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("agreement {id} version {version}"), detail };
    let agreement = parse_agreement(&format!("agreement {id} version {version} (stored)"), &source)
        .map_err(|e| corrupt(format!("its stored text no longer parses: {}", e.render_plain().trim_end())))?;
    if agreement.id().as_str() != id || i64::from(agreement.version()) != version {
        return Err(corrupt(format!("its text says {} version {}", agreement.id(), agreement.version())));
    }
    Ok(agreement)
}

/// A version of an agreement, or its latest version.
pub(crate) fn stored(sql: &mut impl Sql, id: &str, version: Option<u32>) -> Result<Option<Agreement>, StoreError> {
    match version {
        Some(v) => first(
            sql,
            "SELECT id, version, source FROM agreements WHERE id = $1 AND version = $2",
            &[Param::Text(id), Param::Int(i64::from(v))],
            read_stored,
        ),
        None => first(
            sql,
            "SELECT id, version, source FROM agreements WHERE id = $1 ORDER BY version DESC LIMIT 1",
            &[Param::Text(id)],
            read_stored,
        ),
    }
}

/// The licensor and the host of agreement `id`, if it exists (an amendment keeps them).
pub(crate) fn parties(sql: &mut impl Sql, id: &str) -> Result<Option<(PartyId, PartyId)>, StoreError> {
    first(sql, "SELECT licensor, host FROM agreements WHERE id = $1 AND version = 1", &[Param::Text(id)], |row| {
        let party = |text: String| {
            PartyId::parse(&text).map_err(|e| StoreError::Corrupt { what: format!("agreement {id}"), detail: e.to_string() })
        };
        Ok((party(row.text(0)?)?, party(row.text(1)?)?))
    })
}

/// Every agreement's id, licensor and host (every version has the same), by id.
pub(crate) fn index(sql: &mut impl Sql) -> Result<Vec<(AgreementId, PartyId, PartyId)>, StoreError> {
    rows(sql, "SELECT id, licensor, host FROM agreements WHERE version = 1 ORDER BY id", &[], |row| {
        let id = row.text(0)?;
        let corrupt = |e: String| StoreError::Corrupt { what: format!("agreement {id}"), detail: e };
        let party = |text: String| PartyId::parse(&text).map_err(|e| corrupt(e.to_string()));
        Ok((AgreementId::parse(&id).map_err(|e| corrupt(e.to_string()))?, party(row.text(1)?)?, party(row.text(2)?)?))
    })
}

/// The agreement `id` (a version, or the latest), which must exist.
pub(crate) fn require(sql: &mut impl Sql, id: &str, version: Option<u32>) -> Result<Agreement, StoreError> {
    stored(sql, id, version)?.ok_or_else(|| StoreError::UnknownAgreement { id: id.to_owned(), version })
}

/// The latest version of every agreement of a licensor, or (`None`) of every agreement, by id.
pub(crate) fn latest(sql: &mut impl Sql, licensor: Option<&str>) -> Result<Vec<Agreement>, StoreError> {
    match licensor {
        Some(licensor) => rows(
            sql,
            "SELECT a.id, a.version, a.source FROM agreements a WHERE a.licensor = $1 \
             AND a.version = (SELECT MAX(b.version) FROM agreements b WHERE b.id = a.id) ORDER BY a.id",
            &[Param::Text(licensor)],
            read_stored,
        ),
        None => rows(
            sql,
            "SELECT a.id, a.version, a.source FROM agreements a \
             WHERE a.version = (SELECT MAX(b.version) FROM agreements b WHERE b.id = a.id) ORDER BY a.id",
            &[],
            read_stored,
        ),
    }
}

/// Registers an agreement version (SPEC §2). `name` is how parse errors name the text.
pub(crate) fn add(sql: &mut impl Sql, name: &str, text: &str) -> Result<Agreement, StoreError> {
    let agreement = parse_agreement(name, text).map_err(|e| StoreError::Agreement(format!("{e}:\n{}", e.render_plain().trim_end())))?;
    let id = agreement.id().as_str();
    let version = agreement.version();
    let (licensor, host) = (agreement.licensor().as_str(), agreement.host().as_str());
    if let Some(same) = stored(sql, id, Some(version))? {
        return if same.digest() == agreement.digest() {
            Ok(same)
        } else {
            let latest = stored(sql, id, None)?.map_or(version, |a| a.version());
            Err(version_error(
                &agreement,
                format!("version {version} is already registered with other terms; an amendment is version {}", latest.saturating_add(1)),
            ))
        };
    }
    require_role(sql, licensor, Role::Licensor, &format!("the licensor of agreement {id}"))?;
    require_role(sql, host, Role::Host, &format!("the host of agreement {id}"))?;
    // An arbiter that is not one would leave the agreement's escalated disputes with no one to decide them.
    for arbiter in agreement.arbiters() {
        require_role(sql, arbiter.as_str(), Role::Arbiter, &format!("an arbiter agreement {id} names"))?;
    }
    for listed in agreement.models() {
        match model(sql, listed.as_str())? {
            None => return Err(StoreError::UnknownModel { id: listed.to_string(), purpose: format!("a model agreement {id} lists") }),
            Some(m) if m.owner.as_str() != licensor => {
                return Err(StoreError::ForeignModel {
                    id: id.to_owned(),
                    model: listed.to_string(),
                    owner: m.owner.to_string(),
                    licensor: licensor.to_owned(),
                });
            }
            Some(_) => {}
        }
    }
    match stored(sql, id, None)? {
        None if version != 1 => return Err(version_error(&agreement, "a new agreement starts at version 1".to_owned())),
        None => {}
        Some(previous) if version != previous.version().saturating_add(1) => {
            return Err(version_error(
                &agreement,
                format!(
                    "the latest version is {}, so an amendment is version {}",
                    previous.version(),
                    previous.version().saturating_add(1)
                ),
            ));
        }
        Some(previous) if previous.licensor() != agreement.licensor() || previous.host() != agreement.host() => {
            return Err(version_error(
                &agreement,
                format!(
                    "an amendment keeps the licensor and host of version {} ({} and {}); a different pair needs a new agreement id",
                    previous.version(),
                    previous.licensor(),
                    previous.host()
                ),
            ));
        }
        Some(_) => {}
    }
    for other in latest(sql, Some(licensor))?.iter().filter(|o| o.id() != agreement.id()) {
        check_against(&agreement, other)?;
    }
    sql.execute(
        "INSERT INTO agreements (id, version, licensor, host, digest, source) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Param::Text(id),
            Param::Int(i64::from(version)),
            Param::Text(licensor),
            Param::Text(host),
            Param::Text(&agreement.digest()),
            Param::Text(text),
        ],
    )?;
    let source = revshare_core::canonical::digest(text.as_bytes());
    let leaf = transparency::agreement_event(id, version, licensor, host, &agreement.digest(), &source);
    log::record(sql, "agreement", format!("agreement:{id}/{version}"), leaf)?;
    replace_records(sql, licensor, host)?;
    Ok(agreement)
}

fn version_error(agreement: &Agreement, reason: String) -> StoreError {
    StoreError::AgreementVersion { id: agreement.id().to_string(), version: agreement.version(), reason }
}

/// The rules between a new agreement and another agreement of the same licensor: no shared
/// effective time with the same host, no overlapping exclusivity with another host.
fn check_against(agreement: &Agreement, other: &Agreement) -> Result<(), StoreError> {
    let other_id = other.id().to_string();
    if other.host() == agreement.host() {
        let starts_before_other_ends = other.effective_to().is_none_or(|to| agreement.effective_from() < to);
        let other_starts_before_end = agreement.effective_to().is_none_or(|to| other.effective_from() < to);
        if starts_before_other_ends && other_starts_before_end {
            return Err(StoreError::EffectiveOverlap { id: agreement.id().to_string(), other: other_id, other_version: other.version() });
        }
        return Ok(());
    }
    for (i, scope) in agreement.exclusivity().iter().enumerate() {
        if let Some(j) = other.exclusivity().iter().position(|theirs| scope.overlaps(theirs)) {
            return Err(StoreError::ExclusivityConflict {
                id: agreement.id().to_string(),
                scope: i + 1,
                other: other_id,
                other_version: other.version(),
                other_host: other.host().to_string(),
                other_scope: j + 1,
            });
        }
    }
    Ok(())
}

/// Places every stored record of `host` for `licensor`'s models again, under the agreements now
/// in force, and rebuilds those agreements' rollups and usage sets from the records (their resend
/// counts, delivery statistics kept per group, start again from zero: a resend is no row). A segment
/// whose records all keep their place stays; any other is replaced by segments of the same batch
/// grouped by the new places, so a record's values and batch never change.
fn replace_records(sql: &mut impl Sql, licensor: &str, host: &str) -> Result<(), StoreError> {
    let agreements: Vec<Agreement> = latest(sql, Some(licensor))?.into_iter().filter(|a| a.host().as_str() == host).collect();
    for a in &agreements {
        rollups::delete(sql, a.id().as_str())?;
    }
    let segments = segments::of_pair(sql, licensor, host)?;
    // Each record's new place and lateness, and whether its segment changes.
    let mut placements: Vec<(Vec<NewPlace>, bool)> = Vec::with_capacity(segments.len());
    for segment in &segments {
        let mut placed_records = Vec::with_capacity(segment.records.len());
        let mut changed = false;
        for stored in &segment.records {
            let record = &stored.record;
            let placed = place(&agreements, record);
            if let Some((agreement, _)) = placed
                && agreement.currency() != record.currency
            {
                return Err(StoreError::CurrencyMismatch {
                    id: agreement.id().to_string(),
                    expected: agreement.currency().to_string(),
                    record: record.id.to_string(),
                    host: host.to_owned(),
                    found: record.currency.to_string(),
                });
            }
            let now = placed.map(|(_, m)| m);
            let late = if now == stored.placed(&segment.place)? {
                segment.place.late
            } else {
                changed = true;
                segment.place.late || now.as_ref().map(|m| closed(sql, m.agreement_id, m.month.as_str())).transpose()?.unwrap_or(false)
            };
            placed_records.push((now, late));
        }
        placements.push((placed_records, changed));
    }
    let mut deltas = Deltas::default();
    for (segment, (placed_records, changed)) in segments.iter().zip(&placements) {
        // (new place, late) → the segment's records going there.
        let mut moved: BTreeMap<(RolledUp<'_>, bool), Vec<NewRecord<'_>>> = BTreeMap::new();
        for (stored, (now, late)) in segment.records.iter().zip(placed_records) {
            let record = &stored.record;
            let digest = record.digest();
            if let Some(m) = now {
                deltas.record(m, &record.model, record, &digest)?;
            }
            let rolled_up = now.as_ref().map(|m| (m.agreement_id, m.month.as_str()));
            moved.entry((rolled_up, *late)).or_default().push(NewRecord {
                record,
                model: &record.model,
                reported_model: &stored.reported_model,
                scope: now.as_ref().and_then(|m| m.scope),
                fingerprint: segments::fingerprint(&digest),
            });
        }
        if !changed {
            continue;
        }
        segments::delete(sql, segment.id)?;
        for ((rolled_up, late), records) in moved {
            let rolled_up = rolled_up.map(|(a, m)| (a.to_owned(), m.to_owned()));
            segments::write(sql, &Place { rolled_up, late, ..segment.place.clone() }, &records)?;
        }
    }
    deltas.write(sql)
}

/// The TOML text an agreement version was registered from.
pub(crate) fn source(sql: &mut impl Sql, id: &str, version: u32) -> Result<String, StoreError> {
    first(sql, "SELECT source FROM agreements WHERE id = $1 AND version = $2", &[Param::Text(id), Param::Int(i64::from(version))], |row| {
        row.text(0)
    })?
    .ok_or_else(|| StoreError::UnknownAgreement { id: id.to_owned(), version: Some(version) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use revshare_core::time::Instant;

    #[test]
    fn a_month_text_is_the_period_as_it_displays() {
        for (year, month) in [(0, 1), (7, 2), (999, 12), (2026, 10), (9999, 12), (10_000, 1), (123_456, 7), (-5, 3)] {
            let period = Period::of(Instant::from_date(year, month, 1).expect("a date"));
            let text = MonthText::of(period);
            assert_eq!(text.as_str(), period.to_string());
            // As the store reads it back from a segment.
            assert_eq!(MonthText::stored(&period.to_string()), Some(text));
        }
        assert_eq!(MonthText::stored("2026-10 and then some"), None);
    }
}
