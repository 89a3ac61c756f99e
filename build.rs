//! Stamps the git revision into the binary for `cec_exporter_build_info` (falls back to "unknown" when
//! built outside a git checkout, e.g. from a crate tarball).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    println!("cargo:rerun-if-env-changed=CEC_EXPORTER_REVISION");
    if std::env::var_os("CEC_EXPORTER_REVISION").is_some() {
        return;
    }
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(rev) = rev {
        println!("cargo:rustc-env=CEC_EXPORTER_REVISION={rev}");
    }
}
