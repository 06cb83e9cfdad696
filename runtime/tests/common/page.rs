//! Reading a console page in the browser tests (`console.rs`, `operator_console.rs`).

use std::path::Path;
use std::time::Duration;

use weir_testkit::browser::{Browser, BrowserError};

/// Wait until the text of `css` says (or, with `shown` false, stops saying) `needle`;
/// returns the text.
pub async fn until(b: &Browser, css: &str, needle: &str, shown: bool) -> String {
    let what = format!(
        "{css} {} {needle:?}",
        if shown { "to show" } else { "to drop" }
    );
    b.wait_for(&what, Duration::from_secs(60), || async {
        let t = b.text(css).await?;
        Ok::<_, BrowserError>((t.contains(needle) == shown).then_some(t))
    })
    .await
    .unwrap()
}

/// A number the page shows in `data-rate`, once above zero.
pub async fn rate(b: &Browser, css: &str) -> Result<Option<f64>, BrowserError> {
    let v = b.attribute(css, "data-rate").await?;
    Ok(v.and_then(|v| v.parse::<f64>().ok()).filter(|r| *r > 0.0))
}

/// A PNG of the page: into `docs/` with `WEIR_UPDATE_SCREENSHOTS=1` (the README shows
/// them), else into `scratch`.
pub async fn screenshot(b: &Browser, name: &str, scratch: &Path) {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let to = if std::env::var_os("WEIR_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name)
    } else {
        scratch.join(name)
    };
    std::fs::write(&to, png).unwrap();
}
