//! Every Kubernetes permission the operator needs, in one table. The Helm chart's Roles are
//! written from it and two tests keep the three in step: one records the requests the
//! operator actually makes (reconcile, watches, lease) and checks each is listed here and
//! each listed verb is used, the other renders the chart and compares its rules with this
//! table, so the chart grants nothing the code does not call.

/// Where a permission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every namespace whose StreamJobs the operator manages (a ClusterRole when it watches
    /// all of them, a Role in each otherwise).
    JobNamespaces,
    /// Only the operator's own namespace (the leader Lease), and only with leader election.
    OperatorNamespace,
    /// Cluster-scoped resources (the console's reviews), in a ClusterRole of their own.
    Cluster,
}

/// One resource and the verbs the operator uses on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Plural resource, with `/subresource` where one is meant.
    pub resource: &'static str,
    /// Verbs, as RBAC spells them.
    pub verbs: &'static [&'static str],
    /// Where the grant applies.
    pub scope: Scope,
}

/// Verbs the operator needs without issuing a request of that verb itself, and why. The
/// call-recording test accepts these without seeing them; anything else must be seen.
pub const IMPLIED: &[(&str, &str, &str, &str)] = &[(
    "weir.dev",
    "streamjobs/finalizers",
    "update",
    "pods, ConfigMaps and Services carry an owner reference with blockOwnerDeletion; \
         clusters running the OwnerReferencesPermissionEnforcement admission plugin check \
         this verb when such an object is created",
)];

/// The operator's permissions. Secrets are read only by name (`get`, never `list` or
/// `watch`, so the operator cannot enumerate them): those a StreamJob names, to check their
/// keys exist and to dispose of savepoints with the storage credentials, and the job's own control
/// Secret. The one write is `create`, of the job's own Secrets: the control Secret and, for a
/// job of several pods, the exchange Secret (never read back: only its pods read it). Both
/// are immutable, owned by the job and collected with it; no Secret is ever updated or
/// deleted. Each job's NetworkPolicy is applied (`patch`, which may `create`) and never read
/// or deleted: the job owns it (only granted when the chart's `networkPolicy.enabled`, the
/// default). The headless `<job>-peers` Service of a job of several pods is applied like the
/// control Service (`patch`, which may `create`).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "weir.dev",
        resource: "streamjobs",
        verbs: &["list", "watch", "patch"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "weir.dev",
        resource: "streamjobs/status",
        verbs: &["patch"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "weir.dev",
        resource: "streamjobs/finalizers",
        verbs: &["update"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "",
        resource: "pods",
        verbs: &["list", "watch", "create", "delete"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "",
        resource: "configmaps",
        verbs: &["list", "watch", "create", "patch"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "",
        resource: "services",
        verbs: &["list", "watch", "create", "patch"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get", "create"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "networking.k8s.io",
        resource: "networkpolicies",
        verbs: &["create", "patch"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        scope: Scope::OperatorNamespace,
    },
];

/// What the web console adds, granted only when the chart's `console.enabled`: reading a job's
/// Events for its page, and asking the apiserver who a pasted token belongs to (TokenReview)
/// and whether that person may patch the job (SubjectAccessReview), the same pair
/// `system:auth-delegator` grants. Its actions patch the StreamJob with the `patch` already
/// in [`PERMISSIONS`].
pub const CONSOLE_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["list"],
        scope: Scope::JobNamespaces,
    },
    Permission {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        verbs: &["create"],
        scope: Scope::Cluster,
    },
    Permission {
        group: "authorization.k8s.io",
        resource: "subjectaccessreviews",
        verbs: &["create"],
        scope: Scope::Cluster,
    },
];

/// One request's RBAC meaning: group, resource (with subresource) and verbs.
///
/// A server-side apply may create the object, so the apiserver checks `create` as well as
/// `patch` for it; both are returned (not for a subresource: applying status never creates).
#[must_use]
pub fn request_verbs(
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
) -> Option<(String, String, Vec<&'static str>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let (group, rest) = match parts.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named, sub) = match rest {
        [r] => ((*r).to_string(), false, false),
        [r, _name] => ((*r).to_string(), true, false),
        [r, _name, sub] => (format!("{r}/{sub}"), true, true),
        _ => return None,
    };
    let watch = query.split('&').any(|kv| kv == "watch=true");
    let verbs: Vec<&'static str> = match (method, named) {
        ("GET", true) => vec!["get"],
        ("GET", false) if watch => vec!["watch"],
        ("GET", false) => vec!["list"],
        ("POST", _) => vec!["create"],
        ("PUT", _) => vec!["update"],
        ("PATCH", _) if !sub && content_type.starts_with("application/apply-patch") => {
            vec!["patch", "create"]
        }
        ("PATCH", _) => vec!["patch"],
        ("DELETE", true) => vec!["delete"],
        ("DELETE", false) => vec!["deletecollection"],
        _ => return None,
    };
    Some((group.to_string(), resource, verbs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_rbac_verbs() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/shop/pods",
                "labelSelector=x",
                "",
                ("", "pods", vec!["list"]),
            ),
            (
                "GET",
                "/api/v1/pods",
                "watch=true&resourceVersion=1",
                "",
                ("", "pods", vec!["watch"]),
            ),
            (
                "GET",
                "/api/v1/namespaces/shop/secrets/creds",
                "",
                "",
                ("", "secrets", vec!["get"]),
            ),
            (
                "PATCH",
                "/apis/weir.dev/v1alpha1/namespaces/shop/streamjobs/sales/status",
                "fieldManager=weir-operator&force=true",
                "application/apply-patch+yaml",
                ("weir.dev", "streamjobs/status", vec!["patch"]),
            ),
            (
                "PATCH",
                "/api/v1/namespaces/shop/configmaps/sales-job",
                "fieldManager=weir-operator&force=true",
                "application/apply-patch+yaml",
                ("", "configmaps", vec!["patch", "create"]),
            ),
            (
                "PATCH",
                "/apis/weir.dev/v1alpha1/namespaces/shop/streamjobs/sales",
                "",
                "application/merge-patch+json",
                ("weir.dev", "streamjobs", vec!["patch"]),
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/weir/leases/weir-operator",
                "",
                "application/json",
                ("coordination.k8s.io", "leases", vec!["update"]),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/shop/pods/sales-1",
                "",
                "",
                ("", "pods", vec!["delete"]),
            ),
        ];
        for (m, p, q, ct, (g, r, v)) in cases {
            let got = request_verbs(m, p, q, ct);
            assert_eq!(got, Some((g.to_string(), r.to_string(), v)), "{m} {p}");
        }
        assert_eq!(request_verbs("GET", "/version", "", ""), None);
    }

    #[test]
    fn implied_verbs_are_declared() {
        for (g, r, v, _) in IMPLIED {
            assert!(
                PERMISSIONS
                    .iter()
                    .any(|p| p.group == *g && p.resource == *r && p.verbs.contains(v)),
                "{g} {r} {v}"
            );
        }
    }
}
