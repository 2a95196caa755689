//! Group commit of usage batches.
//!
//! A usage batch is one durable transaction, and with many hosts posting small batches at once
//! the fixed cost of each (its commit and fsync, its rollup rows, its log leaf and checkpoint)
//! decides the throughput. So a batch is queued here before its request waits for a writer's
//! turn, and whichever request gets a turn stores every batch queued by then as one group
//! ([`Store::ingest_group`]: one transaction, each batch decided as if alone, in arrival order)
//! and answers each. A request whose batch another request's turn stored takes its answer and
//! leaves the writers' queue, so the clients it answers send their next batches while the
//! store is still busy, and those form the next group, which the same turn goes on to store (a
//! few groups a turn, so other writing calls still get theirs). Every answer is sent after its
//! group's commit, so a batch is still acknowledged only once it is durable; a batch refused or
//! failing alone fails alone.
//!
//! A request that goes away before its batch is taken has its batch skipped (its answer has
//! nobody to go to); one that goes away later may still have its batch stored, as a client
//! that disconnects mid-request can never know: resending it is a duplicate.

use std::collections::VecDeque;
use std::sync::Mutex;

use revshare_core::transparency::SignedBatch;
use revshare_core::usage::UsageRecord;
use revshare_store::{Batch, IngestMode, IngestReport, Store, StoreError, receipts};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::Shared;
use crate::problem::Problem;

/// The most records one group stores: a group is one transaction, whose time the batches in it
/// all wait for.
const MAX_GROUP_RECORDS: usize = 64_000;

/// The most groups one writer's turn stores before it lets other writing calls (an agreement,
/// a close) have theirs.
const GROUPS_PER_TURN: usize = 8;

/// A committed batch's report and signed receipt, or why its receipt could not be made (the
/// batch is stored all the same).
pub(crate) struct Committed {
    pub report: IngestReport,
    pub receipt: Result<Option<Value>, String>,
}

/// A batch waiting for a group.
pub(crate) struct Job {
    pub records: Vec<UsageRecord<'static>>,
    /// Their digests as sent ([`crate::body::Parsed::digests`]).
    pub digests: Vec<[u8; 32]>,
    pub signed: Option<SignedBatch>,
    pub reply: oneshot::Sender<Result<Committed, Problem>>,
}

/// The batches waiting, in arrival order, and the most records a group takes of them.
pub(crate) struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    max_records: usize,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue::new(MAX_GROUP_RECORDS)
    }
}

impl Queue {
    /// A queue whose groups take up to `max_records` records.
    fn new(max_records: usize) -> Queue {
        Queue { jobs: Mutex::default(), max_records }
    }

    pub(crate) fn push(&self, job: Job) -> Result<(), Problem> {
        self.jobs.lock().map_err(|_| Problem::internal("the usage queue failed", &"a thread panicked holding it"))?.push_back(job);
        Ok(())
    }

    /// The next group: the batches queued, oldest first, up to the queue's record cap
    /// ([`MAX_GROUP_RECORDS`]; at least one batch), leaving out those whose requests have gone.
    fn take(&self) -> Vec<Job> {
        let Ok(mut queue) = self.jobs.lock() else { return Vec::new() };
        let mut group = Vec::new();
        let mut records = 0;
        while let Some(job) = queue.front() {
            if !group.is_empty() && records + job.records.len() > self.max_records {
                break;
            }
            let Some(job) = queue.pop_front() else { break };
            if job.reply.is_closed() {
                continue;
            }
            records += job.records.len();
            group.push(job);
        }
        group
    }
}

/// Stores the queued batches as groups and answers each; called holding a writer's turn. The
/// batches queued while a group is stored form the next group, stored on the same turn, up to
/// [`GROUPS_PER_TURN`] groups: handing the turn to another request's thread between groups
/// costs a wake-up each time, on two busy cores a millisecond or more.
pub(crate) fn commit_queued(store: &mut dyn Store, shared: &Shared) -> Result<(), Problem> {
    for _ in 0..GROUPS_PER_TURN {
        let jobs = shared.ingests.take();
        if jobs.is_empty() {
            break;
        }
        commit_group(store, shared, jobs)?;
    }
    Ok(())
}

/// Stores `jobs` as one group and answers each.
fn commit_group(store: &mut dyn Store, shared: &Shared, jobs: Vec<Job>) -> Result<(), Problem> {
    tracing::debug!(batches = jobs.len(), records = jobs.iter().map(|job| job.records.len()).sum::<usize>(), "group commit");
    let batches: Vec<Batch<'_>> = jobs
        .iter()
        .map(|job| Batch { records: &job.records, digests: Some(&job.digests), mode: IngestMode::Atomic, signed: job.signed.as_ref() })
        .collect();
    let results = match store.ingest_group(&batches) {
        Ok(results) => results,
        Err(e) => {
            let problem = Problem::from(e);
            for job in jobs {
                let _ = job.reply.send(Err(problem.clone()));
            }
            // The connection is suspect: the caller drops it.
            return Err(problem);
        }
    };
    drop(batches);
    // The group is committed here; one checkpoint of the log after it signs every receipt.
    // From here on every batch with a report is stored: a receipt that cannot be made (the
    // database going away between the commit and the checkpoint, say) is said in the answer,
    // never turned into a refusal that would read as "nothing was stored".
    let stored = results.iter().any(|r| r.as_ref().is_ok_and(|report| report.stored && report.logged.is_some()));
    let mut fault = None;
    let mut unmade = |e: StoreError| {
        tracing::warn!(error = %e, "a committed group's receipts could not be made");
        if e.fault().is_some() {
            fault = Some(Problem::from(e));
        }
    };
    let checkpoint = if stored {
        match receipts::checkpoint(store, shared.key(), shared.now()) {
            Ok(checkpoint) => Some(checkpoint),
            Err(e) => {
                unmade(e);
                None
            }
        }
    } else {
        None
    };
    for (job, result) in jobs.into_iter().zip(results) {
        let answer = result.map_err(Problem::from).map(|report| {
            let receipt = match (&report.logged, report.stored, &checkpoint) {
                (Some(batch), true, Some(checkpoint)) => match receipts::receipt_under(store, shared.key(), checkpoint, batch) {
                    Ok(receipt) => Ok(Some(receipt)),
                    Err(e) => {
                        unmade(e);
                        Err(batch.leaf)
                    }
                },
                (Some(batch), true, None) => Err(batch.leaf),
                _ => Ok(None),
            };
            let receipt = receipt.map_err(|leaf| {
                format!(
                    "the batch is stored (log leaf {leaf}), but its receipt could not be made now; GET /v1/log/inclusion?leaf={leaf} proves it later, and resending it is answered as duplicates"
                )
            });
            Committed { report, receipt }
        });
        let _ = job.reply.send(answer);
    }
    // A connection that failed after the commit is dropped, as one that failed before.
    fault.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"id":"a1","host":"northwind","model":"m-8b","use_case":"search","region":"us","time":"2026-10-02T10:00:00Z","requests":1,"input_tokens":2,"output_tokens":3,"revenue":"1.50","currency":"USD"}"#;

    /// A batch of `records` copies of one record, and where its answer goes.
    fn job(records: usize) -> (Job, oneshot::Receiver<Result<Committed, Problem>>) {
        let record = revshare_core::usage::parse_json_line(LINE.as_bytes()).map(UsageRecord::into_owned);
        assert!(record.is_ok(), "{record:?}");
        let records = record.map(|record| vec![record; records]).unwrap_or_default();
        let (reply, answer) = oneshot::channel();
        (Job { digests: vec![[0; 32]; records.len()], records, signed: None, reply }, answer)
    }

    #[test]
    fn a_group_takes_the_oldest_batches_up_to_the_record_cap_and_skips_those_gone() {
        let queue = Queue::default();
        let third = MAX_GROUP_RECORDS / 3;
        let mut answers = Vec::new();
        for records in [third, third, third, third, MAX_GROUP_RECORDS + 1, 1] {
            let (job, answer) = job(records);
            assert!(queue.push(job).is_ok());
            answers.push(Some(answer));
        }
        // The fourth batch's request goes away before a group takes it.
        answers[3] = None;
        let sizes = |group: Vec<Job>| group.iter().map(|job| job.records.len()).collect::<Vec<_>>();
        // Three thirds fit; a fourth would pass the cap.
        assert_eq!(sizes(queue.take()), [third, third, third]);
        // The gone batch is skipped, and a batch above the cap is a group by itself.
        assert_eq!(sizes(queue.take()), [MAX_GROUP_RECORDS + 1]);
        assert_eq!(sizes(queue.take()), [1]);
        assert!(queue.take().is_empty());
        assert!(answers.iter().flatten().all(|answer| answer.is_empty()), "taking a group answers nobody");
    }

    #[test]
    fn a_turn_stores_at_most_its_groups_and_leaves_the_rest_queued() {
        use revshare_core::ids::{ModelId, PartyId};
        use revshare_store::{Model, Party, Role, SqliteStore};
        use std::sync::Arc;

        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("revshare.db");
        let mut store = SqliteStore::open(&path).expect("a store");
        let party = |id: &str, role| Party { id: PartyId::parse(id).expect("a party id"), name: id.to_owned(), role };
        store.add_party(&party("meridian", Role::Licensor)).expect("the licensor");
        store.add_party(&party("northwind", Role::Host)).expect("the host");
        let model = ModelId::parse("m-8b").expect("a model id");
        store
            .add_model(&Model {
                id: model,
                owner: PartyId::parse("meridian").expect("a party id"),
                derived_from: None,
                registered_by: None,
            })
            .expect("the model");
        let open_path = path.clone();
        let shared = Shared {
            open: Arc::new(move || Ok(Box::new(SqliteStore::open(&open_path)?) as Box<dyn Store + Send>)),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(1)),
            writers: Arc::new(tokio::sync::Semaphore::new(1)),
            key: revshare_core::note::SignerKey::from_seed("revshare-test", [7; 32]).expect("a key"),
            clock: || revshare_core::time::Instant::from_parts(1_790_000_000, 0),
            max_body_bytes: 1 << 20,
            body_idle: std::time::Duration::from_secs(15),
            limiter: crate::limit::RateLimiter::new(1000),
            failures: crate::limit::RateLimiter::new(1000),
            // One batch a group, so each batch below is a group of its own.
            ingests: Queue::new(1),
            writer_threads: Mutex::new(Vec::new()),
            sessions: crate::dashboard::session::Sessions::default(),
            in_flight: crate::idempotency::InFlight::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
        };
        let groups = GROUPS_PER_TURN + 2;
        let mut answers = Vec::new();
        for n in 0..groups {
            let line = LINE.replace(r#""id":"a1""#, &format!(r#""id":"r{n}""#));
            let record = revshare_core::usage::parse_json_line(line.as_bytes()).map(UsageRecord::into_owned).expect("a record");
            let (reply, answer) = oneshot::channel();
            let job = Job { digests: vec![record.digest()], records: vec![record], signed: None, reply };
            assert!(shared.ingests.push(job).is_ok());
            answers.push(answer);
        }
        let accepted = |answer: &mut oneshot::Receiver<Result<Committed, Problem>>| match answer.try_recv() {
            Ok(Ok(committed)) => Some(committed.report.accepted),
            _ => None,
        };
        // One turn stores its groups, oldest first, and answers each; the rest wait, unanswered.
        assert!(commit_queued(&mut store, &shared).is_ok());
        let answered: Vec<Option<u64>> = answers.iter_mut().map(accepted).collect();
        assert_eq!(answered[..GROUPS_PER_TURN], vec![Some(1); GROUPS_PER_TURN]);
        assert_eq!(answered[GROUPS_PER_TURN..], [None, None], "a turn stores at most {GROUPS_PER_TURN} groups");
        // The next turn stores those, and then the queue is empty.
        assert!(commit_queued(&mut store, &shared).is_ok());
        let answered: Vec<Option<u64>> = answers[GROUPS_PER_TURN..].iter_mut().map(accepted).collect();
        assert_eq!(answered, [Some(1), Some(1)]);
        assert!(shared.ingests.take().is_empty());
    }
}
