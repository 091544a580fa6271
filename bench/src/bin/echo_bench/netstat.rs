//! The kernel's TCP counters around a run, to explain a latency tail: a
//! round trip of a few hundred milliseconds on loopback is a dropped packet
//! that TCP retransmitted, and connects that took a second are SYNs the
//! listener's accept queue had no room for.
//!
//! Sampled over the measured window too, the segments and delayed ACKs per
//! round trip show how much TCP work each message cost the machine.
//!
//! The counters are machine-wide (`/proc/net/snmp`, `/proc/net/netstat`,
//! `/proc/net/softnet_stat`), so other traffic on the machine shows up too.

use serde::{Deserialize, Serialize};

/// Counter increases over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    /// TCP segments retransmitted (`Tcp: RetransSegs`).
    pub retransmits: u64,
    /// Retransmission timeouts (`TcpExt: TCPTimeouts`).
    pub timeouts: u64,
    /// Connections dropped because a listener's accept queue was full
    /// (`TcpExt: ListenOverflows`).
    pub listen_overflows: u64,
    /// Packets dropped because a CPU's input backlog was full
    /// (`/proc/net/softnet_stat`, second column; see `net.core.netdev_max_backlog`).
    pub backlog_drops: u64,
    /// TCP segments sent (`Tcp: OutSegs`), both sides of loopback: a round
    /// trip needs 2 (the request and the echo, each carrying the ACK of the
    /// other); every pure ACK on top costs both CPUs a segment's work.
    #[serde(default)]
    pub segments: u64,
    /// ACKs sent because a delayed-ACK timer ran out (`TcpExt: DelayedACKs`):
    /// a message waited longer than the receiver's delayed-ACK timeout
    /// before its answer could carry the ACK.
    #[serde(default)]
    pub delayed_acks: u64,
}

impl NetCounters {
    /// The counters now; missing files read as zero.
    pub fn now() -> NetCounters {
        NetCounters {
            retransmits: field("/proc/net/snmp", "Tcp:", "RetransSegs"),
            timeouts: field("/proc/net/netstat", "TcpExt:", "TCPTimeouts"),
            listen_overflows: field("/proc/net/netstat", "TcpExt:", "ListenOverflows"),
            backlog_drops: backlog_drops(),
            segments: field("/proc/net/snmp", "Tcp:", "OutSegs"),
            delayed_acks: field("/proc/net/netstat", "TcpExt:", "DelayedACKs"),
        }
    }

    /// How much each counter grew since `earlier`.
    pub fn since(&self, earlier: &NetCounters) -> NetCounters {
        NetCounters {
            retransmits: self.retransmits.saturating_sub(earlier.retransmits),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            listen_overflows: self.listen_overflows.saturating_sub(earlier.listen_overflows),
            backlog_drops: self.backlog_drops.saturating_sub(earlier.backlog_drops),
            segments: self.segments.saturating_sub(earlier.segments),
            delayed_acks: self.delayed_acks.saturating_sub(earlier.delayed_acks),
        }
    }

    /// Whether nothing went wrong: no retransmits, timeouts, overflows or
    /// drops (segments and delayed ACKs are not trouble).
    pub fn is_zero(&self) -> bool {
        self.retransmits == 0 && self.timeouts == 0 && self.listen_overflows == 0 && self.backlog_drops == 0
    }
}

/// A named counter from a `/proc/net` file of header/value line pairs
/// (`Tcp: RtoAlgorithm ... RetransSegs ...` then `Tcp: 1 ... 42 ...`).
fn field(path: &str, prefix: &str, name: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if let Some(i) = names.split_whitespace().position(|n| n == name) {
            return values
                .split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// The second (hexadecimal) column of `/proc/net/softnet_stat`, summed over CPUs.
fn backlog_drops() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/softnet_stat") else {
        return 0;
    };
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .sum()
}
