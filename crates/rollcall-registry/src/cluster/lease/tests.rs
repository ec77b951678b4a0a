//! The lease's rules under paused time: tokio's clock moves only when a test
//! advances it, so "a frozen process" is a clock that jumps, and every
//! instant is exact.

use super::*;

const TTL: Duration = Duration::from_secs(3);

fn now() -> Instant {
    Instant::now()
}

/// Runs the loop's part for a lease that is waited on: sleeps (in paused
/// time) as told until the lease asks for something else.
async fn until_asked(lease: &mut Lease) -> Next {
    loop {
        match lease.next(now()) {
            Next::Wait(d) => tokio::time::sleep(d).await,
            other => return other,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_without_a_lease_joins_and_may_not_act() {
    let mut lease = Lease::new(TTL);
    assert_eq!(lease.next(now()), Next::Join);
    assert!(!lease.may_act(now()));
    assert_eq!(lease.id(), None);
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_is_renewed_every_third_of_its_ttl_and_holds() {
    let mut lease = Lease::new(TTL);
    let asked = now();
    lease.joined(7, asked);
    assert_eq!(lease.id(), Some(7));
    assert_eq!(lease.valid_until(), Some(asked + TTL));
    assert_eq!(lease.next(now()), Next::Wait(TTL / 3));
    for round in 1..=10u32 {
        assert_eq!(
            until_asked(&mut lease).await,
            Next::Renew(7),
            "round {round}"
        );
        assert_eq!(now(), asked + TTL / 3 * round);
        lease.renewed(now());
        assert!(lease.may_act(now()));
        assert_eq!(lease.valid_until(), Some(now() + TTL));
    }
}

#[tokio::test(start_paused = true)]
async fn renewals_etcd_does_not_answer_lapse_the_lease_at_its_ttl() {
    let mut lease = Lease::new(TTL);
    let asked = now();
    lease.joined(7, asked);
    let mut tries = 0;
    let lapsed = loop {
        match until_asked(&mut lease).await {
            Next::Renew(7) => {
                tries += 1;
                lease.renewal_failed(now(), false);
                assert_eq!(lease.may_act(now()), now() < asked + TTL);
            }
            other => break other,
        }
    };
    // Asked at 1/3 and 2/3 of the TTL, both unanswered; at the TTL it lapses
    // exactly (woken for the lapse, not a renewal period later).
    assert_eq!(tries, 2);
    assert_eq!(lapsed, Next::Lapsed(7));
    assert_eq!(now(), asked + TTL);
    assert!(!lease.may_act(now()));
    assert_eq!(lease.id(), None);
    assert_eq!(lease.next(now()), Next::Join);
}

#[tokio::test(start_paused = true)]
async fn a_refused_renewal_lapses_the_lease_at_once() {
    let mut lease = Lease::new(TTL);
    lease.joined(7, now());
    assert_eq!(until_asked(&mut lease).await, Next::Renew(7));
    lease.renewal_failed(now(), true);
    assert!(!lease.may_act(now()));
    assert_eq!(lease.next(now()), Next::Lapsed(7));
}

#[tokio::test(start_paused = true)]
async fn a_late_renewal_counts_from_when_it_was_asked_not_answered() {
    let mut lease = Lease::new(TTL);
    let joined = now();
    lease.joined(7, joined);
    assert_eq!(until_asked(&mut lease).await, Next::Renew(7));
    let asked = now();
    // The answer takes most of a TTL (etcd slow, a long GC pause).
    tokio::time::advance(TTL / 2).await;
    lease.renewed(asked);
    assert_eq!(lease.valid_until(), Some(asked + TTL));
    tokio::time::advance(asked + TTL - now() - Duration::from_millis(1)).await;
    assert!(lease.may_act(now()));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        !lease.may_act(now()),
        "acted past TTL after the renewal was asked"
    );
}

#[tokio::test(start_paused = true)]
async fn a_renewal_answered_after_the_ttl_does_not_revive_the_lease() {
    let mut lease = Lease::new(TTL);
    lease.joined(7, now());
    assert_eq!(until_asked(&mut lease).await, Next::Renew(7));
    let asked = now();
    tokio::time::advance(TTL + Duration::from_millis(1)).await;
    lease.renewed(asked);
    assert!(!lease.may_act(now()));
    assert_eq!(lease.next(now()), Next::Lapsed(7));
}

#[tokio::test(start_paused = true)]
async fn an_older_answer_never_shortens_the_lease() {
    let mut lease = Lease::new(TTL);
    let first = now();
    lease.joined(7, first);
    tokio::time::advance(TTL / 3).await;
    let second = now();
    lease.renewed(second);
    // A slower answer to an earlier renewal (asked at `first`) comes last.
    lease.renewed(first);
    assert_eq!(lease.valid_until(), Some(second + TTL));
}

#[tokio::test(start_paused = true)]
async fn a_frozen_process_wakes_with_its_lease_lapsed() {
    let mut lease = Lease::new(TTL);
    lease.joined(7, now());
    assert!(lease.may_act(now()));
    // Stopped (SIGSTOP, a VM paused) for twice the TTL: no renewal ran.
    tokio::time::advance(TTL * 2).await;
    assert!(
        !lease.may_act(now()),
        "a frozen replica acted on its old lease"
    );
    assert_eq!(lease.next(now()), Next::Lapsed(7));
    assert_eq!(lease.next(now()), Next::Join);
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_replica_rejoins_on_a_new_lease_and_retries_at_a_pace() {
    let mut lease = Lease::new(TTL);
    lease.joined(7, now());
    lease.renewal_failed(now(), true);
    assert_eq!(lease.next(now()), Next::Lapsed(7));
    // etcd still unreachable: joins are tried every JOIN_RETRY, and said so
    // the first time and every 20th.
    let mut said = Vec::new();
    for attempt in 1..=40u32 {
        assert_eq!(
            until_asked(&mut lease).await,
            Next::Join,
            "attempt {attempt}"
        );
        if lease.join_failed(now()) {
            said.push(attempt);
        }
        assert!(!lease.may_act(now()));
    }
    assert_eq!(said, [1, 20, 40]);
    assert_eq!(lease.next(now()), Next::Wait(JOIN_RETRY));
    tokio::time::advance(JOIN_RETRY).await;
    assert_eq!(lease.next(now()), Next::Join);
    lease.joined(8, now());
    assert_eq!(lease.id(), Some(8));
    assert!(lease.may_act(now()));
    assert_eq!(until_asked(&mut lease).await, Next::Renew(8));
    // The failures were forgotten: the next outage warns at once again.
    lease.renewal_failed(now(), true);
    assert_eq!(lease.next(now()), Next::Lapsed(8));
    assert!(lease.join_failed(now()));
}
