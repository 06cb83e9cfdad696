//! The process's memory limit, as its cgroup sets it: what the `disk` backend sizes its memory
//! from when the job does not say (`stateBackend.memory`). In a pod the container's limit is
//! its cgroup's; run by hand under `systemd-run -p MemoryMax=` or a cgroup, that one's.

use std::path::Path;

/// The tightest memory limit on this process's cgroup and its ancestors, in bytes; `None`
/// without one (or where cgroups cannot be read: not Linux, no `/sys/fs/cgroup`).
#[must_use]
pub fn memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    limit_in(Path::new("/sys/fs/cgroup"), &own)
}

/// The limit for a process whose `/proc/self/cgroup` reads `own`, with cgroupfs at `root`.
/// cgroup v2 (`0::/path`) keeps `memory.max` in the group's directory; v1 (`N:memory:/path`,
/// possibly `N:cpu,memory:/path`) keeps `memory.limit_in_bytes` under the `memory` hierarchy.
/// In a container the path is `/`, its own group mounted at the root.
fn limit_in(root: &Path, own: &str) -> Option<u64> {
    let mut limits = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            limits.extend(along(root, path, "memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            limits.extend(along(&root.join("memory"), path, "memory.limit_in_bytes"));
        }
    }
    limits.into_iter().min()
}

/// The limits in `file` of group `path` under `hierarchy` and of each of its ancestors.
fn along(hierarchy: &Path, path: &str, file: &str) -> Vec<u64> {
    let mut dir = hierarchy.to_path_buf();
    let mut found: Vec<u64> = read_limit(&dir.join(file)).into_iter().collect();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        found.extend(read_limit(&dir.join(file)));
    }
    found
}

/// A limit file's value: `max` (v2) and v1's "unlimited" (the largest page-aligned `i64`)
/// are no limit.
fn read_limit(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.trim().parse::<u64>().ok().filter(|&b| b < 1 << 62)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    fn write(root: &Path, rel: &str, value: &str) {
        let file = root.join(rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, value).unwrap();
    }

    #[test]
    fn reads_the_tightest_limit_of_the_group_and_its_ancestors() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // v2: a limit on the parent, none on the group itself.
        write(root, "memory.max", "max\n");
        write(root, "kubepods/memory.max", "1073741824\n");
        write(root, "kubepods/pod1/memory.max", "max\n");
        assert_eq!(limit_in(root, "0::/kubepods/pod1\n"), Some(1 << 30));
        // In a container: its own group at the root.
        write(root, "memory.max", "536870912\n");
        assert_eq!(limit_in(root, "0::/\n"), Some(512 << 20));
    }

    #[test]
    fn reads_cgroup_v1_and_takes_unlimited_as_none() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let own = "12:pids:/\n4:cpu,memory:/weirtest\n1:name=systemd:/init.scope\n";
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(limit_in(root, own), None);
        write(root, "memory/weirtest/memory.limit_in_bytes", "536870912\n");
        assert_eq!(limit_in(root, own), Some(512 << 20));
        // No memory controller line, or no files: no limit.
        assert_eq!(limit_in(root, "12:pids:/\n"), None);
        assert_eq!(limit_in(&root.join("absent"), own), None);
    }
}
