//! The `rh-agents` binary: see [`rh_agents_cli::cli`].

fn main() -> std::process::ExitCode {
    rh_agents_cli::cli::main()
}
