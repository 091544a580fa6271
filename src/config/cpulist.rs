//! CPU lists in the kernel's `cpuset` syntax (`0,2-5`), as used by
//! `SHARDLET_CPUS`, `taskset -c` and `/sys/devices/system/cpu/online`.

use std::fmt;

/// A sorted, duplicate-free list of CPU ids.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct CpuList(Vec<usize>);

impl CpuList {
    /// Parses `0,2-5` style lists. Whitespace around items is allowed.
    pub(crate) fn parse(text: &str) -> Result<CpuList, String> {
        // Ranges first, merged before they are expanded: no list, however
        // long or repetitive, expands to more than `MAX_CPU + 1` ids.
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err("empty item in CPU list (expected e.g. `0,2-5`)".into());
            }
            match item.split_once('-') {
                Some((lo, hi)) => {
                    if lo.trim().is_empty() || hi.trim().is_empty() {
                        return Err(format!(
                            "`{item}` is not a CPU number or range (expected e.g. `0,2-5`)"
                        ));
                    }
                    let (lo, hi) = (parse_cpu(lo)?, parse_cpu(hi)?);
                    if lo > hi {
                        return Err(format!("range `{item}` runs backwards"));
                    }
                    ranges.push((lo, hi));
                }
                None => {
                    let cpu = parse_cpu(item)?;
                    ranges.push((cpu, cpu));
                }
            }
        }
        ranges.sort_unstable();
        let mut cpus = Vec::new();
        let mut next = 0; // the first id not in `cpus` yet
        for (lo, hi) in ranges {
            let from = lo.max(next);
            if from <= hi {
                cpus.extend(from..=hi);
                next = hi + 1;
            }
        }
        Ok(CpuList(cpus))
    }

    pub(crate) fn as_slice(&self) -> &[usize] {
        &self.0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Vec<usize>> for CpuList {
    fn from(mut cpus: Vec<usize>) -> Self {
        cpus.sort_unstable();
        cpus.dedup();
        CpuList(cpus)
    }
}

/// The largest CPU id taken: past any kernel's `NR_CPUS` (8,192 at most
/// today), and small enough that a range up to it is cheap to expand.
pub(crate) const MAX_CPU: usize = (1 << 16) - 1;

fn parse_cpu(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let cpu: usize = text
        .parse()
        .map_err(|_| format!("`{text}` is not a CPU number"))?;
    if cpu > MAX_CPU {
        return Err(format!("CPU {text} is past the largest CPU id ({MAX_CPU})"));
    }
    Ok(cpu)
}

/// Prints the compact form back: `0-3,6`.
impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuList({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::CpuList;

    #[test]
    fn parses_ranges_and_prints_them_back() {
        let list = CpuList::parse("5, 0,2-4,3").unwrap();
        assert_eq!(list.as_slice(), &[0, 2, 3, 4, 5]);
        assert_eq!(list.to_string(), "0,2-5");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "a", "1-", "3-1", "1,,2", "-1"] {
            assert!(CpuList::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
