#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Durable state, resuming: the replay modes (normal, republish-all, validation, from an
//! address), runs resumed several times, checkpoints taken from inside a handler, interrupts
//! saved before the caller hears of them, and interrupt requests left in the store.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::store::{
    interrupt_checker, ListFilter, MemoryStore, Mismatch, MismatchKind, ReplayMode, RunMetadata,
    RunStatus, Snapshot, StateStore, StoreError,
};
use rh_agents::{
    Actor, ActorKind, Address, Ctx, Error, Event, EventStatus, ExecutionState, InterruptReason,
    InterruptSignal, Severity,
};
use serde_json::json;
use support::store::{
    addresses, counted, drifting, interrupts_once, resume, stored_status, Counted, TestStore,
};
use support::{constant, scripted, spawn_call, Step};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use EventStatus::{Completed, Interrupted, Log, Recovered, Started};

const SEC: Duration = Duration::from_secs(1);

/// A sync subscriber that keeps every event delivered to it.
fn collector() -> (
    Arc<Mutex<Vec<Event>>>,
    impl Fn(&Event) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |e: &Event| sink.lock().unwrap().push(e.clone()))
}

/// How many records at `address` have `status` in a history.
fn count(events: &[Arc<Event>], address: &str, status: EventStatus) -> usize {
    events
        .iter()
        .filter(|e| e.address.as_str() == address && e.status == status)
        .count()
}

/// The events a stream delivered, once the state it follows is gone.
async fn drain(stream: rh_agents::EventStream) -> Vec<Arc<Event>> {
    tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends when its state is dropped")
}

async fn normal_replays_completed_calls_and_runs_the_rest(backend: TestStore) {
    let store = backend.store();
    let ok = counted("ok", |x| x + 1);
    let broken = scripted("broken", vec![Step::Permanent("bad input")]);
    let stopper = interrupts_once("stopper");
    let never = counted("never", |x| x * 10);

    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    assert_eq!(state.replay_mode(), None, "a new run replays nothing");
    assert_eq!(state.call(&ok.actor, 1).await.unwrap(), 2);
    assert!(state.call(&broken.actor, ()).await.is_err());
    let err = state.call(&stopper.actor, 5).await.unwrap_err();
    assert!(err.is_interrupted());
    assert_eq!(
        state.finish(&Err::<(), _>(err)).unwrap(),
        RunStatus::Interrupted
    );
    let before = state.history().len();
    drop(state);

    let (seen, subscriber) = collector();
    let original = store.load(&id).unwrap();
    let resumed = ExecutionState::builder()
        .id("ignored")
        .metadata(RunMetadata::new().tag("ignored"))
        .subscriber(subscriber)
        .resume(Arc::clone(&store), &id, ReplayMode::Normal)
        .await
        .unwrap();
    let stream = resumed.stream();
    assert_eq!(resumed.replay_mode(), Some(&ReplayMode::Normal));
    assert_eq!(resumed.id(), id, "the run keeps its id");
    assert_eq!(resumed.metadata(), &original.metadata, "and its metadata");
    assert_eq!(resumed.snapshot().created_at, original.created_at);
    assert_eq!(resumed.status(), RunStatus::Running);
    assert_eq!(stored_status(&store, &id), RunStatus::Running);
    // The history is restored, and the resume itself is recorded after it.
    assert_eq!(
        resumed.history().len(),
        before + 1,
        "the history is restored"
    );
    let marker = Arc::clone(&resumed.history().events()[before]);
    assert_eq!((marker.status, &*marker.actor), (Log, "resume"));
    assert!(marker.message.as_deref().unwrap().contains("normal"));
    let before = before + 1;

    // Completed: returned from the record, the handler does not run.
    assert_eq!(resumed.call(&ok.actor, 1).await.unwrap(), 2);
    assert_eq!(ok.calls(), 1);
    let recovered = resumed.history().latest("ok#0").unwrap();
    assert_eq!(recovered.status, Recovered);
    assert!(recovered.is_replayed && recovered.is_final);
    assert_eq!(recovered.result, Some(json!(2)));
    assert_eq!(recovered.id, before as u64);
    assert!(
        recovered.message.as_deref().unwrap().contains("replayed"),
        "{:?}",
        recovered.message
    );
    let stored = store.load(&id).unwrap();
    assert_eq!(
        stored.events.last(),
        Some(&*recovered),
        "stored like any record"
    );

    // Failed, interrupted and never reached: they run.
    assert!(resumed.call(&broken.actor, ()).await.is_err());
    assert_eq!(broken.calls(), 2);
    assert_eq!(resumed.call(&stopper.actor, 5).await.unwrap(), 105);
    assert_eq!(stopper.calls(), 2);
    assert_eq!(resumed.call(&never.actor, 3).await.unwrap(), 30);
    assert_eq!(never.calls(), 1);
    assert_eq!(resumed.finish_ok().unwrap(), RunStatus::Completed);
    assert_eq!(stored_status(&store, &id), RunStatus::Completed);
    let events = resumed.history().events();
    assert_eq!(count(&events, "ok#0", Recovered), 1);
    assert_eq!(
        count(&events, "ok#0", Started),
        1,
        "only the first run started it"
    );
    assert_eq!(count(&events, "stopper#0", Completed), 1);
    drop(resumed);

    // The RECOVERED record is kept, not published.
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|e| e.status != Recovered && !e.is_replayed),
        "a subscriber must not see replayed records in normal mode"
    );
    assert!(seen.iter().any(|e| e.address.as_str() == "never#0"));
    let streamed = drain(stream).await;
    // The subscriber also saw the record of the resume, made before the stream began.
    assert_eq!(seen[0].status, Log);
    assert_eq!(streamed.len(), seen.len() - 1);
    assert!(streamed.iter().all(|e| e.status != Recovered));
}

async fn republish_all_delivers_the_replayed_records(backend: TestStore) {
    let store = backend.store();
    let ok = counted("ok", |x| x + 1);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&ok.actor, 1).await.unwrap();
    state.call(&ok.actor, 2).await.unwrap();
    drop(state);

    let (seen, subscriber) = collector();
    let resumed = ExecutionState::builder()
        .subscriber(subscriber)
        .resume(Arc::clone(&store), &id, ReplayMode::RepublishAll)
        .await
        .unwrap();
    let stream = resumed.stream();
    assert_eq!(resumed.call(&ok.actor, 1).await.unwrap(), 2);
    assert_eq!(resumed.call(&ok.actor, 2).await.unwrap(), 3);
    assert_eq!(resumed.call(&ok.actor, 3).await.unwrap(), 4);
    assert_eq!(ok.calls(), 3, "only the third call ran");
    drop(resumed);

    let seen = seen.lock().unwrap().clone();
    let replayed: Vec<(&str, EventStatus, bool)> = seen
        .iter()
        .map(|e| (e.address.as_str(), e.status, e.is_replayed))
        .collect();
    assert_eq!(
        replayed,
        [
            ("", Log, false), // the record of the resume
            ("ok#0", Recovered, true),
            ("ok#1", Recovered, true),
            ("ok#2", Started, false),
            ("ok#2", Completed, false),
        ]
    );
    assert_eq!(seen[2].result, Some(json!(3)));
    let streamed = drain(stream).await;
    let statuses: Vec<EventStatus> = streamed.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Recovered, Recovered, Started, Completed]);
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Page {
    n: u32,
    text: String,
}

/// An artifact-output actor whose result is the same every time (`stable`) or carries how many
/// times it ran.
fn paged(name: &str, stable: bool) -> Counted<u32, Page> {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool(name, move |n: u32, _ctx: Ctx| {
        let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let text = if stable {
            "same".to_owned()
        } else {
            format!("run {run}")
        };
        async move { Ok::<_, std::io::Error>(Page { n, text }) }
    })
    .output_as_artifact();
    Counted { actor, calls }
}

async fn validation_reruns_everything_and_reports_changed_results(backend: TestStore) {
    let store = backend.store();
    let stable = counted("stable", |x| x * 3);
    let drift = drifting("drift");
    let stable_doc = paged("stable_doc", true);
    let drift_doc = paged("drift_doc", false);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&stable.actor, 2).await.unwrap();
    assert_eq!(state.call(&drift.actor, 0).await.unwrap(), 1);
    state.call(&stable_doc.actor, 1).await.unwrap();
    state.call(&drift_doc.actor, 1).await.unwrap();
    state.finish_ok().unwrap();
    drop(state);

    let resumed = resume(&store, &id, ReplayMode::Validation).await;
    let before = resumed.history().len();
    assert_eq!(resumed.call(&stable.actor, 2).await.unwrap(), 6);
    assert_eq!(
        resumed.call(&drift.actor, 0).await.unwrap(),
        2,
        "the new result is returned"
    );
    resumed.call(&stable_doc.actor, 1).await.unwrap();
    let page = resumed.call(&drift_doc.actor, 1).await.unwrap();
    assert_eq!(page.text, "run 2");
    for (name, calls) in [
        ("stable", stable.calls()),
        ("drift", drift.calls()),
        ("stable_doc", stable_doc.calls()),
        ("drift_doc", drift_doc.calls()),
    ] {
        assert_eq!(calls, 2, "{name} runs again in validation mode");
    }

    let mismatches = resumed.mismatches();
    assert_eq!(
        mismatches,
        [
            Mismatch::new(
                Address::parse("drift#0"),
                "drift",
                MismatchKind::Result,
                json!(1),
                json!(2),
            ),
            Mismatch::new(
                Address::parse("drift_doc#0"),
                "drift_doc",
                MismatchKind::Result,
                json!({"n": 1, "text": "run 1"}),
                json!({"n": 1, "text": "run 2"}),
            ),
        ]
    );

    let new: Vec<Arc<Event>> = resumed.history().events()[before..].to_vec();
    assert!(new.iter().all(|e| e.status != Recovered && !e.is_replayed));
    let warnings: Vec<&Arc<Event>> = new.iter().filter(|e| e.status == Log).collect();
    assert_eq!(
        warnings.len(),
        2,
        "one warning per changed result, none for the same ones"
    );
    let warning = warnings[0];
    assert_eq!(warning.address.as_str(), "drift#0");
    assert_eq!(warning.level, Some(Severity::Warning));
    assert_eq!(warning.actor.as_ref(), "drift");
    assert_eq!(warning.kind, ActorKind::Tool);
    let meta = warning.metadata.as_deref().unwrap();
    assert_eq!(meta["validation"], json!("mismatch"));
    assert_eq!(meta["expected"], json!(1));
    assert_eq!(meta["actual"], json!(2));
    assert_eq!(warnings[1].address.as_str(), "drift_doc#0");
    for address in ["stable#0", "stable_doc#0"] {
        assert_eq!(count(&new, address, Log), 0, "{address} has no warning");
        assert_eq!(count(&new, address, Completed), 1, "{address} ran again");
    }
    // The warnings are stored like any record.
    let stored = store.load(&id).unwrap();
    assert_eq!(
        stored
            .events
            .iter()
            .filter(|e| e.status == Log && e.level == Some(Severity::Warning))
            .count(),
        2
    );
}

async fn from_address_replays_before_it_and_runs_it_and_after(backend: TestStore) {
    let store = backend.store();
    let a = counted("a", |x| x + 1);
    let b = counted("b", |x| x + 2);
    let c = counted("c", |x| x + 3);
    let search = counted("search", |x| x * 10);
    let planner = {
        let search = search.actor.clone();
        Actor::agent("planner", move |x: u32, ctx: Ctx| {
            let search = search.clone();
            async move {
                let first = ctx.call(&search, x).await?;
                let second = ctx.call(&search, x + 1).await?;
                Ok::<_, Error>(first + second)
            }
        })
    };
    let pipeline = |state: ExecutionState| {
        let (a, b, c, planner) = (
            a.actor.clone(),
            b.actor.clone(),
            c.actor.clone(),
            planner.clone(),
        );
        async move {
            let x = state.call(&a, 0).await?;
            let x = state.call(&b, x).await?;
            let x = state.call(&c, x).await?;
            let y = state.call(&planner, x).await?;
            Ok::<_, Error>((x, y))
        }
    };
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    assert_eq!(pipeline(state.clone()).await.unwrap(), (6, 130));
    state.finish_ok().unwrap();
    drop(state);

    // An address that is not in the history: refused, and the run is left as it was.
    match ExecutionState::builder()
        .resume(
            Arc::clone(&store),
            &id,
            ReplayMode::FromAddress("zzz#0".into()),
        )
        .await
    {
        Err(StoreError::UnknownAddress { id: run, address }) => {
            assert_eq!((run.as_str(), address.as_str()), (id.as_str(), "zzz#0"));
        }
        other => panic!("expected UnknownAddress, got {other:?}"),
    }
    assert_eq!(stored_status(&store, &id), RunStatus::Completed);
    assert!(
        !store.is_writing(&id).unwrap(),
        "the refused resume let go of the run"
    );

    let resumed = resume(&store, &id, ReplayMode::FromAddress("b#0".into())).await;
    assert_eq!(pipeline(resumed.clone()).await.unwrap(), (6, 130));
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 2, 2));
    assert_eq!(search.calls(), 4, "everything after b runs again");
    let events = resumed.history().events();
    assert_eq!(count(&events, "a#0", Recovered), 1);
    assert_eq!(count(&events, "b#0", Recovered), 0);
    assert_eq!(count(&events, "b#0", Completed), 2);
    drop(resumed);

    // From a nested address: its parent and what follows run, its earlier sibling replays.
    let resumed = resume(
        &store,
        &id,
        ReplayMode::FromAddress("planner#0/search#1".into()),
    )
    .await;
    assert_eq!(pipeline(resumed.clone()).await.unwrap(), (6, 130));
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 2, 2));
    assert_eq!(search.calls(), 5, "only search#1 runs");
    let new = resumed.history().events();
    assert_eq!(count(&new, "planner#0/search#0", Recovered), 1);
    assert_eq!(count(&new, "planner#0", Recovered), 0);
    assert_eq!(count(&new, "c#0", Recovered), 1);
}

/// Steps whose runs and completions are counted; the given steps stop the run the first time.
struct Steps {
    a: Counted<u32, u32>,
    b: Counted<u32, u32>,
    c: Counted<u32, u32>,
    d: Counted<u32, u32>,
}

async fn pipeline(state: &ExecutionState, steps: &Steps) -> Result<u32, Error> {
    let x = state.call(&steps.a.actor, 1).await?;
    let x = state.call(&steps.b.actor, x).await?;
    let x = state.call(&steps.c.actor, x).await?;
    state.call(&steps.d.actor, x).await
}

async fn multi_turn_resume_never_reruns_completed_steps(backend: TestStore) {
    let store = backend.store();
    let steps = Steps {
        a: counted("a", |x| x + 1),
        b: interrupts_once("b"),
        c: interrupts_once("c"),
        d: counted("d", |x| x * 2),
    };
    let runs = |s: &Steps| (s.a.calls(), s.b.calls(), s.c.calls(), s.d.calls());

    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let outcome = pipeline(&state, &steps).await;
    assert!(outcome.as_ref().unwrap_err().is_interrupted());
    state.finish(&outcome).unwrap();
    assert_eq!(runs(&steps), (1, 1, 0, 0));
    drop(state);
    let first = store.load(&id).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);

    let state = resume(&store, &id, ReplayMode::Normal).await;
    let outcome = pipeline(&state, &steps).await;
    assert!(outcome.as_ref().unwrap_err().is_interrupted());
    state.finish(&outcome).unwrap();
    assert_eq!(
        runs(&steps),
        (1, 2, 1, 0),
        "a replayed, b ran to its end, c stopped"
    );
    drop(state);
    let second = store.load(&id).unwrap();
    assert_eq!(second.status, RunStatus::Interrupted);

    let state = resume(&store, &id, ReplayMode::Normal).await;
    assert_eq!(pipeline(&state, &steps).await.unwrap(), (2 + 100 + 100) * 2);
    state.finish_ok().unwrap();
    assert_eq!(runs(&steps), (1, 2, 2, 1));
    drop(state);
    let third = store.load(&id).unwrap();
    assert_eq!(third.status, RunStatus::Completed);

    // Once more: everything replays, whichever record (COMPLETED or RECOVERED) came last.
    let state = resume(&store, &id, ReplayMode::Normal).await;
    assert_eq!(pipeline(&state, &steps).await.unwrap(), 404);
    assert_eq!(runs(&steps), (1, 2, 2, 1));
    state.finish_ok().unwrap();
    drop(state);
    let fourth = store.load(&id).unwrap();

    // The history only grows: each turn starts with everything the last one stored.
    let turns = [&first, &second, &third, &fourth];
    for pair in turns.windows(2) {
        assert!(pair[1].events.len() > pair[0].events.len());
        assert_eq!(pair[1].events[..pair[0].events.len()], pair[0].events[..]);
    }
    let events: Vec<Arc<Event>> = fourth.events.iter().cloned().map(Arc::new).collect();
    for address in ["a#0", "b#0", "c#0", "d#0"] {
        assert_eq!(
            count(&events, address, Completed),
            1,
            "{address} completed exactly once over all turns"
        );
    }
    assert_eq!(count(&events, "a#0", Recovered), 3);
    assert_eq!(count(&events, "b#0", Recovered), 2);
    assert_eq!(count(&events, "c#0", Recovered), 1);
    assert_eq!(count(&events, "d#0", Recovered), 1);
    assert_eq!(count(&events, "b#0", Interrupted), 1);
    assert_eq!(count(&events, "c#0", Interrupted), 1);
    assert_eq!(
        count(&events, "", Interrupted),
        2,
        "one notice per interrupted turn"
    );
}

/// An agent that, after its first child, saves a snapshot of its own run into `checkpoints`
/// (once); then calls a second child.
fn checkpointing_planner(
    search: &Counted<u32, u32>,
    write: &Counted<u32, u32>,
    checkpoints: &Arc<MemoryStore>,
    runs: &Arc<AtomicU32>,
) -> Actor<u32, u32> {
    let (search, write) = (search.actor.clone(), write.actor.clone());
    let checkpoints = Arc::clone(checkpoints);
    let runs = Arc::clone(runs);
    let taken = Arc::new(AtomicBool::new(false));
    Actor::agent("planner", move |x: u32, ctx: Ctx| {
        let (search, write) = (search.clone(), write.clone());
        let checkpoints = Arc::clone(&checkpoints);
        let taken = Arc::clone(&taken);
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            let found = ctx.call(&search, x).await?;
            if !taken.swap(true, Ordering::SeqCst) {
                checkpoints.save(&ctx.snapshot()).unwrap();
            }
            let written = ctx.call(&write, found).await?;
            Ok::<_, Error>(written)
        }
    })
}

#[tokio::test]
async fn checkpoint_taken_inside_a_handler_restores_and_replays_the_first_child() {
    for resume_from_store in [false, true] {
        let search = counted("search", |x| x * 10);
        let write = counted("write", |x| x + 1);
        let checkpoints = Arc::new(MemoryStore::new());
        let planner_runs = Arc::new(AtomicU32::new(0));
        let planner = checkpointing_planner(&search, &write, &checkpoints, &planner_runs);

        let state = ExecutionState::builder().id("with-checkpoint").build();
        assert_eq!(state.call(&planner, 4).await.unwrap(), 41);
        let original = state.history().events();
        let checkpoint = checkpoints.load("with-checkpoint").unwrap();
        let cut = checkpoint.events.len();
        let statuses: Vec<(&str, EventStatus)> = checkpoint
            .events
            .iter()
            .map(|e| (e.address.as_str(), e.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("planner#0", Started),
                ("planner#0/search#0", Started),
                ("planner#0/search#0", Completed),
            ],
            "the checkpoint holds what happened before it was taken"
        );

        let restored = if resume_from_store {
            let store: Arc<dyn StateStore> = Arc::<MemoryStore>::clone(&checkpoints);
            resume(&store, "with-checkpoint", ReplayMode::Normal).await
        } else {
            ExecutionState::builder()
                .restore(checkpoint.clone(), ReplayMode::Normal)
                .unwrap()
        };
        assert_eq!(restored.id(), "with-checkpoint");
        assert_eq!(restored.call(&planner, 4).await.unwrap(), 41);
        assert_eq!(search.calls(), 1, "the first child is replayed");
        assert_eq!(
            write.calls(),
            2,
            "the second child had not run at the checkpoint"
        );
        assert_eq!(
            planner_runs.load(Ordering::SeqCst),
            2,
            "the unfinished agent runs again"
        );

        let after = restored.history().events();
        assert_eq!(after[..cut], original[..cut]);
        let new = &after[cut..];
        assert_eq!(
            addresses(new),
            addresses(&original),
            "the same program makes the same addresses (from store: {resume_from_store})"
        );
        let replayed: Vec<_> = new.iter().filter(|e| e.is_replayed).collect();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].address.as_str(), "planner#0/search#0");
        assert_eq!(replayed[0].result, Some(json!(40)));
        if resume_from_store {
            // The resumed run wrote to the checkpoint store as it went.
            let stored = checkpoints.load("with-checkpoint").unwrap();
            assert_eq!(stored.events.len(), after.len());
        }
    }
}

#[tokio::test]
async fn a_fresh_run_never_replays() {
    let store = TestStore::memory();
    for durable in [false, true] {
        let state = if durable {
            ExecutionState::builder()
                .start(store.store())
                .await
                .unwrap()
        } else {
            ExecutionState::new()
        };
        let double = counted("double", |x| x * 2);
        assert_eq!(state.call(&double.actor, 5).await.unwrap(), 10);
        assert_eq!(state.call(&double.actor, 5).await.unwrap(), 10);
        assert_eq!(
            double.calls(),
            2,
            "same actor, same input: two calls (durable: {durable})"
        );
        let events = state.history().events();
        assert_eq!(count(&events, "double#0", Completed), 1);
        assert_eq!(count(&events, "double#1", Completed), 1);
        assert!(events
            .iter()
            .all(|e| e.status != Recovered && !e.is_replayed));
        assert!(state.mismatches().is_empty());
    }

    // A restored state replays only what its history holds: a new call still runs, twice.
    let state = ExecutionState::new();
    let double = counted("double", |x| x * 2);
    state.call(&double.actor, 1).await.unwrap();
    let restored = ExecutionState::builder()
        .restore(state.snapshot(), ReplayMode::Normal)
        .unwrap();
    let other = counted("other", |x| x);
    restored.call(&other.actor, 1).await.unwrap();
    restored.call(&other.actor, 1).await.unwrap();
    assert_eq!(other.calls(), 2);
}

async fn interrupt_in_a_backoff_is_saved_before_the_caller_hears(backend: TestStore) {
    let store = backend.store();
    let id = "backoff-run";
    let prep = counted("prep", |x| x + 1);
    let flaky = scripted(
        "flaky",
        vec![Step::Fail("503 from upstream"), Step::Ok("fine")],
    );
    let flaky_actor = flaky.actor.clone().retry(constant(10 * SEC, 3));

    // A subscriber that reads the stored status when the call's INTERRUPTED is published.
    let seen_status = Arc::new(Mutex::new(Vec::new()));
    let subscriber = {
        let store = Arc::clone(&store);
        let seen_status = Arc::clone(&seen_status);
        move |e: &Event| {
            if e.address.as_str() == "flaky#0" && e.status == Interrupted {
                seen_status
                    .lock()
                    .unwrap()
                    .push(store.load(id).unwrap().status);
            }
        }
    };
    let state = ExecutionState::builder()
        .id(id)
        .subscriber(subscriber)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    assert_eq!(state.call(&prep.actor, 1).await.unwrap(), 2);
    let task = spawn_call(&state, flaky_actor.clone());
    tokio::time::sleep(SEC).await;
    assert_eq!(stored_status(&store, id), RunStatus::Running);
    let signal = InterruptSignal::new(InterruptReason::UserCancelled)
        .message("stop")
        .save_checkpoint(true);
    let requested = Instant::now();
    assert!(state.request_interrupt(signal.clone()));
    assert_eq!(
        stored_status(&store, id),
        RunStatus::Interrupted,
        "saved before anyone hears of the interrupt"
    );
    let (result, returned) = task.await.unwrap();
    assert_eq!(returned, requested, "the backoff ends at once");
    let err = result.unwrap_err();
    assert!(err.is_interrupted());
    assert_eq!(err.interrupt(), Some(&signal));
    assert_eq!(*seen_status.lock().unwrap(), [RunStatus::Interrupted]);
    assert_eq!(flaky.calls(), 1);
    let stored = store.load(id).unwrap();
    let last = stored.events.last().unwrap();
    assert_eq!(
        (last.address.as_str(), last.status),
        ("flaky#0", Interrupted)
    );
    assert_eq!(
        state.finish(&Err::<(), _>(err)).unwrap(),
        RunStatus::Interrupted
    );
    drop(state);

    let resumed = resume(&store, id, ReplayMode::Normal).await;
    assert_eq!(resumed.call(&prep.actor, 1).await.unwrap(), 2);
    assert_eq!(prep.calls(), 1, "the completed step is not run again");
    assert_eq!(resumed.call(&flaky_actor, ()).await.unwrap(), "fine");
    assert_eq!(flaky.calls(), 2);
    let outcome: Result<(), Error> = Ok(());
    assert_eq!(resumed.finish(&outcome).unwrap(), RunStatus::Completed);
    assert_eq!(stored_status(&store, id), RunStatus::Completed);
    let listed = store
        .list(&ListFilter::new().status(RunStatus::Completed))
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
}

async fn finish_saves_how_the_run_ended(backend: TestStore) {
    let store = backend.store();
    let broken = scripted("broken", vec![Step::Permanent("no such file")]);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let outcome = state.call(&broken.actor, ()).await;
    assert!(outcome.is_err());
    assert_eq!(state.finish(&outcome).unwrap(), RunStatus::Failed);
    assert_eq!(state.status(), RunStatus::Failed);
    assert_eq!(stored_status(&store, &id), RunStatus::Failed);
    let failed = store
        .list(&ListFilter::new().status(RunStatus::Failed))
        .unwrap();
    assert_eq!(failed.len(), 1);

    state.set_status(RunStatus::Paused).unwrap();
    assert_eq!(stored_status(&store, &id), RunStatus::Paused);
    state.save_checkpoint().unwrap();
    assert_eq!(stored_status(&store, &id), RunStatus::Paused);
    state.request_interrupt(InterruptReason::Timeout);
    let interrupted = state.check_interrupt().await;
    assert!(interrupted.as_ref().unwrap_err().is_interrupted());
    assert_eq!(state.finish(&interrupted).unwrap(), RunStatus::Interrupted);
    assert_eq!(stored_status(&store, &id), RunStatus::Interrupted);
}

async fn interrupt_requests_left_in_the_store_stop_the_run(backend: TestStore) {
    let store = backend.store();
    let id = "watched";
    let state = ExecutionState::builder()
        .id(id)
        .grace_period(Duration::ZERO)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    state.add_checker(interrupt_checker(Arc::clone(&store), id));
    assert_eq!(store.pending_interrupt(id).unwrap(), None);

    let sleeper = scripted("sleeper", vec![Step::Sleep(Duration::from_secs(60))]);
    let start = Instant::now();
    let task = spawn_call(&state, sleeper.actor.clone());
    tokio::time::sleep(SEC).await;
    let signal = InterruptSignal::new(InterruptReason::SystemShutdown)
        .message("deploying")
        .triggered_by("ops");
    store.request_interrupt(id, &signal).unwrap();
    assert_eq!(store.pending_interrupt(id).unwrap(), Some(signal.clone()));

    let (result, returned) = task.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is_interrupted());
    assert_eq!(err.interrupt(), Some(&signal));
    let waited = returned.duration_since(start);
    assert!(
        waited >= SEC && waited <= SEC + rh_agents::DEFAULT_CHECK_INTERVAL,
        "noticed at the next poll, not after the 60 s handler: {waited:?}"
    );
    assert_eq!(state.interrupt_signal(), Some(signal.clone()));
    assert_eq!(stored_status(&store, id), RunStatus::Interrupted);
    drop(state);
    assert_eq!(
        store.pending_interrupt(id).unwrap(),
        Some(signal),
        "the request stays until the run is resumed"
    );

    let resumed = ExecutionState::builder()
        .checker(interrupt_checker(Arc::clone(&store), id))
        .resume(Arc::clone(&store), id, ReplayMode::Normal)
        .await
        .unwrap();
    assert_eq!(
        store.pending_interrupt(id).unwrap(),
        None,
        "resume clears it"
    );
    assert!(!resumed.is_interrupted());
    assert_eq!(resumed.call(&sleeper.actor, ()).await.unwrap(), "slept");
    assert_eq!(sleeper.calls(), 2);
    resumed.check_interrupt().await.unwrap();

    // A request for a run the store does not hold.
    assert!(matches!(
        store.request_interrupt("nobody", &InterruptSignal::new(InterruptReason::Custom)),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.pending_interrupt("nobody").unwrap(), None);
}

async fn a_run_has_one_writer(backend: TestStore) {
    let store = backend.store();
    let state = ExecutionState::builder()
        .id("solo")
        .start(Arc::clone(&store))
        .await
        .unwrap();
    assert!(store.is_writing("solo").unwrap());
    // Without a wait for the writer to go (see `a_resume_waits_for_the_previous_writer…`).
    assert!(matches!(
        ExecutionState::builder()
            .id("solo")
            .writer_wait(Duration::ZERO)
            .start(Arc::clone(&store))
            .await,
        Err(StoreError::Locked { .. })
    ));
    assert!(matches!(
        ExecutionState::builder()
            .writer_wait(Duration::ZERO)
            .resume(Arc::clone(&store), "solo", ReplayMode::Normal)
            .await,
        Err(StoreError::Locked { .. })
    ));
    let snapshot: Snapshot = state.snapshot();
    assert!(matches!(
        store.save(&snapshot),
        Err(StoreError::Locked { .. })
    ));
    drop(state);
    assert!(!store.is_writing("solo").unwrap());
    assert!(matches!(
        ExecutionState::builder().id("solo").start(Arc::clone(&store)).await,
        Err(StoreError::AlreadyExists { id }) if id == "solo"
    ));
    let resumed = resume(&store, "solo", ReplayMode::Normal).await;
    assert!(store.is_writing("solo").unwrap());
    drop(resumed);
    assert!(matches!(
        ExecutionState::builder()
            .resume(Arc::clone(&store), "missing", ReplayMode::Normal)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(!store.is_writing("missing").unwrap());
}

async fn parallel_tasks_replay_what_completed_and_rerun_what_failed(backend: TestStore) {
    let store = backend.store();
    let leaf = counted("leaf", |x| x * 2);
    let picky = scripted("picky", vec![Step::Permanent("not yet"), Step::Ok("now")]);
    let run_group = |state: ExecutionState| {
        let (leaf, picky) = (leaf.actor.clone(), picky.actor.clone());
        async move {
            let mut group = state.group::<String>("fan").max_workers(3);
            for i in 0..3u32 {
                let (leaf, picky) = (leaf.clone(), picky.clone());
                group.add(move |ctx: Ctx| async move {
                    if i == 1 {
                        ctx.call(&picky, ()).await
                    } else {
                        ctx.call(&leaf, i).await.map(|x| x.to_string())
                    }
                });
            }
            group.run().await
        }
    };
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let outcome = run_group(state.clone()).await;
    assert_eq!(outcome.successes().count(), 2);
    assert_eq!((leaf.calls(), picky.calls()), (2, 1));
    let err = outcome.results.into_iter().nth(1).unwrap().unwrap_err();
    assert_eq!(state.finish(&Err::<(), _>(err)).unwrap(), RunStatus::Failed);
    drop(state);

    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    let outcome = run_group(resumed.clone()).await;
    let results: Vec<String> = outcome.results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results, ["0", "now", "4"]);
    assert_eq!(
        (leaf.calls(), picky.calls()),
        (2, 2),
        "only the failed task's call ran"
    );
    let events = resumed.history().events();
    for index in [0u32, 2] {
        let address = format!("fan#0/task#{index}/leaf#0");
        let recovered: Vec<_> = events
            .iter()
            .filter(|e| e.address.as_str() == address && e.status == Recovered)
            .collect();
        assert_eq!(recovered.len(), 1, "{address}");
        assert_eq!(recovered[0].group.as_ref().map(|g| g.index), Some(index));
        assert!(recovered[0].is_parallel);
    }
    assert_eq!(count(&events, "fan#0/task#1/picky#0", Completed), 1);
}

async fn a_recorded_result_of_another_type_is_a_replay_error(backend: TestStore) {
    let store = backend.store();
    let number = counted("step", |x| x + 1);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&number.actor, 1).await.unwrap();
    drop(state);

    // The program changed: the same address now returns text.
    let texts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&texts);
    let text = Actor::tool("step", move |x: u32, _ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(format!("{x}")) }
    });
    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    let err = resumed.call(&text, 1).await.unwrap_err();
    assert_eq!(err.kind(), rh_agents::ErrorKind::Replay);
    assert_eq!(err.address().unwrap().as_str(), "step#0");
    let message = err.to_string();
    assert!(
        message.contains("FromAddress"),
        "the error says how to go on: {message}"
    );
    assert_eq!(texts.load(Ordering::SeqCst), 0, "nothing ran");
    drop(resumed);

    // Resumed from that address, it runs.
    let resumed = resume(&store, &id, ReplayMode::FromAddress("step#0".into())).await;
    assert_eq!(resumed.call(&text, 1).await.unwrap(), "1");
    assert_eq!(texts.load(Ordering::SeqCst), 1);
}

/// Library bug: a call that would be replayed returns its recorded result even after the run
/// was interrupted, and appends a RECOVERED record after the interrupt notice (`run::run`
/// consults the replay plan before any interrupt check), whereas every other call fails with
/// the interrupt error once an interrupt is requested.
async fn after_an_interrupt_replayed_calls_stop_too(backend: TestStore) {
    let store = backend.store();
    let ok = counted("ok", |x| x + 1);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&ok.actor, 1).await.unwrap();
    state.call(&ok.actor, 2).await.unwrap();
    drop(state);

    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    assert_eq!(resumed.call(&ok.actor, 1).await.unwrap(), 2);
    resumed.request_interrupt(InterruptSignal::new(InterruptReason::UserCancelled));
    let after = resumed.history().len();
    let outcome = resumed.call(&ok.actor, 2).await;
    assert!(
        outcome.as_ref().is_err_and(Error::is_interrupted),
        "a call after the interrupt must fail with it, got {:?}",
        outcome.map_err(|e| e.to_string())
    );
    let recovered_after: Vec<_> = resumed.history().events()[after..]
        .iter()
        .filter(|e| e.status == Recovered)
        .map(|e| e.address.to_string())
        .collect();
    assert!(
        recovered_after.is_empty(),
        "nothing is replayed after the interrupt notice: {recovered_after:?}"
    );
}

on_both_stores!(
    after_an_interrupt_replayed_calls_stop_too,
    parallel_tasks_replay_what_completed_and_rerun_what_failed,
    a_recorded_result_of_another_type_is_a_replay_error,
    normal_replays_completed_calls_and_runs_the_rest,
    republish_all_delivers_the_replayed_records,
    validation_reruns_everything_and_reports_changed_results,
    from_address_replays_before_it_and_runs_it_and_after,
    multi_turn_resume_never_reruns_completed_steps,
    interrupt_in_a_backoff_is_saved_before_the_caller_hears,
    finish_saves_how_the_run_ended,
    interrupt_requests_left_in_the_store_stop_the_run,
    a_run_has_one_writer,
);

#[tokio::test(start_paused = true)]
async fn a_resume_waits_for_the_previous_writer_to_go_then_gives_up_with_locked() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let first = ExecutionState::builder()
        .id("handover")
        .start(Arc::clone(&store))
        .await
        .unwrap();
    // The previous writer lets go 300 ms from now (an interrupted run saving its last records).
    let leaving = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
    });
    let start = tokio::time::Instant::now();
    let resumed = ExecutionState::builder()
        .writer_wait(Duration::from_secs(2))
        .resume(Arc::clone(&store), "handover", ReplayMode::Normal)
        .await
        .unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(500),
        "waited {waited:?}"
    );
    leaving.await.unwrap();

    // A writer that stays: refused once the wait is over, with the holder named.
    let start = tokio::time::Instant::now();
    let refused = ExecutionState::builder()
        .writer_wait(Duration::from_secs(2))
        .resume(Arc::clone(&store), "handover", ReplayMode::Normal)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Locked { .. }), "{refused:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    drop(resumed);
}
