//! Rebuilds the crate when a file of the dashboard is added, changed or removed (`rust-embed`
//! alone notices only changes to files that already existed). `web/e2e` is left out on purpose:
//! browser test runs write there and must not trigger rebuilds.

fn main() {
    for path in [
        "../../web/index.html",
        "../../web/sw.js",
        "../../web/manifest.webmanifest",
        "../../web/app",
        "../../web/styles",
        "../../web/vendor",
        "../../web/icons",
    ] {
        println!("cargo::rerun-if-changed={path}");
    }
}
