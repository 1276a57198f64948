//! How big a run is: `smoke` (seconds, run by `cargo xtask test` so the
//! benches cannot rot), `quick` (under 5 minutes), `full` (the figures in
//! BENCHMARKS.md).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Smoke,
    Quick,
    Full,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }

    /// Picks the value for this profile.
    pub fn pick<T>(self, smoke: T, quick: T, full: T) -> T {
        match self {
            Profile::Smoke => smoke,
            Profile::Quick => quick,
            Profile::Full => full,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
