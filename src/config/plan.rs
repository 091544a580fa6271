//! [`ShardPlan`]: where each shard runs, as [`Config::validate`] decided.
//!
//! [`Config::validate`]: super::Config::validate

/// Where each shard runs: the outcome of [`Config::validate`](super::Config::validate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub(super) cpus: Vec<Option<usize>>,
    pub(super) fence: Option<Vec<usize>>,
    pub(super) host_cpus: Vec<usize>,
}

impl ShardPlan {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cpus.len()
    }

    /// The CPU shard `shard` is pinned to, or `None` when unpinned.
    ///
    /// # Panics
    ///
    /// If `shard` is not below [`shards`](ShardPlan::shards).
    pub fn cpu(&self, shard: usize) -> Option<usize> {
        self.cpus[shard]
    }

    /// The CPUs unpinned shards may run on (each may move among them), when
    /// `SHARDLET_CPUS` or `SHARDLET_RESERVE_CPUS` narrows them; `None`:
    /// pinned shards, or wherever the process may run.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::Config;
    ///
    /// let plan = Config::default().with_pin(false).with_cpus([0]).validate().unwrap();
    /// assert_eq!((plan.cpu(0), plan.fence()), (None, Some(&[0][..])));
    /// assert_eq!(Config::default().with_pin(false).validate().unwrap().fence(), None);
    /// ```
    pub fn fence(&self) -> Option<&[usize]> {
        self.fence.as_deref()
    }

    /// The CPUs left to the host (`SHARDLET_RESERVE_CPUS`): pin the host's
    /// own threads here to keep them off the shards' CPUs.
    pub fn host_cpus(&self) -> &[usize] {
        &self.host_cpus
    }
}
