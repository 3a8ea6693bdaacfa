//! kiln's Brownian tree against torchsde's, value for value (f32 bit patterns equal), and the
//! pieces under it: numpy's `SeedSequence`, `torch.randint` on a seeded CPU generator, Python's
//! `round(x, 6)`, diffusers' `BrownianTreeNoiseSampler`. Reference: `fixtures/parity/brownian.json`,
//! made by `tools/make_brownian_fixtures.py` (its header lists the cases).

use kiln_pipeline::rng::TorchGenerator;
use kiln_pipeline::rng::seed_sequence::SeedSequence;
use kiln_pipeline::samplers::brownian::interval::round_decimal;
use kiln_pipeline::samplers::brownian::{BrownianNoise, BrownianTree};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parity/brownian.json");

fn fixture() -> Value {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Integers too big for JSON numbers are stored as strings.
fn big(v: &Value) -> u128 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a decimal string: {v}"))
}

fn f64_of(v: &Value) -> f64 {
    f64::from_bits(u64_of(v))
}

fn f32_of(v: &Value) -> f32 {
    f32::from_bits(u64_of(v) as u32)
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| u64_of(x) as u32).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|x| u64_of(x) as usize).collect()
}

/// Panics with the first differing value and how many differ.
fn check_bits(label: &str, ours: &[f32], want: &[u32]) {
    assert_eq!(ours.len(), want.len(), "{label}: length");
    let bad: Vec<usize> = (0..ours.len()).filter(|&i| ours[i].to_bits() != want[i]).collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{label}: {} of {} values differ; first at {i}: kiln {:e} torchsde {:e}",
            bad.len(),
            ours.len(),
            ours[i],
            f32::from_bits(want[i])
        );
    }
}

#[test]
fn seed_sequence_matches_numpy() {
    let doc = fixture();
    let cases = doc["seed_sequences"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let entropy = big(&case["entropy"]);
        let key: Vec<u128> = case["spawn_key"].as_array().unwrap().iter().map(big).collect();
        let pool_size = u64_of(&case["pool_size"]) as usize;
        let seq = SeedSequence::new(entropy, &key, pool_size);
        let label = format!("entropy {entropy} key {key:?} pool {pool_size}");
        assert_eq!(seq.pool(), u32s(&case["pool"]), "{label}: pool");
        assert_eq!(seq.generate_state(4), u32s(&case["state4"]), "{label}: generate_state(4)");
    }
}

#[test]
fn randint_matches_torch() {
    let doc = fixture();
    for case in doc["randint"].as_array().unwrap() {
        let seed = u64_of(&case["seed"]);
        let got = TorchGenerator::new(seed).randint(0, i64::MAX).unwrap();
        assert_eq!(got as u128, big(&case["randint_2p63m1"]), "seed {seed}: randint(0, 2**63 - 1)");
        let got = TorchGenerator::new(seed).randint(0, 1000).unwrap();
        assert_eq!(got as u64, u64_of(&case["randint_1000"]), "seed {seed}: randint(0, 1000)");
    }
    assert_eq!(TorchGenerator::new(1).randint(5, 5), None, "an empty range is refused");
}

#[test]
fn rounding_matches_python() {
    let doc = fixture();
    for case in doc["rounding"].as_array().unwrap() {
        let x = f64_of(&case["x"]);
        assert_eq!(round_decimal(x, 6).to_bits(), u64_of(&case["round6"]), "round({x:e}, 6)");
    }
}

#[test]
fn tree_increments_match_torchsde() {
    let doc = fixture();
    let cases = doc["trees"].as_array().unwrap();
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let entropy = big(&case["entropy"]) as u64;
        let shape = usizes(&case["shape"]);
        let mut tree = BrownianTree::new(entropy, f64_of(&case["t0"]), f64_of(&case["t1"]), &shape).unwrap();
        for (q, query) in case["queries"].as_array().unwrap().iter().enumerate() {
            let (ta, tb) = (f64_of(&query["ta"]), f64_of(&query["tb"]));
            let w = tree.increment(ta, tb).unwrap_or_else(|e| panic!("{name} query {q}: {e}"));
            check_bits(&format!("{name} query {q} W({ta}, {tb})"), &w, &u32s(&query["w"]));
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} queries");
}

/// The same answers whatever the order of the queries (a fresh tree per query): the halfway
/// tree's values depend on the entropy alone.
#[test]
fn tree_increments_do_not_depend_on_query_order() {
    let doc = fixture();
    let case = &doc["trees"][0];
    let shape = usizes(&case["shape"]);
    let (t0, t1) = (f64_of(&case["t0"]), f64_of(&case["t1"]));
    let entropy = big(&case["entropy"]) as u64;
    for query in case["queries"].as_array().unwrap().iter().rev() {
        let mut tree = BrownianTree::new(entropy, t0, t1, &shape).unwrap();
        let w = tree.increment(f64_of(&query["ta"]), f64_of(&query["tb"])).unwrap();
        check_bits("fresh tree", &w, &u32s(&query["w"]));
    }
}

#[test]
fn noise_sampler_matches_diffusers() {
    let doc = fixture();
    let case = &doc["noise_sampler"];
    let seed = u64_of(&case["seed"]);
    let entropy = TorchGenerator::new(seed).randint(0, i64::MAX).unwrap() as u64;
    assert_eq!(u128::from(entropy), big(&case["entropy"]), "entropy from the seed");
    let shape = usizes(&case["shape"]);
    let mut noise =
        BrownianNoise::new(entropy, f32_of(&case["sigma_min"]), f32_of(&case["sigma_max"]), &shape).unwrap();
    let calls = case["calls"].as_array().unwrap();
    assert!(calls.len() >= 8);
    for (k, call) in calls.iter().enumerate() {
        let (sigma, next) = (f32_of(&call["sigma"]), f32_of(&call["sigma_next"]));
        let got = noise.sample(sigma, next).unwrap();
        check_bits(&format!("call {k} ({sigma} -> {next})"), &got, &u32s(&call["noise"]));
    }
}

#[test]
fn bad_queries_are_typed_errors() {
    let mut tree = BrownianTree::new(1, 0.5, 2.0, &[1, 4, 2, 2]).unwrap();
    assert!(tree.increment(1.5, 1.0).is_err(), "reversed");
    assert!(tree.increment(f64::NAN, 1.0).is_err(), "NaN");
    assert!(BrownianTree::new(1, 2.0, 0.5, &[4]).is_err(), "t0 > t1");
}
