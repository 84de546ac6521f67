//! Aborted task sets still to be awaited.
//!
//! When a task is aborted, the groups nested in it are dropped mid-run: they abort their own
//! tasks but cannot wait for them in `Drop`. They leave the aborted sets here, and every group
//! drains this list before it returns, so an outer group returns only when everything started
//! under it is gone.

use std::future::poll_fn;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::task::JoinSet;

/// A set of aborted tasks that can be waited for.
trait Aborted: Send {
    /// Ready once every task of the set has ended.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

impl<T: Send + 'static> Aborted for JoinSet<T> {
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.poll_join_next(cx) {
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The aborted task sets of a state.
#[derive(Default)]
pub(crate) struct Orphans {
    sets: Mutex<Vec<Box<dyn Aborted>>>,
}

impl std::fmt::Debug for Orphans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orphans")
            .field("sets", &self.sets.lock().len())
            .finish()
    }
}

impl Orphans {
    /// Keeps an aborted set until a group drains it.
    pub(crate) fn adopt<T: Send + 'static>(&self, set: JoinSet<T>) {
        if !set.is_empty() {
            self.sets.lock().push(Box::new(set));
        }
    }

    /// Waits until every adopted set (and any adopted meanwhile) is gone.
    pub(crate) async fn drain(&self) {
        loop {
            let batch = std::mem::take(&mut *self.sets.lock());
            if batch.is_empty() {
                return;
            }
            for mut set in batch {
                poll_fn(|cx| set.poll_gone(cx)).await;
            }
        }
    }
}
