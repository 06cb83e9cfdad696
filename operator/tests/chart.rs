//! The Helm chart as rendered: RBAC equal to `rbac::PERMISSIONS` (nothing more, nothing less,
//! in the right scope), PodSecurity `restricted`-compatible pods, leader election with two
//! replicas, and the flags that carry the values. Needs the helm binary: `WEIR_HELM` (set by
//! `tests/run-all.sh` from `tests/chart.sh`); without it the tests print SKIPPED, unless
//! `WEIR_REQUIRE_HELM=1`, when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;

use serde_json::Value;
use weir_kubetest::helm;
use weir_operator::rbac::{CONSOLE_PERMISSIONS, PERMISSIONS, Permission, Scope};

fn helm() -> Option<String> {
    match std::env::var("WEIR_HELM") {
        Ok(h) if !h.is_empty() => Some(h),
        _ => {
            assert!(
                std::env::var("WEIR_REQUIRE_HELM").is_err(),
                "WEIR_REQUIRE_HELM is set but WEIR_HELM does not name a helm binary"
            );
            eprintln!(
                "SKIPPED: chart tests need helm; run `tests/chart.sh helm` and set WEIR_HELM to the path it prints"
            );
            None
        }
    }
}

fn render(helm: &str, args: &[&str]) -> Vec<Value> {
    helm::template(helm, args)
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

type Grants = BTreeSet<(String, String, String)>;

/// Every (group, resource, verb) a Role or ClusterRole grants; wildcards and resourceNames
/// are refused outright.
fn grants(role: &Value) -> Grants {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let mut out = Grants::new();
    for rule in role["rules"].as_array().unwrap() {
        assert!(rule.get("resourceNames").is_none(), "{rule}");
        for g in strs(&rule["apiGroups"]) {
            for r in strs(&rule["resources"]) {
                for v in strs(&rule["verbs"]) {
                    assert!(
                        g != "*" && r != "*" && v != "*",
                        "wildcard in {}: {rule}",
                        role["metadata"]["name"]
                    );
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn declared(scope: Scope) -> Grants {
    declared_in(PERMISSIONS, scope)
}

fn declared_in(table: &[Permission], scope: Scope) -> Grants {
    table
        .iter()
        .filter(|p| p.scope == scope)
        .flat_map(|p| {
            p.verbs
                .iter()
                .map(|v| (p.group.to_string(), p.resource.to_string(), v.to_string()))
        })
        .collect()
}

fn args(objs: &[Value]) -> Vec<String> {
    let d = of_kind(objs, "Deployment")[0];
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn bound_to_operator(binding: &Value) {
    let s = &binding["subjects"];
    assert_eq!(s.as_array().unwrap().len(), 1, "{binding}");
    assert_eq!(s[0]["kind"], "ServiceAccount");
    assert_eq!(s[0]["name"], "weir");
    assert_eq!(s[0]["namespace"], "weir");
}

#[test]
fn default_install_grants_exactly_the_declared_rules_cluster_wide_and_no_lease() {
    let Some(helm) = helm() else { return };
    let objs = render(&helm, &[]);
    let cluster_roles = of_kind(&objs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1);
    assert_eq!(grants(cluster_roles[0]), declared(Scope::JobNamespaces));
    let bindings = of_kind(&objs, "ClusterRoleBinding");
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0]["roleRef"]["name"], "weir");
    bound_to_operator(bindings[0]);
    assert!(
        of_kind(&objs, "Role").is_empty(),
        "one replica needs no Lease"
    );
    let a = args(&objs);
    assert!(!a.iter().any(|x| x == "--leader-election"), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--watch-namespaces")));
    assert!(a.contains(&"--runtime-image=weir-runtime:0.1.0".to_string()));
    assert!(of_kind(&objs, "ServiceMonitor").is_empty());
}

#[test]
fn watched_namespaces_get_roles_and_nothing_is_cluster_wide() {
    let Some(helm) = helm() else { return };
    let objs = render(
        &helm,
        &[
            "--set",
            "replicaCount=2",
            "--set",
            "watchNamespaces={shop,analytics}",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    );
    assert!(of_kind(&objs, "ClusterRole").is_empty());
    assert!(of_kind(&objs, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&objs, "Role");
    let in_ns = |ns: &str, name: &str| {
        *roles
            .iter()
            .find(|r| r["metadata"]["namespace"] == ns && r["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Role {ns}/{name}"))
    };
    for ns in ["shop", "analytics"] {
        assert_eq!(
            grants(in_ns(ns, "weir")),
            declared(Scope::JobNamespaces),
            "{ns}"
        );
    }
    assert_eq!(
        grants(in_ns("weir", "weir-leader")),
        declared(Scope::OperatorNamespace)
    );
    assert_eq!(roles.len(), 3, "one per watched namespace plus the Lease");
    let bindings = of_kind(&objs, "RoleBinding");
    assert_eq!(bindings.len(), 3);
    for b in bindings {
        assert_eq!(b["roleRef"]["kind"], "Role");
        assert_eq!(b["roleRef"]["name"], b["metadata"]["name"]);
        bound_to_operator(b);
    }
    let a = args(&objs);
    assert!(a.contains(&"--leader-election".to_string()), "{a:?}");
    assert!(a.contains(&"--watch-namespaces=shop,analytics".to_string()));
    let d = of_kind(&objs, "Deployment")[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains("POD_NAME") && env.contains("POD_NAMESPACE"),
        "the Lease needs identity and namespace: {env}"
    );
    assert_eq!(of_kind(&objs, "ServiceMonitor").len(), 1);
}

/// The console is off by default; on, it gets a flag, a port, a Service, and exactly the
/// grants `rbac::CONSOLE_PERMISSIONS` lists (the reviews cluster-wide in a ClusterRole of
/// their own, Events `list` beside the job rules), and an Ingress only when asked.
#[test]
fn the_console_is_off_by_default_and_on_adds_only_its_grants() {
    let Some(helm) = helm() else { return };
    let off = render(&helm, &[]);
    assert!(!args(&off).iter().any(|a| a.starts_with("--console-addr")));
    assert!(
        !off.iter().any(|o| o["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .ends_with("-console")),
        "console objects rendered while off"
    );
    for set in [vec![], vec!["--set", "watchNamespaces={shop}"]] {
        let mut set = set;
        set.extend(["--set", "console.enabled=true"]);
        let objs = render(&helm, &set);
        assert!(
            args(&objs).contains(&"--console-addr=0.0.0.0:8090".to_string()),
            "{set:?}"
        );
        let d = of_kind(&objs, "Deployment")[0];
        let ports = &d["spec"]["template"]["spec"]["containers"][0]["ports"];
        assert!(
            ports
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "console" && p["containerPort"] == 8090),
            "{ports}"
        );
        let svc = of_kind(&objs, "Service")
            .into_iter()
            .find(|s| s["metadata"]["name"] == "weir-console")
            .expect("a console Service");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "console");
        let mut jobs = declared(Scope::JobNamespaces);
        jobs.extend(declared_in(CONSOLE_PERMISSIONS, Scope::JobNamespaces));
        let cluster_roles = of_kind(&objs, "ClusterRole");
        let console_role = cluster_roles
            .iter()
            .find(|r| r["metadata"]["name"] == "weir-console")
            .expect("the console's ClusterRole");
        assert_eq!(
            grants(console_role),
            declared_in(CONSOLE_PERMISSIONS, Scope::Cluster)
        );
        for role in cluster_roles
            .iter()
            .filter(|r| r["metadata"]["name"] != "weir-console")
            .chain(of_kind(&objs, "Role").iter())
        {
            assert_eq!(grants(role), jobs, "{set:?}");
        }
        let binding = of_kind(&objs, "ClusterRoleBinding")
            .into_iter()
            .find(|b| b["metadata"]["name"] == "weir-console")
            .expect("the console's ClusterRoleBinding");
        assert_eq!(binding["roleRef"]["name"], "weir-console");
        bound_to_operator(binding);
        assert!(of_kind(&objs, "Ingress").is_empty());
    }
    let objs = render(
        &helm,
        &[
            "--set",
            "console.enabled=true",
            "--set",
            "console.ingress.enabled=true",
            "--set",
            "console.ingress.host=weir.example.com",
        ],
    );
    let ing = of_kind(&objs, "Ingress")[0];
    let rule = &ing["spec"]["rules"][0];
    assert_eq!(rule["host"], "weir.example.com");
    assert_eq!(rule["http"]["paths"][0]["path"], "/console");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "weir-console"
    );
}

/// What PodSecurity `restricted` demands of the operator pod.
#[test]
fn operator_pod_meets_the_restricted_pod_security_standard() {
    let Some(helm) = helm() else { return };
    let objs = render(&helm, &[]);
    let pod = &of_kind(&objs, "Deployment")[0]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    for c in pod["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(sc["capabilities"].get("add").is_none());
        assert!(c["resources"]["limits"]["memory"].is_string());
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    }
}

#[test]
fn s3_values_reach_the_operator_as_defaults() {
    let Some(helm) = helm() else { return };
    let objs = render(
        &helm,
        &[
            "--set",
            "s3.endpoint=http://minio.storage:9000",
            "--set",
            "s3.region=eu-west-1",
            "--set",
            "s3.pathStyle=false",
            "--set",
            "s3.credentialsSecret=weir-s3",
        ],
    );
    let env: Vec<(String, String)> =
        of_kind(&objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
            .collect();
    for (k, v) in [
        ("WEIR_DEFAULT_S3_ENDPOINT", "http://minio.storage:9000"),
        ("WEIR_DEFAULT_S3_REGION", "eu-west-1"),
        ("WEIR_DEFAULT_S3_PATH_STYLE", "false"),
        ("WEIR_DEFAULT_S3_CREDENTIALS_SECRET", "weir-s3"),
    ] {
        assert!(
            env.contains(&(k.into(), v.into())),
            "{k}={v} missing: {env:?}"
        );
    }
}

/// The registered names of a metrics source file (`register("name", …)`), with its prefix.
fn registered(path: &str, prefix: &str) -> BTreeSet<String> {
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    src.split("register(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
        .filter_map(|rest| rest.split('"').next())
        .map(|name| format!("{prefix}_{name}"))
        .collect()
}

/// Runtime pods are scraped where the operator works, and the dashboard shows only metrics
/// that exist: every `weir_…` series it queries is one the runtime or the operator registers
/// (a renamed metric fails here, not in an empty Grafana panel).
#[test]
fn runtime_pods_are_scraped_and_the_dashboard_queries_real_metrics() {
    let Some(helm) = helm() else { return };
    let objs = render(
        &helm,
        &[
            "--set",
            "watchNamespaces={shop,analytics}",
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set",
            "metrics.dashboard.enabled=true",
        ],
    );
    let pm = of_kind(&objs, "PodMonitor");
    assert_eq!(pm.len(), 1);
    let spec = &pm[0]["spec"];
    assert_eq!(
        spec["selector"]["matchExpressions"][0],
        serde_json::json!({"key": "weir.dev/job", "operator": "Exists"})
    );
    assert_eq!(
        spec["namespaceSelector"]["matchNames"],
        serde_json::json!(["shop", "analytics"])
    );
    assert_eq!(spec["podMetricsEndpoints"][0]["port"], "control");
    assert_eq!(spec["podMetricsEndpoints"][0]["path"], "/metrics");

    let cms = of_kind(&objs, "ConfigMap");
    let cm = cms
        .iter()
        .find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["weir-jobs.json"].as_str().unwrap()).unwrap();
    let text = dashboard.to_string();
    let mut known = registered("../runtime/src/control/metrics.rs", "weir");
    known.extend(registered("src/metrics.rs", "weir_operator"));
    let used: BTreeSet<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("weir_"))
        .map(|w| {
            ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect();
    assert!(used.len() >= 10, "{used:?}");
    let unknown: Vec<&String> = used.iter().filter(|u| !known.contains(*u)).collect();
    assert!(
        unknown.is_empty(),
        "not registered: {unknown:?}; known: {known:?}"
    );
    assert!(
        dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8),
        "panels"
    );

    // Off by default.
    let objs = render(&helm, &[]);
    assert!(of_kind(&objs, "PodMonitor").is_empty());
    assert!(of_kind(&objs, "ConfigMap").is_empty());
}

/// The operator writes each job's NetworkPolicy (`operator/src/network_policy.rs`), so the
/// chart renders none itself; it hands the operator the labels of its own pods (which must
/// select them, in the release namespace) and the metrics peers, and grants create/patch on
/// NetworkPolicies only while `networkPolicy.enabled` (the default) is on. Before, a default
/// install (all namespaces watched) had no policy at all.
#[test]
fn the_operator_is_told_who_may_reach_runtime_pods() {
    let Some(helm) = helm() else { return };
    let flag = |a: &[String], name: &str| -> Option<Value> {
        a.iter()
            .find_map(|x| x.strip_prefix(&format!("--{name}=")))
            .map(|j| serde_json::from_str(j).unwrap())
    };
    for set in [vec![], vec!["--set", "watchNamespaces={shop,analytics}"]] {
        let objs = render(&helm, &set);
        assert!(of_kind(&objs, "NetworkPolicy").is_empty());
        let a = args(&objs);
        let labels = flag(&a, "network-policy-operator-labels")
            .unwrap_or_else(|| panic!("no operator labels in {a:?}"));
        let labels = labels.as_object().unwrap();
        assert!(!labels.is_empty());
        let deployment = of_kind(&objs, "Deployment")[0];
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (k, v) in labels {
            assert_eq!(&pod_labels[k], v, "operator pods lack {k}={v}");
        }
        assert_eq!(flag(&a, "network-policy-metrics-from"), None);
    }

    let objs = render(
        &helm,
        &[
            "--set",
            "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus",
        ],
    );
    assert_eq!(
        flag(&args(&objs), "network-policy-metrics-from"),
        Some(serde_json::json!([{"podSelector": {"matchLabels": {"app": "prometheus"}}}]))
    );

    // Off: no flag, and no grant on NetworkPolicies (cluster-wide or per namespace).
    for set in [vec![], vec!["--set", "watchNamespaces={shop}"]] {
        let mut set = set;
        set.extend(["--set", "networkPolicy.enabled=false"]);
        let objs = render(&helm, &set);
        assert!(
            !args(&objs)
                .iter()
                .any(|x| x.starts_with("--network-policy")),
            "{set:?}"
        );
        let mut want = declared(Scope::JobNamespaces);
        want.retain(|(_, r, _)| r != "networkpolicies");
        for role in of_kind(&objs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&objs, "Role"))
        {
            assert_eq!(grants(role), want, "{set:?}");
        }
    }
}

/// The chart's default images are the ones `make images` (docker/images.sh) builds and tags:
/// `weir-operator:<version>` and `weir-runtime:<version>`, the workspace's version.
#[test]
fn default_images_are_the_ones_make_images_builds() {
    let Some(helm) = helm() else { return };
    let objs = render(&helm, &[]);
    let version = env!("CARGO_PKG_VERSION");
    let deployment = of_kind(&objs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], format!("weir-operator:{version}"));
    assert!(
        args(&objs).contains(&format!("--runtime-image=weir-runtime:{version}")),
        "{:?}",
        args(&objs)
    );
    let script = std::fs::read_to_string("../docker/images.sh").unwrap();
    for name in ["weir-operator", "weir-runtime"] {
        assert!(
            script.contains(&format!("image \"$work\" {name} ")),
            "docker/images.sh no longer builds {name}"
        );
    }
    assert!(
        script.contains("\"localhost/$name:$VERSION\" \"oci-archive:$archive:$name:$VERSION\"")
    );
}
