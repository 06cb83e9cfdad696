//! What the benchmark binaries read about their own process.
#![allow(dead_code)] // each benchmark uses its share

/// Peak resident set of this process, MiB (`VmHWM`).
pub fn peak_rss_mib() -> f64 {
    peak_rss_mib_of("self").unwrap_or(0.0)
}

/// Peak resident set of process `pid` (`self` for this one), MiB; `None` once it is gone.
pub fn peak_rss_mib_of(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// User + system CPU time of this process, seconds (clock ticks of 1/100 s, as on Linux).
pub fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of stat(5).
    stat_seconds(14)
}

/// User + system CPU time of this process's descendants that ended and were waited for
/// (`cutime + cstime`, fields 16 and 17 of stat(5)), seconds.
pub fn children_cpu_seconds() -> f64 {
    stat_seconds(16)
}

/// Fields `field` and `field + 1` of `/proc/self/stat` (numbered as in stat(5)), as seconds.
fn stat_seconds(field: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(field) + ticks(field + 1)) / 100.0
}

/// The value after `name` on the command line, parsed.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}
