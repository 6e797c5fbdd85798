//! An in-memory host for native tests: header maps, properties, a clock, a counting
//! "CSPRNG", counters and log lines, with switches that make calls fail.

use super::{Host, HostError, LogLevel, Map};
use crate::wire::{Header, HeaderMap};
use std::cell::{Cell, RefCell};
use std::fmt;

/// Shared data: key -> (value, CAS token).
pub type SharedData = std::collections::BTreeMap<String, (Vec<u8>, u32)>;

/// A local reply sent: status, headers, body.
pub type Reply = (u32, Vec<(String, String)>, Vec<u8>);

#[derive(Debug, Default)]
pub struct FakeHost {
    pub request: RefCell<Vec<Header>>,
    pub response: RefCell<Vec<Header>>,
    pub request_trailers: RefCell<Vec<Header>>,
    pub response_trailers: RefCell<Vec<Header>>,
    /// `(path joined by '.', value)`.
    pub properties: Vec<(String, Vec<u8>)>,
    pub config: Vec<u8>,
    pub now: u64,
    /// Lines below this level are off (default: debug lines on).
    pub level: Option<LogLevel>,
    /// Failure switches.
    pub fail_reads: bool,
    pub fail_writes: bool,
    pub fail_local_reply: bool,
    pub fail_counters: bool,
    pub no_random: bool,
    /// What the filter did.
    pub writes: Cell<usize>,
    pub replies: RefCell<Vec<Reply>>,
    pub counters: RefCell<Vec<(String, i64)>>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub draws: Cell<u8>,
    /// Shared data: key -> (value, CAS token). An `Rc` so that several roots (workers, or a
    /// root before and after a configuration push) share one store, as in Envoy.
    pub shared: std::rc::Rc<RefCell<SharedData>>,
    /// Shared-data reads made (the steady path makes none for a request without a session).
    pub shared_reads: Cell<usize>,
    /// Properties the filter set (filter state).
    pub set_properties: RefCell<Vec<(String, Vec<u8>)>>,
}

impl FakeHost {
    pub fn with_request(headers: &[(&str, &str)]) -> Self {
        let h = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        FakeHost {
            request: RefCell::new(h),
            ..FakeHost::default()
        }
    }

    pub fn set_response(&self, headers: &[(&str, &str)]) {
        *self.response.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
    }

    fn map(&self, map: Map) -> &RefCell<Vec<Header>> {
        match map {
            Map::Request => &self.request,
            Map::Response => &self.response,
            Map::RequestTrailers => &self.request_trailers,
            Map::ResponseTrailers => &self.response_trailers,
        }
    }

    /// Every value of `name` in `map`, as text.
    pub fn values(&self, map: Map, name: &str) -> Vec<String> {
        self.map(map)
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The counter's total (0 if never incremented).
    pub fn counter(&self, name: &str) -> i64 {
        let counters = self.counters.borrow();
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn write(&self) -> Result<(), HostError> {
        self.writes.set(self.writes.get() + 1);
        if self.fail_writes {
            Err(HostError)
        } else {
            Ok(())
        }
    }
}

impl Host for FakeHost {
    fn header_map(&self, map: Map) -> Result<HeaderMap, HostError> {
        if self.fail_reads {
            return Err(HostError);
        }
        Ok(HeaderMap::from_headers(&self.map(map).borrow()))
    }

    fn replace_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.write()?;
        let mut m = self.map(map).borrow_mut();
        // Envoy's replace: one value, where the first one was (or appended).
        let at = m.iter().position(|(n, _)| n == name).unwrap_or(m.len());
        m.retain(|(n, _)| n != name);
        let at = at.min(m.len());
        m.insert(at, (name.to_string(), value.to_vec()));
        Ok(())
    }

    fn add_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.write()?;
        self.map(map)
            .borrow_mut()
            .push((name.to_string(), value.to_vec()));
        Ok(())
    }

    fn remove_header(&self, map: Map, name: &str) -> Result<(), HostError> {
        self.write()?;
        self.map(map).borrow_mut().retain(|(n, _)| n != name);
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        let found = self.properties.iter().find(|(k, _)| *k == key);
        found.map(|(_, v)| v.clone())
    }

    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        if self.fail_writes {
            return Err(HostError);
        }
        let mut set = self.set_properties.borrow_mut();
        set.retain(|(k, _)| k != path);
        set.push((path.to_string(), value.to_vec()));
        Ok(())
    }

    fn plugin_configuration(&self) -> Result<Vec<u8>, HostError> {
        Ok(self.config.clone())
    }

    fn now_s(&self) -> u64 {
        self.now
    }

    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        if self.no_random {
            return false;
        }
        self.draws.set(self.draws.get().wrapping_add(1));
        buf.fill(self.draws.get());
        true
    }

    fn send_local_response(&self, status: u32, headers: &[(&str, String)], body: &[u8]) -> bool {
        if self.fail_local_reply {
            return false;
        }
        let h = headers.iter().map(|(n, v)| (n.to_string(), v.clone()));
        self.replies
            .borrow_mut()
            .push((status, h.collect(), body.to_vec()));
        true
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared_reads.set(self.shared_reads.get() + 1);
        if self.fail_reads {
            return None;
        }
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        self.write()?;
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(HostError);
        }
        shared.insert(key.to_string(), (value.to_vec(), current + 1));
        Ok(())
    }

    fn define_counter(&self, name: &str) -> Option<u32> {
        let mut c = self.counters.borrow_mut();
        c.push((name.to_string(), 0));
        u32::try_from(c.len() - 1).ok()
    }

    fn increment_counter(&self, id: u32, by: i64) -> Result<(), HostError> {
        if self.fail_counters {
            return Err(HostError);
        }
        let mut c = self.counters.borrow_mut();
        let slot = c.get_mut(id as usize).ok_or(HostError)?;
        slot.1 += by;
        Ok(())
    }

    fn log_enabled(&self, level: LogLevel) -> bool {
        level >= self.level.unwrap_or(LogLevel::Debug)
    }

    fn log(&self, level: LogLevel, msg: fmt::Arguments<'_>) {
        if self.log_enabled(level) {
            self.logs.borrow_mut().push((level, msg.to_string()));
        }
    }
}
