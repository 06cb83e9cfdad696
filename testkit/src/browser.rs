//! A real browser for the console's tests: Debian's headless Chromium, driven through
//! chromedriver over W3C WebDriver (plain HTTP and JSON).
//!
//! The handful of WebDriver commands a test needs are written here on the HTTP client the
//! tests already build, instead of taking a WebDriver crate: the ones on crates.io pull in
//! Mozilla's `webdriver` crate with its ICU text segmentation and a second `http` version,
//! minutes of a cold CI build for six requests.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// Where the browser is (default `/usr/bin/chromium`).
pub const ENV_CHROMIUM: &str = "WEIR_CHROMIUM";
/// Where chromedriver is (default `/usr/bin/chromedriver`).
pub const ENV_CHROMEDRIVER: &str = "WEIR_CHROMEDRIVER";
/// When `1`, a missing browser fails the test instead of skipping it (set by CI).
pub const ENV_REQUIRE_BROWSER: &str = "WEIR_REQUIRE_BROWSER";

/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What went wrong talking to the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// chromedriver did not start or answer.
    #[error("chromedriver: {0}")]
    Driver(String),
    /// A WebDriver command failed.
    #[error("WebDriver {command}: {message}")]
    Command {
        /// The command (`POST /element`).
        command: String,
        /// The driver's error, or the transport's.
        message: String,
    },
}

/// The browser and driver binaries, when both are installed.
#[must_use]
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os(ENV_CHROMIUM)
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let driver = std::env::var_os(ENV_CHROMEDRIVER)
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    (chromium.is_file() && driver.is_file()).then_some((chromium, driver))
}

/// One browser session, and the chromedriver process behind it (killed on drop).
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    /// The browser's profile, deleted with the session.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium with an empty profile and a laptop-sized
    /// window.
    ///
    /// # Errors
    /// The driver does not start or the session is refused.
    pub async fn start(chromium: &Path, driver: &Path) -> Result<Self, BrowserError> {
        let port = free_port().map_err(|e| BrowserError::Driver(e.to_string()))?;
        // Its own process group, so that dropping the browser ends Chromium's processes too.
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BrowserError::Driver(format!("{}: {e}", driver.display())))?;
        let profile = tempfile::tempdir().map_err(|e| BrowserError::Driver(e.to_string()))?;
        let mut b = Self {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = b.call(reqwest::Method::GET, "/status", None).await
                && v.get("ready").and_then(Value::as_bool) == Some(true)
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Driver("not ready within 20 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The flags the closed network needs: no background connections to Google's hosts.
        let profile_arg = format!("--user-data-dir={}", b.profile.path().display());
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1440,900",
            profile_arg.as_str(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = b
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await?;
        let id = v
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| BrowserError::Driver(format!("no session id in {v}")))?;
        b.base = format!("{}/session/{id}", b.base);
        Ok(b)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        let command = format!("{method} {path}");
        let fail = |message: String| BrowserError::Command {
            command: command.clone(),
            message,
        };
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| fail(format!("{e}: {text}")))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(format!("{status}: {value}")));
        }
        Ok(value)
    }

    /// Open `url`.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    async fn element(&self, css: &str) -> Result<String, BrowserError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v.get(ELEMENT)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| BrowserError::Command {
                command: format!("find {css}"),
                message: format!("no element reference in {v}"),
            })
    }

    /// The visible text of the first element matching `css`.
    ///
    /// # Errors
    /// No such element, or the driver's error.
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        let e = self.element(css).await?;
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Attribute `name` of the first element matching `css`.
    ///
    /// # Errors
    /// No such element, or the driver's error.
    pub async fn attribute(&self, css: &str, name: &str) -> Result<Option<String>, BrowserError> {
        let e = self.element(css).await?;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{e}/attribute/{name}"),
                None,
            )
            .await?;
        Ok(v.as_str().map(String::from))
    }

    /// Click the first element matching `css`.
    ///
    /// # Errors
    /// No such element, or the driver's error.
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        let e = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Type `text` into the first element matching `css`.
    ///
    /// # Errors
    /// No such element, or the driver's error.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let e = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Empty the input matching `css`.
    ///
    /// # Errors
    /// No such element, or the driver's error.
    pub async fn clear(&self, css: &str) -> Result<(), BrowserError> {
        let e = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Accept the `confirm()` or `alert()` the page shows now.
    ///
    /// # Errors
    /// No dialog is open, or the driver's error.
    pub async fn accept_alert(&self) -> Result<(), BrowserError> {
        self.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await
            .map(drop)
    }

    /// A PNG of the page as it is drawn now.
    ///
    /// # Errors
    /// The driver's error, or a screenshot that is not base64.
    pub async fn screenshot(&self) -> Result<Vec<u8>, BrowserError> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| BrowserError::Command {
                command: "GET /screenshot".into(),
                message: e.to_string(),
            })
    }

    /// Poll `read` until it answers `Some`, or fail after `limit` with what it saw last.
    ///
    /// # Errors
    /// The limit ran out; the message says what was awaited and the last error or value.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        mut read: F,
    ) -> Result<T, BrowserError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, BrowserError>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            let last = match read().await {
                Ok(Some(t)) => return Ok(t),
                Ok(None) => "not yet".to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(BrowserError::Command {
                    command: format!("wait for {what}"),
                    message: format!("not within {limit:?}; last: {last}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and every browser process it started share its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
