//! Compiles every kernel family with NVRTC for sm_80 and sm_90 and checks the typed tables
//! against the PTX: every `all()` entry of a family must be a `.entry` of its module. Then
//! assembles each module with `ptxas -v`, prints registers / shared memory / spills per entry,
//! and fails if an entry of a family that must not spill (attention, conv) spills.
//!
//! Without NVRTC (or the CUDA headers, or ptxas) the test says why and passes, so a plain
//! `cargo test` works anywhere; with `KILN_REQUIRE_NVRTC=1` (set by `.ci/run`) it fails instead.

use kiln_kernels::compile::{Arch, CompiledFamily, Compiler, PtxOrigin};
use kiln_kernels::{Family, elementwise, locate, norm, ptxas};

/// The typed table of one family: the entry names its Rust side launches.
struct Table {
    family: Family,
    entries: fn() -> Vec<String>,
}

/// `table!(Family::X, module::XKernel)`: one line per family with a typed kernel list.
macro_rules! table {
    ($family:expr, $kernel:ty) => {
        Table { family: $family, entries: || <$kernel>::all().iter().map(|k| k.entry()).collect() }
    };
}

/// Every family's typed table. Adding a family is one line here.
fn tables() -> Vec<Table> {
    vec![table!(Family::Norm, norm::NormKernel), table!(Family::Elementwise, elementwise::ElementwiseKernel)]
}

/// Families whose entries must not spill registers (CI fails otherwise).
fn must_not_spill(family: Family) -> bool {
    matches!(family, Family::Attention | Family::Conv)
}

const ARCHS: [Arch; 2] = [Arch::SM80, Arch::SM90];

fn required() -> bool {
    std::env::var("KILN_REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

/// Skips (or, where required, fails) with `why`.
fn skip(why: &str) {
    assert!(!required(), "KILN_REQUIRE_NVRTC=1 but: {why}");
    eprintln!("SKIPPED kernel compile check: {why}");
}

#[test]
fn every_family_compiles_with_its_table_and_no_forbidden_spills() {
    let cache = tempfile::tempdir().expect("temporary cache folder");
    let compiler = match Compiler::new() {
        Ok(c) => c.with_cache_dir(Some(cache.path().to_owned())),
        Err(e) => return skip(&e.to_string()),
    };
    eprintln!(
        "NVRTC {:?}, headers from {}, cache {}",
        compiler.nvrtc_version(),
        compiler.include_dir().display(),
        cache.path().display()
    );
    let ptxas = locate::find_ptxas();
    if ptxas.is_none() {
        skip(&format!(
            "ptxas not found in {:?}; install it with `pip install nvidia-cuda-nvcc-cu12==12.9.86` or set KILN_PTXAS",
            locate::ptxas_candidates()
        ));
    }

    let mut failures = Vec::new();
    for arch in ARCHS {
        for family in Family::ALL {
            let compiled = compiler.compile(family, arch).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(compiled.origin, PtxOrigin::Nvrtc, "a fresh cache cannot hit");
            if !compiled.log.is_empty() {
                eprintln!("NVRTC warnings for {} ({arch}):\n{}", family.file_name(), compiled.log);
            }
            failures.extend(check_table(&compiled));
            if let Some(ptxas) = &ptxas {
                failures.extend(check_resources(ptxas, &compiled));
            }
            // The second compile of the same thing comes from the cache, unchanged.
            let again = compiler.compile(family, arch).unwrap();
            assert_eq!((again.origin, again.ptx == compiled.ptx), (PtxOrigin::Cache, true));
        }
    }
    assert!(failures.is_empty(), "kernel checks failed:\n{}", failures.join("\n"));
}

/// Every typed entry of the family is in its PTX; PTX entries missing from the table are
/// reported (a launcher cannot reach them) but do not fail.
fn check_table(compiled: &CompiledFamily) -> Vec<String> {
    let present = compiled.entries();
    let Some(table) = tables().into_iter().find(|t| t.family == compiled.family) else {
        eprintln!(
            "{}: no typed table yet ({} entries in the PTX)",
            compiled.family.file_name(),
            present.len()
        );
        return Vec::new();
    };
    let typed = (table.entries)();
    for extra in present.iter().filter(|p| !typed.iter().any(|t| t == *p)) {
        eprintln!(
            "note: {} ({}) has entry {extra} that its typed table lacks",
            compiled.family.file_name(),
            compiled.arch
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut failures: Vec<String> = typed
        .iter()
        .filter(|t| !present.contains(&t.as_str()))
        .map(|t| {
            format!("{} ({}): typed entry {t} is not in the PTX", compiled.family.file_name(), compiled.arch)
        })
        .collect();
    failures.extend(
        typed.iter().filter(|t| !seen.insert(t.as_str())).map(|t| format!("duplicate typed entry {t}")),
    );
    failures
}

/// Runs ptxas, prints the table, and reports spills where the family forbids them.
fn check_resources(ptxas: &std::path::Path, compiled: &CompiledFamily) -> Vec<String> {
    let usage = match ptxas::run(ptxas, &compiled.ptx, compiled.arch) {
        Ok(u) => u,
        Err(e) => return vec![e],
    };
    println!("{} ({}):\n{}", compiled.family.file_name(), compiled.arch, ptxas::table(compiled.arch, &usage));
    if !must_not_spill(compiled.family) {
        return Vec::new();
    }
    usage
        .iter()
        .filter(|u| u.spills())
        .map(|u| {
            format!(
                "{} ({}): {} spills ({} bytes stored, {} loaded)",
                compiled.family.file_name(),
                compiled.arch,
                u.name,
                u.spill_stores,
                u.spill_loads
            )
        })
        .collect()
}
