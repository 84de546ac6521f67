//! Deterministic event addresses.
//!
//! An address is the path of calls that led to an event: each segment is an actor name and the
//! index of that call among the calls to the same actor under the same parent, e.g.
//! `planner#0/search#1`. The same program with the same inputs yields the same addresses, which
//! is what makes resume and replay correct, also when one tool is called twice.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::text;

/// The deterministic address of an event, such as `planner#0/search#1`.
///
/// Cheap to clone (a shared string). The root address (used for events that no actor emits,
/// such as a log written directly on the state) is the empty string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(Arc<str>);

impl Address {
    /// The root address: the parent of every top-level call.
    pub fn root() -> Self {
        Self(Arc::from(""))
    }

    /// Builds an address from its textual form (as printed or stored).
    pub fn parse(text: &str) -> Self {
        Self(Arc::from(text))
    }

    /// The child address for the `index`-th call to `actor` under this address.
    pub fn child(&self, actor: &str, index: u32) -> Self {
        Self(text::build(|text| {
            if !self.0.is_empty() {
                text.push_str(&self.0);
                text.push('/');
            }
            push_segment(text, actor);
            text.push('#');
            text::push_decimal(text, index);
        }))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root address.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// How many calls deep the address is: 0 for the root, 1 for a top-level call.
    pub fn depth(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            self.0.split('/').count()
        }
    }

    /// The parent address, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => Self(Arc::from(&self.0[..i])),
            None => Self::root(),
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("<root>")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:?})", &*self.0)
    }
}

/// Appends an actor name as an address segment. The separators `/` and `#` (and the escape
/// character `%`) are percent-encoded, so a name such as `web/search` cannot make an address
/// ambiguous.
fn push_segment(text: &mut String, name: &str) {
    if !name.contains(['%', '/', '#']) {
        text.push_str(name);
        return;
    }
    for c in name.chars() {
        match c {
            '%' => text.push_str("%25"),
            '/' => text.push_str("%2F"),
            '#' => text.push_str("%23"),
            c => text.push(c),
        }
    }
}

/// One position in the call tree: an address and the counters that number its children.
///
/// Counters live with the node (not in a global stack), so concurrent tasks calling under the
/// same parent each get their own index and never share an address.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) address: Address,
    children: Mutex<FxHashMap<Arc<str>, u32>>,
    /// What the call's handler annotated (`Ctx::annotate`), for its final record. Allocated
    /// on the first annotation only.
    annotations: Mutex<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl Node {
    pub(crate) fn new(address: Address) -> Self {
        Self {
            address,
            children: Mutex::new(FxHashMap::default()),
            annotations: Mutex::new(None),
        }
    }

    /// Keeps `value` under `key` for the call's final record (a later value replaces an
    /// earlier one).
    pub(crate) fn annotate(&self, key: String, value: serde_json::Value) {
        self.annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(serde_json::Map::new)
            .insert(key, value);
    }

    /// The annotations made so far, taken out.
    pub(crate) fn take_annotations(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Reserves the next index for a call to `actor` under this node and returns its address.
    pub(crate) fn next_child(&self, actor: &Arc<str>) -> Address {
        let index = {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            // Look up by `&str` first: the key is cloned only for an actor's first call here.
            if let Some(slot) = children.get_mut(&**actor) {
                let index = *slot;
                *slot += 1;
                index
            } else {
                children.insert(Arc::clone(actor), 1);
                0
            }
        };
        self.address.child(actor, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_addresses_count_per_actor_name() {
        let root = Node::new(Address::root());
        let search: Arc<str> = Arc::from("search");
        let fetch: Arc<str> = Arc::from("fetch");
        assert_eq!(root.next_child(&search).as_str(), "search#0");
        assert_eq!(root.next_child(&fetch).as_str(), "fetch#0");
        assert_eq!(root.next_child(&search).as_str(), "search#1");
        let planner = Node::new(Address::parse("planner#0"));
        assert_eq!(planner.next_child(&search).as_str(), "planner#0/search#0");
    }

    #[test]
    fn separators_in_names_are_escaped() {
        let a = Address::root().child("web/search#2", 0);
        assert_eq!(a.as_str(), "web%2Fsearch%232#0");
        assert_eq!(a.depth(), 1);
        assert_eq!(a.child("50%", 1).as_str(), "web%2Fsearch%232#0/50%25#1");
    }

    #[test]
    fn depth_and_parent() {
        let a = Address::parse("planner#0/search#1");
        assert_eq!(a.depth(), 2);
        assert_eq!(a.parent(), Some(Address::parse("planner#0")));
        assert_eq!(Address::parse("planner#0").parent(), Some(Address::root()));
        assert_eq!(Address::root().parent(), None);
        assert_eq!(Address::root().depth(), 0);
    }
}
