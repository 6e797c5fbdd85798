//! What a decision did, for the filter to count and log. Every log line ends with the
//! request's id, appended here once instead of by each step.

use crate::metrics::Counter;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Debug,
}

#[derive(Debug, Default)]
pub struct Record {
    pub counters: Vec<(Counter, u64)>,
    pub logs: Vec<(Level, String)>,
    /// Whether debug lines are wanted: building them (hashes, formatting) costs
    /// microseconds per request, so they are skipped unless Envoy would print them.
    pub debug: bool,
    /// Envoy's `x-request-id` as printed (or "-"), appended to every line.
    pub request_id: String,
}

impl Record {
    pub fn new(debug: bool, request_id: String) -> Self {
        Record {
            debug,
            request_id,
            ..Record::default()
        }
    }

    #[inline(never)]
    pub fn count(&mut self, c: Counter) {
        self.count_n(c, 1);
    }

    #[inline(never)]
    pub fn count_n(&mut self, c: Counter, n: u64) {
        if n > 0 {
            self.counters.push((c, n));
        }
    }

    /// An info line (attacks, refusals, failures: what operators see by default).
    #[cold]
    pub fn info(&mut self, msg: fmt::Arguments<'_>) {
        self.log(Level::Info, msg);
    }

    #[cold]
    pub fn log(&mut self, level: Level, msg: fmt::Arguments<'_>) {
        let line = format!("{msg} request_id={}", self.request_id);
        self.logs.push((level, line));
    }

    /// A debug line, built only when debug lines are wanted.
    pub fn debug(&mut self, msg: impl FnOnce() -> String) {
        if self.debug {
            let mut line = msg();
            line.push_str(" request_id=");
            line.push_str(&self.request_id);
            self.logs.push((Level::Debug, line));
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_request_id_and_debug_lines_are_lazy() {
        let mut r = Record::new(false, "r1".into());
        r.info(format_args!("url stripped: {} removed", 2));
        r.debug(|| unreachable!("not built when debug lines are off"));
        r.count_n(Counter::UrlStripped, 0);
        r.count(Counter::UrlStripped);
        assert_eq!(
            r.logs,
            vec![(Level::Info, "url stripped: 2 removed request_id=r1".into())]
        );
        assert_eq!(r.counters, vec![(Counter::UrlStripped, 1)]);
        let mut r = Record::new(true, "-".into());
        r.debug(|| "minted".into());
        assert_eq!(r.logs[0], (Level::Debug, "minted request_id=-".into()));
    }
}
