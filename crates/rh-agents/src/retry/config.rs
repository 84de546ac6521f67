//! The five configuration levels and which one decides.
//!
//! The most specific level that sets a policy decides, and a disabled policy there means "no
//! retries" (it does not fall through): (1) the call's own policy, (2) the actor's, (3) the
//! state's policy for the actor's kind, (4) the state's global default, (5) the built-in
//! defaults — tools and LLM calls: 3 attempts, exponential from 1 s, capped at 30 s; agents:
//! not retried (their children retry).

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::policy::RetryPolicy;
use crate::actor::ActorKind;

/// Which configuration level decided the policy of a call. Recorded on each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// Set on the call itself.
    Event,
    /// Set on the actor.
    Actor,
    /// Set on the state for the actor's kind.
    Kind,
    /// The state's global default.
    Default,
    /// The built-in default for the actor's kind.
    BuiltIn,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Event => "event",
            Self::Actor => "actor",
            Self::Kind => "kind",
            Self::Default => "default",
            Self::BuiltIn => "built-in",
        })
    }
}

static BUILTIN_CALL: LazyLock<RetryPolicy> = LazyLock::new(RetryPolicy::default);
static BUILTIN_AGENT: LazyLock<RetryPolicy> = LazyLock::new(RetryPolicy::disabled);

/// The state-level retry configuration: a global default and one policy per actor kind.
#[derive(Debug, Clone, Default)]
pub struct RetryConfig {
    /// Applies to every call no more specific level configures.
    pub default: Option<RetryPolicy>,
    /// Applies to tools.
    pub tool: Option<RetryPolicy>,
    /// Applies to LLM calls.
    pub llm: Option<RetryPolicy>,
    /// Applies to agents.
    pub agent: Option<RetryPolicy>,
}

impl RetryConfig {
    /// The policy for a kind, if the state sets one.
    pub fn for_kind(&self, kind: ActorKind) -> Option<&RetryPolicy> {
        match kind {
            ActorKind::Tool => self.tool.as_ref(),
            ActorKind::Llm => self.llm.as_ref(),
            ActorKind::Agent => self.agent.as_ref(),
            ActorKind::System | ActorKind::Group | ActorKind::Task => None,
        }
    }

    pub(crate) fn set_kind(&mut self, kind: ActorKind, policy: RetryPolicy) {
        match kind {
            ActorKind::Tool => self.tool = Some(policy),
            ActorKind::Llm => self.llm = Some(policy),
            ActorKind::Agent => self.agent = Some(policy),
            ActorKind::System | ActorKind::Group | ActorKind::Task => {}
        }
    }

    /// Picks the deciding policy among the five levels.
    pub fn resolve<'a>(
        &'a self,
        event: Option<&'a RetryPolicy>,
        actor: Option<&'a RetryPolicy>,
        kind: ActorKind,
    ) -> (&'a RetryPolicy, PolicySource) {
        if let Some(p) = event {
            (p, PolicySource::Event)
        } else if let Some(p) = actor {
            (p, PolicySource::Actor)
        } else if let Some(p) = self.for_kind(kind) {
            (p, PolicySource::Kind)
        } else if let Some(p) = &self.default {
            (p, PolicySource::Default)
        } else {
            (builtin(kind), PolicySource::BuiltIn)
        }
    }
}

/// The built-in policy for a kind.
pub fn builtin(kind: ActorKind) -> &'static RetryPolicy {
    match kind {
        ActorKind::Agent | ActorKind::System | ActorKind::Group | ActorKind::Task => &BUILTIN_AGENT,
        ActorKind::Tool | ActorKind::Llm => &BUILTIN_CALL,
    }
}
