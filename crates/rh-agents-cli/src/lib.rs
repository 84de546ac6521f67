//! # rh-agents-cli: the `rh-agents` command
//!
//! Runs pipelines described in a TOML file (commands, HTTP requests, parallel groups) as
//! recorded events of the [`rh_agents`] runtime, with retries, backoff and instant interrupts.
//!
//! - [`pipeline`] reads and validates the file (`file:line:column` diagnostics) and renders
//!   the `{{ steps.NAME.FIELD }}` templates;
//! - [`steps`] turns each step into an [`rh_agents::Actor`] (command, http, parallel);
//! - [`run`] runs a validated pipeline in an [`rh_agents::ExecutionState`] built by the
//!   caller and reports a [`run::RunOutcome`];
//! - [`signals`] turns Ctrl-C and SIGTERM into interrupts; [`exit`] holds the exit codes;
//! - [`commands`] holds each subcommand (run/resume on a durable SQLite store, interrupt,
//!   runs, show, export, import); [`cli`] is the command line (clap) that ties them together.

pub mod cli;
pub mod commands;
pub mod exit;
mod output;
pub mod pipeline;
pub mod run;
pub mod signals;
pub mod steps;
