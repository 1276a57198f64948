use clap::Parser;
use lb_userspace::cli::{Cli, Command};

/// mimalloc rather than glibc's allocator: the proxy allocates and frees
/// small buffers on every request, where glibc's took 4–5% of its CPU
/// (`_int_malloc`, `_int_free`, `malloc_consolidate`; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => lb_userspace::run::run(args),
        Command::Cleanup(args) => lb_userspace::cleanup::cleanup(&args),
        Command::Inspect(args) => lb_userspace::inspect::client::inspect(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
