//! Stored usage records, kept as segments: the new records of one batch that share a host, a
//! licensor, a place (agreement and month, or none) and lateness, in one row. The `Place` value
//! of a segment is that whole key: the batch's log leaf, host, licensor, place and lateness.
//!
//! A row per record made SQLite and PostgreSQL spend most of an ingest on their B-trees (a
//! random `(host, id)` insert per record, measured at most ~400k rows/s on this machine before
//! any parsing); a segment is one row per batch and place, so the database writes a few large
//! values per batch instead. The `(host, id)` idempotency index, which the primary key used to
//! be, is kept in memory ([`crate::index`]) and rebuilt from the segments' `keys` column.
//!
//! Two columns hold a segment's records, in the same order:
//! - `keys`: per record, the 16-byte fingerprint (the first half of the SHA-256 of the stored
//!   record's canonical form, so two records with equal values, and only those, agree), the id's
//!   length (one byte: ids are at most 128 bytes) and the id — all the index needs;
//! - `data`: version byte 1; the segment's strings (models, the host's own model names, use cases,
//!   regions, currency codes) once each; then per record varints of the string indexes, the time
//!   (seconds zig-zag, nanoseconds), the three counts, the revenue (mantissa and scale) and the
//!   exclusivity scope (0 for none, else index + 1).
//!
//! A segment is never updated (a trigger refuses it). Registering an agreement may move records
//! to another place: their segments are then replaced by segments holding the same records of
//! the same batch, so a record's values and its batch never change. An identical resend is no
//! row: the index finds it by its fingerprint, and the rollups count it per group.
//!
//! How segments are written and read: ingestion encodes a batch's segments on every core
//! (`encode`, over the stretches of the batch where their records were gathered, without copying
//! them into one list) and writes them in key order (`write_encoded`). The index reads only the
//! `keys` column, of the segments after the last one it has seen (`keys_after`). An agreement
//! month's records (a bundle's, `Store::records`) are decoded from the segments placed there
//! (`of_period`); re-placement reads a licensor's records of one host (`of_pair`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use revshare_core::decimal::Decimal;
use revshare_core::money::Currency;
use revshare_core::time::Instant;
use revshare_core::usage::UsageRecord;

use crate::agreements::{Match, MonthText};
use crate::error::StoreError;
use crate::sql::{Columns, Param, Sql, first, rows, unsigned};

/// Where a segment's records belong; every record of a segment shares it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub host: String,
    /// The owner of the records' (licensed) models.
    pub licensor: String,
    /// The agreement and month they are rolled up in; `None` when no agreement covers them.
    pub rolled_up: Option<(String, String)>,
    /// Whether they arrived after that month was closed.
    pub late: bool,
    /// The log leaf of the batch that stored them (`-1`: before the log existed).
    pub batch: i64,
}

/// Where records are rolled up (agreement, month), borrowed; `None`: nowhere.
pub(crate) type RolledUp<'a> = Option<(&'a str, &'a str)>;

/// What [`keys_after`] calls per segment: its id, host, batch and `keys` column.
pub(crate) type EachKeys<'f> = dyn FnMut(i64, &str, i64, &[u8]) -> Result<(), StoreError> + 'f;

/// A stored record: its values (model resolved), the host's own model id, its scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub record: UsageRecord<'static>,
    pub reported_model: String,
    pub scope: Option<usize>,
}

impl StoredRecord {
    /// Where it is rolled up, given its segment's place.
    pub fn placed<'p>(&self, place: &'p Place) -> Result<Option<Match<'p>>, StoreError> {
        let Some((agreement_id, month)) = &place.rolled_up else { return Ok(None) };
        let month = MonthText::stored(month).ok_or_else(|| StoreError::Corrupt {
            what: format!("record {} of host {}", self.record.id, self.record.host),
            detail: format!("its segment's month `{month}` is longer than any month the store writes"),
        })?;
        Ok(Some(Match { agreement_id, month, scope: self.scope }))
    }
}

/// One record to write: the record (its `model` is not read), the licensed model it resolved to,
/// what its host called the model, its scope and fingerprint.
pub(crate) struct NewRecord<'r> {
    pub record: &'r UsageRecord<'r>,
    pub model: &'r str,
    pub reported_model: &'r str,
    pub scope: Option<usize>,
    pub fingerprint: [u8; 16],
}

/// The fingerprint of a stored record from its SHA-256 digest.
pub(crate) fn fingerprint(digest: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn put_varint(out: &mut Vec<u8>, mut n: u128) {
    while n >= 0x80 {
        out.push(u8::try_from(n & 0x7f).unwrap_or(0) | 0x80);
        n >>= 7;
    }
    out.push(u8::try_from(n).unwrap_or(0));
}

/// The segment's strings, each given its index on first use.
#[derive(Default)]
struct Strings<'a> {
    index: HashMap<&'a str, u128, foldhash::fast::FixedState>,
    order: Vec<&'a str>,
}

impl<'a> Strings<'a> {
    fn of(&mut self, text: &'a str) -> u128 {
        let next = u128::try_from(self.order.len()).unwrap_or(u128::MAX);
        *self.index.entry(text).or_insert_with(|| {
            self.order.push(text);
            next
        })
    }
}

/// Encodes records into a segment's `keys` and `data`: the records of `parts`, in order (the
/// stretches of a batch that found them, so they need not be copied into one list first).
pub(crate) fn encode(parts: &[&[NewRecord<'_>]]) -> (Vec<u8>, Vec<u8>) {
    let records = || parts.iter().flat_map(|part| part.iter());
    let count: usize = parts.iter().map(|part| part.len()).sum();
    // A segment's records lie wherever their batch put them, and reading each (its fields, then
    // its strings) is a cache miss. Read them first in a loop of loads that do not depend on each
    // other, which the processor overlaps, so the encoding below finds them in cache.
    let touched = records().fold(0u8, |acc, new| {
        let r = new.record;
        [&*r.id, new.model, new.reported_model, &*r.use_case, &*r.region]
            .iter()
            .fold(acc, |acc, text| acc ^ text.as_bytes().first().copied().unwrap_or(0))
    });
    std::hint::black_box(touched);
    let mut keys = Vec::with_capacity(count * 40);
    let mut body = Vec::with_capacity(count * 24);
    let mut strings = Strings::default();
    for new in records() {
        let r = new.record;
        keys.extend_from_slice(&new.fingerprint);
        // Ids are validated to at most 128 bytes.
        keys.push(u8::try_from(r.id.len()).unwrap_or(u8::MAX));
        keys.extend_from_slice(r.id.as_bytes());
        for text in [new.model, new.reported_model, &*r.use_case, &*r.region, r.currency.code()] {
            put_varint(&mut body, strings.of(text));
        }
        let secs = r.time.secs();
        // Zig-zag: small magnitudes of either sign stay short.
        put_varint(&mut body, u128::from((secs << 1 ^ (secs >> 63)).cast_unsigned()));
        put_varint(&mut body, u128::from(r.time.nanos()));
        for n in [r.requests, r.input_tokens, r.output_tokens] {
            put_varint(&mut body, u128::from(n));
        }
        put_varint(&mut body, r.revenue.mantissa());
        body.push(r.revenue.scale());
        put_varint(&mut body, new.scope.map_or(0, |s| u128::try_from(s).unwrap_or(u128::MAX).saturating_add(1)));
    }
    let mut data = Vec::with_capacity(body.len() + 64);
    data.push(1);
    put_varint(&mut data, u128::try_from(strings.order.len()).unwrap_or(u128::MAX));
    for text in &strings.order {
        put_varint(&mut data, u128::try_from(text.len()).unwrap_or(u128::MAX));
        data.extend_from_slice(text.as_bytes());
    }
    data.extend_from_slice(&body);
    (keys, data)
}

/// Reads a segment's bytes, naming the segment in every error.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
    segment: i64,
}

impl<'b> Reader<'b> {
    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt { what: format!("record segment {}", self.segment), detail: format!("{detail} at byte {}", self.at) }
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        let b = *self.bytes.get(self.at).ok_or_else(|| self.corrupt("it ends early"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'b [u8], StoreError> {
        let slice = self.bytes.get(self.at..self.at + n).ok_or_else(|| self.corrupt("it ends early"))?;
        self.at += n;
        Ok(slice)
    }

    fn varint(&mut self) -> Result<u128, StoreError> {
        let mut n: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.byte()?;
            n |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.corrupt("a number is too long"))
    }

    fn number<T: TryFrom<u128>>(&mut self) -> Result<T, StoreError> {
        let n = self.varint()?;
        T::try_from(n).map_err(|_| self.corrupt(&format!("{n} is out of range")))
    }

    fn text(&mut self, len: usize) -> Result<&'b str, StoreError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("a text is not UTF-8"))
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// The keys of a segment: (id, fingerprint) per record, in order.
pub(crate) fn keys(segment: i64, keys: &[u8]) -> Result<Vec<(&str, [u8; 16])>, StoreError> {
    let mut reader = Reader { bytes: keys, at: 0, segment };
    let mut out = Vec::with_capacity(keys.len() / 40);
    while !reader.done() {
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(reader.take(16)?);
        let len = usize::from(reader.byte()?);
        out.push((reader.text(len)?, fingerprint));
    }
    Ok(out)
}

/// Decodes a segment of `host`'s records.
pub(crate) fn decode(segment: i64, host: &str, key_bytes: &[u8], data: &[u8]) -> Result<Vec<StoredRecord>, StoreError> {
    let ids = keys(segment, key_bytes)?;
    let mut reader = Reader { bytes: data, at: 0, segment };
    if reader.byte()? != 1 {
        return Err(reader.corrupt("its format version is not 1"));
    }
    let count: usize = reader.number()?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        let len = reader.number()?;
        strings.push(reader.text(len)?);
    }
    let mut out = Vec::with_capacity(ids.len());
    for (id, _) in ids {
        let text = |reader: &mut Reader<'_>| -> Result<&str, StoreError> {
            let i: usize = reader.number()?;
            strings.get(i).copied().ok_or_else(|| reader.corrupt(&format!("string {i} is not in the segment")))
        };
        let (model, reported, use_case, region, currency) =
            (text(&mut reader)?, text(&mut reader)?, text(&mut reader)?, text(&mut reader)?, text(&mut reader)?);
        let zigzag: u64 = reader.number()?;
        let secs = (zigzag >> 1).cast_signed() ^ -(zigzag & 1).cast_signed();
        let nanos: u32 = reader.number()?;
        if nanos >= 1_000_000_000 {
            return Err(reader.corrupt("a time has more than 999999999 nanoseconds"));
        }
        let (requests, input_tokens, output_tokens) = (reader.number()?, reader.number()?, reader.number()?);
        let mantissa = reader.varint()?;
        let scale = reader.byte()?;
        let revenue = Decimal::from_parts(mantissa, scale).ok_or_else(|| reader.corrupt("a revenue is not a normalised decimal"))?;
        let scope: usize = reader.number()?;
        let currency = Currency::parse(currency).map_err(|e| reader.corrupt(&e.to_string()))?;
        out.push(StoredRecord {
            record: UsageRecord {
                id: Cow::Owned(id.to_owned()),
                host: Cow::Owned(host.to_owned()),
                model: Cow::Owned(model.to_owned()),
                use_case: Cow::Owned(use_case.to_owned()),
                region: Cow::Owned(region.to_owned()),
                time: Instant::from_parts(secs, nanos),
                requests,
                input_tokens,
                output_tokens,
                revenue,
                currency,
            },
            reported_model: reported.to_owned(),
            scope: scope.checked_sub(1),
        });
    }
    if !reader.done() {
        return Err(reader.corrupt("it has bytes after its last record"));
    }
    Ok(out)
}

/// Writes a segment; returns its id.
pub(crate) fn write(sql: &mut impl Sql, place: &Place, records: &[NewRecord<'_>]) -> Result<i64, StoreError> {
    let (keys, data) = encode(&[records]);
    write_encoded(sql, place, records.len(), &keys, &data)
}

/// Writes a segment of `count` records already encoded ([`encode`]); returns its id.
pub(crate) fn write_encoded(sql: &mut impl Sql, place: &Place, count: usize, keys: &[u8], data: &[u8]) -> Result<i64, StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let (agreement_id, month) = place.rolled_up.as_ref().map(|(a, m)| (a.as_str(), m.as_str())).unzip();
    let id = first(
        sql,
        "INSERT INTO record_segments (batch, host, licensor, agreement_id, month, late, records, keys, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        &[
            Param::Int(place.batch),
            Param::Text(&place.host),
            Param::Text(&place.licensor),
            Param::OptText(agreement_id),
            Param::OptText(month),
            Param::Bool(place.late),
            Param::Int(count),
            Param::Bytes(keys),
            Param::Bytes(data),
        ],
        |row| row.int(0),
    )?;
    id.ok_or_else(|| StoreError::Corrupt { what: "record segments".to_owned(), detail: "an insert returned no id".to_owned() })
}

/// The columns every segment query reads, in [`read_row`] order.
macro_rules! segment_columns {
    () => {
        "id, batch, host, licensor, agreement_id, month, late, keys, data"
    };
}

/// A segment as read: its id, place and records.
pub(crate) struct Segment {
    pub id: i64,
    pub place: Place,
    pub records: Vec<StoredRecord>,
}

fn read_row(row: &dyn Columns) -> Result<Segment, StoreError> {
    let id = row.int(0)?;
    let host = row.text(2)?;
    let rolled_up = match (row.opt_text(4)?, row.opt_text(5)?) {
        (Some(agreement), Some(month)) => Some((agreement, month)),
        (None, None) => None,
        _ => {
            return Err(StoreError::Corrupt {
                what: format!("record segment {id}"),
                detail: "it has an agreement without a month, or a month without an agreement".to_owned(),
            });
        }
    };
    let records = decode(id, &host, &row.bytes(7)?, &row.bytes(8)?)?;
    Ok(Segment { id, place: Place { host, licensor: row.text(3)?, rolled_up, late: row.flag(6)?, batch: row.int(1)? }, records })
}

/// The segments of an agreement's month.
pub(crate) fn of_period(sql: &mut impl Sql, agreement_id: &str, month: &str) -> Result<Vec<Segment>, StoreError> {
    rows(
        sql,
        concat!("SELECT ", segment_columns!(), " FROM record_segments WHERE agreement_id = $1 AND month = $2 ORDER BY id"),
        &[Param::Text(agreement_id), Param::Text(month)],
        read_row,
    )
}

/// The segments of `host`'s records for `licensor`'s models.
pub(crate) fn of_pair(sql: &mut impl Sql, licensor: &str, host: &str) -> Result<Vec<Segment>, StoreError> {
    rows(
        sql,
        concat!("SELECT ", segment_columns!(), " FROM record_segments WHERE host = $1 AND licensor = $2 ORDER BY id"),
        &[Param::Text(host), Param::Text(licensor)],
        read_row,
    )
}

/// The segments of records of `licensor`'s models that no agreement covered (`unmatched`).
pub(crate) fn unmatched_of_licensor(sql: &mut impl Sql, licensor: &str) -> Result<Vec<Segment>, StoreError> {
    rows(
        sql,
        concat!("SELECT ", segment_columns!(), " FROM record_segments WHERE licensor = $1 AND agreement_id IS NULL ORDER BY id"),
        &[Param::Text(licensor)],
        read_row,
    )
}

/// The stored record `(host, id)` of batch `batch` (where the index says it is), with its place.
pub(crate) fn find(sql: &mut impl Sql, host: &str, id: &str, batch: i64) -> Result<Option<(StoredRecord, Place)>, StoreError> {
    let segments = rows(
        sql,
        concat!("SELECT ", segment_columns!(), " FROM record_segments WHERE batch = $1 AND host = $2"),
        &[Param::Int(batch), Param::Text(host)],
        read_row,
    )?;
    Ok(segments.into_iter().find_map(|segment| {
        let place = segment.place;
        segment.records.into_iter().find(|r| r.record.id == id).map(|r| (r, place))
    }))
}

/// Replaces a segment by others holding the same records (re-placement).
/// The (host, licensor) pairs of the records a batch stored, in order.
pub(crate) fn parties_of_batch(sql: &mut impl Sql, batch: i64) -> Result<Vec<(String, String)>, StoreError> {
    rows(sql, "SELECT DISTINCT host, licensor FROM record_segments WHERE batch = $1 ORDER BY host, licensor", &[Param::Int(batch)], |row| {
        Ok((row.text(0)?, row.text(1)?))
    })
}

/// The leaves of `host`'s batches that stored records, after `after`, at most `limit`, in order.
pub(crate) fn batches_of_host(sql: &mut impl Sql, host: &str, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
    rows(
        sql,
        "SELECT DISTINCT batch FROM record_segments WHERE host = $1 AND batch > $2 ORDER BY batch LIMIT $3",
        &[Param::Text(host), Param::Int(after), Param::Int(limit)],
        |row| row.int(0),
    )
}

pub(crate) fn delete(sql: &mut impl Sql, segment: i64) -> Result<(), StoreError> {
    sql.execute("DELETE FROM record_segments WHERE id = $1", &[Param::Int(segment)])?;
    Ok(())
}

/// Calls `each` with (segment id, host, batch, keys) of every segment after `after`, in id order:
/// what the in-memory index has not seen.
pub(crate) fn keys_after(sql: &mut impl Sql, after: i64, each: &mut EachKeys<'_>) -> Result<(), StoreError> {
    sql.query("SELECT id, host, batch, keys FROM record_segments WHERE id > $1 ORDER BY id", &[Param::Int(after)], &mut |row| {
        each(row.int(0)?, &row.text(1)?, row.int(2)?, &row.bytes(3)?)
    })
}

/// How an agreement month's records arrived: statistics of delivery, reported beside the month's
/// statement and never in it (SPEC §6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Distinct records stored for the month.
    pub records: u64,
    /// The batches that stored them.
    pub batches: u64,
    /// Those stored after the month closed (carried by a restatement).
    pub late: u64,
    /// Identical resends of them acknowledged (they changed nothing).
    pub resends: u64,
}

/// The [`Delivery`] of an agreement month from its segments, with the `resends` its rollups counted.
pub(crate) fn delivery(sql: &mut impl Sql, agreement_id: &str, month: &str, resends: u64) -> Result<Delivery, StoreError> {
    let mut delivery = Delivery { resends, ..Delivery::default() };
    let mut batches = std::collections::BTreeSet::new();
    let what = || format!("the segments of agreement {agreement_id} in {month}");
    sql.query(
        "SELECT batch, late, records FROM record_segments WHERE agreement_id = $1 AND month = $2",
        &[Param::Text(agreement_id), Param::Text(month)],
        &mut |row| {
            batches.insert(row.int(0)?);
            let records: u64 = unsigned(row.int(2)?, what)?;
            delivery.records += records;
            if row.flag(1)? {
                delivery.late += records;
            }
            Ok(())
        },
    )?;
    delivery.batches = u64::try_from(batches.len()).unwrap_or(u64::MAX);
    Ok(delivery)
}

/// The most records one segment holds when the migration regroups stored records.
const MOVED_PER_SEGMENT: usize = 100_000;

/// Schema version 8: moves the one-row-per-record `records` table into segments (grouped by
/// host, licensor, place, lateness and batch, each record keeping its values, scope and batch),
/// then drops it.
pub(crate) fn move_records(sql: &mut impl Sql) -> Result<(), StoreError> {
    struct Old {
        place: Place,
        stored: StoredRecord,
    }
    let old = rows(
        sql,
        "SELECT r.host, m.owner, r.agreement_id, r.month, r.late, COALESCE(r.batch, -1), r.id, r.model, r.reported_model, \
         r.use_case, r.region, r.time_secs, r.time_nanos, r.requests, r.input_tokens, r.output_tokens, r.revenue, r.currency, \
         r.scope FROM records r JOIN models m ON m.id = r.model ORDER BY r.host, r.id",
        &[],
        |row| {
            let (host, id) = (row.text(0)?, row.text(6)?);
            let corrupt = |detail: String| StoreError::Corrupt { what: format!("record {id} of host {host}"), detail };
            let count = |i: usize| -> Result<u64, StoreError> {
                let n = row.int(i)?;
                u64::try_from(n).map_err(|_| corrupt(format!("a count is {n}")))
            };
            let nanos =
                u32::try_from(row.int(12)?).ok().filter(|n| *n < 1_000_000_000).ok_or_else(|| corrupt("its nanoseconds".to_owned()))?;
            let revenue = Decimal::parse(&row.text(16)?).map_err(|e| corrupt(e.to_string()))?;
            let currency = Currency::parse(&row.text(17)?).map_err(|e| corrupt(e.to_string()))?;
            let scope = row.int(18)?;
            let rolled_up = match (row.opt_text(2)?, row.opt_text(3)?) {
                (Some(agreement), Some(month)) => Some((agreement, month)),
                _ => None,
            };
            let record = UsageRecord {
                id: Cow::Owned(id.clone()),
                host: Cow::Owned(host.clone()),
                model: Cow::Owned(row.text(7)?),
                use_case: Cow::Owned(row.text(9)?),
                region: Cow::Owned(row.text(10)?),
                time: Instant::from_parts(row.int(11)?, nanos),
                requests: count(13)?,
                input_tokens: count(14)?,
                output_tokens: count(15)?,
                revenue,
                currency,
            };
            Ok(Old {
                place: Place { host: host.clone(), licensor: row.text(1)?, rolled_up, late: row.flag(4)?, batch: row.int(5)? },
                stored: StoredRecord { record, reported_model: row.text(8)?, scope: usize::try_from(scope).ok() },
            })
        },
    )?;
    let mut groups: BTreeMap<&Place, Vec<&Old>> = BTreeMap::new();
    for record in &old {
        groups.entry(&record.place).or_default().push(record);
    }
    for (place, records) in groups {
        for chunk in records.chunks(MOVED_PER_SEGMENT) {
            let new: Vec<NewRecord<'_>> = chunk
                .iter()
                .map(|old| NewRecord {
                    record: &old.stored.record,
                    model: &old.stored.record.model,
                    reported_model: &old.stored.reported_model,
                    scope: old.stored.scope,
                    fingerprint: fingerprint(&old.stored.record.digest()),
                })
                .collect();
            write(sql, place, &new)?;
        }
    }
    // The old rows' resend counts are not moved: version 14 keeps no resend per record.
    sql.batch("DROP TABLE records")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, model: &str, secs: i64, revenue: &str) -> UsageRecord<'static> {
        UsageRecord {
            id: Cow::Owned(id.to_owned()),
            host: Cow::Borrowed("northwind"),
            model: Cow::Owned(model.to_owned()),
            use_case: Cow::Borrowed("search"),
            region: Cow::Borrowed("eu"),
            time: Instant::from_parts(secs, 1_500),
            requests: u64::MAX >> 1,
            input_tokens: 0,
            output_tokens: 12_345,
            revenue: Decimal::parse(revenue).expect("a decimal"),
            currency: Currency::parse("USD").expect("USD"),
        }
    }

    #[test]
    fn segments_round_trip() {
        let records = [record("a", "m-70b", 1_790_000_000, "12.5"), record("b:2", "m-8b", -62_000_000_000, "0")];
        let new: Vec<NewRecord<'_>> = records
            .iter()
            .zip([(Some(3), "nw-70b"), (None, "m-8b")])
            .map(|(record, (scope, reported))| NewRecord {
                record,
                model: &record.model,
                reported_model: reported,
                scope,
                fingerprint: fingerprint(&record.digest()),
            })
            .collect();
        let (key_bytes, data) = encode(&[&new]);
        let ids: Vec<&str> = keys(1, &key_bytes).expect("keys").into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["a", "b:2"]);
        let decoded = decode(1, "northwind", &key_bytes, &data).expect("decodes");
        assert_eq!(decoded.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), records.to_vec());
        assert_eq!((decoded[0].scope, decoded[0].reported_model.as_str()), (Some(3), "nw-70b"));
        assert_eq!((decoded[1].scope, decoded[1].reported_model.as_str()), (None, "m-8b"));
    }

    #[test]
    fn a_segment_encoded_from_parts_is_the_one_from_its_records_in_order() {
        let records: Vec<UsageRecord<'static>> = (0..5)
            .map(|n| record(&format!("r{n}"), ["m-8b", "m-70b"][n % 2], 1_790_000_000 + 60 * i64::try_from(n).unwrap_or(0), "1.5"))
            .collect();
        let new: Vec<NewRecord<'_>> = records
            .iter()
            .enumerate()
            .map(|(n, record)| NewRecord {
                record,
                model: &record.model,
                reported_model: &record.model,
                scope: (n == 3).then_some(0),
                fingerprint: fingerprint(&record.digest()),
            })
            .collect();
        let whole = encode(&[&new]);
        assert_eq!(encode(&[&new[..2], &new[2..3], &[], &new[3..]]), whole);
        let (key_bytes, data) = whole;
        let decoded = decode(1, "northwind", &key_bytes, &data).expect("decodes");
        assert_eq!(decoded.into_iter().map(|r| r.record).collect::<Vec<_>>(), records);
        // Parts in another order are other bytes: the order of the parts is the records' order.
        assert_ne!(encode(&[&new[2..], &new[..2]]), encode(&[&new]));
    }

    #[test]
    fn damaged_segments_are_errors() {
        let records = [record("a", "m-70b", 5, "1.25")];
        let new = [NewRecord { record: &records[0], model: "m-70b", reported_model: "m-70b", scope: None, fingerprint: [0; 16] }];
        let (key_bytes, data) = encode(&[&new]);
        for cut in 0..data.len() {
            assert!(decode(9, "northwind", &key_bytes, &data[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = data.clone();
        longer.push(0);
        let error = decode(9, "northwind", &key_bytes, &longer).expect_err("trailing bytes");
        assert!(error.to_string().contains("record segment 9"), "{error}");
    }
}
