//! Rollups maintained at ingest, so closing a month reads O(groups) rows, not O(records).
//!
//! One row per (agreement, month `YYYY-MM` in UTC, model, use case, region, exclusivity scope,
//! revenue scale) holds the number of distinct records, the identical resends acknowledged for
//! them, and the sums of requests, input tokens, output tokens and revenue. The scale is the
//! number of decimal places of the normalised revenue (0 to 28): revenue is summed as the integer
//! mantissas of one scale, exactly as the core's [`GroupSums`] does, so a row's revenue is
//! `sum × 10^-scale` with no rounding, and a group whose records use one scale (the usual case:
//! a host writes all its revenue one way) is one row instead of 29 mostly-zero columns. Reading a
//! month merges the scale rows of a group back into one [`GroupSums`].
//!
//! The four sums are `u128` (billions of records of up to 2^63 tokens each). PostgreSQL holds them
//! as `NUMERIC(39,0)`, which fits every `u128` and stays summable in SQL for ad-hoc reports;
//! SQLite, whose integers are 64-bit, holds them as decimal `TEXT` in a STRICT table (exact and
//! readable). Both are read back as text (`CAST(… AS TEXT)`) and parsed, so a damaged value is an
//! error, never a wrong number. Updates are read-add-write in Rust with overflow checks; writers
//! are serialised (see [`crate::sql::Access`]), so this needs no retry.
//!
//! The exclusivity scope column is the index of the agreement's `[[exclusivity]]` entry, `-1`
//! for none (a primary key column cannot be NULL in PostgreSQL).
//!
//! `daily_rollups` holds the same sums per day (UTC) instead of per scope: one row per
//! (agreement, month, model, use case, region, day of the month, scale). Closing never reads them;
//! they are what usage over time is drawn from ([`daily`]), open month included, in O(days ×
//! groups) rows whatever the number of records. `daily_totals` holds each day's sums over every
//! model, use case and region (those columns empty), summed from the daily changes as they are
//! written: a year by day is a few hundred rows there, tens of thousands in `daily_rollups`
//! ([`Grain`]). Both are written beside the monthly rows, by the same code, in the same
//! transaction.
//!
//! Beside the sums, `usage_sets` holds one row per (agreement, month): the lattice-hash state
//! ([`UsageSet`], 2,048 bytes) of the distinct records rolled up there, which is what the
//! statement's `usage_digest` is taken from. A commit group adds its new records' digests to it
//! once, so a close reads one row for the digest, as it reads O(groups) rows for the sums.
//!
//! How changes are made ([`Deltas`]): ingestion sums a batch's new records into hash maps keyed
//! by borrowed text, over stretches of the batch on every core, merges them and adds the batch's
//! resends; a commit group's batches are merged too, and every changed row is written once,
//! before the commit, in key order (so writers take rows in one order). On SQLite each row is
//! read, added to and written on its own (cheap in-process); on PostgreSQL, a network round trip
//! away, the rows of each (agreement, month) touched are read in one query and every changed row
//! is written in one `UNNEST` upsert. Sums and lattice-hash states are commutative, so
//! none of this depends on how the records were split or in which order the batches came.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use foldhash::fast::FixedState;

use revshare_core::rollup::{GroupKey, GroupSums, Rollup, RollupOverflow, SCALES};
use revshare_core::usage::UsageRecord;
use revshare_core::usage_set::UsageSet;

use crate::agreements::Match;
use crate::error::StoreError;
use crate::sql::{Columns, Dialect, Param, Sql, first, rows, unsigned};

/// The scope column of an exclusivity scope index.
pub(crate) fn scope_column(scope: Option<usize>) -> i64 {
    // An agreement has a handful of scopes; no index comes near i64::MAX.
    scope.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX))
}

pub(crate) fn scope_from_column(value: i64, what: impl FnOnce() -> String) -> Result<Option<usize>, StoreError> {
    if value == -1 { Ok(None) } else { unsigned(value, what).map(Some) }
}

/// A rollup row's key, borrowed from the records and places a batch holds, so summing a record
/// allocates nothing; owned once the batch is gone ([`Deltas::into_owned`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RollupKey<'k> {
    agreement_id: Cow<'k, str>,
    month: Cow<'k, str>,
    model: Cow<'k, str>,
    use_case: Cow<'k, str>,
    region: Cow<'k, str>,
    /// The exclusivity scope column in `rollups`, the day of the month in `daily_rollups`.
    part: i64,
    scale: i64,
}

/// One of the two rollup tables (they differ in name and in their [`RollupKey::part`] column):
/// its statements, written out in full because statements are prepared and cached by their text.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    /// One row's sums, by its key.
    select_row: &'static str,
    /// The rows of an agreement's month.
    select_month: &'static str,
    /// One row, inserted or replaced.
    put: &'static str,
    /// Rows bound as arrays (PostgreSQL), inserted or replaced.
    put_all: &'static str,
    /// The rows of an agreement's months `$2` to `$3`, in key order (the primary key's: no sort).
    select_range: &'static str,
}

macro_rules! table {
    ($name:literal, $part:literal) => {
        Table {
            name: $name,
            select_row: concat!(
                "SELECT record_count, duplicates, CAST(requests AS TEXT), CAST(input_tokens AS TEXT), \
                 CAST(output_tokens AS TEXT), CAST(revenue AS TEXT) FROM ",
                $name,
                " WHERE agreement_id = $1 AND month = $2 AND model = $3 AND use_case = $4 AND region = $5 AND ",
                $part,
                " = $6 AND scale = $7"
            ),
            select_month: concat!(
                "SELECT model, use_case, region, ",
                $part,
                ", scale, record_count, duplicates, CAST(requests AS TEXT), \
                 CAST(input_tokens AS TEXT), CAST(output_tokens AS TEXT), CAST(revenue AS TEXT) FROM ",
                $name,
                " WHERE agreement_id = $1 AND month = $2"
            ),
            put: concat!(
                "INSERT INTO ",
                $name,
                " (agreement_id, month, model, use_case, region, ",
                $part,
                ", scale, record_count, duplicates, requests, input_tokens, output_tokens, revenue) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (agreement_id, month, model, use_case, region, ",
                $part,
                ", scale) DO UPDATE SET \
                 record_count = excluded.record_count, duplicates = excluded.duplicates, requests = excluded.requests, \
                 input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, revenue = excluded.revenue"
            ),
            put_all: concat!(
                "INSERT INTO ",
                $name,
                " (agreement_id, month, model, use_case, region, ",
                $part,
                ", scale, record_count, duplicates, requests, input_tokens, output_tokens, revenue) \
                 SELECT a, m, mo, u, r, s, sc, n, d, CAST(rq AS NUMERIC), CAST(it AS NUMERIC), CAST(ot AS NUMERIC), CAST(rv AS NUMERIC) \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], \
                 $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[]) AS t (a, m, mo, u, r, s, sc, n, d, rq, it, ot, rv) \
                 ON CONFLICT (agreement_id, month, model, use_case, region, ",
                $part,
                ", scale) DO UPDATE SET \
                 record_count = excluded.record_count, duplicates = excluded.duplicates, requests = excluded.requests, \
                 input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, revenue = excluded.revenue"
            ),
            select_range: concat!(
                "SELECT month, model, use_case, region, ",
                $part,
                ", scale, record_count, duplicates, CAST(requests AS TEXT), CAST(input_tokens AS TEXT), \
                 CAST(output_tokens AS TEXT), CAST(revenue AS TEXT) FROM ",
                $name,
                " WHERE agreement_id = $1 AND month >= $2 AND month <= $3 ORDER BY month, model, use_case, region, ",
                $part,
                ", scale"
            ),
        }
    };
}

const MONTHLY: Table = table!("rollups", "scope");
const DAILY: Table = table!("daily_rollups", "day");
/// Each day's sums over every model, use case and region (those columns are empty): a year by
/// day is a few hundred rows, where `daily_rollups` holds tens of thousands.
const DAY_TOTALS: Table = table!("daily_totals", "day");

impl RollupKey<'_> {
    /// The key as the seven parameters `$1`…`$7` of the rollup statements.
    fn params(&self) -> [Param<'_>; 7] {
        [
            Param::Text(&self.agreement_id),
            Param::Text(&self.month),
            Param::Text(&self.model),
            Param::Text(&self.use_case),
            Param::Text(&self.region),
            Param::Int(self.part),
            Param::Int(self.scale),
        ]
    }
}

#[derive(Clone, Debug, Default)]
struct Sums {
    records: u64,
    duplicates: u64,
    requests: u128,
    input_tokens: u128,
    output_tokens: u128,
    revenue: u128,
}

impl Sums {
    /// One distinct record's sums.
    fn of(record: &UsageRecord<'_>) -> Sums {
        Sums {
            records: 1,
            duplicates: 0,
            requests: u128::from(record.requests),
            input_tokens: u128::from(record.input_tokens),
            output_tokens: u128::from(record.output_tokens),
            revenue: record.revenue.mantissa(),
        }
    }

    fn merge(&mut self, other: &Sums) -> Result<(), RollupOverflow> {
        self.records = self.records.checked_add(other.records).ok_or(RollupOverflow)?;
        self.duplicates = self.duplicates.checked_add(other.duplicates).ok_or(RollupOverflow)?;
        self.requests = self.requests.checked_add(other.requests).ok_or(RollupOverflow)?;
        self.input_tokens = self.input_tokens.checked_add(other.input_tokens).ok_or(RollupOverflow)?;
        self.output_tokens = self.output_tokens.checked_add(other.output_tokens).ok_or(RollupOverflow)?;
        self.revenue = self.revenue.checked_add(other.revenue).ok_or(RollupOverflow)?;
        Ok(())
    }

    /// Reads the six sum columns starting at `at`.
    fn read(row: &dyn Columns, at: usize, what: impl Fn() -> String) -> Result<Sums, StoreError> {
        let big = |i: usize| -> Result<u128, StoreError> {
            let text = row.text(at + i)?;
            text.parse().map_err(|_| StoreError::Corrupt { what: what(), detail: format!("`{text}` is not a sum") })
        };
        Ok(Sums {
            records: unsigned(row.int(at)?, &what)?,
            duplicates: unsigned(row.int(at + 1)?, &what)?,
            requests: big(2)?,
            input_tokens: big(3)?,
            output_tokens: big(4)?,
            revenue: big(5)?,
        })
    }
}

/// Changes to rollups, gathered in memory and written once per group, and to the usage sets,
/// written once per (agreement, month); keyed by what the caller holds, in hash maps (a batch
/// sums every record into them), and written in key order, so writers take rows in one order.
#[derive(Default)]
pub(crate) struct Deltas<'k> {
    sums: HashMap<RollupKey<'k>, Sums, FixedState>,
    daily: HashMap<RollupKey<'k>, Sums, FixedState>,
    sets: HashMap<(Cow<'k, str>, Cow<'k, str>), UsageSet, FixedState>,
}

impl<'k> Deltas<'k> {
    fn add(&mut self, placed: &'k Match<'k>, model: &'k str, record: &'k UsageRecord<'_>, sums: &Sums) -> Result<(), StoreError> {
        let key = RollupKey {
            agreement_id: Cow::Borrowed(placed.agreement_id),
            month: Cow::Borrowed(placed.month.as_str()),
            model: Cow::Borrowed(model),
            use_case: Cow::Borrowed(&record.use_case),
            region: Cow::Borrowed(&record.region),
            part: scope_column(placed.scope),
            scale: i64::from(record.revenue.scale()),
        };
        let day = RollupKey { part: i64::from(record.time.date().2), ..key.clone() };
        self.daily.entry(day).or_default().merge(sums)?;
        Ok(self.sums.entry(key).or_default().merge(sums)?)
    }

    /// One more distinct record in its place, under the licensed `model` it resolved to (its own
    /// `model` is not read), with the SHA-256 `digest` of its resolved form: in the sums and in
    /// the place's usage set.
    pub fn record(
        &mut self,
        placed: &'k Match<'k>,
        model: &'k str,
        record: &'k UsageRecord<'_>,
        digest: &[u8; 32],
    ) -> Result<(), StoreError> {
        let sums = Sums::of(record);
        self.sets.entry((Cow::Borrowed(placed.agreement_id), Cow::Borrowed(placed.month.as_str()))).or_default().insert(digest);
        self.add(placed, model, record, &sums)
    }

    /// The same changes, keyed by text of their own: a group's batches are gathered into one
    /// (their records are gone by then) and written once.
    pub fn into_owned(self) -> Deltas<'static> {
        let owned = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        let owned_keys = |sums: HashMap<RollupKey<'_>, Sums, FixedState>| {
            sums.into_iter()
                .map(|(key, sums)| {
                    let RollupKey { agreement_id, month, model, use_case, region, part, scale } = key;
                    let key = RollupKey {
                        agreement_id: owned(agreement_id),
                        month: owned(month),
                        model: owned(model),
                        use_case: owned(use_case),
                        region: owned(region),
                        part,
                        scale,
                    };
                    (key, sums)
                })
                .collect()
        };
        Deltas {
            sums: owned_keys(self.sums),
            daily: owned_keys(self.daily),
            sets: self.sets.into_iter().map(|((agreement_id, month), set)| ((owned(agreement_id), owned(month)), set)).collect(),
        }
    }

    /// Adds changes gathered apart (over another part of a batch, or another batch of a group).
    pub fn merge(&mut self, other: Deltas<'k>) -> Result<(), StoreError> {
        for (key, sums) in other.sums {
            self.sums.entry(key).or_default().merge(&sums)?;
        }
        for (key, sums) in other.daily {
            self.daily.entry(key).or_default().merge(&sums)?;
        }
        for (key, set) in other.sets {
            self.sets.entry(key).or_default().union(&set);
        }
        Ok(())
    }

    /// `count` more identical resends of a stored record, under its licensed `model`.
    pub fn duplicates(&mut self, placed: &'k Match<'k>, model: &'k str, record: &'k UsageRecord<'_>, count: u64) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        self.add(placed, model, record, &Sums { duplicates: count, ..Sums::default() })
    }

    /// Adds the changes to the stored rollups and usage sets; the sums are added here, with
    /// overflow checks, and written back. SQLite, in-process, reads and writes row by row.
    /// PostgreSQL is a round trip away, and two per rollup row were about a sixth of a
    /// 50,000-record batch's time there: it reads the rows of each (agreement, month) touched in
    /// one query and writes every changed row in one statement.
    pub fn write(self, sql: &mut impl Sql) -> Result<(), StoreError> {
        let sets: BTreeMap<_, _> = self.sets.into_iter().collect();
        for ((agreement_id, month), delta) in sets {
            let mut set = usage_set(sql, &agreement_id, &month)?;
            set.union(&delta);
            sql.execute(
                "INSERT INTO usage_sets (agreement_id, month, state) VALUES ($1, $2, $3) \
                 ON CONFLICT (agreement_id, month) DO UPDATE SET state = excluded.state",
                &[Param::Text(&agreement_id), Param::Text(&month), Param::Bytes(&set.to_bytes())],
            )?;
        }
        write_table(sql, MONTHLY, self.sums)?;
        write_table(sql, DAY_TOTALS, day_totals(&self.daily)?)?;
        write_table(sql, DAILY, self.daily)
    }
}

/// The daily sums over every model, use case and region: keys with those left empty.
fn day_totals<'d>(daily: &'d HashMap<RollupKey<'_>, Sums, FixedState>) -> Result<HashMap<RollupKey<'d>, Sums, FixedState>, StoreError> {
    let mut totals = HashMap::<RollupKey<'d>, Sums, FixedState>::default();
    for (key, sums) in daily {
        let total = RollupKey {
            agreement_id: Cow::Borrowed(&key.agreement_id),
            month: Cow::Borrowed(&key.month),
            model: Cow::Borrowed(""),
            use_case: Cow::Borrowed(""),
            region: Cow::Borrowed(""),
            part: key.part,
            scale: key.scale,
        };
        totals.entry(total).or_default().merge(sums)?;
    }
    Ok(totals)
}

/// Adds the changed sums of one table to its stored rows.
fn write_table(sql: &mut impl Sql, table: Table, changed: HashMap<RollupKey<'_>, Sums, FixedState>) -> Result<(), StoreError> {
    let mut sums: Vec<(RollupKey<'_>, Sums)> = changed.into_iter().collect();
    sums.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    match sql.dialect() {
        Dialect::Sqlite => {
            for (key, delta) in &sums {
                let what = || format!("{} of agreement {} in {}", table.name, key.agreement_id, key.month);
                let stored = first(sql, table.select_row, &key.params(), |row| Sums::read(row, 0, what))?;
                let mut total = stored.unwrap_or_default();
                total.merge(delta)?;
                put(sql, table, key, &total)?;
            }
            Ok(())
        }
        Dialect::Postgres => {
            add_stored(sql, table, &mut sums)?;
            put_all(sql, table, &sums)
        }
    }
}

/// Adds the stored sums to `sums` (sorted by key), reading the rows of each (agreement, month)
/// once.
fn add_stored(sql: &mut impl Sql, table: Table, sums: &mut [(RollupKey<'_>, Sums)]) -> Result<(), StoreError> {
    let mut stored = HashMap::<StoredKey, Sums, FixedState>::default();
    let mut months: Vec<(&str, &str)> = sums.iter().map(|(key, _)| (&*key.agreement_id, &*key.month)).collect();
    months.dedup();
    for (agreement_id, month) in months {
        for ((model, use_case, region, part, scale), sums) in month_rows(sql, table, agreement_id, month)? {
            stored.insert((agreement_id.to_owned(), month.to_owned(), model, use_case, region, part, scale), sums);
        }
    }
    for (key, delta) in sums {
        let key = (
            key.agreement_id.to_string(),
            key.month.to_string(),
            key.model.to_string(),
            key.use_case.to_string(),
            key.region.to_string(),
            key.part,
            key.scale,
        );
        if let Some(mut total) = stored.remove(&key) {
            total.merge(delta)?;
            *delta = total;
        }
    }
    Ok(())
}

/// A rollup row's key as read back: agreement, month, model, use case, region, part, scale.
type StoredKey = (String, String, String, String, String, i64, i64);

/// A rollup row's key within its month, as stored: model, use case, region, part (scope or day),
/// scale.
type MonthKey = (String, String, String, i64, i64);

/// The rows of an agreement's month in one of the rollup tables, as stored.
fn month_rows(sql: &mut impl Sql, table: Table, agreement_id: &str, month: &str) -> Result<Vec<(MonthKey, Sums)>, StoreError> {
    let what = || format!("{} of agreement {agreement_id} in {month}", table.name);
    rows(sql, table.select_month, &[Param::Text(agreement_id), Param::Text(month)], |row| {
        Ok(((row.text(0)?, row.text(1)?, row.text(2)?, row.int(3)?, row.int(4)?), Sums::read(row, 5, what)?))
    })
}

fn count(n: u64) -> Result<i64, RollupOverflow> {
    i64::try_from(n).map_err(|_| RollupOverflow)
}

/// One rollup row, inserted or replaced (SQLite: in-process, one statement a row costs little).
fn put(sql: &mut impl Sql, table: Table, key: &RollupKey<'_>, sums: &Sums) -> Result<(), StoreError> {
    let (requests, input_tokens, output_tokens, revenue) =
        (sums.requests.to_string(), sums.input_tokens.to_string(), sums.output_tokens.to_string(), sums.revenue.to_string());
    sql.execute(
        table.put,
        &[
            key.params().as_slice(),
            &[
                Param::Int(count(sums.records)?),
                Param::Int(count(sums.duplicates)?),
                Param::Text(&requests),
                Param::Text(&input_tokens),
                Param::Text(&output_tokens),
                Param::Text(&revenue),
            ],
        ]
        .concat(),
    )?;
    Ok(())
}

/// Every row in one statement, each column bound as an array (PostgreSQL only). The keys are
/// distinct, as `ON CONFLICT DO UPDATE` requires of one statement's rows.
fn put_all<'k>(sql: &mut impl Sql, table: Table, changed: &[(RollupKey<'k>, Sums)]) -> Result<(), StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    let texts = |f: for<'a> fn(&'a RollupKey<'k>) -> &'a str| -> Vec<&str> { changed.iter().map(|(key, _)| f(key)).collect() };
    let (agreement_ids, months, models, use_cases, regions) =
        (texts(|k| &k.agreement_id), texts(|k| &k.month), texts(|k| &k.model), texts(|k| &k.use_case), texts(|k| &k.region));
    let parts: Vec<i64> = changed.iter().map(|(key, _)| key.part).collect();
    let scales: Vec<i64> = changed.iter().map(|(key, _)| key.scale).collect();
    let records = changed.iter().map(|(_, sums)| count(sums.records)).collect::<Result<Vec<_>, _>>()?;
    let duplicates = changed.iter().map(|(_, sums)| count(sums.duplicates)).collect::<Result<Vec<_>, _>>()?;
    let decimals = |f: fn(&Sums) -> u128| -> Vec<String> { changed.iter().map(|(_, sums)| f(sums).to_string()).collect() };
    let (requests, input_tokens, output_tokens, revenue) =
        (decimals(|s| s.requests), decimals(|s| s.input_tokens), decimals(|s| s.output_tokens), decimals(|s| s.revenue));
    fn borrowed(column: &[String]) -> Vec<&str> {
        column.iter().map(String::as_str).collect()
    }
    sql.execute(
        table.put_all,
        &[
            Param::TextArray(&agreement_ids),
            Param::TextArray(&months),
            Param::TextArray(&models),
            Param::TextArray(&use_cases),
            Param::TextArray(&regions),
            Param::IntArray(&parts),
            Param::IntArray(&scales),
            Param::IntArray(&records),
            Param::IntArray(&duplicates),
            Param::TextArray(&borrowed(&requests)),
            Param::TextArray(&borrowed(&input_tokens)),
            Param::TextArray(&borrowed(&output_tokens)),
            Param::TextArray(&borrowed(&revenue)),
        ],
    )?;
    Ok(())
}

/// Forgets an agreement's rollups and usage sets (before they are rebuilt from its records).
pub(crate) fn delete(sql: &mut impl Sql, agreement_id: &str) -> Result<(), StoreError> {
    sql.execute("DELETE FROM rollups WHERE agreement_id = $1", &[Param::Text(agreement_id)])?;
    sql.execute("DELETE FROM daily_rollups WHERE agreement_id = $1", &[Param::Text(agreement_id)])?;
    sql.execute("DELETE FROM daily_totals WHERE agreement_id = $1", &[Param::Text(agreement_id)])?;
    sql.execute("DELETE FROM usage_sets WHERE agreement_id = $1", &[Param::Text(agreement_id)])?;
    Ok(())
}

/// The usage set of an agreement's month (empty when it has no records).
pub(crate) fn usage_set(sql: &mut impl Sql, agreement_id: &str, month: &str) -> Result<UsageSet, StoreError> {
    let state = first(
        sql,
        "SELECT state FROM usage_sets WHERE agreement_id = $1 AND month = $2",
        &[Param::Text(agreement_id), Param::Text(month)],
        |row| row.bytes(0),
    )?;
    match state {
        None => Ok(UsageSet::new()),
        Some(bytes) => UsageSet::from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt {
            what: format!("usage set of agreement {agreement_id} in {month}"),
            detail: format!("its state has {} bytes, not {}", bytes.len(), revshare_core::usage_set::STATE_BYTES),
        }),
    }
}

/// Fills `usage_sets` from the stored records (schema version 7, which added it).
pub(crate) fn fill_usage_sets(sql: &mut impl Sql) -> Result<(), StoreError> {
    let mut sets: BTreeMap<(String, String), UsageSet> = BTreeMap::new();
    sql.query("SELECT agreement_id, month, digest FROM records WHERE agreement_id IS NOT NULL AND month IS NOT NULL", &[], &mut |row| {
        let (agreement_id, month, bytes) = (row.text(0)?, row.text(1)?, row.bytes(2)?);
        let digest = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
            what: format!("a record of agreement {agreement_id} in {month}"),
            detail: format!("its digest has {} bytes, not 32", bytes.len()),
        })?;
        sets.entry((agreement_id, month)).or_default().insert(&digest);
        Ok(())
    })?;
    let mut deltas = Deltas::default();
    for ((agreement_id, month), set) in &sets {
        deltas.sets.insert((Cow::Borrowed(agreement_id), Cow::Borrowed(month)), set.clone());
    }
    deltas.write(sql)
}

/// The rollup of an agreement's month, and the resends acknowledged for its records.
pub(crate) fn of_period(sql: &mut impl Sql, agreement_id: &str, month: &str) -> Result<(Rollup, u64), StoreError> {
    let what = || format!("rollup of agreement {agreement_id} in {month}");
    let mut rollup = Rollup::new();
    let mut duplicates: u64 = 0;
    for ((model, use_case, region, scope, scale), sums) in month_rows(sql, MONTHLY, agreement_id, month)? {
        let key = GroupKey { model, use_case, region, scope: scope_from_column(scope, what)? };
        let scale: usize = unsigned(scale, what)?;
        let mut by_scale = [0u128; SCALES];
        let slot = by_scale
            .get_mut(scale)
            .ok_or_else(|| StoreError::Corrupt { what: what(), detail: format!("revenue scale {scale} is above 28") })?;
        *slot = sums.revenue;
        let group = GroupSums::from_parts(sums.records, sums.requests, sums.input_tokens, sums.output_tokens, &by_scale)
            .ok_or_else(|| StoreError::Corrupt { what: what(), detail: "its revenue sums do not fit the core's scales".to_owned() })?;
        rollup.add_group(&key, &group)?;
        duplicates = duplicates.checked_add(sums.duplicates).ok_or(RollupOverflow)?;
    }
    Ok((rollup, duplicates))
}

/// Fills `daily_rollups` from the stored records (schema version 15, which added it): each
/// agreement month's segments are read once. Resend counts start at zero there (a resend is no
/// row, only a count in the monthly rollup).
pub(crate) fn fill_daily(sql: &mut impl Sql) -> Result<(), StoreError> {
    let months = rows(
        sql,
        "SELECT DISTINCT agreement_id, month FROM record_segments WHERE agreement_id IS NOT NULL ORDER BY agreement_id, month",
        &[],
        |row| Ok((row.text(0)?, row.text(1)?)),
    )?;
    for (agreement_id, month) in months {
        let segments = crate::segments::of_period(sql, &agreement_id, &month)?;
        let mut deltas = Deltas::default();
        for segment in &segments {
            for stored in &segment.records {
                if let Some(placed) = stored.placed(&segment.place)? {
                    let record = &stored.record;
                    let key = RollupKey {
                        agreement_id: Cow::Borrowed(placed.agreement_id),
                        month: Cow::Owned(placed.month.as_str().to_owned()),
                        model: Cow::Borrowed(&record.model),
                        use_case: Cow::Borrowed(&record.use_case),
                        region: Cow::Borrowed(&record.region),
                        part: i64::from(record.time.date().2),
                        scale: i64::from(record.revenue.scale()),
                    };
                    deltas.daily.entry(key).or_default().merge(&Sums::of(record))?;
                }
            }
        }
        write_table(sql, DAILY, deltas.daily)?;
    }
    Ok(())
}

/// Fills `daily_totals` from `daily_rollups` (when the version adding it is applied).
pub(crate) fn fill_day_totals(sql: &mut impl Sql) -> Result<(), StoreError> {
    let months = rows(sql, "SELECT DISTINCT agreement_id, month FROM daily_rollups ORDER BY agreement_id, month", &[], |row| {
        Ok((row.text(0)?, row.text(1)?))
    })?;
    for (agreement_id, month) in months {
        let mut daily = HashMap::<RollupKey<'_>, Sums, FixedState>::default();
        for ((model, use_case, region, day, scale), sums) in month_rows(sql, DAILY, &agreement_id, &month)? {
            let key = RollupKey {
                agreement_id: Cow::Borrowed(&agreement_id),
                month: Cow::Borrowed(&month),
                model: Cow::Owned(model),
                use_case: Cow::Owned(use_case),
                region: Cow::Owned(region),
                part: day,
                scale,
            };
            daily.insert(key, sums);
        }
        write_table(sql, DAY_TOTALS, day_totals(&daily)?)?;
    }
    Ok(())
}

/// An agreement's usage on a day or in a month, of a model for a use case in a region (or, at
/// [`Grain::DayTotal`], of all of them): what usage over time is drawn from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    /// The day, `YYYY-MM-DD` (UTC), or the month, `YYYY-MM`, at [`Grain::Month`].
    pub date: String,
    pub model: String,
    pub use_case: String,
    pub region: String,
    /// Distinct records.
    pub records: u64,
    pub requests: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    /// The revenue reported, exact: `revenue × 10^-scale` (rows of several scales are summed at
    /// the largest).
    pub revenue: u128,
    pub scale: u8,
}

impl UsageRow {
    /// The members of its JSON, in order: the columns of its CSV.
    pub const COLUMNS: [&str; 10] =
        ["date", "model", "use_case", "region", "records", "requests", "input_tokens", "output_tokens", "revenue", "currency"];

    /// As the CLI's `usage --format json` and the dashboard's download give it, with the
    /// agreement's `currency` (the sums are text: they may pass 2^53).
    pub fn to_json(&self, currency: revshare_core::money::Currency) -> serde_json::Value {
        serde_json::json!({
            "date": self.date, "model": self.model, "use_case": self.use_case, "region": self.region, "records": self.records,
            "requests": self.requests.to_string(), "input_tokens": self.input_tokens.to_string(),
            "output_tokens": self.output_tokens.to_string(), "revenue": self.revenue_text(), "currency": currency.code(),
        })
    }

    /// The revenue as decimal text, exact (`12.50` for 1250 at scale 2).
    pub fn revenue_text(&self) -> String {
        revshare_core::money::format_unsigned_scaled(self.revenue, u32::from(self.scale))
    }

    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.date, &self.model, &self.use_case, &self.region)
    }

    /// Adds another row's sums to this one's (revenue at the larger scale of the two).
    pub fn add(&mut self, other: &UsageRow) -> Result<(), RollupOverflow> {
        self.records = self.records.checked_add(other.records).ok_or(RollupOverflow)?;
        self.requests = self.requests.checked_add(other.requests).ok_or(RollupOverflow)?;
        self.input_tokens = self.input_tokens.checked_add(other.input_tokens).ok_or(RollupOverflow)?;
        self.output_tokens = self.output_tokens.checked_add(other.output_tokens).ok_or(RollupOverflow)?;
        let at = self.scale.max(other.scale);
        let (Some(a), Some(b)) = (self.revenue_at(at), other.revenue_at(at)) else { return Err(RollupOverflow) };
        self.revenue = a.checked_add(b).ok_or(RollupOverflow)?;
        self.scale = at;
        Ok(())
    }

    /// The revenue at `scale` places (at least its own), for comparing and summing rows; `None`
    /// when it does not fit.
    pub fn revenue_at(&self, scale: u8) -> Option<u128> {
        scaled(self.revenue, self.scale, scale)
    }
}

/// How usage is read back ([`usage`]): per day or per month, by model, use case and region or
/// over all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grain {
    /// Per day, model, use case and region (`daily_rollups`).
    Day,
    /// Per day, over every model, use case and region (`daily_totals`; the names are empty).
    DayTotal,
    /// Per month, model, use case and region (`rollups`, exclusivity scopes merged).
    Month,
}

/// The usage of an agreement from month `first` to month `last` (both included, the open month
/// too) at a grain, ordered by date, model, use case and region: rows of several revenue scales
/// (and, per month, of several exclusivity scopes) merged into one.
pub(crate) fn usage(sql: &mut impl Sql, agreement_id: &str, first: &str, last: &str, grain: Grain) -> Result<Vec<UsageRow>, StoreError> {
    let table = match grain {
        Grain::Day => DAILY,
        Grain::DayTotal => DAY_TOTALS,
        Grain::Month => MONTHLY,
    };
    let what = || format!("{} of agreement {agreement_id}", table.name);
    let found = rows(sql, table.select_range, &[Param::Text(agreement_id), Param::Text(first), Param::Text(last)], |row| {
        Ok((row.text(0)?, row.text(1)?, row.text(2)?, row.text(3)?, row.int(4)?, row.int(5)?, Sums::read(row, 6, what)?))
    })?;
    let mut out: Vec<UsageRow> = Vec::new();
    for (month, model, use_case, region, part, scale, sums) in found {
        let scale = u8::try_from(scale)
            .ok()
            .filter(|s| usize::from(*s) < SCALES)
            .ok_or_else(|| StoreError::Corrupt { what: what(), detail: format!("a revenue scale of {month} is {scale}, not 0 to 28") })?;
        let date = if grain == Grain::Month { month } else { format!("{month}-{part:02}") };
        let row = UsageRow {
            date,
            model,
            use_case,
            region,
            records: sums.records,
            requests: sums.requests,
            input_tokens: sums.input_tokens,
            output_tokens: sums.output_tokens,
            revenue: sums.revenue,
            scale,
        };
        match out.last_mut() {
            // Key order puts the rows to merge next to each other.
            Some(last) if last.key() == row.key() => last.add(&row)?,
            _ => out.push(row),
        }
    }
    if grain == Grain::Day {
        // Stored by model first, then day.
        out.sort_by(|a, b| a.key().cmp(&b.key()));
    }
    Ok(out)
}

/// Which names rows are told apart by ([`regroup`]); the others are summed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub model: bool,
    pub use_case: bool,
    pub region: bool,
}

/// The rows summed per date and the names `by` keeps (the others left empty), in order.
pub fn regroup(rows: Vec<UsageRow>, by: GroupBy) -> Result<Vec<UsageRow>, RollupOverflow> {
    let mut grouped: BTreeMap<(String, String, String, String), UsageRow> = BTreeMap::new();
    for mut row in rows {
        let keep = |name: String, kept: bool| if kept { name } else { String::new() };
        row.model = keep(std::mem::take(&mut row.model), by.model);
        row.use_case = keep(std::mem::take(&mut row.use_case), by.use_case);
        row.region = keep(std::mem::take(&mut row.region), by.region);
        let key = (row.date.clone(), row.model.clone(), row.use_case.clone(), row.region.clone());
        match grouped.get_mut(&key) {
            Some(sum) => sum.add(&row)?,
            None => {
                grouped.insert(key, row);
            }
        }
    }
    Ok(grouped.into_values().collect())
}

/// `revenue` at `scale` places written at `to` places (at least `scale`); `None` when it does
/// not fit.
fn scaled(revenue: u128, scale: u8, to: u8) -> Option<u128> {
    revenue.checked_mul(10u128.checked_pow(u32::from(to.checked_sub(scale)?))?)
}
