//! Path regexes compiled once and shared: by every path that writes the
//! same pattern (hosts of one application often repeat their paths), and
//! from one compile to the next, so a change compiles only the patterns it
//! brings. Compiling a regex costs far more than matching with it, and each
//! compiled one holds its automata in memory.

use std::collections::HashMap;

use lb_routes::PathRegex;

/// The path regexes of the compile running and of the one before, by
/// pattern as written (a pattern that does not compile keeps its error).
/// Patterns no compile used for a whole compile are dropped.
#[derive(Debug, Default)]
pub struct PathRegexes {
    current: HashMap<String, Result<PathRegex, String>>,
    previous: HashMap<String, Result<PathRegex, String>>,
    compiled: usize,
}

impl PathRegexes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a compile: the last one's regexes become reusable.
    pub(super) fn begin(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        self.compiled = 0;
    }

    /// The regex of `pattern`: this compile's, the last one's, or compiled now.
    pub(super) fn get(&mut self, pattern: &str) -> Result<PathRegex, String> {
        if let Some(found) = self.current.get(pattern) {
            return found.clone();
        }
        let regex = match self.previous.remove(pattern) {
            Some(kept) => kept,
            None => {
                self.compiled += 1;
                PathRegex::new(pattern)
            }
        };
        self.current.insert(pattern.to_string(), regex.clone());
        regex
    }

    /// Patterns compiled (not reused) by the last compile.
    pub fn compiled(&self) -> usize {
        self.compiled
    }

    /// Patterns kept for the next compile.
    pub fn kept(&self) -> usize {
        self.current.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_compiled_once_and_kept_while_used() {
        let mut regexes = PathRegexes::new();
        regexes.begin();
        let a = regexes.get("/api/v[0-9]+").unwrap();
        let again = regexes.get("/api/v[0-9]+").unwrap();
        assert!(a.same_compiled(&again));
        assert!(regexes.get("/bad(").is_err());
        assert_eq!((regexes.compiled(), regexes.kept()), (2, 2));
        // The next compile reuses what it still uses; the rest goes.
        regexes.begin();
        assert!(regexes.get("/api/v[0-9]+").unwrap().same_compiled(&a));
        assert_eq!((regexes.compiled(), regexes.kept()), (0, 1));
        regexes.begin();
        regexes.get("/bad(").unwrap_err();
        assert_eq!(regexes.compiled(), 1, "dropped after a compile that did not use it");
    }
}
