//! `KILN_REQUIRE_GPU=1`: the switch that turns every GPU test's "skipped: no GPU" into a
//! failure, so that CI (which runs them on the software GPU) cannot pass by skipping.

/// Whether `KILN_REQUIRE_GPU=1` is set.
pub fn gpu_required() -> bool {
    std::env::var("KILN_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Reports that GPU test `test` cannot run because of `why`: a panic (a failed test) under
/// `KILN_REQUIRE_GPU=1`, else a line on standard error and the test passes.
pub fn skip_gpu_test(test: &str, why: &str) {
    assert!(!gpu_required(), "{test}: KILN_REQUIRE_GPU=1 but the test cannot run: {why}");
    eprintln!("{test}: skipped: {why}");
}
