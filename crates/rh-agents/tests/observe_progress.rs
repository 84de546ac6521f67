#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Progress lines as written for scripted runs: one line per call that starts or ends (or
//! fewer, with an interval), the counts behind them, and what counts as a failure.

mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::observe::progress::{Counts, Progress};
use rh_agents::{
    Actor, Ctx, Error, Event, ExecutionState, InterruptReason, RetryPolicy, Subscriber,
};
use support::{constant, scripted, Step};

/// A writer whose bytes the test can read while the progress owns a clone of it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    /// Everything written so far, as text.
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A state reporting to `progress`, which the test keeps to read its counts.
fn reporting(progress: &Arc<Progress<Shared>>) -> ExecutionState {
    let progress = Arc::clone(progress);
    ExecutionState::builder()
        .subscriber(move |e: &Event| progress.on_event(e).unwrap())
        .build()
}

/// Plain lines, without the elapsed time (which is wall-clock time).
fn lines(interval: Duration, total: u64) -> (Arc<Progress<Shared>>, Shared) {
    let out = Shared::default();
    let progress = Progress::lines(out.clone(), interval)
        .total(total)
        .elapsed(false);
    (Arc::new(progress), out)
}

/// An agent that calls a tool that answers and a tool that fails (not retried), and answers
/// anyway: three calls, one failure.
fn agent_with_one_failing_tool() -> Actor<(), String> {
    let ok = scripted("lookup", vec![Step::Ok("x")]).actor;
    let bad = scripted("fetch", vec![Step::Fail("down")])
        .actor
        .retry(RetryPolicy::disabled());
    Actor::agent("planner", move |(): (), ctx: Ctx| {
        let ok = ok.clone();
        let bad = bad.clone();
        async move {
            let found = ctx.call(&ok, ()).await?;
            let _ = ctx.call(&bad, ()).await;
            Ok::<_, Error>(found)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn zero_interval_writes_a_line_per_call_that_starts_or_ends() {
    let (progress, out) = lines(Duration::ZERO, 3);
    let state = reporting(&progress);

    state
        .call(&agent_with_one_failing_tool(), ())
        .await
        .unwrap();

    assert_eq!(
        out.text(),
        "\
progress: 0/3 done (0%) · 1 running
progress: 0/3 done (0%) · 2 running
progress: 1/3 done (33%) · 1 running
progress: 1/3 done (33%) · 2 running
progress: 2/3 done (66%) · 1 failed · 1 running
progress: 3/3 done (100%) · 1 failed · 0 running
"
    );
    assert_eq!(
        progress.counts(),
        Counts {
            started: 3,
            completed: 2,
            failed: 1,
            interrupted: 0,
        }
    );
    assert_eq!(progress.counts().done(), 3);
    assert_eq!(progress.counts().running(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_long_interval_writes_the_first_line_and_each_line_with_nothing_running() {
    let (progress, out) = lines(Duration::from_secs(3_600), 3);
    let state = reporting(&progress);

    state
        .call(&agent_with_one_failing_tool(), ())
        .await
        .unwrap();

    // The interval is measured in real time, which an hour never passes here: only the
    // first line and the line written when no call is left running.
    assert_eq!(
        out.text(),
        "\
progress: 0/3 done (0%) · 1 running
progress: 3/3 done (100%) · 1 failed · 0 running
"
    );
    assert_eq!(progress.counts().done(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_long_interval_still_writes_when_each_sequential_call_ends() {
    let (progress, out) = lines(Duration::from_secs(3_600), 2);
    let state = reporting(&progress);
    let a = scripted("a", vec![Step::Ok("x")]);
    let b = scripted("b", vec![Step::Ok("y")]);

    state.call(&a.actor, ()).await.unwrap();
    state.call(&b.actor, ()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
progress: 0/2 done (0%) · 1 running
progress: 1/2 done (50%) · 0 running
progress: 2/2 done (100%) · 0 running
"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_followed_by_a_retry_does_not_count_as_failed() {
    let (progress, out) = lines(Duration::ZERO, 1);
    let state = reporting(&progress);
    let s = scripted("fetch", vec![Step::Fail("reset"), Step::Ok("page")]);

    state
        .call(
            &s.actor.clone().retry(constant(Duration::from_secs(1), 3)),
            (),
        )
        .await
        .unwrap();

    // The FAILED, the RETRYING and the retry's STARTED change nothing: no line for them.
    assert_eq!(
        out.text(),
        "\
progress: 0/1 done (0%) · 1 running
progress: 1/1 done (100%) · 0 running
"
    );
    assert_eq!(
        progress.counts(),
        Counts {
            started: 1,
            completed: 1,
            failed: 0,
            interrupted: 0,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_count_as_one_failure() {
    let (progress, out) = lines(Duration::ZERO, 1);
    let state = reporting(&progress);
    let s = scripted("flaky", vec![Step::Fail("down")]);

    state
        .call(
            &s.actor.clone().retry(constant(Duration::from_secs(1), 3)),
            (),
        )
        .await
        .unwrap_err();

    assert_eq!(
        out.text(),
        "\
progress: 0/1 done (0%) · 1 running
progress: 1/1 done (100%) · 1 failed · 0 running
"
    );
    assert_eq!(progress.counts().failed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_on_the_first_of_several_attempts_counts_as_failed() {
    let (progress, out) = lines(Duration::ZERO, 1);
    let state = reporting(&progress);
    let s = scripted("fetch", vec![Step::Permanent("bad request")]);

    state
        .call(
            &s.actor.clone().retry(constant(Duration::from_secs(1), 3)),
            (),
        )
        .await
        .unwrap_err();

    // The policy allowed three attempts, but the error is not retried: the call is over.
    assert_eq!(
        out.text(),
        "\
progress: 0/1 done (0%) · 1 running
progress: 1/1 done (100%) · 1 failed · 0 running
"
    );
    assert_eq!(progress.counts().running(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_backoff_counts_as_interrupted_not_failed() {
    let (progress, out) = lines(Duration::ZERO, 2);
    let state = reporting(&progress);
    let ok = scripted("lookup", vec![Step::Ok("x")]);
    let slow = scripted("slow", vec![Step::Fail("busy")])
        .actor
        .retry(constant(Duration::from_secs(10), 3));

    state.call(&ok.actor, ()).await.unwrap();
    let task = {
        let state = state.clone();
        tokio::spawn(async move { state.call(&slow, ()).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    state.request_interrupt(InterruptReason::UserCancelled);
    assert!(task.await.unwrap().unwrap_err().is_interrupted());

    // The runtime's own interrupt notice is not a call.
    assert_eq!(
        out.text(),
        "\
progress: 0/2 done (0%) · 1 running
progress: 1/2 done (50%) · 0 running
progress: 1/2 done (50%) · 1 running
progress: 2/2 done (100%) · 1 interrupted · 0 running
"
    );
    assert_eq!(
        progress.counts(),
        Counts {
            started: 2,
            completed: 1,
            failed: 0,
            interrupted: 1,
        }
    );
}

#[test]
fn describe_without_a_total_or_with_elapsed_time() {
    let counts = Counts {
        started: 5,
        completed: 2,
        failed: 1,
        interrupted: 1,
    };
    assert_eq!(counts.done(), 4);
    assert_eq!(counts.running(), 1);
    assert_eq!(
        counts.describe(None, None),
        "4 done · 1 failed · 1 interrupted · 1 running"
    );
    assert_eq!(
        counts.describe(Some(10), Some(Duration::from_millis(1_250))),
        "4/10 done (40%) · 1 failed · 1 interrupted · 1 running · 1.2s"
    );
    // A total of zero is no total (no division by zero).
    assert_eq!(
        counts.describe(Some(0), None),
        "4 done · 1 failed · 1 interrupted · 1 running"
    );
}

#[tokio::test(start_paused = true)]
async fn elapsed_on_adds_the_time_to_each_line() {
    let out = Shared::default();
    let progress = Progress::lines(out.clone(), Duration::ZERO).total(1);
    let state = ExecutionState::new();
    state.log(rh_agents::Severity::Info, "not a call");
    // Records from any state can be given to a subscriber directly.
    let fetch = scripted("fetch", vec![Step::Ok("page")]);
    state.call(&fetch.actor, ()).await.unwrap();
    for event in state.history().events() {
        progress.on_event(&event).unwrap();
    }

    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("progress: 0/1 done (0%) · 1 running · "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("progress: 1/1 done (100%) · 0 running · "),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_group_reports_its_tasks_done_failed_and_total() {
    let (progress, out) = lines(Duration::ZERO, 0);
    let state = reporting(&progress);
    let mut group = state.group::<u32>("pages").max_workers(2);
    for i in 0..3u32 {
        group.add(move |_ctx: rh_agents::Ctx| async move {
            tokio::time::sleep(Duration::from_secs(u64::from(i) + 1)).await;
            if i == 1 {
                Err(io::Error::other("page 1 is gone"))
            } else {
                Ok(i)
            }
        });
    }

    let outcome = group.run().await;

    assert_eq!(outcome.record.failed, 1);
    assert_eq!(
        out.text(),
        "\
progress: pages: 0/3 done (0%) · 0 running
progress: pages: 0/3 done (0%) · 1 running
progress: pages: 0/3 done (0%) · 2 running
progress: pages: 1/3 done (33%) · 1 running
progress: pages: 1/3 done (33%) · 2 running
progress: pages: 2/3 done (66%) · 1 failed · 1 running
progress: pages: 3/3 done (100%) · 1 failed · 0 running
"
    );
}

#[cfg(feature = "progress")]
#[tokio::test(start_paused = true)]
async fn the_live_line_follows_the_same_counts() {
    let progress = Arc::new(Progress::live());
    let state = {
        let progress = Arc::clone(&progress);
        ExecutionState::builder()
            .subscriber(move |e: &Event| progress.on_event(e).unwrap())
            .build()
    };
    let ok = scripted("ok", vec![Step::Ok("fine")]);
    state.call(&ok.actor, ()).await.unwrap();
    state.call(&ok.actor, ()).await.unwrap();

    assert_eq!(progress.counts().completed, 2);
    assert_eq!(progress.counts().running(), 0);
    // A live line has no writer to read; clearing it at the end is safe off a terminal too.
    assert!(progress.with_writer(|w| w.is_none()));
    progress.finish();
}
