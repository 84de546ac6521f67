#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The console printer as a person reads it: the exact colourless text for scripted runs in
//! virtual time (retries, exhausted retries, interrupts, nesting, logs, optional lines, ASCII,
//! durations), the run summary as values and as text, and when colour is on.

mod support;

use std::ffi::OsString;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::observe::printer::{Printer, PrinterBuilder};
use rh_agents::observe::style::ColorChoice;
use rh_agents::observe::summary::RetryStats;
use rh_agents::{
    Actor, ActorKind, Ctx, Error, ExecutionState, InterruptReason, InterruptSignal, Severity,
};
use support::{constant, scripted, scripted_kind, Step};
use tokio::task::JoinHandle;

/// A writer whose bytes the test can read while the printer owns a clone of it.
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

/// Output that does not vary between runs: no colour, no durations.
fn plain() -> PrinterBuilder {
    Printer::builder()
        .color(ColorChoice::Never)
        .durations(false)
}

/// A state printing through `builder` into a buffer the test reads.
fn printed(builder: PrinterBuilder) -> (ExecutionState, Shared) {
    let out = Shared::default();
    let state = ExecutionState::builder()
        .subscriber(builder.build(out.clone()))
        .build();
    (state, out)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs the call on its own task, so the test can interrupt it.
fn spawn_call(
    state: &ExecutionState,
    actor: Actor<(), String>,
) -> JoinHandle<Result<String, Error>> {
    let state = state.clone();
    tokio::spawn(async move { state.call(&actor, ()).await })
}

/// An agent `planner` that logs, calls `search` (fails once, then answers; retried after 1 s)
/// and an LLM `fetch` (sleeps 250 ms of virtual time), and joins their answers.
fn planner() -> Actor<(), String> {
    let search = scripted("search", vec![Step::Fail("timeout"), Step::Ok("hits")])
        .actor
        .retry(constant(secs(1), 2));
    let fetch = scripted_kind(
        ActorKind::Llm,
        "fetch",
        vec![Step::Sleep(Duration::from_millis(250))],
    )
    .actor;
    Actor::agent("planner", move |(): (), ctx: Ctx| {
        let search = search.clone();
        let fetch = fetch.clone();
        async move {
            ctx.log(Severity::Info, "planning");
            ctx.log(Severity::Debug, "two sources");
            let hits = ctx.call(&search, ()).await?;
            let page = ctx.call(&fetch, ()).await?;
            Ok::<_, Error>(format!("{hits} {page}"))
        }
    })
}

// ── Calls and retries ──────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn success_first_time_prints_started_and_completed() {
    let (state, out) = printed(plain());
    let fetch = scripted("fetch", vec![Step::Ok("page")]);

    state.call(&fetch.actor, ()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
▶ tool fetch started
✔ tool fetch completed
"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_then_success_prints_the_error_the_schedule_and_the_retry_details() {
    let (state, out) = printed(plain());
    let s = scripted(
        "fetch",
        vec![Step::Fail("connection reset"), Step::Ok("page")],
    );
    let fetch = s.actor.clone().retry(constant(secs(1), 3));

    state.call(&fetch, ()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
▶ tool fetch started
✖ tool fetch failed (attempt 1/3)
    error: connection reset
↻ tool fetch retrying: Attempt 2/3 in 1.0s
▶ tool fetch started (attempt 2/3)
    ↻ Retry attempt 2 (after 1.0s)
    Previous error: connection reset
✔ tool fetch completed
"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_details_off_hides_the_retry_detail_lines_only() {
    let (state, out) = printed(plain().retry_details(false));
    let s = scripted(
        "fetch",
        vec![Step::Fail("connection reset"), Step::Ok("page")],
    );
    let fetch = s.actor.clone().retry(constant(secs(1), 3));

    state.call(&fetch, ()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
▶ tool fetch started
✖ tool fetch failed (attempt 1/3)
    error: connection reset
↻ tool fetch retrying: Attempt 2/3 in 1.0s
▶ tool fetch started (attempt 2/3)
✔ tool fetch completed
"
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_print_every_attempt_and_end_with_the_last_error() {
    let (state, out) = printed(plain());
    let s = scripted(
        "flaky",
        vec![
            Step::Fail("first"),
            Step::Fail("second"),
            Step::Fail("third"),
        ],
    );
    let flaky = s.actor.clone().retry(constant(secs(1), 3));

    let err = state.call(&flaky, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    // The last FAILED looks like the earlier ones: nothing says the retries ran out.
    assert_eq!(
        out.text(),
        "\
▶ tool flaky started
✖ tool flaky failed (attempt 1/3)
    error: first
↻ tool flaky retrying: Attempt 2/3 in 1.0s
▶ tool flaky started (attempt 2/3)
    ↻ Retry attempt 2 (after 1.0s)
    Previous error: first
✖ tool flaky failed (attempt 2/3)
    error: second
↻ tool flaky retrying: Attempt 3/3 in 1.0s
▶ tool flaky started (attempt 3/3)
    ↻ Retry attempt 3 (after 1.0s)
    Previous error: second
✖ tool flaky failed (attempt 3/3, retries exhausted)
    error: third
"
    );
}

// ── Interrupts ─────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn interrupt_during_backoff_prints_the_notice_then_the_interrupted_call() {
    let (state, out) = printed(plain());
    let s = scripted("flaky", vec![Step::Fail("upstream down")]);
    let task = spawn_call(&state, s.actor.clone().retry(constant(secs(10), 3)));

    tokio::time::sleep(secs(1)).await;
    state.request_interrupt(
        InterruptSignal::new(InterruptReason::UserCancelled)
            .message("stop now")
            .triggered_by("operator"),
    );
    assert!(task.await.unwrap().unwrap_err().is_interrupted());

    assert_eq!(
        out.text(),
        "\
▶ tool flaky started
✖ tool flaky failed (attempt 1/3)
    error: upstream down
↻ tool flaky retrying: Attempt 2/3 in 10.0s
⏹ interrupt requested: user_cancelled
    message: stop now
    triggered by: operator
⏹ tool flaky interrupted
    Interrupted during retry backoff: user_cancelled
"
    );
}

#[tokio::test(start_paused = true)]
async fn interrupt_of_a_nested_call_prints_the_notice_at_the_root_and_the_calls_at_their_depth() {
    let (state, out) = printed(plain());
    let tool = scripted("search", vec![Step::Fail("upstream down")])
        .actor
        .retry(constant(secs(10), 3));
    let agent = Actor::agent("planner", move |(): (), ctx: Ctx| {
        let tool = tool.clone();
        async move { ctx.call(&tool, ()).await }
    });
    let task = spawn_call(&state, agent);

    tokio::time::sleep(secs(1)).await;
    state.request_interrupt(InterruptSignal::new(InterruptReason::Timeout).message("too slow"));
    assert!(task.await.unwrap().unwrap_err().is_interrupted());

    // The notice belongs to the run (column 0), between lines of depth 2; the interrupt
    // reaches the agent through the error its tool returned.
    assert_eq!(
        out.text(),
        "\
▶ agent planner started
  ▶ tool search started
  ✖ tool search failed (attempt 1/3)
      error: upstream down
  ↻ tool search retrying: Attempt 2/3 in 10.0s
⏱ interrupt requested: timeout
    message: too slow
  ⏱ tool search interrupted
      Interrupted during retry backoff: timeout
⏱ agent planner interrupted
    Interrupted during handler: timeout
"
    );
}

// ── Nesting and logs ───────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn nested_calls_are_indented_by_depth_and_logs_sit_at_their_calls_depth() {
    let (state, out) = printed(plain());

    state.log(Severity::Warning, "low disk");
    state.call(&planner(), ()).await.unwrap();

    // The debug log is hidden by default; a log written in a handler is indented like the
    // calls that handler makes; detail lines sit two levels below their event.
    assert_eq!(
        out.text(),
        "\
• [warning] low disk
▶ agent planner started
  • [info] planning
  ▶ tool search started
  ✖ tool search failed (attempt 1/2)
      error: timeout
  ↻ tool search retrying: Attempt 2/2 in 1.0s
  ▶ tool search started (attempt 2/2)
      ↻ Retry attempt 2 (after 1.0s)
      Previous error: timeout
  ✔ tool search completed
  ▶ llm fetch started
  ✔ llm fetch completed
✔ agent planner completed
"
    );
}

#[tokio::test(start_paused = true)]
async fn three_levels_indent_two_spaces_each() {
    let (state, out) = printed(plain());
    let leaf = scripted("lookup", vec![Step::Ok("x")]).actor;
    let middle = Actor::agent("researcher", move |(): (), ctx: Ctx| {
        let leaf = leaf.clone();
        async move {
            ctx.log(Severity::Error, "source missing");
            ctx.call(&leaf, ()).await
        }
    });
    let top = Actor::agent("planner", move |(): (), ctx: Ctx| {
        let middle = middle.clone();
        async move { ctx.call(&middle, ()).await }
    });

    state.call(&top, ()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
▶ agent planner started
  ▶ agent researcher started
    • [error] source missing
    ▶ tool lookup started
    ✔ tool lookup completed
  ✔ agent researcher completed
✔ agent planner completed
"
    );
}

#[tokio::test(start_paused = true)]
async fn debug_logs_show_with_logs_debug_and_no_logs_show_with_none() {
    let (state, out) = printed(plain().logs(Some(Severity::Debug)));
    state.log(Severity::Warning, "low disk");
    state.call(&planner(), ()).await.unwrap();
    let text = out.text();
    assert!(
        text.starts_with(
            "\
• [warning] low disk
▶ agent planner started
  • [info] planning
  • [debug] two sources
  ▶ tool search started
"
        ),
        "{text}"
    );

    let (state, out) = printed(plain().logs(None));
    state.log(Severity::Error, "disk full");
    state.call(&planner(), ()).await.unwrap();
    assert!(!out.text().contains('•'), "{}", out.text());

    let (state, out) = printed(plain().logs(Some(Severity::Warning)));
    state.log(Severity::Warning, "low disk");
    state.call(&planner(), ()).await.unwrap();
    let text = out.text();
    assert!(text.starts_with("• [warning] low disk\n"), "{text}");
    assert!(!text.contains("[info]"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn render_of_a_hidden_log_is_empty() {
    let state = ExecutionState::new();
    state.log(Severity::Debug, "noise");
    let events = state.history().events();
    let event = &events[0];

    assert_eq!(plain().build(io::sink()).render(event), "");
    assert_eq!(
        plain()
            .logs(Some(Severity::Debug))
            .build(io::sink())
            .render(event),
        "• [debug] noise\n"
    );
}

// ── Optional lines, ASCII, durations ───────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn address_and_detail_lines_follow_their_event() {
    let (state, out) = printed(plain().address(true).detail(true));

    state.call(&planner(), ()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
▶ agent planner started
    address: planner#0
  • [info] planning
  ▶ tool search started
      address: planner#0/search#0
  ✖ tool search failed (attempt 1/2)
      address: planner#0/search#0
      error: timeout
  ↻ tool search retrying: Attempt 2/2 in 1.0s
      address: planner#0/search#0
  ▶ tool search started (attempt 2/2)
      address: planner#0/search#0
      ↻ Retry attempt 2 (after 1.0s)
      Previous error: timeout
  ✔ tool search completed
      address: planner#0/search#0
      output: \"hits\"
  ▶ llm fetch started
      address: planner#0/fetch#0
  ✔ llm fetch completed
      address: planner#0/fetch#0
      output: \"slept\"
✔ agent planner completed
    address: planner#0
    output: \"hits slept\"
"
    );
}

#[tokio::test(start_paused = true)]
async fn detail_limit_cuts_long_detail_with_an_ellipsis() {
    let (state, out) = printed(plain().detail(true).detail_limit(5));
    let echo = Actor::tool("echo", |s: String, _ctx: Ctx| async move {
        Ok::<_, io::Error>(s)
    });

    state.call(&echo, "abcdefgh".to_owned()).await.unwrap();

    assert_eq!(
        out.text(),
        "\
▶ tool echo started
    input: \"abcd…
✔ tool echo completed
    output: \"abcd…
"
    );
}

#[tokio::test(start_paused = true)]
async fn timestamp_line_is_rfc3339_in_utc() {
    let (state, out) = printed(plain().timestamp(true));
    let fetch = scripted("fetch", vec![Step::Ok("page")]);

    state.call(&fetch.actor, ()).await.unwrap();

    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "▶ tool fetch started");
    assert_eq!(lines[2], "✔ tool fetch completed");
    for at in [lines[1], lines[3]] {
        let stamp = at.strip_prefix("    at: ").unwrap();
        // 2026-11-27T10:00:00.123456Z
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(stamp.ends_with('Z'), "{stamp}");
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
    }
}

#[tokio::test(start_paused = true)]
async fn ascii_mode_uses_ascii_symbols_only() {
    let (state, out) = printed(plain().ascii(true));

    state.log(Severity::Warning, "low disk");
    state.call(&planner(), ()).await.unwrap();
    let s = scripted("flaky", vec![Step::Fail("upstream down")]);
    let task = spawn_call(&state, s.actor.clone().retry(constant(secs(10), 2)));
    tokio::time::sleep(secs(1)).await;
    state.request_interrupt(InterruptReason::UserCancelled);
    task.await.unwrap().unwrap_err();

    let text = out.text();
    assert_eq!(
        text,
        "\
- [warning] low disk
> agent planner started
  - [info] planning
  > tool search started
  x tool search failed (attempt 1/2)
      error: timeout
  ~ tool search retrying: Attempt 2/2 in 1.0s
  > tool search started (attempt 2/2)
      ~ Retry attempt 2 (after 1.0s)
      Previous error: timeout
  + tool search completed
  > llm fetch started
  + llm fetch completed
+ agent planner completed
> tool flaky started
x tool flaky failed (attempt 1/2)
    error: upstream down
~ tool flaky retrying: Attempt 2/2 in 10.0s
! interrupt requested: user_cancelled
! tool flaky interrupted
    Interrupted during retry backoff: user_cancelled
"
    );
    assert!(text.is_ascii());
}

#[tokio::test(start_paused = true)]
async fn durations_in_virtual_time_are_exact() {
    let (state, out) = printed(Printer::builder().color(ColorChoice::Never));

    state.call(&planner(), ()).await.unwrap();

    // search fails and answers at once (0µs each), fetch sleeps 250 ms, and the agent takes the
    // 1 s backoff plus the 250 ms (1.25 s, shown to one decimal).
    assert_eq!(
        out.text(),
        "\
▶ agent planner started
  • [info] planning
  ▶ tool search started
  ✖ tool search failed (attempt 1/2, 0µs)
      error: timeout
  ↻ tool search retrying: Attempt 2/2 in 1.0s
  ▶ tool search started (attempt 2/2)
      ↻ Retry attempt 2 (after 1.0s)
      Previous error: timeout
  ✔ tool search completed (0µs)
  ▶ llm fetch started
  ✔ llm fetch completed (250.0ms)
✔ agent planner completed (1.2s)
"
    );
}

// ── The run summary ────────────────────────────────────────────────────────────────────────

/// A mixed run: an LLM call that answers, a tool retried once then answering, a tool that
/// exhausts two attempts, a log, and a tool interrupted in its backoff.
async fn mixed_run(state: &ExecutionState) {
    let answer = scripted_kind(ActorKind::Llm, "answer", vec![Step::Ok("42")]);
    let search = scripted("search", vec![Step::Fail("reset"), Step::Ok("hits")]);
    let flaky = scripted("flaky", vec![Step::Fail("down")]);
    let slow = scripted("slow", vec![Step::Fail("busy")]);

    state.call(&answer.actor, ()).await.unwrap();
    state
        .call(&search.actor.clone().retry(constant(secs(1), 3)), ())
        .await
        .unwrap();
    state
        .call(&flaky.actor.clone().retry(constant(secs(1), 2)), ())
        .await
        .unwrap_err();
    state.log(Severity::Info, "halfway");
    let task = spawn_call(state, slow.actor.clone().retry(constant(secs(10), 3)));
    tokio::time::sleep(secs(1)).await;
    state.request_interrupt(
        InterruptSignal::new(InterruptReason::UserCancelled)
            .message("stop now")
            .triggered_by("operator"),
    );
    task.await.unwrap().unwrap_err();
}

#[tokio::test(start_paused = true)]
async fn summary_counts_calls_statuses_kinds_outcomes_retries_and_interrupts() {
    let state = ExecutionState::new();
    mixed_run(&state).await;

    let summary = state.summary();

    assert_eq!(summary.calls, 4);
    assert_eq!(summary.events, 18);
    let by_status: Vec<(&str, usize)> = summary.by_status.clone().into_iter().collect();
    assert_eq!(
        by_status,
        [
            ("completed", 2),
            ("failed", 4),
            ("interrupted", 2),
            ("log", 1),
            ("retrying", 3),
            ("started", 6),
        ]
    );
    let by_kind: Vec<(&str, usize)> = summary.by_kind.clone().into_iter().collect();
    assert_eq!(by_kind, [("llm", 1), ("tool", 3)]);
    let outcomes: Vec<(&str, usize)> = summary.outcomes.clone().into_iter().collect();
    assert_eq!(
        outcomes,
        [("completed", 2), ("failed", 1), ("interrupted", 1)]
    );
    assert_eq!(
        summary.retries,
        RetryStats {
            calls_retried: 3,
            retry_attempts: 3,
            succeeded_after_retry: 1,
            failed_after_retries: 1,
        }
    );
    assert_eq!(summary.interrupts.len(), 1);
    let signal = &summary.interrupts[0];
    assert_eq!(signal.reason, InterruptReason::UserCancelled);
    assert_eq!(signal.message.as_deref(), Some("stop now"));
    assert_eq!(signal.triggered_by.as_deref(), Some("operator"));
}

#[tokio::test(start_paused = true)]
async fn summary_renders_as_exact_text_in_unicode_and_ascii() {
    let state = ExecutionState::new();
    mixed_run(&state).await;
    let summary = state.summary();

    assert_eq!(
        summary.render(false, false),
        "\
── Summary ──────────────────────────────
calls: 4   records: 18
outcomes: completed 2 · failed 1 · interrupted 1
by kind: llm 1 · tool 3
by status: completed 2 · failed 4 · interrupted 2 · log 1 · retrying 3 · started 6
retries: 3 calls retried, 3 retries, 1 succeeded after retrying, 1 failed after exhausting retries
interrupted: user_cancelled (stop now) by operator
"
    );
    assert_eq!(
        summary.render(true, false),
        "\
-- Summary ------------------------------
calls: 4   records: 18
outcomes: completed 2, failed 1, interrupted 1
by kind: llm 1, tool 3
by status: completed 2, failed 4, interrupted 2, log 1, retrying 3, started 6
retries: 3 calls retried, 3 retries, 1 succeeded after retrying, 1 failed after exhausting retries
interrupted: user_cancelled (stop now) by operator
"
    );
    // With time, one more line after the records.
    let timed = summary.render(false, true);
    let time_line = timed.lines().nth(5).unwrap();
    assert!(time_line.starts_with("time: "), "{timed}");
}

#[tokio::test(start_paused = true)]
async fn summary_of_a_single_clean_call_uses_singular_words_where_they_apply() {
    let state = ExecutionState::new();
    let s = scripted("fetch", vec![Step::Fail("reset"), Step::Ok("page")]);
    state
        .call(&s.actor.clone().retry(constant(secs(1), 3)), ())
        .await
        .unwrap();

    assert_eq!(
        state.summary().render(false, false),
        "\
── Summary ──────────────────────────────
calls: 1   records: 5
outcomes: completed 1
by kind: tool 1
by status: completed 1 · failed 1 · retrying 1 · started 2
retries: 1 call retried, 1 retry, 1 succeeded after retrying, 0 failed after exhausting retries
"
    );
}

/// A parallel step as the CLI runs one: an agent `fan` whose handler runs a group of three
/// tasks, each calling the tool `page`; then a tool `report`.
async fn fan_out_run(state: &ExecutionState) {
    let page = scripted("page", vec![Step::Ok("p"), Step::Ok("p"), Step::Ok("p")]);
    let tool = page.actor.clone();
    let fan = Actor::new(ActorKind::Agent, "fan", move |(): (), ctx: Ctx| {
        let tool = tool.clone();
        async move {
            let mut group = ctx.group::<String>("fan").max_workers(2);
            for _ in 0..3 {
                let tool = tool.clone();
                group.add_named(
                    "page",
                    move |ctx: Ctx| async move { ctx.call(&tool, ()).await },
                );
            }
            Ok::<_, io::Error>(group.run().await.results.len().to_string())
        }
    });
    state.call(&fan, ()).await.unwrap();
    let report = scripted("report", vec![Step::Ok("done")]);
    state.call(&report.actor, ()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn summary_counts_steps_as_calls_and_groups_and_tasks_apart() {
    let state = ExecutionState::new();
    fan_out_run(&state).await;
    let summary = state.summary();

    // fan, its three pages and report: five steps; the group and its tasks are counted apart.
    assert_eq!(summary.calls, 5);
    assert_eq!((summary.groups, summary.tasks), (1, 3));
    let outcomes: Vec<(&str, usize)> = summary.outcomes.clone().into_iter().collect();
    assert_eq!(outcomes, [("completed", 5)]);
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        (&json["calls"], &json["groups"], &json["tasks"]),
        (
            &serde_json::json!(5),
            &serde_json::json!(1),
            &serde_json::json!(3)
        )
    );
    assert_eq!(
        summary.render(true, false),
        "\
-- Summary ------------------------------
calls: 5   groups: 1 (3 tasks)   records: 18
outcomes: completed 5
by kind: agent 1, group 1, task 3, tool 4
by status: completed 9, started 9
retries: 0 calls retried, 0 retries, 0 succeeded after retrying, 0 failed after exhausting retries
"
    );
}

#[tokio::test(start_paused = true)]
async fn print_summary_writes_the_rendered_summary_in_the_printers_style() {
    let state = ExecutionState::new();
    mixed_run(&state).await;
    let summary = state.summary();

    let out = Shared::default();
    plain().build(out.clone()).print_summary(&summary).unwrap();
    assert_eq!(out.text(), summary.render(false, false));

    let out = Shared::default();
    plain()
        .ascii(true)
        .build(out.clone())
        .print_summary(&summary)
        .unwrap();
    assert_eq!(out.text(), summary.render(true, false));
}

#[tokio::test(start_paused = true)]
async fn printer_output_and_summary_follow_each_other_in_one_writer() {
    let (state, out) = printed(plain());
    let fetch = scripted("fetch", vec![Step::Ok("page")]);
    state.call(&fetch.actor, ()).await.unwrap();

    plain()
        .build(out.clone())
        .print_summary(&state.summary())
        .unwrap();

    assert_eq!(
        out.text(),
        "\
▶ tool fetch started
✔ tool fetch completed
── Summary ──────────────────────────────
calls: 1   records: 2
outcomes: completed 1
by kind: tool 1
by status: completed 1 · started 1
retries: 0 calls retried, 0 retries, 0 succeeded after retrying, 0 failed after exhausting retries
"
    );
}

// ── Colour ─────────────────────────────────────────────────────────────────────────────────

/// An environment made of `vars` only.
fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| OsString::from(v))
    }
}

#[test]
fn auto_colour_is_off_for_a_writer_that_is_not_a_terminal() {
    let printer = Printer::builder()
        .color(ColorChoice::Auto)
        .build(Vec::new());
    // `build` honours CLICOLOR_FORCE from the process environment, which the test does not set.
    if std::env::var_os("CLICOLOR_FORCE").is_none() {
        assert!(!printer.colored());
    }
    assert!(!Printer::builder()
        .color(ColorChoice::Never)
        .build(Vec::new())
        .colored());
    assert!(Printer::builder()
        .color(ColorChoice::Always)
        .build(Vec::new())
        .colored());
}

#[test]
fn auto_colour_resolution_honours_no_color_and_clicolor_force() {
    let auto = ColorChoice::Auto;
    assert!(auto.resolve(true, env(&[])));
    assert!(!auto.resolve(false, env(&[])));
    assert!(!auto.resolve(true, env(&[("NO_COLOR", "1")])));
    assert!(
        auto.resolve(true, env(&[("NO_COLOR", "")])),
        "empty NO_COLOR"
    );
    assert!(auto.resolve(false, env(&[("CLICOLOR_FORCE", "1")])));
    assert!(!auto.resolve(false, env(&[("CLICOLOR_FORCE", "0")])));
    assert!(!auto.resolve(false, env(&[("CLICOLOR_FORCE", "")])));
    assert!(
        !auto.resolve(false, env(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")])),
        "NO_COLOR wins over CLICOLOR_FORCE"
    );
    assert!(ColorChoice::Always.resolve(false, env(&[("NO_COLOR", "1")])));
    assert!(!ColorChoice::Never.resolve(true, env(&[("CLICOLOR_FORCE", "1")])));
    assert_eq!(ColorChoice::default(), ColorChoice::Auto);
}

#[tokio::test(start_paused = true)]
async fn colour_always_paints_the_symbol_and_the_status() {
    let (state, out) = printed(
        Printer::builder()
            .color(ColorChoice::Always)
            .durations(false),
    );
    let s = scripted("fetch", vec![Step::Fail("reset"), Step::Ok("page")]);

    state
        .call(&s.actor.clone().retry(constant(secs(1), 3)), ())
        .await
        .unwrap();

    assert_eq!(
        out.text(),
        "\
\x1b[36m▶\x1b[0m tool fetch \x1b[36mstarted\x1b[0m
\x1b[31m✖\x1b[0m tool fetch \x1b[31mfailed\x1b[0m (attempt 1/3)
    \x1b[31merror:\x1b[0m reset
\x1b[33m↻\x1b[0m tool fetch \x1b[33mretrying\x1b[0m: Attempt 2/3 in 1.0s
\x1b[36m▶\x1b[0m tool fetch \x1b[36mstarted\x1b[0m (attempt 2/3)
    ↻ Retry attempt 2 (after 1.0s)
    Previous error: reset
\x1b[32m✔\x1b[0m tool fetch \x1b[32mcompleted\x1b[0m
"
    );
}

#[tokio::test(start_paused = true)]
async fn colour_never_writes_no_escape_codes() {
    let (state, out) = printed(plain().logs(Some(Severity::Debug)));
    state.log(Severity::Error, "disk full");
    state.call(&planner(), ()).await.unwrap();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let task = spawn_call(&state, s.actor.clone().retry(constant(secs(10), 2)));
    tokio::time::sleep(secs(1)).await;
    state.request_interrupt(InterruptReason::Timeout);
    task.await.unwrap().unwrap_err();

    let text = out.text();
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("[error] disk full"));
}

#[tokio::test(start_paused = true)]
async fn a_group_prints_its_size_its_tasks_by_index_and_its_tally() {
    let (state, out) = printed(plain());
    let s = scripted("fetch", vec![Step::Ok("page")]);
    let mut group = state.group::<String>("pages").max_workers(1);
    for _ in 0..2 {
        let fetch = s.actor.clone();
        group.add_named("page", move |ctx: rh_agents::Ctx| async move {
            ctx.call(&fetch, ()).await
        });
    }

    let outcome = group.run().await;

    assert_eq!(outcome.record.completed, 2);
    assert_eq!(
        out.text(),
        "\
▶ group pages started: 2 tasks, up to 1 at a time, fail-slow
  ▶ task page#0 started
    ▶ tool fetch [task 0] started
    ✔ tool fetch [task 0] completed
  ✔ task page#0 completed
  ▶ task page#1 started
    ▶ tool fetch [task 1] started
    ✔ tool fetch [task 1] completed
  ✔ task page#1 completed
✔ group pages completed: 2/2 completed, 0 failed, 0 cancelled
"
    );
}

#[test]
fn records_read_back_with_odd_values_render_without_panicking() {
    let json = r#"{"id":1,"address":"t#0","actor":"t","kind":"tool","status":"started",
        "timestamp":"2026-11-27T10:00:00.000000Z",
        "retry":{"attempt":4294967295,"is_retry":true}}"#;
    let event: rh_agents::Event = serde_json::from_str(json).unwrap();
    let printer = plain().build(Vec::new());
    assert_eq!(
        printer.render(&event),
        "▶ tool t started (attempt 4294967295)\n    ↻ Retry attempt 4294967295 (after 0µs)\n"
    );
    let summary = rh_agents::observe::summary::RunSummary::from_events(&[Arc::new(event)]);
    assert_eq!(summary.calls, 1);
}

#[tokio::test(start_paused = true)]
async fn ascii_mode_is_ascii_also_for_durations_and_cut_texts() {
    let (state, out) = printed(
        Printer::builder()
            .color(ColorChoice::Never)
            .ascii(true)
            .detail(true)
            .detail_limit(3),
    );
    let s = scripted("nap", vec![Step::Ok("slept")]);
    state.call(&s.actor, ()).await.unwrap();
    let text = out.text();
    assert!(text.is_ascii(), "{text}");
    assert_eq!(
        text,
        "> tool nap started\n+ tool nap completed (0us)\n    output: \"sl...\n"
    );
}

// ── Untrusted text ─────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn control_characters_in_names_messages_and_outputs_are_shown_escaped() {
    let (state, out) = printed(plain().detail(true));
    let evil = Actor::tool("evil\u{1b}[2J", |(): (), _ctx: Ctx| async {
        Ok::<_, Error>("line\r\n\u{1b}]0;title\u{7}".to_owned())
    });
    let failing = scripted(
        "boom\nforged",
        vec![Step::Permanent("bad\u{1b}[31m\nfake line")],
    );

    state.call(&evil, ()).await.unwrap();
    let _ = state.call(&failing.actor, ()).await;

    let text = out.text();
    assert!(
        !text.contains('\u{1b}'),
        "an escape reached the output: {text:?}"
    );
    assert!(!text.contains('\r'), "{text:?}");
    assert_eq!(
        text,
        "\
▶ tool evil\\x1b[2J started
✔ tool evil\\x1b[2J completed
    output: \"line\\r\\n\\u001b]0;title\\u0007\"
▶ tool boom\\nforged started
✖ tool boom\\nforged failed (attempt 1/3, not retried)
    error: bad\\x1b[31m\\nfake line
"
    );
}
