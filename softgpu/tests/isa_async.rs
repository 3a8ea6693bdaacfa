//! cp.async against the PTX ISA ("cp.async", "cp.async.commit_group", "cp.async.wait_group"):
//! zero-fill by src-size and ignore-src, completion only at wait (a read before the wait sees
//! the old shared bytes), wait_group keeping the newest groups pending, and the checks on the
//! source at issue and on the destination at completion.

#![allow(clippy::needless_range_loop)] // index loops mirror the lane and element layouts

mod warp_common;

use kiln_softgpu::fault::FaultKind;
use kiln_softgpu::testing::{Harness, kernel_ptx};
use rand::Rng;
use warp_common::*;

const SMEM: &str = "  .shared .align 16 .b8 smem[2048];\n";

/// One warp's setup: %rd1 = 8 * lane, %rd2 = the lane's global source (`src + 16 * lane`),
/// %rd3 = its shared slot (`16 * lane`), %rd5 = its 16-byte slot in `gout`; shared memory
/// initialised to `old`. `read(k)` is PTX copying the lane's shared slot to gout slot k.
struct Setup {
    text: String,
    gout: u64,
}

fn setup(h: &Harness, src: u64, old: &[u8]) -> Setup {
    let idx = idx8(h);
    let gsrc = table(h, &(0..32).map(|l| src + 16 * l).collect::<Vec<_>>());
    let sdst = table(h, &(0..32).map(|l| 16 * l).collect::<Vec<_>>());
    let old = h.buffer(old);
    let gold = table(h, &(0..32).map(|l| old + 16 * l).collect::<Vec<_>>());
    let gout = h.uninit(512 * 4);
    let goutt = table(h, &(0..32).map(|l| gout + 16 * l).collect::<Vec<_>>());
    let text = format!(
        "{REGS}{SMEM}  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.u64 %rd2, [%rd1+{gsrc}];\n  ld.global.u64 %rd3, [%rd1+{sdst}];\n  \
         ld.global.u64 %rd4, [%rd1+{gold}];\n  ld.global.u64 %rd5, [%rd1+{goutt}];\n  \
         ld.global.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd4];\n  st.shared.v4.u32 [%rd3], {{%r40, %r41, %r42, %r43}};\n"
    );
    Setup { text, gout }
}

fn read(k: usize) -> String {
    format!(
        "  ld.shared.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd3];\n  st.global.v4.u32 [%rd5+{}], {{%r40, %r41, %r42, %r43}};\n",
        512 * k
    )
}

fn random_bytes(rng: &mut Rng64, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.random()).collect()
}

#[test]
fn src_size_zero_fills() {
    let h = Harness::new();
    let mut rng = rng(50);
    for (variant, cp) in [("ca", 4usize), ("ca", 8), ("ca", 16), ("cg", 16)] {
        let data = random_bytes(&mut rng, 512);
        let old = random_bytes(&mut rng, 512);
        let src = h.buffer(&data);
        let sizes: Vec<u32> = (0..32).map(|_| rng.random_range(0..=cp as u32)).collect();
        let s = setup(&h, src, &old);
        let ts = table32(&h, &sizes);
        let body = format!(
            "{}  ld.global.u32 %r1, [%rd1+{ts}];\n  cp.async.{variant}.shared.global [%rd3], [%rd2], {cp}, %r1;\n  cp.async.wait_all;\n{}  ret;",
            s.text,
            read(0)
        );
        let c = h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
        assert_eq!(c.warp_instructions[3], 1, "one cp.async counted");
        let got = h.read(s.gout, 512);
        for l in 0..32 {
            for k in 0..16 {
                let want = if k >= cp {
                    old[16 * l + k]
                } else if k < sizes[l] as usize {
                    data[16 * l + k]
                } else {
                    0
                };
                assert_eq!(
                    got[16 * l + k],
                    want,
                    "cp.async.{variant} {cp} lane {l} byte {k} src-size {}",
                    sizes[l]
                );
            }
        }
    }
}

#[test]
fn src_size_zero_reads_nothing_and_ignore_src_writes_zeros() {
    let h = Harness::new();
    let mut rng = rng(51);
    let old = random_bytes(&mut rng, 512);
    // A never-written source: src-size 0 and a true ignore-src read none of it.
    let src = h.uninit(512);
    let s = setup(&h, src, &old);
    let body = format!(
        "{}  cp.async.cg.shared.global [%rd3], [%rd2], 16, 0;\n  cp.async.wait_all;\n{}  ret;",
        s.text,
        read(0)
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    assert!(h.read(s.gout, 512).iter().all(|&b| b == 0));

    let data = random_bytes(&mut rng, 512);
    let src = h.buffer(&data);
    let ignore: Vec<u8> = (0..32).map(|_| rng.random_range(0..2)).collect();
    let s = setup(&h, src, &old);
    let ti = bytes(&h, &ignore);
    let body = format!(
        "{}  ld.global.u8 %p1, [%laneid+{ti}];\n  cp.async.ca.shared.global [%rd3], [%rd2], 8, %p1;\n  \
         cp.async.ca.shared.global [%rd3+8], [%rd2+8], 8, !%p1;\n  cp.async.commit_group;\n  cp.async.wait_group 0;\n{}  ret;",
        s.text,
        read(0)
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let got = h.read(s.gout, 512);
    for l in 0..32 {
        for k in 0..16 {
            let ignored = (ignore[l] == 1) == (k < 8);
            let want = if ignored { 0 } else { data[16 * l + k] };
            assert_eq!(got[16 * l + k], want, "lane {l} byte {k} ignore {}", ignore[l]);
        }
    }
}

#[test]
fn shared_memory_is_stale_until_the_wait() {
    let h = Harness::new();
    let mut rng = rng(52);
    let data = random_bytes(&mut rng, 512);
    let data2 = random_bytes(&mut rng, 512);
    let old = random_bytes(&mut rng, 512);
    let (src, src2) = (h.buffer(&data), h.buffer(&data2));
    let s = setup(&h, src, &old);
    let g2 = table(&h, &(0..32).map(|l| src2 + 16 * l).collect::<Vec<_>>());
    // Group 1 fills the lane's slot, group 2 the slot 512 bytes further; both are read
    // before any wait, after wait_group 1 and after wait_group 0.
    let body = format!(
        "{}  ld.global.u64 %rd6, [%rd1+{g2}];\n  st.shared.v4.u32 [%rd3+512], {{%r40, %r41, %r42, %r43}};\n  \
         cp.async.cg.shared.global [%rd3], [%rd2], 16;\n  cp.async.commit_group;\n  \
         cp.async.cg.shared.global [%rd3+512], [%rd6], 16;\n  cp.async.commit_group;\n{}  \
         cp.async.wait_group 1;\n{}  ld.shared.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd3+512];\n  st.global.v4.u32 [%rd5+1536], {{%r40, %r41, %r42, %r43}};\n  \
         cp.async.wait_group 0;\n  ld.shared.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd3+512];\n  st.global.v4.u32 [%rd5+1024], {{%r40, %r41, %r42, %r43}};\n  ret;",
        s.text,
        read(0),
        read(1),
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let got = h.read(s.gout, 2048);
    assert_eq!(&got[..512], &old[..], "before any wait: the old bytes");
    assert_eq!(&got[512..1024], &data[..], "wait_group 1 completes the older group");
    assert_eq!(&got[1536..2048], &old[..], "... but not the newer one");
    assert_eq!(&got[1024..1536], &data2[..], "wait_group 0 completes it");
}

fn fault_of(h: &Harness, body: &str) -> (Option<FaultKind>, String) {
    let e = h.run(&kernel_ptx("", body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap_err();
    (e.fault_kind(), e.to_string())
}

#[test]
fn the_source_is_checked_at_issue() {
    let h = Harness::new();
    let old = vec![7u8; 512];
    // Past the end of the source allocation (lane 31 reads bytes 496..512 of 500).
    let src = h.buffer(&[1u8; 500]);
    let s = setup(&h, src, &old);
    let (k, msg) =
        fault_of(&h, &format!("{}  cp.async.cg.shared.global [%rd3], [%rd2], 16;\n  ret;", s.text));
    assert_eq!(k, Some(FaultKind::IllegalAddress), "{msg}");
    assert!(msg.contains("cp.async") && msg.contains("thread (31, 0, 0)"), "{msg}");
    // Never-written source bytes.
    let src = h.uninit(512);
    let s = setup(&h, src, &old);
    let (k, msg) =
        fault_of(&h, &format!("{}  cp.async.cg.shared.global [%rd3], [%rd2], 16, 4;\n  ret;", s.text));
    assert_eq!(k, Some(FaultKind::UninitializedRead), "{msg}");
    // src-size above cp-size is undefined: refused.
    let src = h.buffer(&[1u8; 512]);
    let s = setup(&h, src, &old);
    let (k, msg) =
        fault_of(&h, &format!("{}  cp.async.ca.shared.global [%rd3], [%rd2], 8, 9;\n  ret;", s.text));
    assert_eq!(k, Some(FaultKind::IllegalInstruction), "{msg}");
    // Misaligned source.
    let (k, msg) =
        fault_of(&h, &format!("{}  cp.async.ca.shared.global [%rd3], [%rd2+4], 8;\n  ret;", s.text));
    assert_eq!(k, Some(FaultKind::Misaligned), "{msg}");
}

#[test]
fn completed_copies_are_seen_by_the_race_checker() {
    let h = Harness::new();
    let idx = idx8(&h);
    let data = h.buffer(&[3u8; 16]);
    let o = out(&h, 64);
    // Each lane of warp 0 copies into its own 16 shared bytes (lane 0: bytes 0..16) and waits;
    // warp 1 reads lane 0's bytes. Without a barrier between, that is a race; with bar.sync it
    // is not. (All lanes copying to one place would race among themselves.)
    let kernel = |barrier: &str| {
        let body = format!(
            "{REGS}{SMEM}  ld.global.u8 %rd1, [%tid.x+{idx}];\n  ld.global.u8 %p1, [%tid.y+{w}];\n  @%p1 bra READER;\n  \
             add.s64 %rd4, %rd1, %rd1;\n  \
             cp.async.ca.shared.global [%rd4], [{data}], 16;\n  cp.async.wait_all;\nREADER:\n{barrier}  @!%p1 bra DONE;\n  \
             ld.shared.u32 %r1, [4];\n  st.global.u64 [%rd1+{o}], %r1;\nDONE:\n  ret;",
            w = bytes(&h, &[0, 1])
        );
        h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 2, 1], 0, &[])
    };
    let e = kernel("").unwrap_err();
    assert_eq!(e.fault_kind(), Some(FaultKind::SharedRace), "{e}");
    kernel("  bar.sync 0;\n").unwrap();
    assert_eq!(h.read_u64(o, 1)[0], 0x0303_0303);
}

#[test]
fn scoped_spaces_and_cache_hints_are_accepted() {
    let h = Harness::new();
    let mut rng = rng(53);
    let data = random_bytes(&mut rng, 512);
    let s = setup(&h, h.buffer(&data), &[0u8; 512]);
    let policy = table(&h, &[0; 32]);
    let body = format!(
        "{}  ld.global.u64 %rd7, [%rd1+{policy}];\n  cp.async.cg.shared::cta.global.L2::cache_hint.L2::128B [%rd3], [%rd2], 16, 12, %rd7;\n  \
         cp.async.commit_group;\n  cp.async.wait_group 0;\n{}  ret;",
        s.text,
        read(0)
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let got = h.read(s.gout, 512);
    for l in 0..32 {
        assert_eq!(&got[16 * l..16 * l + 12], &data[16 * l..16 * l + 12]);
        assert_eq!(&got[16 * l + 12..16 * l + 16], &[0; 4]);
    }
}

#[test]
fn unsupported_cp_forms_are_refused() {
    let h = Harness::new();
    let body = format!(
        "{REGS}{SMEM}  cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%rd1], [%rd2], 16, [%rd3];\n  ret;"
    );
    let e = h.load(&kernel_ptx("", &body)).unwrap_err().to_string();
    assert!(e.contains("cp.async.bulk"), "{e}");
}
