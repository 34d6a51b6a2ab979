//! Third-party DC-09 software from PyPI (dc09-spt, pysiaalarm), run by the
//! tests through small driver scripts in `tests/interop/`. `.ci/run` installs
//! the pinned packages into a virtual environment and names its python in
//! `FLEXI_PYTHON`; without it the tests look in that environment's usual
//! place, `.ci/venv`.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

use super::{missing_tool, within};

const INSTALLED_BY: &str = "`.ci/run` installs it into .ci/venv from PyPI \
                            (python3 -m venv .ci/venv; .ci/venv/bin/pip install \
                            -r .ci/interop-requirements.txt; \
                            .ci/venv/bin/pip install --no-deps dc09-spt==0.0.4)";

/// A python that can import every one of `modules`, or `None` after
/// [`missing_tool`] has said why (which fails the test under `.ci/run`).
pub async fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os("FLEXI_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python"),
        PathBuf::from,
    );
    let imports = format!("import {}", modules.join(", "));
    let status = Command::new(&python)
        .args(["-c", &imports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let importable =
        matches!(within("python to start", status).await, Ok(status) if status.success());
    if importable {
        Some(python)
    } else {
        let tool = format!("{} with {}", python.display(), modules.join(", "));
        missing_tool(&tool, INSTALLED_BY);
        None
    }
}

/// The path of driver script `name` in `tests/interop/`.
pub fn driver(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}
