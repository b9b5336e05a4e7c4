//! What the machine offers and what the process uses, read from `/proc` (via `procfs`) and the
//! cgroup filesystem. Never by spawning `ps`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use procfs::process::Process;

/// CPU cores this process can actually use.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Cores {
    /// Cores usable at once: the affinity mask, capped by the cgroup CPU quota.
    pub usable: usize,
    /// CPUs in this process's affinity mask.
    pub affinity: Option<usize>,
    /// The cgroup CPU quota in cores (`cpu.max` or `cpu.cfs_quota_us`), when one is set.
    pub cgroup_quota: Option<f64>,
    /// What `std::thread::available_parallelism` reports, for comparison.
    pub available_parallelism: usize,
    /// Physical cores behind the CPUs of the affinity mask (SMT siblings counted once), from
    /// sysfs topology; `None` when it cannot be read.
    pub physical: Option<usize>,
}

/// Workers and intra-op threads per worker for `usable` cores, from what was asked (`workers`
/// 0 and `intra` `None` mean "decide"): the seed's rule, workers × intra-op = usable cores, so
/// that no engine falls back on its own default (ONNX Runtime's and libtorch's: every core, per
/// worker). With neither given, one single-threaded worker per core (throughput first, like DJL
/// Serving); with one given, the other divides the cores. `bench`, `serve` and `tune` all
/// start from this.
pub fn split_cores(usable: usize, workers: usize, intra: Option<usize>) -> (usize, usize) {
    let usable = usable.max(1);
    match (workers, intra) {
        (0, None) => (usable, 1),
        (0, Some(i)) => ((usable / i.max(1)).max(1), i),
        (w, None) => (w, (usable / w).max(1)),
        (w, Some(i)) => (w, i),
    }
}

/// Reads the affinity mask and cgroup quota.
pub fn cores() -> Cores {
    let available_parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let allowed: Option<Vec<u32>> =
        Process::myself().ok().and_then(|p| p.status().ok()).and_then(|s| {
            s.cpus_allowed_list.map(|ranges| ranges.iter().flat_map(|&(a, b)| a..=b).collect())
        });
    let affinity = allowed.as_ref().map(Vec::len);
    let physical = allowed.as_deref().and_then(physical_cores);
    let cgroup_quota = cgroup_quota_cores();
    let mut usable = affinity.unwrap_or(available_parallelism);
    if let Some(q) = cgroup_quota {
        usable = usable.min((q.floor() as usize).max(1));
    }
    Cores { usable: usable.max(1), affinity, cgroup_quota, available_parallelism, physical }
}

/// Distinct (package, core) pairs among `cpus`, read from
/// `/sys/devices/system/cpu/cpuN/topology`.
fn physical_cores(cpus: &[u32]) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    for cpu in cpus {
        let dir = PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/topology"));
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let core = read("core_id")?;
        let package = read("physical_package_id").unwrap_or_default();
        cores.insert((package.trim().to_string(), core.trim().to_string()));
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// The tightest CPU quota on this process's cgroup or its ancestors, in cores.
fn cgroup_quota_cores() -> Option<f64> {
    let groups = Process::myself().ok()?.cgroups().ok()?;
    let mut best: Option<f64> = None;
    let mut consider = |q: Option<f64>| {
        if let Some(q) = q {
            best = Some(best.map_or(q, |b: f64| b.min(q)));
        }
    };
    for group in groups.0 {
        let relative = group.pathname.trim_start_matches('/');
        if group.hierarchy == 0 {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                for dir in ancestors(Path::new(root), relative) {
                    consider(read_cpu_max(&dir.join("cpu.max")));
                }
            }
        } else if group.controllers.iter().any(|c| c == "cpu") {
            for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                for dir in ancestors(Path::new(root), relative) {
                    consider(read_cfs_quota(&dir));
                }
            }
        }
    }
    best
}

fn ancestors(root: &Path, relative: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut current = root.to_path_buf();
    for part in relative.split('/').filter(|p| !p.is_empty()) {
        current = current.join(part);
        dirs.push(current.clone());
    }
    dirs
}

/// cgroup v2 `cpu.max`: `max 100000` (no quota) or `200000 100000` (2 cores).
fn read_cpu_max(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; a quota of -1 means none.
fn read_cfs_quota(dir: &Path) -> Option<f64> {
    let read = |name: &str| -> Option<f64> {
        std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
    };
    let quota = read("cpu.cfs_quota_us")?;
    let period = read("cpu.cfs_period_us")?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = Process::myself().ok()?.statm().ok()?;
    Some(statm.resident * procfs::page_size())
}

/// Peak resident set size of this process so far (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    Process::myself().ok()?.status().ok()?.vmhwm.map(|kib| kib * 1024)
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Option<Duration> {
    let stat = Process::myself().ok()?.stat().ok()?;
    let ticks = procfs::ticks_per_second().max(1);
    Some(Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks as f64))
}

#[cfg(test)]
mod split_tests {
    use super::split_cores;

    #[test]
    fn workers_times_intra_op_threads_fill_the_usable_cores() {
        assert_eq!(split_cores(4, 0, None), (4, 1));
        assert_eq!(split_cores(4, 0, Some(2)), (2, 2));
        assert_eq!(split_cores(4, 1, None), (1, 4));
        assert_eq!(split_cores(4, 3, None), (3, 1));
        assert_eq!(split_cores(2, 4, None), (4, 1));
        assert_eq!(split_cores(2, 0, Some(8)), (1, 8));
        assert_eq!(split_cores(2, 3, Some(3)), (3, 3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_cores_never_exceed_the_affinity_mask() {
        let cores = cores();
        assert!(cores.usable >= 1);
        if let Some(affinity) = cores.affinity {
            assert!(cores.usable <= affinity);
        }
    }

    #[test]
    fn rss_grows_when_memory_is_touched() {
        let before = rss_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        let after = rss_bytes().unwrap();
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        assert!(peak_rss_bytes().unwrap() >= after);
        drop(block);
    }

    #[test]
    fn cpu_time_advances_while_busy() {
        let before = cpu_time().unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_time().unwrap() > before);
    }

    #[test]
    fn cpu_max_parses_quota_and_period() {
        let dir = std::env::temp_dir().join(format!("thrum-cpu-max-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.max"), "150000 100000\n").unwrap();
        assert_eq!(read_cpu_max(&dir.join("cpu.max")), Some(1.5));
        std::fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(read_cpu_max(&dir.join("cpu.max")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
