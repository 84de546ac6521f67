#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The circuit breaker: its transitions in virtual time, and how parallel groups use it (open
//! circuits fail tasks at once, a breaker shared by groups, the half-open trial).

mod support;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::parallel::{CircuitBreaker, CircuitState, GroupOutcome, GroupStatus};
use rh_agents::{ActorKind, Ctx, ErrorKind, EventStatus, ExecutionState};
use support::{statuses, with_status};
use tokio::time::Instant;

use CircuitState::{Closed, HalfOpen, Open};
use EventStatus::{Completed, Failed, Started};

const RESET: Duration = Duration::from_secs(30);
const SEC: Duration = Duration::from_secs(1);

/// Runs a group of `tasks` tasks guarded by `breaker`, one at a time; each task counts its
/// call in `calls`, sleeps a second and fails when `fail` is true.
async fn run_group(
    state: &ExecutionState,
    breaker: &Arc<CircuitBreaker>,
    tasks: usize,
    workers: usize,
    fail: bool,
    calls: &Arc<AtomicUsize>,
) -> GroupOutcome<usize> {
    let mut group = state
        .group::<usize>("group")
        .max_workers(workers)
        .circuit_breaker(Arc::clone(breaker));
    for i in 0..tasks {
        let calls = Arc::clone(calls);
        group.add(move |_ctx: Ctx| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(SEC).await;
            if fail {
                Err(io::Error::other("service down"))
            } else {
                Ok(i)
            }
        });
    }
    group.run().await
}

/// A breaker behind an `Arc`, as `try_acquire` needs.
fn breaker(threshold: u32) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(threshold, RESET))
}

/// Admits one piece of work and reports its failure.
fn fail(breaker: &Arc<CircuitBreaker>) {
    breaker.try_acquire().unwrap().failure();
}

/// Admits one piece of work and reports its success.
fn succeed(breaker: &Arc<CircuitBreaker>) {
    breaker.try_acquire().unwrap().success();
}

/// Opens `breaker` (threshold failures) and waits out the reset timeout: half-open, no trial yet.
async fn half_open(breaker: &Arc<CircuitBreaker>) {
    for _ in 0..breaker.threshold() {
        fail(breaker);
    }
    assert_eq!(breaker.state(), Open);
    tokio::time::advance(RESET).await;
    assert_eq!(breaker.state(), HalfOpen);
}

// ---- the breaker alone ----

#[tokio::test(start_paused = true)]
async fn opens_after_threshold_consecutive_failures() {
    let breaker = breaker(3);
    assert_eq!(breaker.state(), Closed);
    assert_eq!(breaker.threshold(), 3);
    for _ in 0..2 {
        let permit = breaker.try_acquire().unwrap();
        assert!(!permit.is_trial(), "a closed circuit admits no trials");
        permit.failure();
        assert_eq!(
            breaker.state(),
            Closed,
            "below the threshold it stays closed"
        );
    }
    fail(&breaker);
    assert_eq!(breaker.state(), Open);
    assert!(
        breaker.try_acquire().is_none(),
        "an open circuit lets nothing through"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_failure_count() {
    let breaker = breaker(3);
    fail(&breaker);
    fail(&breaker);
    succeed(&breaker);
    fail(&breaker);
    fail(&breaker);
    assert_eq!(
        breaker.state(),
        Closed,
        "failures must be consecutive to open the circuit"
    );
    fail(&breaker);
    assert_eq!(breaker.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count_even_when_reported_out_of_order() {
    // Three pieces of work admitted together; the success lands between the failures.
    let breaker = breaker(2);
    let (a, b, c) = (
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    );
    a.failure();
    b.success();
    c.failure();
    assert_eq!(breaker.state(), Closed, "the failures were not consecutive");
    fail(&breaker);
    assert_eq!(breaker.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn threshold_zero_means_one() {
    let breaker = breaker(0);
    assert_eq!(breaker.threshold(), 1);
    fail(&breaker);
    assert_eq!(breaker.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn stays_open_until_the_reset_timeout_then_half_opens_for_one_trial() {
    let breaker = breaker(1);
    fail(&breaker);
    assert_eq!(breaker.state(), Open);

    tokio::time::advance(RESET - Duration::from_millis(1)).await;
    assert_eq!(
        breaker.state(),
        Open,
        "still open just before the reset timeout"
    );
    assert!(breaker.try_acquire().is_none());

    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), HalfOpen);
    let trial = breaker
        .try_acquire()
        .expect("the first request after the timeout is the trial");
    assert!(trial.is_trial());
    assert_eq!(breaker.state(), HalfOpen);
    assert!(
        breaker.try_acquire().is_none(),
        "only one trial while it runs"
    );
    tokio::time::advance(RESET * 10).await;
    assert!(
        breaker.try_acquire().is_none(),
        "however long the trial takes"
    );
    assert_eq!(breaker.state(), HalfOpen);

    trial.success();
    assert_eq!(
        breaker.state(),
        Closed,
        "a successful trial closes the circuit"
    );
    let (a, b) = (
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    );
    assert!(!a.is_trial() && !b.is_trial());
    drop((a, b));
    fail(&breaker);
    assert_eq!(
        breaker.state(),
        Open,
        "a closed circuit opens again after a fresh run of failures"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_reopens_for_another_full_timeout() {
    let breaker = breaker(2);
    half_open(&breaker).await;
    let trial = breaker.try_acquire().unwrap();
    assert!(trial.is_trial());
    tokio::time::advance(Duration::from_secs(5)).await; // the trial takes 5 s
    trial.failure();
    assert_eq!(
        breaker.state(),
        Open,
        "one failed trial reopens the circuit"
    );
    assert!(breaker.try_acquire().is_none());

    // The new timeout counts from the failed trial, not from the first opening.
    tokio::time::advance(RESET - Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), Open);
    assert!(breaker.try_acquire().is_none());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), HalfOpen);
    let trial = breaker.try_acquire().unwrap();
    assert!(trial.is_trial(), "a new trial after the new timeout");
    trial.success();
    assert_eq!(breaker.state(), Closed);
}

/// New: work admitted while the circuit was closed finishes after it opened; its success says
/// nothing about the service now and must not close the circuit early.
#[tokio::test(start_paused = true)]
async fn a_late_success_from_before_the_opening_does_not_close_the_circuit() {
    let breaker = breaker(2);
    let early = breaker.try_acquire().unwrap();
    let late_ok = breaker.try_acquire().unwrap();
    let late_ok_2 = breaker.try_acquire().unwrap();
    early.failure();
    fail(&breaker);
    assert_eq!(breaker.state(), Open);

    tokio::time::advance(SEC).await;
    late_ok.success();
    assert_eq!(
        breaker.state(),
        Open,
        "a success admitted before the opening does not close the circuit"
    );
    assert!(breaker.try_acquire().is_none());

    // Nor after the reset timeout, before the trial: only the trial decides.
    tokio::time::advance(RESET).await;
    late_ok_2.success();
    assert_eq!(breaker.state(), HalfOpen);
    let trial = breaker.try_acquire().unwrap();
    assert!(trial.is_trial(), "the trial slot is still free");
    assert!(breaker.try_acquire().is_none());
    trial.success();
    assert_eq!(breaker.state(), Closed);
}

/// New: while the half-open trial runs, a late outcome from work admitted before the opening
/// decides nothing; the trial does.
#[tokio::test(start_paused = true)]
async fn a_late_failure_does_not_reopen_a_half_open_circuit_while_the_trial_runs() {
    let breaker = breaker(2);
    let stale_fail = breaker.try_acquire().unwrap();
    let stale_ok = breaker.try_acquire().unwrap();
    fail(&breaker);
    fail(&breaker);
    assert_eq!(breaker.state(), Open);
    tokio::time::advance(RESET).await;

    let trial = breaker.try_acquire().unwrap();
    assert!(trial.is_trial());
    stale_fail.failure();
    assert_eq!(
        breaker.state(),
        HalfOpen,
        "a failure admitted before the opening does not reopen the circuit"
    );
    assert!(
        breaker.try_acquire().is_none(),
        "the trial still holds the slot"
    );
    stale_ok.success();
    assert_eq!(
        breaker.state(),
        HalfOpen,
        "nor does a late success close it while the trial runs"
    );
    assert!(breaker.try_acquire().is_none());

    trial.success();
    assert_eq!(
        breaker.state(),
        Closed,
        "the trial's success closes the circuit"
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_failure_from_before_the_opening_does_not_count_after_recovery() {
    let breaker = breaker(1);
    let stale = breaker.try_acquire().unwrap();
    half_open(&breaker).await; // one failure opens it; the stale permit is still out
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), Closed);

    stale.failure();
    assert_eq!(
        breaker.state(),
        Closed,
        "a failure from before the opening says nothing about the recovered service"
    );
    fail(&breaker);
    assert_eq!(breaker.state(), Open, "a fresh failure still counts");
}

/// New: a trial dropped without an outcome (its work was cancelled) decides nothing and gives
/// the slot back.
#[tokio::test(start_paused = true)]
async fn dropping_an_unreported_trial_gives_the_slot_back() {
    let breaker = breaker(1);
    half_open(&breaker).await;
    let trial = breaker.try_acquire().unwrap();
    assert!(trial.is_trial());
    assert!(breaker.try_acquire().is_none());
    drop(trial);
    assert_eq!(
        breaker.state(),
        HalfOpen,
        "a cancelled trial decides nothing"
    );
    let trial = breaker
        .try_acquire()
        .expect("the slot is free for another trial");
    assert!(trial.is_trial());
    assert!(breaker.try_acquire().is_none(), "still one trial at a time");

    // The next trial decides as usual.
    trial.failure();
    assert_eq!(breaker.state(), Open);
}

/// New: dropping a permit that is not the trial changes nothing: no failure counted, no
/// count reset, no trial slot freed.
#[tokio::test(start_paused = true)]
async fn dropping_a_non_trial_permit_changes_nothing() {
    // Closed: a cancelled piece of work neither fails nor succeeds.
    let breaker = breaker(2);
    for _ in 0..5 {
        drop(breaker.try_acquire().unwrap());
    }
    assert_eq!(breaker.state(), Closed, "cancelled work is not a failure");
    fail(&breaker);
    drop(breaker.try_acquire().unwrap());
    assert_eq!(breaker.state(), Closed);
    fail(&breaker);
    assert_eq!(
        breaker.state(),
        Open,
        "cancelled work between two failures did not reset the count"
    );

    // Open, and half-open with the trial running: a stale permit dropped frees nothing.
    let breaker = self::breaker(1);
    let stale_open = breaker.try_acquire().unwrap();
    let stale_half_open = breaker.try_acquire().unwrap();
    fail(&breaker);
    drop(stale_open);
    assert_eq!(breaker.state(), Open);
    assert!(breaker.try_acquire().is_none());
    tokio::time::advance(RESET).await;
    let trial = breaker.try_acquire().unwrap();
    drop(stale_half_open);
    assert_eq!(breaker.state(), HalfOpen);
    assert!(
        breaker.try_acquire().is_none(),
        "a stale permit does not free the trial slot"
    );
    trial.success();
    assert_eq!(breaker.state(), Closed);
}

// ---- the breaker in groups ----

#[tokio::test(start_paused = true)]
async fn open_circuit_fails_remaining_tasks_at_once_without_running_them() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(3, RESET));
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let outcome = run_group(&state, &breaker, 8, 1, true, &calls).await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "only the first three tasks ran"
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "tasks refused by the open circuit take no time"
    );
    assert_eq!(breaker.state(), Open);
    let record = &outcome.record;
    assert_eq!(record.status, GroupStatus::Failed);
    assert_eq!(
        (record.completed, record.failed, record.cancelled),
        (0, 8, 0)
    );
    for i in 0..3 {
        let err = outcome.results[i].as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TaskFailed, "task {i}: {err:?}");
        assert_eq!(
            statuses(&state, &format!("group#0/task#{i}")),
            [Started, Failed]
        );
    }
    for i in 3..8 {
        let address = format!("group#0/task#{i}");
        let err = outcome.results[i].as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen, "task {i}: {err:?}");
        assert_eq!(err.address().unwrap().as_str(), address);
        assert_eq!(
            statuses(&state, &address),
            [Failed],
            "a refused task has one FAILED record and no STARTED"
        );
        let failed = &with_status(&state, &address, Failed)[0];
        assert!(failed.is_final && failed.is_parallel);
        assert_eq!(failed.kind, ActorKind::Task);
        let message = failed.message.as_deref().unwrap();
        assert!(message.contains("circuit breaker is open"), "{message}");
        assert!(record.errors[i].error.contains("circuit breaker is open"));
        assert_eq!(record.errors[i].index, i);
    }
}

#[tokio::test(start_paused = true)]
async fn open_circuit_counts_as_a_failure_for_fail_fast() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(1, RESET));
    breaker.try_acquire().unwrap().failure();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut group = state
        .group::<()>("group")
        .max_workers(2)
        .fail_fast()
        .circuit_breaker(Arc::clone(&breaker));
    for _ in 0..4 {
        let calls = Arc::clone(&calls);
        group.add(move |_ctx: Ctx| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(())
        });
    }
    let outcome = group.run().await;

    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(outcome.record.status, GroupStatus::Failed);
    assert_eq!((outcome.record.failed, outcome.record.cancelled), (1, 3));
    assert_eq!(
        outcome.results[0].as_ref().unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    for i in 1..4 {
        assert!(outcome.results[i].as_ref().unwrap_err().is_cancelled());
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_shared_by_two_groups_protects_both() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(2, RESET));
    let first_calls = Arc::new(AtomicUsize::new(0));
    let first = run_group(&state, &breaker, 2, 2, true, &first_calls).await;
    assert_eq!(first.record.failed, 2);
    assert_eq!(breaker.state(), Open);

    // Another group (even in another state) with the same breaker runs nothing.
    let other_state = ExecutionState::new();
    let second_calls = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let second = run_group(&other_state, &breaker, 5, 2, false, &second_calls).await;

    assert_eq!(second_calls.load(Ordering::SeqCst), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(second.record.failed, 5);
    assert_eq!(second.record.status, GroupStatus::Failed);
    assert!(second
        .results
        .iter()
        .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::CircuitOpen));
    assert_eq!(statuses(&other_state, "group#0/task#0"), [Failed]);
}

#[tokio::test(start_paused = true)]
async fn half_open_trial_success_lets_later_tasks_run() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(2, RESET));
    let calls = Arc::new(AtomicUsize::new(0));
    run_group(&state, &breaker, 2, 1, true, &calls).await;
    assert_eq!(breaker.state(), Open);

    tokio::time::sleep(RESET).await;
    assert_eq!(breaker.state(), HalfOpen);
    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = run_group(&state, &breaker, 5, 1, false, &calls).await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "after the trial every task ran"
    );
    assert_eq!(outcome.record.status, GroupStatus::Completed);
    assert_eq!(outcome.record.completed, 5);
    assert_eq!(breaker.state(), Closed);
    for i in 0..5 {
        assert_eq!(
            statuses(&state, &format!("group#1/task#{i}")),
            [Started, Completed]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_one_trial_even_with_free_workers() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(1, RESET));
    breaker.try_acquire().unwrap().failure();
    tokio::time::sleep(RESET).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = run_group(&state, &breaker, 4, 4, false, &calls).await;

    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the trial ran");
    assert!(outcome.results[0].is_ok());
    for i in 1..4 {
        assert_eq!(
            outcome.results[i].as_ref().unwrap_err().kind(),
            ErrorKind::CircuitOpen,
            "task {i} was refused while the trial ran"
        );
    }
    assert_eq!(
        breaker.state(),
        Closed,
        "the trial's success closed the circuit"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_trial_failure_reopens_and_refuses_the_rest() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(1, RESET));
    breaker.try_acquire().unwrap().failure();
    tokio::time::sleep(RESET).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = run_group(&state, &breaker, 4, 1, true, &calls).await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the failing trial ran"
    );
    assert_eq!(breaker.state(), Open);
    assert_eq!(
        outcome.results[0].as_ref().unwrap_err().kind(),
        ErrorKind::TaskFailed
    );
    for i in 1..4 {
        assert_eq!(
            outcome.results[i].as_ref().unwrap_err().kind(),
            ErrorKind::CircuitOpen
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_does_not_decide_the_circuit() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(1, RESET));
    breaker.try_acquire().unwrap().failure();
    tokio::time::sleep(RESET).await;

    // The trial is stopped by the group timeout before it finishes.
    let mut group = state
        .group::<()>("group")
        .timeout(SEC)
        .circuit_breaker(Arc::clone(&breaker));
    group.add(|_ctx: Ctx| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, io::Error>(())
    });
    let outcome = group.run().await;
    assert_eq!(outcome.record.status, GroupStatus::Cancelled);

    assert_eq!(breaker.state(), HalfOpen);
    assert!(
        breaker.try_acquire().is_some(),
        "the trial slot was given back"
    );
}

/// The diagram in `breaker.rs`: an open circuit leaves only through the reset timeout and a
/// half-open trial. With several workers, work acquired while the circuit was closed may
/// finish after it opened; its success must not close the circuit early (the service just
/// failed `threshold` times in a row, and nothing has waited out the reset timeout).
#[tokio::test(start_paused = true)]
async fn a_late_success_in_a_group_from_before_the_opening_does_not_close_the_circuit() {
    let state = ExecutionState::new();
    let breaker = Arc::new(CircuitBreaker::new(2, RESET));
    let mut group = state
        .group::<()>("group")
        .max_workers(3)
        .circuit_breaker(Arc::clone(&breaker));
    // Tasks 0 and 1 fail at 1 s (the circuit opens); task 2 started before and succeeds at 2 s.
    for i in 0..3u64 {
        group.add(move |_ctx: Ctx| async move {
            if i < 2 {
                tokio::time::sleep(SEC).await;
                return Err(io::Error::other("service down"));
            }
            tokio::time::sleep(2 * SEC).await;
            Ok(())
        });
    }
    let outcome = group.run().await;
    assert_eq!((outcome.record.failed, outcome.record.completed), (2, 1));

    assert_eq!(
        breaker.state(),
        Open,
        "29 s before the reset timeout, the circuit must still be open"
    );
    assert!(breaker.try_acquire().is_none());
}

/// New: a group holding the half-open trial is dropped (its caller gave up on it). The trial's
/// work is cancelled, so its slot must come back: otherwise no trial could ever run again and
/// the circuit would stay half-open, refusing everything, forever.
#[tokio::test(start_paused = true)]
async fn a_dropped_group_holding_the_trial_leaves_the_breaker_usable() {
    let state = ExecutionState::new();
    let breaker = breaker(1);
    half_open(&breaker).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let mut group = state
        .group::<()>("group")
        .circuit_breaker(Arc::clone(&breaker));
    {
        let calls = Arc::clone(&calls);
        group.add(move |_ctx: Ctx| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, io::Error>(())
        });
    }
    let result = tokio::time::timeout(SEC, group.run()).await;
    assert!(result.is_err(), "the caller's timeout dropped the group");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the trial had started");

    assert_eq!(breaker.state(), HalfOpen, "a dropped trial decides nothing");
    let trial = breaker
        .try_acquire()
        .expect("the dropped group gave the trial slot back");
    assert!(trial.is_trial());
    drop(trial);

    // And a later group runs the next trial, which closes the circuit.
    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = run_group(&state, &breaker, 3, 1, false, &calls).await;
    assert_eq!(outcome.record.status, GroupStatus::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(breaker.state(), Closed);
}
