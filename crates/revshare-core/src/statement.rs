//! The statement (SPEC §6): what settlement produces, and its one canonical encoding.
//!
//! Money is kept in minor units (`i128`) and written as strings with exactly the currency's
//! minor-unit digits. Counts that may exceed 2^53 (tokens, requests, volumes) are strings, so
//! the RFC 8785 bytes are exact in every JSON reader. Record counts are numbers.
//!
//! A stored or received statement is read back with [`Statement::from_canonical`], which accepts
//! exactly the bytes [`Statement::to_canonical`] writes; whoever needs a total, an adjustment or a
//! line reads the type, never a JSON member. The money a restatement carries is [`restatement`].

use serde_json::Value;

use crate::agreement::{TierMetric, TierMode};
use crate::canonical::{self, CanonicalError, Writer};
use crate::ids::PartyId;
use crate::money::{self, AmountOverflow, Currency};
use crate::time::Period;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub agreement_id: String,
    pub agreement_version: u32,
    pub agreement_digest: String,
    pub period: Period,
    pub currency: Currency,
    pub inputs: Inputs,
    pub tiers: Tiers,
    pub lines: Vec<Line>,
    pub adjustments: Vec<Adjustment>,
    pub totals: Totals,
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// Distinct records selected.
    pub records: u64,
    /// `sha256:` over the sorted SHA-256 digests of the selected records' canonical forms.
    pub usage_digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiers {
    pub metric: TierMetric,
    pub mode: TierMode,
    pub bounds: Vec<String>,
    /// V, the exact total of the tier metric.
    pub volume: String,
    pub tiers: Vec<TierRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRow {
    pub from: String,
    /// `None` for the last, unbounded tier.
    pub to: Option<String>,
    /// The part of V inside this tier.
    pub volume: String,
    /// fᵢ to 10 places, for information.
    pub fraction: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub model: String,
    pub use_case: String,
    pub region: String,
    pub exclusive: bool,
    /// The agreement's model that the line's model derives from (SPEC §11); `None` for a model
    /// the agreement lists (or that derives from none of them). Written only when present.
    pub derived_from: Option<String>,
    pub records: u64,
    pub requests: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    /// The line's revenue, rounded half to even for information.
    pub revenue: i128,
    /// The line's exact tier-metric volume.
    pub volume: String,
    /// Σ fᵢ·r(u, i) to 10 places, for information.
    pub blended_rate: String,
    /// The exclusivity uplift applied (exclusive lines only), for information.
    pub uplift: Option<String>,
    pub amount: i128,
    pub flags: Vec<String>,
}

/// A correction carried into a statement: a restated month or a resolved dispute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub kind: AdjustmentKind,
    /// The restated period (`2026-10`), or the dispute (`dispute:7`).
    pub reference: String,
    pub description: String,
    pub amount: i128,
}

/// What an adjustment line corrects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustmentKind {
    /// An earlier month restated for records received after it closed ([`restatement`]).
    Restatement,
    /// A dispute accepted or decided with an amount (`crate::dispute`).
    Dispute,
}

impl AdjustmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentKind::Restatement => "restatement",
            AdjustmentKind::Dispute => "dispute",
        }
    }

    pub fn parse(text: &str) -> Option<AdjustmentKind> {
        [AdjustmentKind::Restatement, AdjustmentKind::Dispute].into_iter().find(|k| k.as_str() == text)
    }
}

impl Adjustment {
    /// The dispute this line carries, if it is a dispute's.
    pub fn dispute(&self) -> Option<u64> {
        (self.kind == AdjustmentKind::Dispute).then(|| crate::dispute::id_of_reference(&self.reference)).flatten()
    }
}

/// The adjustment that carries the restatement of `before` (a month's statement as finalised)
/// by `after` (the same month settled again with the records received since) into the month
/// being closed: the change in what the host owes for usage, `usage_total − host_credit`; `None`
/// when that did not change. Adjustments of the restated month are not restated: each was carried
/// once, where it was booked.
pub fn restatement(before: &Statement, after: &Statement) -> Result<Option<Adjustment>, AmountOverflow> {
    let period = after.period;
    let amount = money::sub(after.usage_net()?, before.usage_net()?, || format!("the restatement of {period}"))?;
    Ok((amount != 0).then(|| Adjustment {
        kind: AdjustmentKind::Restatement,
        reference: period.to_string(),
        description: format!("{period} restated for records received after it closed"),
        amount,
    }))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub gross_revenue: i128,
    pub usage_subtotal: i128,
    pub minimum_true_up: i128,
    pub cap_reduction: i128,
    pub usage_total: i128,
    pub contribution_pool: i128,
    pub contribution_allocation: Vec<(PartyId, i128)>,
    pub host_credit: i128,
    pub adjustments: i128,
    pub net_payable: i128,
}

impl Statement {
    /// The statement as JSON: its canonical bytes read back, so there is one encoding.
    pub fn to_json(&self) -> Result<Value, CanonicalError> {
        serde_json::from_slice(&self.to_canonical()?).map_err(|e| CanonicalError(e.to_string()))
    }

    /// The statement's RFC 8785 bytes: the same inputs give the same bytes. Written member by
    /// member in their sorted order, with no `Value` in between (a page lists many statements).
    pub fn to_canonical(&self) -> Result<Vec<u8>, CanonicalError> {
        let money = |w: &mut Writer, minor: i128| w.string(&self.currency.format(minor));
        let mut w = Writer::default();
        w.object(|w| {
            w.key("adjustments");
            w.array(|w| {
                self.adjustments.iter().try_for_each(|a| {
                    w.object(|w| {
                        w.key("amount");
                        money(w, a.amount);
                        w.key("description");
                        w.string(&a.description);
                        w.key("kind");
                        w.string(a.kind.as_str());
                        w.key("reference");
                        w.string(&a.reference);
                        Ok(())
                    })
                })
            })?;
            w.key("agreement");
            w.object(|w| {
                w.key("digest");
                w.string(&self.agreement_digest);
                w.key("id");
                w.string(&self.agreement_id);
                w.key("version");
                w.integer(u64::from(self.agreement_version))
            })?;
            w.key("currency");
            w.string(self.currency.code());
            w.key("flags");
            w.strings(&self.flags)?;
            w.key("inputs");
            w.object(|w| {
                w.key("records");
                w.integer(self.inputs.records)?;
                w.key("usage_digest");
                w.string(&self.inputs.usage_digest);
                Ok(())
            })?;
            w.key("lines");
            w.array(|w| self.lines.iter().try_for_each(|l| l.write(w, &money)))?;
            w.key("period");
            w.string(&self.period.to_string());
            w.key("tiers");
            self.tiers.write(w)?;
            w.key("totals");
            self.totals.write(w, &money, self.currency)
        })?;
        Ok(w.into_bytes())
    }

    /// `sha256:` of the canonical bytes.
    pub fn digest(&self) -> Result<String, CanonicalError> {
        self.to_canonical().map(|b| canonical::digest(&b))
    }

    /// What the host owes for the month's usage: `usage_total − host_credit`.
    pub fn usage_net(&self) -> Result<i128, AmountOverflow> {
        money::sub(self.totals.usage_total, self.totals.host_credit, || format!("the usage net of {}", self.period))
    }

    /// Reads a statement from exactly the bytes [`Self::to_canonical`] writes: every member of
    /// the right type, amounts with the currency's minor digits, and nothing more or written
    /// differently (the decoded statement encodes back to the same bytes).
    pub fn from_canonical(bytes: &[u8]) -> Result<Statement, DecodeError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::at("", "a statement (RFC 8785 JSON)", format!("not JSON: {e}")))?;
        let statement = decode(&Member::root(&value))?;
        match statement.to_canonical() {
            Ok(again) if again == bytes => Ok(statement),
            _ => Err(DecodeError::at(
                "",
                "a statement's RFC 8785 canonical bytes",
                "members a statement does not have, or its members written differently",
            )),
        }
    }
}

impl Line {
    fn write(&self, w: &mut Writer, money: &impl Fn(&mut Writer, i128)) -> Result<(), CanonicalError> {
        w.object(|w| {
            w.key("amount");
            money(w, self.amount);
            w.key("blended_rate");
            w.string(&self.blended_rate);
            if let Some(base) = &self.derived_from {
                w.key("derived_from");
                w.string(base);
            }
            w.key("exclusive");
            w.boolean(self.exclusive);
            w.key("flags");
            w.strings(&self.flags)?;
            w.key("input_tokens");
            w.count(self.input_tokens);
            w.key("model");
            w.string(&self.model);
            w.key("output_tokens");
            w.count(self.output_tokens);
            w.key("records");
            w.integer(self.records)?;
            w.key("region");
            w.string(&self.region);
            w.key("requests");
            w.count(self.requests);
            w.key("revenue");
            money(w, self.revenue);
            w.key("uplift");
            w.optional_string(self.uplift.as_deref());
            w.key("use_case");
            w.string(&self.use_case);
            w.key("volume");
            w.string(&self.volume);
            Ok(())
        })
    }
}

impl Tiers {
    fn write(&self, w: &mut Writer) -> Result<(), CanonicalError> {
        w.object(|w| {
            w.key("bounds");
            w.strings(&self.bounds)?;
            w.key("metric");
            w.string(self.metric.name());
            w.key("mode");
            w.string(self.mode.name());
            w.key("tiers");
            w.array(|w| {
                self.tiers.iter().try_for_each(|row| {
                    w.object(|w| {
                        w.key("fraction");
                        w.string(&row.fraction);
                        w.key("from");
                        w.string(&row.from);
                        w.key("to");
                        w.optional_string(row.to.as_deref());
                        w.key("volume");
                        w.string(&row.volume);
                        Ok(())
                    })
                })
            })?;
            w.key("volume");
            w.string(&self.volume);
            Ok(())
        })
    }
}

impl Totals {
    fn write(&self, w: &mut Writer, money: &impl Fn(&mut Writer, i128), currency: Currency) -> Result<(), CanonicalError> {
        w.object(|w| {
            w.key("adjustments");
            money(w, self.adjustments);
            w.key("cap_reduction");
            money(w, self.cap_reduction);
            w.key("contribution_allocation");
            w.sorted_members(self.contribution_allocation.iter().map(|(p, a)| (p.as_str(), currency.format(*a))))?;
            w.key("contribution_pool");
            money(w, self.contribution_pool);
            w.key("gross_revenue");
            money(w, self.gross_revenue);
            w.key("host_credit");
            money(w, self.host_credit);
            w.key("minimum_true_up");
            money(w, self.minimum_true_up);
            w.key("net_payable");
            money(w, self.net_payable);
            w.key("usage_subtotal");
            money(w, self.usage_subtotal);
            w.key("usage_total");
            money(w, self.usage_total);
            Ok(())
        })
    }
}

/// Why bytes are not a statement: the member (`totals.net_payable`, `lines[2].amount`), what it
/// should be and what it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("statement{}: expected {expected}, found {found}", if .path.is_empty() { String::new() } else { format!(" member `{}`", .path) })]
pub struct DecodeError {
    pub path: String,
    pub expected: String,
    pub found: String,
}

impl DecodeError {
    fn at(path: &str, expected: impl Into<String>, found: impl Into<String>) -> DecodeError {
        DecodeError { path: path.to_owned(), expected: expected.into(), found: found.into() }
    }
}

/// A member of the statement being decoded. Its path (`lines[2].amount`) is spelled out only
/// for an error: a page decodes many statements.
struct Member<'a, 'p> {
    value: &'a Value,
    parent: Option<(&'p Member<'a, 'p>, Step<'p>)>,
}

/// How a member is reached from its parent.
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

impl<'a, 'p> Member<'a, 'p> {
    fn root(value: &'a Value) -> Member<'a, 'p> {
        Member { value, parent: None }
    }

    fn get<'s>(&'s self, key: &'s str) -> Member<'a, 's> {
        Member { value: self.value.get(key).unwrap_or(&Value::Null), parent: Some((self, Step::Key(key))) }
    }

    fn path(&self) -> String {
        let Some((parent, step)) = &self.parent else { return String::new() };
        let mut path = parent.path();
        match step {
            Step::Key(key) if path.is_empty() => path.push_str(key),
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(i) => path.push_str(&format!("[{i}]")),
        }
        path
    }

    fn wrong<T>(&self, expected: &str) -> Result<T, DecodeError> {
        let found = match self.value {
            Value::Null => "nothing".to_owned(),
            other => crate::text::printable(&other.to_string(), 80),
        };
        Err(DecodeError::at(&self.path(), expected, found))
    }

    fn text(&self) -> Result<&'a str, DecodeError> {
        self.value.as_str().map_or_else(|| self.wrong("a string"), Ok)
    }

    fn optional_text(&self) -> Result<Option<String>, DecodeError> {
        if self.value.is_null() { Ok(None) } else { self.text().map(|t| Some(t.to_owned())) }
    }

    fn number<T: TryFrom<u64>>(&self) -> Result<T, DecodeError> {
        self.value.as_u64().and_then(|n| T::try_from(n).ok()).map_or_else(|| self.wrong("a whole number"), Ok)
    }

    /// A count written as a decimal string.
    fn count(&self) -> Result<u128, DecodeError> {
        let text = self.text()?;
        text.parse::<u128>().ok().filter(|n| n.to_string() == text).map_or_else(|| self.wrong("a count as a decimal string"), Ok)
    }

    fn money(&self, currency: Currency) -> Result<i128, DecodeError> {
        let expected = || format!("an amount in {currency} with exactly {} decimal places", currency.minor_units());
        currency.read(self.text()?).map_or_else(|| self.wrong(&expected()), Ok)
    }

    fn boolean(&self) -> Result<bool, DecodeError> {
        self.value.as_bool().map_or_else(|| self.wrong("true or false"), Ok)
    }

    fn items(&self) -> Result<Vec<Member<'a, '_>>, DecodeError> {
        let Some(items) = self.value.as_array() else { return self.wrong("an array") };
        Ok(items.iter().enumerate().map(|(i, value)| Member { value, parent: Some((self, Step::Index(i))) }).collect())
    }

    fn texts(&self) -> Result<Vec<String>, DecodeError> {
        self.items()?.iter().map(|m| m.text().map(str::to_owned)).collect()
    }
}

fn decode(root: &Member<'_, '_>) -> Result<Statement, DecodeError> {
    let currency_member = root.get("currency");
    let currency = Currency::parse(currency_member.text()?).map_or_else(|_| currency_member.wrong("an ISO 4217 currency code"), Ok)?;
    let period_member = root.get("period");
    let period = Period::parse(period_member.text()?).map_or_else(|_| period_member.wrong("a period like \"2026-10\""), Ok)?;
    let agreement = root.get("agreement");
    let inputs = root.get("inputs");
    let tiers = root.get("tiers");
    let metric = tiers.get("metric");
    let mode = tiers.get("mode");
    let lines = root
        .get("lines")
        .items()?
        .iter()
        .map(|l| {
            Ok(Line {
                model: l.get("model").text()?.to_owned(),
                use_case: l.get("use_case").text()?.to_owned(),
                region: l.get("region").text()?.to_owned(),
                exclusive: l.get("exclusive").boolean()?,
                derived_from: l.get("derived_from").optional_text()?,
                records: l.get("records").number()?,
                requests: l.get("requests").count()?,
                input_tokens: l.get("input_tokens").count()?,
                output_tokens: l.get("output_tokens").count()?,
                revenue: l.get("revenue").money(currency)?,
                volume: l.get("volume").text()?.to_owned(),
                blended_rate: l.get("blended_rate").text()?.to_owned(),
                uplift: l.get("uplift").optional_text()?,
                amount: l.get("amount").money(currency)?,
                flags: l.get("flags").texts()?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    let adjustments = root
        .get("adjustments")
        .items()?
        .iter()
        .map(|a| {
            let kind = a.get("kind");
            Ok(Adjustment {
                kind: AdjustmentKind::parse(kind.text()?).map_or_else(|| kind.wrong("\"restatement\" or \"dispute\""), Ok)?,
                reference: a.get("reference").text()?.to_owned(),
                description: a.get("description").text()?.to_owned(),
                amount: a.get("amount").money(currency)?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    let totals = root.get("totals");
    let allocation_member = totals.get("contribution_allocation");
    let Some(allocation) = allocation_member.value.as_object() else { return allocation_member.wrong("an object of party → amount") };
    let contribution_allocation = allocation
        .keys()
        .map(|party| {
            let part = allocation_member.get(party);
            let id = PartyId::parse(party).map_or_else(|_| part.wrong("a party id as the key"), Ok)?;
            Ok((id, part.money(currency)?))
        })
        .collect::<Result<_, DecodeError>>()?;
    let money = |key: &str| totals.get(key).money(currency);
    Ok(Statement {
        agreement_id: agreement.get("id").text()?.to_owned(),
        agreement_version: agreement.get("version").number()?,
        agreement_digest: agreement.get("digest").text()?.to_owned(),
        period,
        currency,
        inputs: Inputs { records: inputs.get("records").number()?, usage_digest: inputs.get("usage_digest").text()?.to_owned() },
        tiers: Tiers {
            metric: TierMetric::from_name(metric.text()?).map_or_else(|| metric.wrong("a tier metric"), Ok)?,
            mode: TierMode::from_name(mode.text()?).map_or_else(|| mode.wrong("\"graduated\" or \"volume\""), Ok)?,
            bounds: tiers.get("bounds").texts()?,
            volume: tiers.get("volume").text()?.to_owned(),
            tiers: tiers
                .get("tiers")
                .items()?
                .iter()
                .map(|t| {
                    Ok(TierRow {
                        from: t.get("from").text()?.to_owned(),
                        to: t.get("to").optional_text()?,
                        volume: t.get("volume").text()?.to_owned(),
                        fraction: t.get("fraction").text()?.to_owned(),
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
        },
        lines,
        adjustments,
        totals: Totals {
            gross_revenue: money("gross_revenue")?,
            usage_subtotal: money("usage_subtotal")?,
            minimum_true_up: money("minimum_true_up")?,
            cap_reduction: money("cap_reduction")?,
            usage_total: money("usage_total")?,
            contribution_pool: money("contribution_pool")?,
            contribution_allocation,
            host_credit: money("host_credit")?,
            adjustments: money("adjustments")?,
            net_payable: money("net_payable")?,
        },
        flags: root.get("flags").texts()?,
    })
}
