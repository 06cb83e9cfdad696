//! `spec.podTemplate`: the user's part of a runtime pod, and the lines it may not cross.
//!
//! The template is a Kubernetes `PodTemplateSpec` (as the Flink operator's `podTemplate`), so
//! anything a platform needs (node pools, tolerations, affinity, sidecars, extra volumes,
//! labels for cost allocation, annotations for a service mesh) is written the usual way. The
//! operator merges it under what it owns (`operator/src/pods.rs`). Its schema in the CRD
//! only says "an object": the full pod schema would make the CRD too large for a client-side
//! `kubectl apply`, so the checks are made here, when the operator validates the spec, and
//! the apiserver validates the merged pod when it is created.
//!
//! The checks follow the Kubernetes Pod Security Standard `restricted` as an allow-list where
//! it is one (volume types, sysctls, SELinux types, AppArmor and seccomp profiles), so a new
//! kind of host access is refused until it is listed here. Refused, each naming the field:
//! - anything that is not a `PodTemplateSpec` (a wrong type, an unknown structure);
//! - volume types other than `configMap`, `csi`, `downwardAPI`, `emptyDir`, `ephemeral`,
//!   `persistentVolumeClaim`, `projected` and `secret` (so no `hostPath`, `nfs`, `iscsi`,
//!   `gitRepo`, `flexVolume`, ...), and a projected service-account token unless the template
//!   asks for tokens with `automountServiceAccountToken: true`;
//! - `nodeName` (bypasses the scheduler), `shareProcessNamespace`, `hostPort`, a `procMount`
//!   other than `Default`, sysctls outside the safe set, SELinux `user`/`role` or a type
//!   outside the container types, AppArmor `Unconfined`, Windows `hostProcess`;
//! - what would run the job as root or with more privilege: `runAsUser: 0`,
//!   `runAsNonRoot: false`, `privileged: true`, `allowPrivilegeEscalation: true`, added
//!   capabilities other than `NET_BIND_SERVICE`, `seccompProfile: Unconfined`, host
//!   namespaces;
//! - in the container named `runtime`, what the operator owns: `image` (use `spec.image`),
//!   `command`, `args`, `ports`, probes, `resources` (use `spec.resources`) and
//!   `readOnlyRootFilesystem: false`;
//! - `restartPolicy` other than `Never` (a restart is the operator's decision), and volumes
//!   or mounts that take the operator's names and paths.

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, PodSecurityContext, PodTemplateSpec, SELinuxOptions,
    SeccompProfile, SecurityContext, Volume, WindowsSecurityContextOptions,
};

use crate::validate::FieldError;

/// Name of the runtime container, in the pod and in a template.
pub const RUNTIME_CONTAINER: &str = "runtime";
/// Volumes the operator adds: the job file and a writable `/tmp`.
pub const OWNED_VOLUMES: &[&str] = &["job", "tmp"];
/// Where the operator mounts them in the runtime container.
pub const OWNED_MOUNT_PATHS: &[&str] = &["/etc/weir", "/tmp"];

const FIELD: &str = "spec.podTemplate";

/// How the operator merges `spec.podTemplate` with its own pod (`operator/src/pods.rs`), as
/// a Markdown table for the manifest reference.
pub const MERGE_RULES: &str = "\
| part | from the template | the operator's |\n\
|---|---|---|\n\
| labels, annotations | kept | `weir.dev/*` and `app.kubernetes.io/*` labels win |\n\
| nodeSelector, tolerations, affinity, priorityClassName, topologySpreadConstraints, runtimeClassName, dnsConfig, hostAliases, ... | kept | |\n\
| serviceAccountName | kept | `spec.serviceAccountName` wins |\n\
| automountServiceAccountToken, enableServiceLinks | kept | `false` when unset |\n\
| imagePullSecrets | kept | `spec.imagePullSecrets` added |\n\
| volumes | kept, but only the types Pod Security `restricted` allows (configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret), a projected service-account token only with `automountServiceAccountToken: true`, and not the names `job` and `tmp` | `job` (the job file) and `tmp` added |\n\
| pod securityContext | kept (fsGroup, supplementalGroups, sysctls, ...) | non-root, uid/gid/fsGroup 65532 unless set, `RuntimeDefault` seccomp unless a profile is set |\n\
| terminationGracePeriodSeconds | kept if longer | checkpoint timeout + 30 s |\n\
| hostname, subdomain | kept when `pods` is 1 | with `pods` above 1: the pod's name, and `<job>-peers` (the headless Service its peers resolve it through) |\n\
| restartPolicy | | `Never` |\n\
| host namespaces | | off |\n\
| container `runtime` | env (the operator's names win), envFrom, volumeMounts, lifecycle, imagePullPolicy | image, args, ports, probes, resources (`spec.resources`), security context |\n\
| other containers, initContainers | kept | no privilege escalation, not privileged, non-root, capabilities dropped but `NET_BIND_SERVICE`, read-only root unless they set it |\n\
";

/// `spec.podTemplate` read as a `PodTemplateSpec`, or the error naming the field that is not.
///
/// # Errors
/// The first field that does not decode, with its path.
pub fn decode(template: &serde_json::Value) -> Result<PodTemplateSpec, FieldError> {
    serde_path_to_error::deserialize(template).map_err(|e| {
        let at = e.path().to_string();
        let path = if at == "." {
            FIELD.to_string()
        } else {
            format!("{FIELD}.{at}")
        };
        FieldError::new(path, format!("not part of a pod template: {}", e.inner()))
    })
}

/// Every reason the template may not be used, each naming its field.
#[must_use]
pub fn check(template: &serde_json::Value) -> Vec<FieldError> {
    let t = match decode(template) {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let mut errs = Vec::new();
    let Some(spec) = &t.spec else { return errs };
    let at = |rest: &str| format!("{FIELD}.spec.{rest}");
    if let Some(p) = spec.restart_policy.as_deref()
        && p != "Never"
    {
        errs.push(FieldError::new(
            at("restartPolicy"),
            format!("`{p}`: runtime pods are never restarted in place; the operator replaces them from the newest checkpoint"),
        ));
    }
    for (flag, set) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        // `hostUsers: false` (a user namespace of the pod's own) only adds isolation.
        if set == Some(true) {
            errs.push(FieldError::new(
                at(flag),
                "`true` would share the node's namespaces with the job",
            ));
        }
    }
    if let Some(sc) = &spec.security_context {
        pod_security(sc, &at("securityContext"), &mut errs);
    }
    if spec.node_name.is_some() {
        errs.push(FieldError::new(
            at("nodeName"),
            "bypasses the scheduler (and its admission); use nodeSelector or affinity",
        ));
    }
    if spec.share_process_namespace == Some(true) {
        errs.push(FieldError::new(
            at("shareProcessNamespace"),
            "`true` would let sidecars see and signal the runtime's processes",
        ));
    }
    let tokens_asked = spec.automount_service_account_token == Some(true);
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        volume_source(v, tokens_asked, &at(&format!("volumes[{i}]")), &mut errs);
        if OWNED_VOLUMES.contains(&v.name.as_str()) {
            errs.push(FieldError::new(
                at(&format!("volumes[{i}].name")),
                format!(
                    "`{}` is the operator's own volume; choose another name",
                    v.name
                ),
            ));
        }
    }
    let groups = [
        ("containers", spec.containers.as_slice()),
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (group, containers) in groups {
        for (i, c) in containers.iter().enumerate() {
            let path = at(&format!("{group}[{i}]"));
            if let Some(sc) = &c.security_context {
                container_security(sc, &format!("{path}.securityContext"), &mut errs);
            }
            for (j, port) in c.ports.iter().flatten().enumerate() {
                if port.host_port.is_some_and(|p| p != 0) {
                    errs.push(FieldError::new(
                        format!("{path}.ports[{j}].hostPort"),
                        "a host port reaches past the pod network (and its NetworkPolicy)",
                    ));
                }
            }
            if group == "containers" && c.name == RUNTIME_CONTAINER {
                runtime_container(c, &path, &mut errs);
            }
        }
    }
    errs
}

/// The identity checks a pod and a container security context share: not root, not
/// `runAsNonRoot: false`, not an Unconfined seccomp profile.
fn identity(
    run_as_user: Option<i64>,
    run_as_non_root: Option<bool>,
    seccomp: Option<&SeccompProfile>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if run_as_user == Some(0) {
        errs.push(FieldError::new(
            format!("{path}.runAsUser"),
            "0 is root; runtime pods run as a non-root user (default 65532)",
        ));
    }
    if run_as_non_root == Some(false) {
        errs.push(FieldError::new(
            format!("{path}.runAsNonRoot"),
            "`false` is refused: runtime pods run as non-root",
        ));
    }
    if seccomp.is_some_and(|p| p.type_ == "Unconfined") {
        errs.push(FieldError::new(
            format!("{path}.seccompProfile.type"),
            "`Unconfined` is refused; use RuntimeDefault or a Localhost profile",
        ));
    }
}

fn pod_security(sc: &PodSecurityContext, path: &str, errs: &mut Vec<FieldError>) {
    identity(
        sc.run_as_user,
        sc.run_as_non_root,
        sc.seccomp_profile.as_ref(),
        path,
        errs,
    );
    confinement(
        sc.se_linux_options.as_ref(),
        sc.app_armor_profile.as_ref(),
        sc.windows_options.as_ref(),
        path,
        errs,
    );
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            errs.push(FieldError::new(
                format!("{path}.sysctls[{i}].name"),
                format!(
                    "`{}` is not one of the safe sysctls ({})",
                    sysctl.name,
                    SAFE_SYSCTLS.join(", ")
                ),
            ));
        }
    }
}

/// Volume types Pod Security `restricted` allows: none reaches into the node.
const VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The sysctls Kubernetes namespaces per pod (Pod Security's safe set).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types a container may run as under Pod Security `restricted`.
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// A volume's source must be one of [`VOLUME_TYPES`]; its name not the operator's.
fn volume_source(v: &Volume, tokens_asked: bool, path: &str, errs: &mut Vec<FieldError>) {
    let source = serde_json::to_value(v).unwrap_or_default();
    for kind in source.as_object().into_iter().flatten().map(|(k, _)| k) {
        if kind != "name" && !VOLUME_TYPES.contains(&kind.as_str()) {
            errs.push(FieldError::new(
                format!("{path}.{kind}"),
                format!(
                    "`{kind}` volumes are refused (they reach into the node or past its \
                     admission); allowed: {}",
                    VOLUME_TYPES.join(", ")
                ),
            ));
        }
    }
    let sources = v.projected.as_ref().and_then(|p| p.sources.as_ref());
    for (j, s) in sources.into_iter().flatten().enumerate() {
        if s.service_account_token.is_some() && !tokens_asked {
            errs.push(FieldError::new(
                format!("{path}.projected.sources[{j}].serviceAccountToken"),
                "a service-account token is mounted only when the template asks for tokens \
                 with automountServiceAccountToken: true",
            ));
        }
    }
}

/// SELinux, AppArmor and Windows options Pod Security `restricted` allows.
fn confinement(
    selinux: Option<&SELinuxOptions>,
    apparmor: Option<&AppArmorProfile>,
    windows: Option<&WindowsSecurityContextOptions>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(se) = selinux {
        for (field, set) in [("user", &se.user), ("role", &se.role)] {
            if set.is_some() {
                errs.push(FieldError::new(
                    format!("{path}.seLinuxOptions.{field}"),
                    "may not be set: the runtime's SELinux user and role are the node's default",
                ));
            }
        }
        if let Some(t) = se.type_.as_deref()
            && !SELINUX_TYPES.contains(&t)
        {
            errs.push(FieldError::new(
                format!("{path}.seLinuxOptions.type"),
                format!("`{t}` is refused; allowed: {}", SELINUX_TYPES.join(", ")),
            ));
        }
    }
    if apparmor.is_some_and(|p| p.type_ == "Unconfined") {
        errs.push(FieldError::new(
            format!("{path}.appArmorProfile.type"),
            "`Unconfined` is refused; use RuntimeDefault or a Localhost profile",
        ));
    }
    if windows.and_then(|w| w.host_process) == Some(true) {
        errs.push(FieldError::new(
            format!("{path}.windowsOptions.hostProcess"),
            "host processes are refused",
        ));
    }
}

fn container_security(sc: &SecurityContext, path: &str, errs: &mut Vec<FieldError>) {
    identity(
        sc.run_as_user,
        sc.run_as_non_root,
        sc.seccomp_profile.as_ref(),
        path,
        errs,
    );
    confinement(
        sc.se_linux_options.as_ref(),
        sc.app_armor_profile.as_ref(),
        sc.windows_options.as_ref(),
        path,
        errs,
    );
    if sc.privileged == Some(true) {
        errs.push(FieldError::new(
            format!("{path}.privileged"),
            "privileged containers are refused",
        ));
    }
    if let Some(m) = sc.proc_mount.as_deref()
        && m != "Default"
    {
        errs.push(FieldError::new(
            format!("{path}.procMount"),
            format!("`{m}` is refused: /proc stays masked"),
        ));
    }
    if sc.allow_privilege_escalation == Some(true) {
        errs.push(FieldError::new(
            format!("{path}.allowPrivilegeEscalation"),
            "`true` is refused: no process in a runtime pod may gain privileges",
        ));
    }
    if let Some(added) = sc.capabilities.as_ref().and_then(|c| c.add.as_ref())
        && let Some(cap) = added.iter().find(|c| c.as_str() != "NET_BIND_SERVICE")
    {
        errs.push(FieldError::new(
            format!("{path}.capabilities.add"),
            format!("`{cap}` is refused; only NET_BIND_SERVICE may be added"),
        ));
    }
}

fn runtime_container(c: &Container, path: &str, errs: &mut Vec<FieldError>) {
    let owned = [
        ("image", c.image.is_some(), "set spec.image"),
        (
            "command",
            c.command.is_some(),
            "the operator starts the runtime",
        ),
        (
            "args",
            c.args.is_some(),
            "the operator writes the runtime's arguments",
        ),
        (
            "ports",
            c.ports.is_some(),
            "the control port is the operator's",
        ),
        (
            "livenessProbe",
            c.liveness_probe.is_some(),
            "the operator probes /healthz",
        ),
        (
            "readinessProbe",
            c.readiness_probe.is_some(),
            "the operator probes /readyz",
        ),
        (
            "startupProbe",
            c.startup_probe.is_some(),
            "the operator's probes apply",
        ),
        ("resources", c.resources.is_some(), "set spec.resources"),
    ];
    for (field, set, instead) in owned {
        if set {
            errs.push(FieldError::new(
                format!("{path}.{field}"),
                format!("owned by the operator in the `runtime` container: {instead}"),
            ));
        }
    }
    if c.security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        == Some(false)
    {
        errs.push(FieldError::new(
            format!("{path}.securityContext.readOnlyRootFilesystem"),
            "the runtime's root filesystem stays read-only; it writes only to /tmp",
        ));
    }
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let at = normalise(&m.mount_path);
        // The operator's path itself, or a directory above it, which would hide it.
        let hides = |owned: &&str| {
            *owned == at || owned.starts_with(&format!("{}/", at.trim_end_matches('/')))
        };
        if OWNED_MOUNT_PATHS.iter().any(hides) {
            errs.push(FieldError::new(
                format!("{path}.volumeMounts[{i}].mountPath"),
                format!(
                    "`{}` is where the operator mounts its own volume",
                    m.mount_path
                ),
            ));
        }
    }
}

/// A path as the kernel resolves it: `//` and `.` dropped, `..` applied, no trailing `/`
/// (`/etc//weir/./` and `/tmp/../etc/weir` are `/etc/weir`).
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;
    use serde_json::json;

    /// Each row: a template, and the field paths refused (none: accepted).
    #[test]
    fn unsafe_or_operator_owned_fields_are_refused_by_name() {
        let rows: Vec<(&str, serde_json::Value, Vec<&str>)> = vec![
            (
                "what a platform team sets is accepted",
                json!({"metadata": {"labels": {"team": "data"}, "annotations": {"a": "b"}},
                       "spec": {"nodeSelector": {"pool": "stream"},
                                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                                "priorityClassName": "high",
                                "serviceAccountName": "weir-jobs",
                                "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                                "volumes": [{"name": "ca", "configMap": {"name": "ca"}}],
                                "containers": [
                                  {"name": "runtime", "env": [{"name": "X", "value": "1"}],
                                   "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}]},
                                  {"name": "proxy", "image": "envoy:1",
                                   "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}}]}}),
                vec![],
            ),
            (
                "root, privilege and host access",
                json!({"spec": {"hostNetwork": true, "hostPID": true,
                                "securityContext": {"runAsUser": 0, "runAsNonRoot": false,
                                                    "seccompProfile": {"type": "Unconfined"}},
                                "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
                                "containers": [{"name": "side", "securityContext":
                                    {"privileged": true, "allowPrivilegeEscalation": true,
                                     "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}}}],
                                "initContainers": [{"name": "init", "securityContext": {"runAsNonRoot": false}}]}}),
                vec![
                    "spec.podTemplate.spec.hostNetwork",
                    "spec.podTemplate.spec.hostPID",
                    "spec.podTemplate.spec.securityContext.runAsUser",
                    "spec.podTemplate.spec.securityContext.runAsNonRoot",
                    "spec.podTemplate.spec.securityContext.seccompProfile.type",
                    "spec.podTemplate.spec.volumes[0].hostPath",
                    "spec.podTemplate.spec.containers[0].securityContext.runAsUser",
                    "spec.podTemplate.spec.containers[0].securityContext.privileged",
                    "spec.podTemplate.spec.containers[0].securityContext.allowPrivilegeEscalation",
                    "spec.podTemplate.spec.containers[0].securityContext.capabilities.add",
                    "spec.podTemplate.spec.initContainers[0].securityContext.runAsNonRoot",
                ],
            ),
            (
                "what the operator owns in the runtime container",
                json!({"spec": {"restartPolicy": "Always",
                                "volumes": [{"name": "tmp", "emptyDir": {}}],
                                "containers": [{"name": "runtime", "image": "evil:1",
                                    "command": ["sh"], "args": ["-c"],
                                    "ports": [{"containerPort": 1}],
                                    "resources": {"limits": {"cpu": "8"}},
                                    "securityContext": {"readOnlyRootFilesystem": false},
                                    "volumeMounts": [{"name": "x", "mountPath": "/etc/weir/"}]}]}}),
                vec![
                    "spec.podTemplate.spec.restartPolicy",
                    "spec.podTemplate.spec.volumes[0].name",
                    "spec.podTemplate.spec.containers[0].image",
                    "spec.podTemplate.spec.containers[0].command",
                    "spec.podTemplate.spec.containers[0].args",
                    "spec.podTemplate.spec.containers[0].ports",
                    "spec.podTemplate.spec.containers[0].resources",
                    "spec.podTemplate.spec.containers[0].securityContext.readOnlyRootFilesystem",
                    "spec.podTemplate.spec.containers[0].volumeMounts[0].mountPath",
                ],
            ),
            (
                "host access the restricted standard refuses, by allow-list",
                json!({"spec": {"nodeName": "node-7", "shareProcessNamespace": true,
                                "securityContext": {
                                    "sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"},
                                                {"name": "kernel.msgmax", "value": "1"}],
                                    "seLinuxOptions": {"user": "system_u", "type": "spc_t"},
                                    "appArmorProfile": {"type": "Unconfined"}},
                                "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}},
                                            {"name": "g", "gitRepo": {"repository": "r"}},
                                            {"name": "i", "iscsi": {"targetPortal": "t", "iqn": "q", "lun": 0}},
                                            {"name": "f", "flexVolume": {"driver": "d"}},
                                            {"name": "p", "projected": {"sources": [
                                                {"configMap": {"name": "c"}},
                                                {"serviceAccountToken": {"path": "t"}}]}},
                                            {"name": "ok", "persistentVolumeClaim": {"claimName": "c"}}],
                                "containers": [
                                  {"name": "side", "ports": [{"containerPort": 80, "hostPort": 80}],
                                   "securityContext": {"procMount": "Unmasked",
                                                       "windowsOptions": {"hostProcess": true}}},
                                  {"name": "runtime", "volumeMounts": [
                                      {"name": "ok", "mountPath": "/etc//weir/."},
                                      {"name": "ok", "mountPath": "/var/../etc"},
                                      {"name": "ok", "mountPath": "/data"}]}]}}),
                vec![
                    "spec.podTemplate.spec.nodeName",
                    "spec.podTemplate.spec.shareProcessNamespace",
                    "spec.podTemplate.spec.securityContext.sysctls[1].name",
                    "spec.podTemplate.spec.securityContext.seLinuxOptions.user",
                    "spec.podTemplate.spec.securityContext.seLinuxOptions.type",
                    "spec.podTemplate.spec.securityContext.appArmorProfile.type",
                    "spec.podTemplate.spec.volumes[0].nfs",
                    "spec.podTemplate.spec.volumes[1].gitRepo",
                    "spec.podTemplate.spec.volumes[2].iscsi",
                    "spec.podTemplate.spec.volumes[3].flexVolume",
                    "spec.podTemplate.spec.volumes[4].projected.sources[1].serviceAccountToken",
                    "spec.podTemplate.spec.containers[0].ports[0].hostPort",
                    "spec.podTemplate.spec.containers[0].securityContext.procMount",
                    "spec.podTemplate.spec.containers[0].securityContext.windowsOptions.hostProcess",
                    "spec.podTemplate.spec.containers[1].volumeMounts[0].mountPath",
                    "spec.podTemplate.spec.containers[1].volumeMounts[1].mountPath",
                ],
            ),
            (
                "a projected token the template asks for, and hostUsers: false",
                json!({"spec": {"automountServiceAccountToken": true, "hostUsers": false,
                                "volumes": [{"name": "p", "projected": {"sources": [
                                    {"serviceAccountToken": {"path": "t", "audience": "sts"}}]}}]}}),
                vec![],
            ),
            (
                "a sidecar may have a writable root filesystem",
                json!({"spec": {"containers": [{"name": "agent",
                    "securityContext": {"readOnlyRootFilesystem": false}}]}}),
                vec![],
            ),
            (
                "not a pod template",
                json!({"spec": {"tolerations": "all"}}),
                vec!["spec.podTemplate.spec.tolerations"],
            ),
        ];
        for (name, template, want) in rows {
            let got: Vec<String> = check(&template).into_iter().map(|e| e.path).collect();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            let mut want_sorted: Vec<String> = want.iter().map(ToString::to_string).collect();
            want_sorted.sort();
            assert_eq!(got_sorted, want_sorted, "{name}: {got:?}");
        }
    }
}
