//! Exposes PyO3's `Py_3_x` cfg flags to this crate, for version-specific hook code.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
