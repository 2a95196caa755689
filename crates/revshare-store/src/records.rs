//! A record's stored values, for comparing a resend with what is stored, and records as their
//! hosts sent them.
//!
//! A record is stored as the host sent it, with its model resolved to the licensed model id (the
//! host's own name is kept beside it), so the stored record is the one that is settled and its
//! digest (`UsageRecord::digest`, SHA-256 of the canonical JSON) is the one that enters the usage
//! set. Values compare as SPEC §3 says: times as instants, revenue as a normalised decimal
//! (`1.50` is `1.5`), counts as integers. Where records are kept is [`crate::segments`].

use std::borrow::Cow;

use revshare_core::usage::UsageRecord;

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

/// The values of a record that a resend must repeat, with the model resolved.
pub(crate) struct RecordRow<'a> {
    record: &'a UsageRecord<'a>,
}

impl<'a> RecordRow<'a> {
    /// The row of a resolved record.
    pub fn new(record: &'a UsageRecord<'a>) -> RecordRow<'a> {
        RecordRow { record }
    }

    /// The value fields in which `sent` differs from this stored row, each as
    /// `field: stored X, sent Y`. Empty means the same record (SPEC §3 compares by value).
    pub fn differences(&self, sent: &RecordRow<'_>) -> Vec<String> {
        let (stored, sent) = (self.record, sent.record);
        let mut out = Vec::new();
        let mut text = |field: &str, stored: &str, sent: &str| {
            if stored != sent {
                out.push(format!("{field}: stored `{stored}`, sent `{sent}`"));
            }
        };
        text("model", &stored.model, &sent.model);
        text("use_case", &stored.use_case, &sent.use_case);
        text("region", &stored.region, &sent.region);
        text("revenue", &stored.revenue.to_string(), &sent.revenue.to_string());
        text("currency", stored.currency.code(), sent.currency.code());
        if stored.time != sent.time {
            out.push(format!("time: stored {}, sent {}", stored.time, sent.time));
        }
        for (field, stored, sent) in [
            ("requests", stored.requests, sent.requests),
            ("input_tokens", stored.input_tokens, sent.input_tokens),
            ("output_tokens", stored.output_tokens, sent.output_tokens),
        ] {
            if stored != sent {
                out.push(format!("{field}: stored {stored}, sent {sent}"));
            }
        }
        out
    }
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
