//! Reading the data path's counters.

use anyhow::Result;
use lb_common::Counter;

use super::DataplaneMaps;

/// Global counters summed over CPUs, in `Counter::ALL` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot(pub Vec<(Counter, u64)>);

impl CounterSnapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.0.iter().find(|(c, _)| *c == counter).map(|(_, v)| *v).unwrap_or(0)
    }
}

pub fn read_counters(maps: &DataplaneMaps) -> Result<CounterSnapshot> {
    let mut out = Vec::with_capacity(Counter::ALL.len());
    for counter in Counter::ALL {
        let per_cpu = maps.counters.get(&(counter as u32), 0)?;
        out.push((counter, per_cpu.iter().sum()));
    }
    Ok(CounterSnapshot(out))
}
