//! Property tests of the dispute process (SPEC §8): whatever anyone asks for, in any order and at
//! any time, the histories the rules accept are paths of the SPEC's graph, nobody acts out of
//! turn or after a deadline, resolved disputes stay resolved, and the adjustment never exceeds
//! the claim and moves toward the side that opened.

use proptest::prelude::*;
use revshare_core::dispute::{Actor, ActorRole, Dispute, State, Subject, Terms, Transition};
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::money::Currency;
use revshare_core::time::{Instant, Period};

const DAY: i64 = 86_400;
const START: i64 = 1_793_500_000;

fn terms(response_days: u32) -> Terms {
    Terms {
        licensor: PartyId::parse("lic").expect("id"),
        host: PartyId::parse("host").expect("id"),
        currency: Currency::parse("EUR").expect("EUR"),
        window_days: 30,
        response_days,
        arbiters: vec![PartyId::parse("judge").expect("id")],
    }
}

fn actor(role: ActorRole) -> Actor {
    let party = match role {
        ActorRole::Licensor => "lic",
        ActorRole::Host => "host",
        ActorRole::Arbiter => "judge",
        ActorRole::Deployment => "deployment",
    };
    Actor { party: party.to_owned(), role }
}

/// What someone asks for: a state, who, how many hours after the last step, an amount.
fn request() -> impl Strategy<Value = (usize, usize, i64, Option<i128>)> {
    (0..6usize, 0..3usize, 0..(40 * 24i64), proptest::option::of(0..2_000i128))
}

/// The edges of SPEC §8's graph (with the escalation a deadline makes).
fn allowed(from: State, to: State) -> bool {
    use State::*;
    matches!(
        (from, to),
        (Open, Accepted | Rejected | Countered | Escalated)
            | (Countered, Accepted | Rejected | Escalated)
            | (Rejected, Escalated)
            | (Escalated, Decided)
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn accepted_histories_follow_the_rules(
        opener_is_host in any::<bool>(),
        claimed in 1..1_000i128,
        response_days in 1..20u32,
        requests in proptest::collection::vec(request(), 0..12),
    ) {
        let terms = terms(response_days);
        let opener = if opener_is_host { ActorRole::Host } else { ActorRole::Licensor };
        let open = Transition {
            state: State::Open,
            actor: actor(opener),
            at: Instant::from_parts(START, 0),
            reason: "claim".to_owned(),
            amount: Some(claimed),
            evidence: vec![],
            arbiter: None,
        };
        let subject = Subject {
            agreement: AgreementId::parse("a1").expect("id"),
            period: Period::parse("2026-10").expect("period"),
            sequence: 1,
            digest: "sha256:00".to_owned(),
            line: None,
        };
        let mut dispute = Dispute { id: 1, subject, history: vec![open] };
        let mut clock = START;
        for (state, role, hours, amount) in requests {
            clock += hours * 3_600;
            let now = Instant::from_parts(clock, 0);
            if let Some(due) = dispute.due(&terms, now) {
                prop_assert_eq!(dispute.check(&terms, &due), Ok(()));
                dispute.history.push(due);
            }
            let before = dispute.clone();
            let ask = Transition {
                state: State::ALL[state],
                actor: actor([ActorRole::Licensor, ActorRole::Host, ActorRole::Arbiter][role]),
                at: now,
                reason: "because".to_owned(),
                amount: amount.or_else(|| (State::ALL[state] == State::Accepted).then(|| dispute.on_the_table())),
                evidence: vec![],
                arbiter: None,
            };
            if dispute.check(&terms, &ask).is_ok() {
                dispute.history.push(ask);
            }
            prop_assert!(before.history.iter().zip(&dispute.history).all(|(a, b)| a == b), "history is only appended to");
        }

        for pair in dispute.history.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            prop_assert!(allowed(from.state, to.state), "{} -> {}", from.state, to.state);
            prop_assert!(from.at <= to.at, "time runs forward");
            let deadline = Instant::from_parts(from.at.secs() + i64::from(response_days) * DAY, 0);
            match to.actor.role {
                ActorRole::Deployment => prop_assert_eq!((to.state, to.at), (State::Escalated, deadline)),
                _ => prop_assert!(to.at < deadline || from.state == State::Escalated, "a party acted after its deadline"),
            }
            match (from.state, to.state) {
                (State::Open, _) => prop_assert!(to.actor.role != opener, "the opener answered itself"),
                (State::Countered, State::Accepted | State::Rejected) => prop_assert_eq!(to.actor.role, opener),
                (State::Escalated, State::Decided) => prop_assert_eq!(to.actor.role, ActorRole::Arbiter),
                _ => {}
            }
        }
        let last = dispute.history.last().expect("opened");
        match dispute.resolution() {
            Some(amount) => {
                prop_assert!(matches!(last.state, State::Accepted | State::Decided));
                prop_assert!(amount.abs() <= claimed && amount != 0);
                prop_assert_eq!(amount > 0, opener == ActorRole::Licensor, "the amount moves toward the opener");
            }
            None => prop_assert!(!matches!(last.state, State::Accepted | State::Decided) || last.amount == Some(0)),
        }
    }
}
