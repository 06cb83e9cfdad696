//! A real kube-apiserver with its etcd, found the envtest way: `KUBEBUILDER_ASSETS` names a
//! directory holding `etcd` and `kube-apiserver` (what `setup-envtest use` downloads). No
//! scheduler, controller-manager or kubelet runs: [`crate::kubelet`] plays the node.
//!
//! Authentication is a static token file: an administrator for the test;
//! `system:serviceaccount:weir:weir`, the operator's identity, which has no rights but what
//! the Helm chart's RBAC grants it (so the operator runs against the API with exactly the
//! chart's permissions); and two people with no rights until a test grants them some,
//! [`PERSON_TOKEN`] and [`STRANGER_TOKEN`] (for the console's authorisation).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub const ADMIN_TOKEN: &str = "weir-envtest-admin";
pub const OPERATOR_TOKEN: &str = "weir-envtest-operator";
/// The operator's user, as the chart's RoleBindings name it (ServiceAccount `weir` in
/// namespace `weir`).
pub const OPERATOR_USER: &str = "system:serviceaccount:weir:weir";

/// A person (`alice`, group `system:authenticated`) with no rights until a test binds some.
pub const PERSON_TOKEN: &str = "weir-envtest-alice";
/// Her user name.
pub const PERSON_USER: &str = "alice";
/// Another known person (`mallory`) who is never granted anything.
pub const STRANGER_TOKEN: &str = "weir-envtest-mallory";

pub struct Envtest {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Child,
    pub url: String,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The assets directory, or `None` after printing why the caller skips.
pub fn assets(test: &str) -> Option<PathBuf> {
    match std::env::var("KUBEBUILDER_ASSETS") {
        Ok(d) if Path::new(&d).join("kube-apiserver").is_file() => Some(PathBuf::from(d)),
        Ok(d) => panic!("KUBEBUILDER_ASSETS={d} has no kube-apiserver binary"),
        Err(_) => {
            println!(
                "SKIPPED {test}: needs a real kube-apiserver and etcd; set KUBEBUILDER_ASSETS to a \
                 directory holding both (e.g. `setup-envtest use 1.33 -p path`)"
            );
            None
        }
    }
}

impl Envtest {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until the API answers.
    pub async fn start(assets: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_log = std::fs::File::create(d.join("etcd.log")).expect("log");
        let etcd = Command::new(assets.join("etcd"))
            .args([
                "--name=envtest".to_string(),
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=envtest=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .expect("start etcd");

        let key = d.join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .expect("openssl for the service-account signing key");
        assert!(status.success(), "openssl genrsa failed");
        let tokens = d.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!(
                "{ADMIN_TOKEN},admin,admin-uid,system:masters\n\
                 {OPERATOR_TOKEN},{OPERATOR_USER},operator-uid,\"system:serviceaccounts,system:serviceaccounts:weir,system:authenticated\"\n\
                 {PERSON_TOKEN},{PERSON_USER},alice-uid,system:authenticated\n\
                 {STRANGER_TOKEN},mallory,mallory-uid,system:authenticated\n"
            ),
        )
        .expect("token file");
        let api_log = std::fs::File::create(d.join("apiserver.log")).expect("log");
        let apiserver = Command::new(assets.join("kube-apiserver"))
            .args([
                format!("--etcd-servers=http://127.0.0.1:{client_port}"),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", d.join("certs").display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".to_string(),
                "--service-account-issuer=https://kubernetes.default.svc".to_string(),
                format!("--service-account-key-file={}", key.display()),
                format!("--service-account-signing-key-file={}", key.display()),
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                // No controller-manager creates the `default` ServiceAccount in namespaces.
                "--disable-admission-plugins=ServiceAccount".to_string(),
                "--allow-privileged=true".to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(api_log)
            .spawn()
            .expect("start kube-apiserver");
        let mut env = Self {
            dir,
            etcd,
            apiserver,
            url: format!("https://127.0.0.1:{api_port}"),
        };
        env.wait_ready().await;
        env
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(c) = self.client(ADMIN_TOKEN).await
                && let Ok(text) = c
                    .request_text(http::Request::get("/readyz").body(Vec::new()).expect("req"))
                    .await
                && text.trim() == "ok"
            {
                return;
            }
            if let Ok(Some(s)) = self.apiserver.try_wait() {
                panic!(
                    "kube-apiserver exited ({s}):\n{}",
                    self.log("apiserver.log")
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "kube-apiserver not ready within 90 s:\n{}",
                self.log("apiserver.log")
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A kubeconfig for `token` (written into the env's directory); its path.
    pub fn kubeconfig(&self, token: &str) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{token}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: envtest, cluster: {{server: \"{}\", insecure-skip-tls-verify: true}}}}]\n\
                 users: [{{name: u, user: {{token: {token}}}}}]\n\
                 contexts: [{{name: envtest, context: {{cluster: envtest, user: u}}}}]\n\
                 current-context: envtest\n",
                self.url
            ),
        )
        .expect("write kubeconfig");
        // Owner-only, as a kubeconfig with a token should be (helm warns otherwise).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod kubeconfig");
        path
    }

    /// Starts the `weir-operator` binary `bin` against this apiserver as the chart's
    /// ServiceAccount (its token, its RBAC), with `args`, a free health/metrics port and its
    /// log in `log`; it is killed when the handle drops.
    pub fn start_operator(&self, bin: &Path, args: &[&str], log: &Path) -> OperatorProcess {
        // The operator logs to stdout, as a container does; both streams go to the file.
        let file = std::fs::File::create(log).expect("operator log file");
        let out = file.try_clone().expect("operator log file");
        OperatorProcess(
            Command::new(bin)
                .args(args)
                .args(["--log-format", "text"])
                .arg(format!("--http-addr=127.0.0.1:{}", free_port()))
                .env("KUBECONFIG", self.kubeconfig(OPERATOR_TOKEN))
                .env("WEIR_LOG", "info")
                .stdout(out)
                .stderr(file)
                .spawn()
                .expect("start weir-operator"),
        )
    }

    pub async fn client(&self, token: &str) -> Result<Client, String> {
        let kc = Kubeconfig::read_from(self.kubeconfig(token)).map_err(|e| e.to_string())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Client::try_from(cfg).map_err(|e| e.to_string())
    }
}

impl Drop for Envtest {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// Polls `f` until it returns `Some`, or fails naming `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates `crd` and waits until the apiserver serves it.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), crd)
        .await
        .expect("create the CRD");
    let name = crd.metadata.name.clone().unwrap_or_default();
    wait_for(
        "the CRD to be established",
        Duration::from_secs(30),
        || async {
            let c = crds.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// What a `helm install` of the chart rendered as `objects` ([`crate::helm::template`] with
/// `--include-crds`) creates cluster-wide: the CRDs (waited for) and the ClusterRoles and
/// their bindings. Namespaced objects are the caller's: there is no controller-manager or
/// node for the operator's Deployment, so tests run the operator binary themselves.
pub async fn install_cluster_objects(client: &Client, objects: &[serde_json::Value]) {
    let pp = PostParams::default();
    for o in objects {
        match o["kind"].as_str() {
            Some("CustomResourceDefinition") => {
                install_crd(client, &serde_json::from_value(o.clone()).expect("CRD")).await;
            }
            Some("ClusterRole") => {
                Api::<ClusterRole>::all(client.clone())
                    .create(
                        &pp,
                        &serde_json::from_value(o.clone()).expect("ClusterRole"),
                    )
                    .await
                    .expect("create the ClusterRole");
            }
            Some("ClusterRoleBinding") => {
                Api::<ClusterRoleBinding>::all(client.clone())
                    .create(&pp, &serde_json::from_value(o.clone()).expect("binding"))
                    .await
                    .expect("create the ClusterRoleBinding");
            }
            _ => {}
        }
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the namespace");
}

/// A running `weir-operator` process; killed (and reaped) when dropped.
pub struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
