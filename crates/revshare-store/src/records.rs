//! Stored usage records: the row form shared by both databases, and its queries.
//!
//! A record is stored as the host sent it, with its model resolved to the licensed model id (the
//! host's own name is kept in `reported_model`), so the stored record is the one that is settled
//! and its digest (`UsageRecord::digest`, SHA-256 of the canonical JSON) is the one that enters
//! the usage digest. Values are stored so that equality of columns is equality of values
//! (SPEC §3): the time as UTC seconds and nanoseconds, the revenue as its normalised decimal text
//! (`1.50` is stored `1.5`), counts as integers (each below 2^63, so `BIGINT` holds them).
//!
//! Besides the values, a row says where the record is rolled up (agreement, month, exclusivity
//! scope; none when no agreement covers it), whether it arrived after that month was closed
//! (`late`), and how many identical resends were acknowledged (`resends`), so rollups can be
//! rebuilt from records alone.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use revshare_core::decimal::Decimal;
use revshare_core::money::Currency;
use revshare_core::time::Instant;
use revshare_core::usage::UsageRecord;

use crate::agreements::Match;
use crate::error::StoreError;
use crate::rollups::{scope_column, scope_from_column};
use crate::sql::{Columns, Dialect, Param, Sql, first, rows, unsigned};

/// The value columns of `records`, in [`RecordRow`] order.
macro_rules! value_columns {
    () => {
        "host, id, model, reported_model, use_case, region, time_secs, time_nanos, requests, input_tokens, output_tokens, revenue, currency, digest"
    };
}

/// Where-the-record-goes columns, after the value columns.
macro_rules! place_columns {
    () => {
        "resends, agreement_id, month, scope, late"
    };
}

/// A record as stored: one field per value column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordRow<'a> {
    host: Cow<'a, str>,
    id: Cow<'a, str>,
    model: Cow<'a, str>,
    reported_model: Cow<'a, str>,
    use_case: Cow<'a, str>,
    region: Cow<'a, str>,
    time_secs: i64,
    time_nanos: i64,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    revenue: String,
    currency: Cow<'a, str>,
    digest: [u8; 32],
}

/// A stored record with its place.
pub(crate) struct StoredRecord {
    pub row: RecordRow<'static>,
    pub resends: u64,
    pub placed: Option<Match>,
    pub late: bool,
}

/// A record whose model is `model` (the licensed id), borrowing everything else.
pub(crate) fn resolved<'a>(record: &'a UsageRecord<'_>, model: &'a str) -> UsageRecord<'a> {
    UsageRecord {
        id: Cow::Borrowed(&record.id),
        host: Cow::Borrowed(&record.host),
        model: Cow::Borrowed(model),
        use_case: Cow::Borrowed(&record.use_case),
        region: Cow::Borrowed(&record.region),
        ..*record
    }
}

impl<'a> RecordRow<'a> {
    /// The row of a resolved record; `reported_model` is the model id the host sent. Fails with
    /// the reason when a count does not fit a `BIGINT` (the parsers never produce one).
    pub fn new(record: &'a UsageRecord<'a>, reported_model: &'a str) -> Result<RecordRow<'a>, String> {
        let count = |field: &str, n: u64| i64::try_from(n).map_err(|_| format!("`{field}` is {n}; counts must be below 2^63"));
        Ok(RecordRow {
            host: Cow::Borrowed(&record.host),
            id: Cow::Borrowed(&record.id),
            model: Cow::Borrowed(&record.model),
            reported_model: Cow::Borrowed(reported_model),
            use_case: Cow::Borrowed(&record.use_case),
            region: Cow::Borrowed(&record.region),
            time_secs: record.time.secs(),
            time_nanos: i64::from(record.time.nanos()),
            requests: count("requests", record.requests)?,
            input_tokens: count("input_tokens", record.input_tokens)?,
            output_tokens: count("output_tokens", record.output_tokens)?,
            revenue: record.revenue.to_string(),
            currency: Cow::Borrowed(record.currency.code()),
            digest: record.digest(),
        })
    }

    fn read(row: &dyn Columns) -> Result<RecordRow<'static>, StoreError> {
        let digest = row.bytes(13)?;
        let mut out = RecordRow {
            host: Cow::Owned(row.text(0)?),
            id: Cow::Owned(row.text(1)?),
            model: Cow::Owned(row.text(2)?),
            reported_model: Cow::Owned(row.text(3)?),
            use_case: Cow::Owned(row.text(4)?),
            region: Cow::Owned(row.text(5)?),
            time_secs: row.int(6)?,
            time_nanos: row.int(7)?,
            requests: row.int(8)?,
            input_tokens: row.int(9)?,
            output_tokens: row.int(10)?,
            revenue: row.text(11)?,
            currency: Cow::Owned(row.text(12)?),
            digest: [0; 32],
        };
        out.digest =
            <[u8; 32]>::try_from(digest.as_slice()).map_err(|_| out.corrupt(format!("its digest has {} bytes, not 32", digest.len())))?;
        Ok(out)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { what: format!("record {} of host {}", self.id, self.host), detail }
    }

    /// The record, with every stored value checked.
    pub fn to_record(&self) -> Result<UsageRecord<'static>, StoreError> {
        let count = |field: &str, n: i64| unsigned::<u64>(n, || format!("`{field}` of record {} of host {}", self.id, self.host));
        let nanos = u32::try_from(self.time_nanos).ok().filter(|n| *n < 1_000_000_000);
        let nanos = nanos.ok_or_else(|| self.corrupt(format!("its time has {} nanoseconds", self.time_nanos)))?;
        Ok(UsageRecord {
            id: Cow::Owned(self.id.to_string()),
            host: Cow::Owned(self.host.to_string()),
            model: Cow::Owned(self.model.to_string()),
            use_case: Cow::Owned(self.use_case.to_string()),
            region: Cow::Owned(self.region.to_string()),
            time: Instant::from_parts(self.time_secs, nanos),
            requests: count("requests", self.requests)?,
            input_tokens: count("input_tokens", self.input_tokens)?,
            output_tokens: count("output_tokens", self.output_tokens)?,
            revenue: Decimal::parse(&self.revenue).map_err(|e| self.corrupt(e.to_string()))?,
            currency: Currency::parse(&self.currency).map_err(|e| self.corrupt(e.to_string()))?,
        })
    }

    /// The SHA-256 digest of the stored (resolved) record.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The SHA-256 digest of the record as its host sent it (`sent`, with the host's model id):
    /// the row's own digest when the host used the licensed id.
    pub fn sent_digest(&self, sent: &UsageRecord<'_>) -> [u8; 32] {
        if sent.model == self.model { self.digest } else { sent.digest() }
    }

    /// The value fields in which `sent` differs from this stored row, each as
    /// `field: stored X, sent Y`. Empty means the same record (SPEC §3 compares by value).
    pub fn differences(&self, sent: &RecordRow<'_>) -> Vec<String> {
        let mut out = Vec::new();
        let mut text = |field: &str, stored: &str, sent: &str| {
            if stored != sent {
                out.push(format!("{field}: stored `{stored}`, sent `{sent}`"));
            }
        };
        text("model", &self.model, &sent.model);
        text("use_case", &self.use_case, &sent.use_case);
        text("region", &self.region, &sent.region);
        text("revenue", &self.revenue, &sent.revenue);
        text("currency", &self.currency, &sent.currency);
        if (self.time_secs, self.time_nanos) != (sent.time_secs, sent.time_nanos) {
            let time = |row: &RecordRow<'_>| {
                u32::try_from(row.time_nanos).map(|n| Instant::from_parts(row.time_secs, n).to_string()).unwrap_or_default()
            };
            out.push(format!("time: stored {}, sent {}", time(self), time(sent)));
        }
        for (field, stored, sent) in [
            ("requests", self.requests, sent.requests),
            ("input_tokens", self.input_tokens, sent.input_tokens),
            ("output_tokens", self.output_tokens, sent.output_tokens),
        ] {
            if stored != sent {
                out.push(format!("{field}: stored {stored}, sent {sent}"));
            }
        }
        out
    }
}

fn read_stored(row: &dyn Columns) -> Result<StoredRecord, StoreError> {
    let record = RecordRow::read(row)?;
    let what = || format!("record {} of host {}", record.id, record.host);
    let resends = unsigned(row.int(14)?, what)?;
    let placed = match (row.opt_text(15)?, row.opt_text(16)?) {
        (Some(agreement_id), Some(month)) => Some(Match { agreement_id, month, scope: scope_from_column(row.int(17)?, what)? }),
        (None, None) => None,
        _ => return Err(record.corrupt("it has an agreement without a month, or a month without an agreement".to_owned())),
    };
    Ok(StoredRecord { row: record, resends, placed, late: row.flag(18)? })
}

/// A record to store, with where it goes.
pub(crate) struct NewRecord<'r> {
    pub row: &'r RecordRow<'r>,
    pub placed: Option<&'r Match>,
    pub late: bool,
    /// The log leaf of the batch that stores it.
    pub batch: i64,
}

/// A record's primary key, owned.
type Key = (String, String);

/// Stores new records, whose `(host, id)` are distinct, with `ON CONFLICT (host, id) DO NOTHING`:
/// returns, for each, whether it was stored (`false` when its `(host, id)` was already stored;
/// nothing is changed then). SQLite runs one statement per record; PostgreSQL one for all.
pub(crate) fn insert_many(sql: &mut impl Sql, new: &[NewRecord<'_>]) -> Result<Vec<bool>, StoreError> {
    if sql.dialect() == Dialect::Sqlite || new.len() <= 1 {
        return new.iter().map(|r| insert(sql, r)).collect();
    }
    let text = |f: for<'a> fn(&'a RecordRow<'a>) -> &'a str| new.iter().map(|r| f(r.row)).collect::<Vec<&str>>();
    let int = |f: fn(&RecordRow<'_>) -> i64| new.iter().map(|r| f(r.row)).collect::<Vec<i64>>();
    let (hosts, ids, models, reported) = (text(|r| &r.host), text(|r| &r.id), text(|r| &r.model), text(|r| &r.reported_model));
    let (use_cases, regions, revenues, currencies) =
        (text(|r| &r.use_case), text(|r| &r.region), text(|r| &r.revenue), text(|r| &r.currency));
    let (secs, nanos, requests) = (int(|r| r.time_secs), int(|r| r.time_nanos), int(|r| r.requests));
    let (input, output) = (int(|r| r.input_tokens), int(|r| r.output_tokens));
    let digests: Vec<&[u8]> = new.iter().map(|r| &r.row.digest[..]).collect();
    let agreements: Vec<Option<&str>> = new.iter().map(|r| r.placed.map(|m| m.agreement_id.as_str())).collect();
    let months: Vec<Option<&str>> = new.iter().map(|r| r.placed.map(|m| m.month.as_str())).collect();
    let scopes: Vec<i64> = new.iter().map(|r| scope_column(r.placed.and_then(|m| m.scope))).collect();
    let lates: Vec<bool> = new.iter().map(|r| r.late).collect();
    let batches: Vec<i64> = new.iter().map(|r| r.batch).collect();
    let mut stored: HashSet<Key> = HashSet::with_capacity(new.len());
    sql.query(
        concat!(
            "INSERT INTO records (",
            value_columns!(),
            ", agreement_id, month, scope, late, batch) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], \
             $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::bytea[], $15::text[], \
             $16::text[], $17::bigint[], $18::boolean[], $19::bigint[]) \
             ON CONFLICT (host, id) DO NOTHING RETURNING host, id"
        ),
        &[
            Param::TextArray(&hosts),
            Param::TextArray(&ids),
            Param::TextArray(&models),
            Param::TextArray(&reported),
            Param::TextArray(&use_cases),
            Param::TextArray(&regions),
            Param::IntArray(&secs),
            Param::IntArray(&nanos),
            Param::IntArray(&requests),
            Param::IntArray(&input),
            Param::IntArray(&output),
            Param::TextArray(&revenues),
            Param::TextArray(&currencies),
            Param::BytesArray(&digests),
            Param::OptTextArray(&agreements),
            Param::OptTextArray(&months),
            Param::IntArray(&scopes),
            Param::BoolArray(&lates),
            Param::IntArray(&batches),
        ],
        &mut |row| {
            stored.insert((row.text(0)?, row.text(1)?));
            Ok(())
        },
    )?;
    Ok(new.iter().map(|r| stored.contains(&(r.row.host.to_string(), r.row.id.to_string()))).collect())
}

/// Stores a new record; `false` when `(host, id)` is already stored (nothing is changed then).
fn insert(sql: &mut impl Sql, new: &NewRecord<'_>) -> Result<bool, StoreError> {
    let (row, placed) = (new.row, new.placed);
    let changed = sql.execute(
        concat!(
            "INSERT INTO records (",
            value_columns!(),
            ", agreement_id, month, scope, late, batch) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
             ON CONFLICT (host, id) DO NOTHING"
        ),
        &[
            Param::Text(&row.host),
            Param::Text(&row.id),
            Param::Text(&row.model),
            Param::Text(&row.reported_model),
            Param::Text(&row.use_case),
            Param::Text(&row.region),
            Param::Int(row.time_secs),
            Param::Int(row.time_nanos),
            Param::Int(row.requests),
            Param::Int(row.input_tokens),
            Param::Int(row.output_tokens),
            Param::Text(&row.revenue),
            Param::Text(&row.currency),
            Param::Bytes(&row.digest),
            Param::OptText(placed.map(|m| m.agreement_id.as_str())),
            Param::OptText(placed.map(|m| m.month.as_str())),
            Param::Int(scope_column(placed.and_then(|m| m.scope))),
            Param::Bool(new.late),
            Param::Int(new.batch),
        ],
    )?;
    Ok(changed == 1)
}

fn stored(sql: &mut impl Sql, host: &str, id: &str) -> Result<Option<StoredRecord>, StoreError> {
    first(
        sql,
        concat!("SELECT ", value_columns!(), ", ", place_columns!(), " FROM records WHERE host = $1 AND id = $2"),
        &[Param::Text(host), Param::Text(id)],
        read_stored,
    )
}

/// The stored records of `keys` (`(host, id)` pairs), by key; a key not stored is absent.
/// SQLite reads them one by one; PostgreSQL in one query.
pub(crate) fn stored_many(sql: &mut impl Sql, keys: &[(&str, &str)]) -> Result<HashMap<Key, StoredRecord>, StoreError> {
    let mut out = HashMap::with_capacity(keys.len());
    if sql.dialect() == Dialect::Sqlite || keys.len() <= 1 {
        for &(host, id) in keys {
            if let Some(record) = stored(sql, host, id)? {
                out.insert((host.to_owned(), id.to_owned()), record);
            }
        }
        return Ok(out);
    }
    let hosts: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
    sql.query(
        concat!(
            "SELECT ",
            value_columns!(),
            ", ",
            place_columns!(),
            " FROM records WHERE (host, id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        ),
        &[Param::TextArray(&hosts), Param::TextArray(&ids)],
        &mut |row| {
            let record = read_stored(row)?;
            out.insert((record.row.host.to_string(), record.row.id.to_string()), record);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Counts identical resends of stored records: `(host, id, how many more)`, keys distinct.
pub(crate) fn add_resends(sql: &mut impl Sql, resends: &[(&str, &str, i64)]) -> Result<(), StoreError> {
    if sql.dialect() == Dialect::Sqlite || resends.len() <= 1 {
        for &(host, id, count) in resends {
            sql.execute(
                "UPDATE records SET resends = resends + $1 WHERE host = $2 AND id = $3",
                &[Param::Int(count), Param::Text(host), Param::Text(id)],
            )?;
        }
        return Ok(());
    }
    let hosts: Vec<&str> = resends.iter().map(|r| r.0).collect();
    let ids: Vec<&str> = resends.iter().map(|r| r.1).collect();
    let counts: Vec<i64> = resends.iter().map(|r| r.2).collect();
    sql.execute(
        "UPDATE records SET resends = records.resends + more.count \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS more (host, id, count) \
         WHERE records.host = more.host AND records.id = more.id",
        &[Param::TextArray(&hosts), Param::TextArray(&ids), Param::IntArray(&counts)],
    )?;
    Ok(())
}

/// Every record of `host` for a model owned by `licensor`.
pub(crate) fn of_pair(sql: &mut impl Sql, licensor: &str, host: &str) -> Result<Vec<StoredRecord>, StoreError> {
    rows(
        sql,
        concat!(
            "SELECT ",
            value_columns!(),
            ", ",
            place_columns!(),
            " FROM records WHERE host = $1 AND model IN (SELECT id FROM models WHERE owner = $2)"
        ),
        &[Param::Text(host), Param::Text(licensor)],
        read_stored,
    )
}

/// Moves a record to another place (only where-it-goes columns change; values never do).
pub(crate) fn set_place(sql: &mut impl Sql, record: &UsageRecord<'_>, placed: Option<&Match>, late: bool) -> Result<(), StoreError> {
    sql.execute(
        "UPDATE records SET agreement_id = $1, month = $2, scope = $3, late = $4 WHERE host = $5 AND id = $6",
        &[
            Param::OptText(placed.map(|m| m.agreement_id.as_str())),
            Param::OptText(placed.map(|m| m.month.as_str())),
            Param::Int(scope_column(placed.and_then(|m| m.scope))),
            Param::Bool(late),
            Param::Text(&record.host),
            Param::Text(&record.id),
        ],
    )?;
    Ok(())
}

/// The records of an agreement's month, ordered by host and id.
pub(crate) fn of_period(sql: &mut impl Sql, agreement_id: &str, month: &str) -> Result<Vec<UsageRecord<'static>>, StoreError> {
    let rows = rows(
        sql,
        concat!("SELECT ", value_columns!(), " FROM records WHERE agreement_id = $1 AND month = $2 ORDER BY host, id"),
        &[Param::Text(agreement_id), Param::Text(month)],
        RecordRow::read,
    )?;
    rows.iter().map(RecordRow::to_record).collect()
}

/// A stored record as its host sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRecord {
    /// The log leaf of the batch that stored it (`None`: stored before the log existed).
    pub batch: Option<u64>,
    /// The record with the host's own model id.
    pub record: UsageRecord<'static>,
    /// The licensed model that id resolved to.
    pub model: String,
}

/// The records of an agreement's month as their hosts sent them, by host and id.
pub(crate) fn sent_of_period(sql: &mut impl Sql, agreement_id: &str, month: &str) -> Result<Vec<SentRecord>, StoreError> {
    let rows = rows(
        sql,
        concat!("SELECT ", value_columns!(), ", COALESCE(batch, -1) FROM records WHERE agreement_id = $1 AND month = $2 ORDER BY host, id"),
        &[Param::Text(agreement_id), Param::Text(month)],
        |row| Ok((u64::try_from(row.int(14)?).ok(), RecordRow::read(row)?)),
    )?;
    rows.into_iter()
        .map(|(batch, row)| {
            let mut record = row.to_record()?;
            let model = std::mem::replace(&mut record.model, Cow::Owned(row.reported_model.to_string())).into_owned();
            Ok(SentRecord { batch, record, model })
        })
        .collect()
}
