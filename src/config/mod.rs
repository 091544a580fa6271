//! Every runtime knob, read from `SHARDLET_*` environment variables and
//! overridable through builder methods.
//!
//! Contract with [`Runtime`](crate::Runtime): a `Config` is only a set of
//! wishes; [`Config::validate`] turns it into a [`ShardPlan`] (which CPU each
//! shard runs on) or a [`ConfigError`] that names the variable and the value.
//! The runtime never reads the environment itself.

mod accept;
pub(crate) mod cpulist;
pub(crate) mod cpus;
pub(crate) mod current;
mod given;
pub(crate) mod knobs;
pub(crate) mod memlock;
mod names;
pub(crate) mod nofile;
mod plan;

use given::Given;

pub use accept::AcceptMode;
pub use names::*;
pub use plan::ShardPlan;

use std::time::Duration;

use crate::config::cpulist::CpuList;
use crate::config::knobs::{boolean, bytes, positive, whole};

/// A setting that cannot be used, with the variable it came from and why.
///
/// Its `Display` is one line: `SHARDLET_SHARDS="abc": not a positive integer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable (also used for the matching builder method).
    pub var: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(var: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        ConfigError {
            var,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Runtime configuration.
///
/// Start from [`Config::from_env`] (or [`Config::default`], which ignores the
/// environment), then override with the `with_*` methods.
///
/// # Examples
///
/// ```
/// use shardlet::Config;
///
/// let config = Config::default().with_shards(1).with_pin(false).with_pool_size(64);
/// assert_eq!(config.shards(), Some(1));
/// assert_eq!(config.pool_size(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    shards: Option<usize>,
    cpus: Option<CpuList>,
    pin: bool,
    pool_size: usize,
    io_memory: Option<usize>,
    spin: Duration,
    blocking_threads: usize,
    accept: AcceptMode,
    max_connections: Option<usize>,
    mailbox: usize,
    reserve_cpus: usize,
    /// The text each setting read from the environment was given as, for
    /// errors found only when the configuration is validated.
    given: Given,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: None,
            cpus: None,
            pin: true,
            pool_size: DEFAULT_POOL_SIZE,
            io_memory: None,
            spin: DEFAULT_SPIN,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            accept: AcceptMode::default(),
            max_connections: None,
            mailbox: DEFAULT_MAILBOX,
            reserve_cpus: 0,
            given: Given::default(),
        }
    }
}

impl Config {
    /// Reads every `SHARDLET_*` variable from the process environment. Unset
    /// or empty variables keep their defaults. A `SHARDLET_*` variable that
    /// is not one of them (a typo such as `SHARDLET_SHARDSS`) is named in a
    /// warning, with the nearest known one (`tracing`, target
    /// `shardlet::config`; on stderr when no subscriber shows it).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first variable whose value does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = shardlet::Config::from_env().expect("bad SHARDLET_* variable");
    /// assert!(config.pool_size() > 0);
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        crate::config::knobs::warn_unknown(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
        // A value that is not UTF-8 is an error, not a variable left unset.
        for var in crate::config::knobs::KNOWN {
            if let Some(value) = std::env::var_os(var).filter(|v| v.to_str().is_none()) {
                return Err(ConfigError::new(var, value.to_string_lossy(), "not valid UTF-8"));
            }
        }
        Config::from_lookup(|var| std::env::var(var).ok())
    }

    /// Like [`Config::from_env`], but reads variables through `lookup`, so a
    /// host can feed settings from its own configuration (or a test from a map).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first variable whose value does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::Config;
    ///
    /// let err = Config::from_lookup(|var| (var == "SHARDLET_SHARDS").then(|| "abc".to_string()))
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), r#"SHARDLET_SHARDS="abc": not a positive integer"#);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut given = Vec::new();
        let mut get = |var: &'static str| {
            let value = lookup(var).filter(|v| !v.trim().is_empty())?;
            given.push((var, value.clone()));
            Some(value)
        };
        if let Some(v) = get(ENV_SHARDS) {
            config.shards = Some(positive(ENV_SHARDS, &v)?);
        }
        if let Some(v) = get(ENV_CPUS) {
            config.cpus = Some(CpuList::parse(&v).map_err(|r| ConfigError::new(ENV_CPUS, &v, r))?);
        }
        if let Some(v) = get(ENV_PIN) {
            config.pin = boolean(ENV_PIN, &v)?;
        }
        if let Some(v) = get(ENV_POOL_SIZE) {
            config.pool_size = positive(ENV_POOL_SIZE, &v)?;
        }
        if let Some(v) = get(ENV_IO_MEMORY) {
            config.io_memory = Some(bytes(ENV_IO_MEMORY, &v)?);
        }
        if let Some(v) = get(ENV_SPIN_US) {
            let us = whole(ENV_SPIN_US, &v, "not a whole number of microseconds")?;
            config.spin = Duration::from_micros(us as u64);
        }
        if let Some(v) = get(ENV_BLOCKING_THREADS) {
            config.blocking_threads = positive(ENV_BLOCKING_THREADS, &v)?;
        }
        if let Some(v) = get(ENV_ACCEPT) {
            config.accept = v
                .parse()
                .map_err(|r: String| ConfigError::new(ENV_ACCEPT, &v, r))?;
        }
        if let Some(v) = get(ENV_MAX_CONNECTIONS) {
            config.max_connections = Some(positive(ENV_MAX_CONNECTIONS, &v)?);
        }
        if let Some(v) = get(ENV_MAILBOX) {
            config.mailbox = positive(ENV_MAILBOX, &v)?;
        }
        if let Some(v) = get(ENV_RESERVE_CPUS) {
            config.reserve_cpus = whole(ENV_RESERVE_CPUS, &v, "not a whole number of CPUs")?;
        }
        config.given = Given::from(given);
        Ok(config)
    }

    /// An error in `var`'s setting, shown as given in the environment when
    /// it came from there (`2G`, not the bytes it parsed to), else `value`.
    pub(crate) fn error(
        &self,
        var: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> ConfigError {
        match self.given.text(var) {
            Some(text) => ConfigError::new(var, text, reason),
            None => ConfigError::new(var, value, reason),
        }
    }

    /// Sets the number of shards (`SHARDLET_SHARDS`). Default: one per CPU in
    /// [`cpus`](Config::cpus), within the cgroup CPU quota, less
    /// [`reserve_cpus`](Config::reserve_cpus).
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.given.forget(ENV_SHARDS);
        self.shards = Some(shards);
        self
    }

    /// Sets the CPUs shards may run on (`SHARDLET_CPUS`). Default: every CPU
    /// this process is allowed to run on. A set: shard *i* is pinned to the
    /// *i*-th CPU in ascending order, whatever order they are given in.
    pub fn with_cpus(mut self, cpus: impl IntoIterator<Item = usize>) -> Self {
        self.given.forget(ENV_CPUS);
        self.cpus = Some(CpuList::from(cpus.into_iter().collect::<Vec<_>>()));
        self
    }

    /// Pins shard `i` to the `i`-th CPU (`SHARDLET_PIN`). Default: on.
    pub fn with_pin(mut self, pin: bool) -> Self {
        self.given.forget(ENV_PIN);
        self.pin = pin;
        self
    }

    /// Sets the default [`GreenPool`](crate::GreenPool) size (`SHARDLET_POOL_SIZE`). Default: 1000.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.given.forget(ENV_POOL_SIZE);
        self.pool_size = size;
        self
    }

    /// Sets the registered io_uring buffer memory per shard, in bytes
    /// (`SHARDLET_IO_MEMORY`). Default: sized to fit `RLIMIT_MEMLOCK`, at most 256 KiB.
    pub fn with_io_memory(mut self, bytes: usize) -> Self {
        self.given.forget(ENV_IO_MEMORY);
        self.io_memory = Some(bytes);
        self
    }

    /// Sets how long a shard keeps polling after its last work before it
    /// parks (`SHARDLET_SPIN_US`, default 50 µs, zero to park at once).
    ///
    /// A parked io_uring executor takes tens of microseconds to wake from
    /// another thread. While spinning, a pinned shard's executor polls its
    /// rings instead of parking, and cross-shard calls poll their lanes and
    /// replies (yielding to other tasks) instead of waiting on a waker: a
    /// cross-shard round trip then costs well under a microsecond. An idle shard
    /// burns at most this long per burst of work, then parks. (glommio does
    /// not spin unpinned executors; the cross-shard polling applies to all.)
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.given.forget(ENV_SPIN_US);
        self.spin = spin;
        self
    }

    /// Sets the number of threads behind [`blocking`](crate::blocking)
    /// (`SHARDLET_BLOCKING_THREADS`). Default: 4.
    pub fn with_blocking_threads(mut self, threads: usize) -> Self {
        self.given.forget(ENV_BLOCKING_THREADS);
        self.blocking_threads = threads;
        self
    }

    /// Sets how servers spread accepted connections over shards
    /// (`SHARDLET_ACCEPT`). Default: [`AcceptMode::ReusePort`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::{AcceptMode, Config};
    ///
    /// let config = Config::default().with_accept(AcceptMode::Handoff);
    /// assert_eq!(config.accept(), AcceptMode::Handoff);
    /// ```
    pub fn with_accept(mut self, accept: AcceptMode) -> Self {
        self.given.forget(ENV_ACCEPT);
        self.accept = accept;
        self
    }

    /// Sets the most connections a server holds per shard
    /// (`SHARDLET_MAX_CONNECTIONS`): the default of
    /// [`ServerConfig::max_connections`](crate::net::ServerConfig::max_connections)
    /// for servers configured from this. Default: derived from the
    /// descriptor limit when a server starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::{Config, ServerConfig};
    ///
    /// let config = Config::default().with_max_connections(50_000);
    /// assert_eq!(ServerConfig::from(&config).max_connections(), Some(50_000));
    /// ```
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.given.forget(ENV_MAX_CONNECTIONS);
        self.max_connections = Some(max);
        self
    }

    /// Sets how many cross-shard messages may wait for a shard
    /// (`SHARDLET_MAILBOX`, see [`ENV_MAILBOX`]). Default: 1024 messages.
    pub fn with_mailbox(mut self, messages: usize) -> Self {
        self.given.forget(ENV_MAILBOX);
        self.mailbox = messages;
        self
    }

    /// Leaves the first `cpus` of the allowed CPUs to the host's own threads
    /// (`SHARDLET_RESERVE_CPUS`, default 0): shards are pinned to the others,
    /// and by default there is one per CPU left (and per CPU of cgroup
    /// quota left). [`ShardPlan::host_cpus`] names the CPUs left to the
    /// host, to pin its own threads there.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::Config;
    ///
    /// let config = Config::default().with_cpus([0, 1, 2, 3]).with_reserve_cpus(1);
    /// # if config.validate().is_err() { return; } // fewer CPUs here
    /// let plan = config.validate().unwrap();
    /// assert_eq!(plan.host_cpus(), [0]);
    /// assert_eq!((plan.shards(), plan.cpu(0)), (3, Some(1)));
    /// ```
    pub fn with_reserve_cpus(mut self, cpus: usize) -> Self {
        self.given.forget(ENV_RESERVE_CPUS);
        self.reserve_cpus = cpus;
        self
    }

    /// How many CPUs are left to the host (`SHARDLET_RESERVE_CPUS`).
    pub fn reserve_cpus(&self) -> usize {
        self.reserve_cpus
    }

    /// The requested shard count, if one was set.
    pub fn shards(&self) -> Option<usize> {
        self.shards
    }

    /// The requested CPUs, if a list was set.
    pub fn cpus(&self) -> Option<&[usize]> {
        self.cpus.as_ref().map(CpuList::as_slice)
    }

    /// Whether shards are pinned to CPUs.
    pub fn pin(&self) -> bool {
        self.pin
    }

    /// Default size of a [`GreenPool`](crate::GreenPool).
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The requested io memory per shard, if one was set.
    pub fn io_memory(&self) -> Option<usize> {
        self.io_memory
    }

    /// How long an idle shard spins before parking.
    pub fn spin(&self) -> Duration {
        self.spin
    }

    /// Threads behind [`blocking`](crate::blocking).
    pub fn blocking_threads(&self) -> usize {
        self.blocking_threads
    }

    /// How servers spread accepted connections over shards.
    pub fn accept(&self) -> AcceptMode {
        self.accept
    }

    /// The per-shard connection cap for servers, if one was set
    /// (`SHARDLET_MAX_CONNECTIONS`).
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// How many cross-shard messages may wait for a shard (see [`ENV_MAILBOX`]).
    pub fn mailbox(&self) -> usize {
        self.mailbox
    }

    /// Checks every setting against this machine and decides where each shard
    /// runs.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for zero sizes, sizes above their bounds
    /// ([`MAX_SHARDS`], [`MAX_BLOCKING_THREADS`], [`MAX_SPIN`],
    /// [`MAX_MAILBOX`], [`MAX_IO_MEMORY`]), io memory under 64 KiB,
    /// a CPU this process may not use,
    /// no CPU left after the reserve, or more pinned shards than CPUs.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::Config;
    ///
    /// let err = Config::default().with_cpus([100_000]).validate().unwrap_err();
    /// assert_eq!(err.var, "SHARDLET_CPUS");
    /// ```
    pub fn validate(&self) -> Result<ShardPlan, ConfigError> {
        self.validate_on(
            &crate::config::cpus::allowed_cpus(),
            crate::config::cpus::cpu_quota(),
        )
    }

    pub(crate) fn validate_on(
        &self,
        allowed: &CpuList,
        quota: Option<f64>,
    ) -> Result<ShardPlan, ConfigError> {
        crate::config::knobs::check_bounds(self)?;
        let cpus = match &self.cpus {
            Some(list) => {
                if let Some(bad) = list.as_slice().iter().find(|c| !allowed.as_slice().contains(c)) {
                    return Err(self.error(
                        ENV_CPUS,
                        list,
                        format!("unknown CPU {bad} (this process may run on {allowed})"),
                    ));
                }
                list.clone()
            }
            None => allowed.clone(),
        };
        if cpus.len() == 0 {
            return Err(self.error(ENV_CPUS, &cpus, "no CPU to run on"));
        }
        if self.reserve_cpus >= cpus.len() {
            return Err(self.error(
                ENV_RESERVE_CPUS,
                self.reserve_cpus,
                format!("leaves no CPU for the shards (they may use {cpus}); lower it or widen {ENV_CPUS}"),
            ));
        }
        let (host, cpus) = cpus.as_slice().split_at(self.reserve_cpus);
        let (host, cpus) = (host.to_vec(), CpuList::from(cpus.to_vec()));
        let shards = self
            .shards
            .unwrap_or_else(|| crate::config::cpus::default_shards(cpus.len(), quota, self.reserve_cpus));
        if shards == 0 {
            return Err(self.error(ENV_SHARDS, shards, "need at least one shard"));
        }
        if self.pin && shards > cpus.len() {
            return Err(self.error(
                ENV_SHARDS,
                shards,
                format!(
                    "more shards than CPUs ({} on {cpus}) while pinning is on; \
                     lower {ENV_SHARDS}, widen {ENV_CPUS}, or set {ENV_PIN}=0",
                    cpus.len()
                ),
            ));
        }
        for (var, value) in [
            (ENV_POOL_SIZE, self.pool_size),
            (ENV_BLOCKING_THREADS, self.blocking_threads),
            (ENV_MAILBOX, self.mailbox),
            (ENV_MAX_CONNECTIONS, self.max_connections.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(self.error(var, value, "must be at least 1"));
            }
        }
        if let Some(io) = self.io_memory {
            if io < MIN_IO_MEMORY {
                return Err(self.error(ENV_IO_MEMORY, io, "must be at least 64K"));
            }
            if io > MAX_IO_MEMORY {
                return Err(self.error(ENV_IO_MEMORY, io, "must be at most 1G per shard"));
            }
        }
        let placement = (0..shards)
            .map(|i| self.pin.then(|| cpus.as_slice()[i]))
            .collect();
        // Unpinned shards still keep to the CPUs given them, when the
        // configuration narrows them (a list, a reserve for the host).
        let narrowed = self.cpus.is_some() || self.reserve_cpus > 0;
        let fence = (!self.pin && narrowed).then(|| cpus.as_slice().to_vec());
        Ok(ShardPlan {
            cpus: placement,
            fence,
            host_cpus: host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_mode_parses_and_names_the_variable() {
        let lookup = |value: &'static str| move |var: &str| (var == ENV_ACCEPT).then(|| value.to_string());
        assert_eq!(
            Config::from_lookup(lookup("handoff")).unwrap().accept(),
            AcceptMode::Handoff
        );
        assert_eq!(
            Config::from_lookup(lookup(" ReusePort ")).unwrap().accept(),
            AcceptMode::ReusePort
        );
        assert_eq!(
            Config::from_lookup(lookup("")).unwrap().accept(),
            AcceptMode::ReusePort
        );
        let err = Config::from_lookup(lookup("roundrobin")).unwrap_err();
        assert_eq!(err.var, ENV_ACCEPT);
        assert_eq!(
            err.to_string(),
            r#"SHARDLET_ACCEPT="roundrobin": expected reuseport or handoff"#
        );
    }

    #[test]
    fn max_connections_parses_and_names_the_variable() {
        let lookup =
            |value: &'static str| move |var: &str| (var == ENV_MAX_CONNECTIONS).then(|| value.to_string());
        assert_eq!(Config::default().max_connections(), None);
        assert_eq!(
            Config::from_lookup(lookup("50000")).unwrap().max_connections(),
            Some(50_000)
        );
        let err = Config::from_lookup(lookup("0")).unwrap_err();
        assert_eq!(err.var, ENV_MAX_CONNECTIONS);
    }

    #[test]
    fn plan_pins_in_list_order() {
        let allowed = CpuList::from(vec![0, 1, 2, 3]);
        let plan = Config::default()
            .with_cpus([3, 1])
            .validate_on(&allowed, None)
            .unwrap();
        assert_eq!(plan.shards(), 2);
        assert_eq!((plan.cpu(0), plan.cpu(1)), (Some(1), Some(3)));
        let plan = Config::default()
            .with_pin(false)
            .with_shards(6)
            .validate_on(&allowed, None)
            .unwrap();
        assert_eq!(plan.shards(), 6);
        assert_eq!(plan.cpu(5), None);
    }
}
