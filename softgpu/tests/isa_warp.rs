//! Warp collectives against the PTX ISA: shfl.sync (each mode, clamp values, segment widths,
//! member masks, the in-range predicate), vote.sync, match.sync, redux.sync, elect.sync and
//! activemask.

#![allow(clippy::needless_range_loop)] // index loops mirror the lane and element layouts

mod warp_common;

use kiln_softgpu::testing::{Harness, kernel_ptx};
use rand::Rng;
use warp_common::*;

/// The ISA's pseudo-code for the source lane and the predicate of `shfl.sync` (section
/// "shfl.sync", Semantics), independent of the interpreter.
fn shfl_model(mode: &str, lane: u32, b: u32, c: u32) -> (u32, bool) {
    let bval = b & 31;
    let (cval, mask) = (c & 31, (c >> 8) & 31);
    let max_lane = (lane & mask) | (cval & !mask);
    let min_lane = lane & mask;
    let (j, p) = match mode {
        "up" => (lane as i32 - bval as i32, lane as i32 - bval as i32 >= max_lane as i32),
        "down" => ((lane + bval) as i32, lane + bval <= max_lane),
        "bfly" => ((lane ^ bval) as i32, lane ^ bval <= max_lane),
        _ => {
            let j = min_lane | (bval & !mask);
            (j as i32, j <= max_lane)
        }
    };
    (if p { j as u32 } else { lane }, p)
}

/// Runs `shfl.sync.mode.b32 d|p, a, b, c, members` with per-lane a, b, c, the lanes outside
/// `members` branching around it; returns (d, p) per member lane.
fn run_shfl(
    h: &Harness,
    mode: &str,
    a: &[u32],
    b: &[u32],
    c: &[u32],
    members: u32,
) -> Vec<Option<(u32, bool)>> {
    let idx = idx8(h);
    let (ta, tb, tc) = (table32(h, a), table32(h, b), table32(h, c));
    let skip = bytes(h, &(0..32).map(|l| (members >> l & 1 == 0) as u8).collect::<Vec<_>>());
    let (od, op) = (out(h, 32), out(h, 32));
    let body = format!(
        "{REGS}  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.u32 %r1, [%rd1+{ta}];\n  ld.global.u32 %r2, [%rd1+{tb}];\n  \
         ld.global.u32 %r3, [%rd1+{tc}];\n  ld.global.u8 %p1, [%laneid+{skip}];\n  @%p1 bra DONE;\n  \
         shfl.sync.{mode}.b32 %r4|%p2, %r1, %r2, %r3, {members};\n  st.global.u64 [%rd1+{od}], %r4;\n  \
         st.global.u64 [%rd1+{op}], %p2;\nDONE:\n  ret;"
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let (d, p) = (h.read_u64(od, 32), h.read_u64(op, 32));
    (0..32).map(|l| (members >> l & 1 != 0).then(|| (d[l] as u32, p[l] != 0))).collect()
}

#[test]
fn shfl_matches_the_documented_pseudo_code() {
    let h = Harness::new();
    let mut rng = rng(1);
    for mode in ["up", "down", "bfly", "idx"] {
        for round in 0..12 {
            let a = random_u32(&mut rng);
            // b: in-range offsets and some above 31 (only b[4:0] counts).
            let b: Vec<u32> = (0..32).map(|_| rng.random_range(0..40)).collect();
            // c: full-warp, segment widths 16/8/4 (the CUDA `width` encoding), and random.
            let c: Vec<u32> = (0..32)
                .map(|_| match round % 4 {
                    0 if mode == "up" => 0,
                    0 => 0x1f,
                    1 => {
                        let w = [16u32, 8, 4][rng.random_range(0..3)];
                        if mode == "up" { (32 - w) << 8 } else { ((32 - w) << 8) | 0x1f }
                    }
                    _ => rng.random_range(0..0x2000),
                })
                .collect();
            let members = if round < 6 { u32::MAX } else { rng.random::<u32>() | 1 };
            let got = run_shfl(&h, mode, &a, &b, &c, members);
            for l in 0..32u32 {
                let Some((d, p)) = got[l as usize] else { continue };
                let (j, pval) = shfl_model(mode, l, b[l as usize], c[l as usize]);
                // A source lane outside the members is undefined: the interpreter gives the
                // lane's own value.
                let want = if members >> j & 1 != 0 { a[j as usize] } else { a[l as usize] };
                assert_eq!(
                    (d, p),
                    (want, pval),
                    "shfl.{mode} lane {l} b {} c {:#x} members {members:#x}",
                    b[l as usize],
                    c[l as usize]
                );
            }
        }
    }
}

#[test]
fn shfl_hand_checked_cases() {
    let h = Harness::new();
    let a: Vec<u32> = (0..32).map(|l| 1000 + l).collect();
    let all = |v: u32| vec![v; 32];
    // Butterfly exchange of neighbours.
    let got = run_shfl(&h, "bfly", &a, &all(1), &all(0x1f), u32::MAX);
    assert!((0..32).all(|l| got[l] == Some((1000 + (l as u32 ^ 1), true))));
    // Down by 3 over the whole warp: the last three lanes keep their value, p false.
    let got = run_shfl(&h, "down", &a, &all(3), &all(0x1f), u32::MAX);
    for l in 0..32u32 {
        let want = if l < 29 { (1000 + l + 3, true) } else { (1000 + l, false) };
        assert_eq!(got[l as usize], Some(want));
    }
    // Index 5 within segments of 8 lanes: c = ((32 - 8) << 8) | 0x1f.
    let got = run_shfl(&h, "idx", &a, &all(5), &all(0x181f), u32::MAX);
    assert!((0..32).all(|l| got[l] == Some((1000 + (l as u32 & !7) + 5, true))));
    // Up by 2 within segments of 16 lanes: c = (32 - 16) << 8.
    let got = run_shfl(&h, "up", &a, &all(2), &all(0x1000), u32::MAX);
    for l in 0..32u32 {
        let want = if l % 16 >= 2 { (1000 + l - 2, true) } else { (1000 + l, false) };
        assert_eq!(got[l as usize], Some(want));
    }
}

/// Runs `body` (which may use %rd1 = 8 * lane, %r1 = a u32 input, %p1 = a predicate input,
/// and stores results with `st.global.u64 [%rd1+OUT], ...`) on one warp whose lanes outside
/// `members` branch around it. Returns the output table.
fn run_members(h: &Harness, a: &[u32], pred: &[bool], members: u32, body: &str) -> Vec<u64> {
    let idx = idx8(h);
    let ta = table32(h, a);
    let tp = bytes(h, &pred.iter().map(|&p| p as u8).collect::<Vec<_>>());
    let skip = bytes(h, &(0..32).map(|l| (members >> l & 1 == 0) as u8).collect::<Vec<_>>());
    let o = out(h, 32);
    let body = body.replace("OUT", &o.to_string()).replace("MEMBERS", &members.to_string());
    let text = format!(
        "{REGS}  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.u32 %r1, [%rd1+{ta}];\n  ld.global.u8 %p1, [%laneid+{tp}];\n  \
         ld.global.u8 %p9, [%laneid+{skip}];\n  @%p9 bra DONE;\n{body}\nDONE:\n  ret;"
    );
    h.run(&kernel_ptx("", &text), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    h.read_u64(o, 32)
}

fn lanes_of(m: u32) -> impl Iterator<Item = usize> {
    (0..32).filter(move |l| m >> l & 1 != 0)
}

#[test]
fn vote_modes_over_member_lanes() {
    let h = Harness::new();
    let mut rng = rng(2);
    for round in 0..16 {
        let members = if round % 2 == 0 { u32::MAX } else { rng.random::<u32>() | 1 };
        let pred: Vec<bool> = match round % 4 {
            0 => vec![true; 32],
            1 => vec![false; 32],
            _ => (0..32).map(|_| rng.random()).collect(),
        };
        let a = vec![0; 32];
        let ballot: u32 = lanes_of(members).filter(|&l| pred[l]).map(|l| 1u32 << l).sum();
        for (mode, neg) in [
            ("all", false),
            ("any", false),
            ("uni", false),
            ("ballot", false),
            ("all", true),
            ("ballot", true),
        ] {
            let (ty, src) = (if mode == "ballot" { "b32" } else { "pred" }, if neg { "!%p1" } else { "%p1" });
            let body =
                format!("  vote.sync.{mode}.{ty} %r5, {src}, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;");
            let got = run_members(&h, &a, &pred, members, &body);
            let b = if neg { members & !ballot } else { ballot };
            let want = match mode {
                "all" => (b == members) as u64,
                "any" => (b != 0) as u64,
                "uni" => (b == 0 || b == members) as u64,
                _ => b as u64,
            };
            for l in lanes_of(members) {
                assert_eq!(got[l], want, "vote.{mode} neg {neg} lane {l} members {members:#x}");
            }
        }
    }
}

#[test]
fn match_any_and_all() {
    let h = Harness::new();
    let mut rng = rng(3);
    for round in 0..8 {
        let members = if round < 4 { u32::MAX } else { rng.random::<u32>() | 1 };
        // Few distinct values so that groups form; one round with all equal.
        let a: Vec<u32> =
            (0..32).map(|_| if round == 2 { 77 } else { 0x1234_0000 + rng.random_range(0..4) }).collect();
        let body = "  match.any.sync.b32 %r5, %r1, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;";
        let got = run_members(&h, &a, &[false; 32], members, body);
        for l in lanes_of(members) {
            let want: u32 = lanes_of(members).filter(|&k| a[k] == a[l]).map(|k| 1u32 << k).sum();
            assert_eq!(got[l], want as u64, "match.any lane {l}");
        }
        let body = "  match.all.sync.b32 %r5|%p2, %r1, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;";
        let got = run_members(&h, &a, &[false; 32], members, body);
        let all_equal = lanes_of(members).all(|k| a[k] == a[lanes_of(members).next().unwrap()]);
        for l in lanes_of(members) {
            assert_eq!(got[l], if all_equal { members as u64 } else { 0 }, "match.all lane {l}");
        }
        let body = "  match.all.sync.b32 %r5|%p2, %r1, MEMBERS;\n  st.global.u64 [%rd1+OUT], %p2;";
        let got = run_members(&h, &a, &[false; 32], members, body);
        for l in lanes_of(members) {
            assert_eq!(got[l], all_equal as u64, "match.all predicate lane {l}");
        }
    }
}

#[test]
fn match_b64_compares_all_bits() {
    let h = Harness::new();
    let idx = idx8(&h);
    // Equal low halves, different high halves in odd lanes.
    let vals: Vec<u64> = (0..32).map(|l| 5 | ((l as u64 & 1) << 40)).collect();
    let t = table(&h, &vals);
    let o = out(&h, 32);
    let body = format!(
        "{REGS}  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.u64 %rd2, [%rd1+{t}];\n  match.any.sync.b64 %r5, %rd2, -1;\n  st.global.u64 [%rd1+{o}], %r5;\n  ret;"
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let got = h.read_u64(o, 32);
    for l in 0..32 {
        assert_eq!(got[l], if l % 2 == 0 { 0x5555_5555 } else { 0xaaaa_aaaa });
    }
}

#[test]
fn redux_operations() {
    let h = Harness::new();
    let mut rng = rng(4);
    for round in 0..6 {
        let members = if round < 3 { u32::MAX } else { rng.random::<u32>() | 1 };
        let a = random_u32(&mut rng);
        let m: Vec<u32> = lanes_of(members).map(|l| a[l]).collect();
        let cases: [(&str, u32); 8] = [
            ("add.u32", m.iter().fold(0u32, |x, &y| x.wrapping_add(y))),
            ("add.s32", m.iter().fold(0u32, |x, &y| x.wrapping_add(y))),
            ("min.u32", *m.iter().min().unwrap()),
            ("max.u32", *m.iter().max().unwrap()),
            ("min.s32", m.iter().map(|&v| v as i32).min().unwrap() as u32),
            ("max.s32", m.iter().map(|&v| v as i32).max().unwrap() as u32),
            ("and.b32", m.iter().fold(u32::MAX, |x, &y| x & y)),
            ("xor.b32", m.iter().fold(0, |x, &y| x ^ y)),
        ];
        for (op, want) in cases {
            let body = format!("  redux.sync.{op} %r5, %r1, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;");
            let got = run_members(&h, &a, &[false; 32], members, &body);
            for l in lanes_of(members) {
                assert_eq!(got[l], want as u64, "redux.{op} lane {l} members {members:#x}");
            }
        }
        let body = "  redux.sync.or.b32 %r5, %r1, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;";
        let got = run_members(&h, &a, &[false; 32], members, body);
        assert_eq!(got[members.trailing_zeros() as usize], m.iter().fold(0, |x, &y| x | y) as u64);
    }
}

#[test]
fn redux_f32_min_max_with_nan_and_signed_zero() {
    let h = Harness::new();
    let nan = f32::NAN.to_bits();
    let mut a: Vec<u32> = (0..32).map(|l| (l as f32 - 10.5).to_bits()).collect();
    a[3] = nan;
    a[4] = (-0.0f32).to_bits();
    let run = |op: &str, a: &[u32]| {
        run_members(
            &h,
            a,
            &[false; 32],
            u32::MAX,
            &format!("  redux.sync.{op}.f32 %r5, %r1, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;"),
        )[0] as u32
    };
    assert_eq!(f32::from_bits(run("min", &a)), -10.5, "NaN ignored without .NaN");
    assert_eq!(f32::from_bits(run("max", &a)), 20.5);
    assert_eq!(run("min.NaN", &a), 0x7fff_ffff, "canonical NaN with .NaN");
    assert_eq!(f32::from_bits(run("max.abs", &a)), 20.5);
    let zeros: Vec<u32> = (0..32).map(|l| if l % 2 == 0 { 0 } else { 0x8000_0000 }).collect();
    assert_eq!(run("max", &zeros), 0, "+0.0 > -0.0");
    assert_eq!(run("min", &zeros), 0x8000_0000);
}

#[test]
fn activemask_and_elect() {
    let h = Harness::new();
    let mut rng = rng(5);
    let members = rng.random::<u32>() & !0xf | 0x8; // lowest member: lane 3
    let body = "  activemask.b32 %r5;\n  elect.sync %r6|%p2, MEMBERS;\n  st.global.u64 [%rd1+OUT], %r5;\n  @%p2 st.global.u64 [%rd1+OUT], %r6;";
    let got = run_members(&h, &[0; 32], &[false; 32], members, body);
    for l in lanes_of(members) {
        let want = if l == 3 { 3 } else { members as u64 };
        assert_eq!(got[l], want, "lane {l}");
    }
}

#[test]
fn a_shfl_waits_for_diverged_members() {
    // Lanes 16-31 branch ahead to the shfl; lanes 0-15 first load another value. The
    // collective runs once all 32 members are there, so every lane sees the other half's
    // final value.
    let h = Harness::new();
    let idx = idx8(&h);
    let a = table32(&h, &(0..32).map(|l| 500 + l).collect::<Vec<_>>());
    let a2 = table32(&h, &(0..32).map(|l| 900 + l).collect::<Vec<_>>());
    let hi = bytes(&h, &(0..32).map(|l| (l >= 16) as u8).collect::<Vec<_>>());
    let o = out(&h, 32);
    let body = format!(
        "{REGS}  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.u32 %r1, [%rd1+{a}];\n  ld.global.u8 %p1, [%laneid+{hi}];\n  \
         @%p1 bra JOIN;\n  ld.global.u32 %r1, [%rd1+{a2}];\nJOIN:\n  shfl.sync.bfly.b32 %r2, %r1, 16, 31, -1;\n  \
         st.global.u64 [%rd1+{o}], %r2;\n  ret;"
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let got = h.read_u64(o, 32);
    for l in 0..32u64 {
        let src = l ^ 16;
        assert_eq!(got[l as usize], if src < 16 { 900 + src } else { 500 + src }, "lane {l}");
    }
}
