use clap::Parser;
use lb_userspace::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => lb_userspace::run::run(args),
        Command::Cleanup(args) => lb_userspace::cleanup::cleanup(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
