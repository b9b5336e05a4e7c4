//! Process-wide settings of the C allocator, which only the binary may choose.
//!
//! glibc gives each new thread its own malloc arena (up to 8 per core) and, once its dynamic
//! mmap threshold has risen past the size of a model's activations, serves them from those
//! arenas and keeps them after `free`. On ResNet-50 with tract that is +22.7 MiB of RSS per
//! worker thread against 0.8 MiB of live per-predictor state: it hides whether an engine
//! shares its weights, and costs memory for nothing. Capping the arenas at the usable core
//! count measured flat (8 predictors 1.05× one) at the same throughput (docs/performance.md).
//!
//! This is the one `unsafe` outside the engine crates: a single call into the C library the
//! binary runs on. A `MALLOC_ARENA_MAX` set by the user wins.

/// Caps glibc's malloc arenas at the number of usable cores, unless `MALLOC_ARENA_MAX` is set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn cap_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = thrum_bench::system::cores().usable;
    let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX).max(1);
    // SAFETY: mallopt only adjusts allocator parameters; it is called once, before any other
    // thread exists, with a documented parameter and a positive value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn cap_arenas() {}

/// How the allocator is configured, for reports.
pub fn describe() -> String {
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        match std::env::var("MALLOC_ARENA_MAX") {
            Ok(n) => format!("glibc malloc, MALLOC_ARENA_MAX={n} (set by you)"),
            Err(_) => format!(
                "glibc malloc, arenas capped at {} (the usable cores; MALLOC_ARENA_MAX overrides)",
                thrum_bench::system::cores().usable
            ),
        }
    } else {
        "the platform's default allocator".into()
    }
}
