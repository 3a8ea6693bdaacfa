//! The checks a GPU does not make, each through a small kernel: every fault has its kind, the
//! thread that made it and a message naming what is wrong; nothing hangs or panics.

use kiln_softgpu::fault::FaultKind;
use kiln_softgpu::testing::{Arg, Harness, kernel_ptx};

const REGS: &str = "  .reg .pred %p<4>;\n  .reg .b32 %r<16>;\n  .reg .b64 %rd<8>;\n  .reg .f32 %f<4>;\n";

/// Runs `body` as kernel `k(u64 p0)` on a grid of one block of `threads`; returns the error text.
fn fault(h: &Harness, threads: u32, body: &str, arg: u64, kind: FaultKind) -> String {
    let ptx = kernel_ptx(".param .u64 p0", &format!("{REGS}  ld.param.u64 %rd1, [p0];\n{body}\n  ret;"));
    let e = h.run(&ptx, "k", [1, 1, 1], [threads, 1, 1], 0, &[Arg::U64(arg)]).unwrap_err();
    assert_eq!(e.fault_kind(), Some(kind), "{e}");
    e.to_string()
}

#[test]
fn a_null_pointer_is_an_illegal_address() {
    let h = Harness::new();
    let msg = fault(&h, 32, "  ld.global.u32 %r1, [%rd1];", 0, FaultKind::IllegalAddress);
    assert!(msg.contains("at 0x0"), "{msg}");
}

#[test]
fn freed_memory_is_a_use_after_free() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[1, 2, 3, 4]);
    h.device.memory.free(buf).unwrap();
    let msg = fault(&h, 1, "  st.global.u32 [%rd1+4], 7;", buf, FaultKind::IllegalAddress);
    assert!(msg.contains("use after free"), "{msg}");
}

#[test]
fn reads_of_never_written_global_memory() {
    let h = Harness::new();
    let buf = h.uninit(64);
    let msg = fault(&h, 1, "  ld.global.f32 %f1, [%rd1+8];", buf, FaultKind::UninitializedRead);
    assert!(msg.contains("never-written device memory"), "{msg}");
}

#[test]
fn the_faulting_thread_is_named() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[0; 40]);
    // Thread t stores at word t: thread 40 is the first past the end.
    let body = "  mov.u32 %r1, %tid.x;\n  mul.wide.u32 %rd2, %r1, 4;\n  add.s64 %rd3, %rd1, %rd2;\n  st.global.u32 [%rd3], %r1;";
    let msg = fault(&h, 64, body, buf, FaultKind::IllegalAddress);
    assert!(msg.contains("thread (40, 0, 0)"), "{msg}");
}

#[test]
fn a_shared_memory_race_between_warps() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[0; 64]);
    // Every thread writes word tid % 32 of a shared tile: warps 0 and 1 write the same words
    // with no barrier between.
    let body = "  .shared .align 4 .b8 tile[128];\n  mov.u32 %r1, %tid.x;\n  and.b32 %r2, %r1, 31;\n  shl.b32 %r3, %r2, 2;\n  mov.u32 %r4, tile;\n  add.s32 %r5, %r4, %r3;\n  st.shared.u32 [%r5], %r1;";
    let msg = fault(&h, 64, body, buf, FaultKind::SharedRace);
    assert!(msg.contains("warp 1") && msg.contains("warp 0"), "{msg}");
}

#[test]
fn a_barrier_separates_writes_from_reads() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[0; 64]);
    // Thread t writes word t, then after the barrier reads word 63 - t (another warp's).
    let body = "  .shared .align 4 .b8 tile[256];\n  mov.u32 %r1, %tid.x;\n  shl.b32 %r3, %r1, 2;\n  mov.u32 %r4, tile;\n  add.s32 %r5, %r4, %r3;\n  st.shared.u32 [%r5], %r1;\n  bar.sync 0;\n  sub.s32 %r6, 252, %r3;\n  add.s32 %r7, %r4, %r6;\n  ld.shared.u32 %r8, [%r7];\n  mul.wide.u32 %rd2, %r1, 4;\n  add.s64 %rd3, %rd1, %rd2;\n  st.global.u32 [%rd3], %r8;";
    let ptx = kernel_ptx(".param .u64 p0", &format!("{REGS}  ld.param.u64 %rd1, [p0];\n{body}\n  ret;"));
    h.run(&ptx, "k", [1, 1, 1], [64, 1, 1], 0, &[Arg::U64(buf)]).unwrap();
    assert_eq!(h.read_u32(buf, 64), (0..64).rev().collect::<Vec<u32>>());
    // Without the barrier, warp 0 reads words warp 1 has not written yet.
    let racy = body.replace("  bar.sync 0;\n", "");
    fault(&h, 64, &racy, buf, FaultKind::UninitializedRead);
}

#[test]
fn a_barrier_some_threads_never_reach_is_a_deadlock() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[0; 4]);
    // Warp 0 waits at barrier 0 and warp 1 at barrier 1: neither can complete.
    let body = "  mov.u32 %r1, %tid.x;\n  setp.lt.u32 %p1, %r1, 32;\n  @%p1 bra $L_a;\n  bar.sync 1;\n  bra.uni $L_end;\n$L_a:\n  bar.sync 0;\n$L_end:";
    let msg = fault(&h, 64, body, buf, FaultKind::Deadlock);
    assert!(msg.contains("deadlock"), "{msg}");
}

#[test]
fn a_kernel_that_never_ends_stops_at_the_budget() {
    let mut h = Harness::new();
    h.options.budget_per_cta = 100_000;
    let body = "$L_spin:\n  add.s32 %r1, %r1, 1;\n  bra.uni $L_spin;";
    let msg = fault(&h, 32, body, 0, FaultKind::InstructionBudget);
    assert!(msg.contains("budget"), "{msg}");
}

#[test]
fn a_shuffle_whose_members_exited_is_refused() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[0; 32]);
    // Lanes 16..31 exit; the rest shuffle with a full member mask.
    let body = "  mov.u32 %r1, %tid.x;\n  setp.ge.u32 %p1, %r1, 16;\n  @%p1 ret;\n  shfl.sync.bfly.b32 %r2, %r1, 1, 31, -1;";
    let msg = fault(&h, 32, body, buf, FaultKind::BarrierDivergence);
    assert!(msg.contains("exited"), "{msg}");
}

#[test]
fn unknown_instructions_fail_the_load_naming_them() {
    let h = Harness::new();
    let ptx = kernel_ptx(".param .u64 p0", &format!("{REGS}  frobnicate.b32 %r1, %r2;\n  ret;"));
    let e = h.load(&ptx).unwrap_err().to_string();
    assert!(e.contains("frobnicate.b32") && e.contains("kernel k"), "{e}");
}

/// Lanes of one warp exchanging data through shared memory need a warp collective between the
/// write and the read (`__syncwarp`, as the CUDA programming guide requires since Volta).
#[test]
fn lanes_of_a_warp_need_a_collective_between_write_and_read() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[0; 32]);
    // Lane l writes word l, then reads word l ^ 1 (its neighbour's).
    let body = |sync: &str| {
        format!(
            "  .shared .align 4 .b8 tile[128];\n  mov.u32 %r1, %tid.x;\n  shl.b32 %r3, %r1, 2;\n  mov.u32 %r4, tile;\n  \
             add.s32 %r5, %r4, %r3;\n  st.shared.u32 [%r5], %r1;\n{sync}  xor.b32 %r6, %r3, 4;\n  add.s32 %r7, %r4, %r6;\n  \
             ld.shared.u32 %r8, [%r7];\n  mul.wide.u32 %rd2, %r1, 4;\n  add.s64 %rd3, %rd1, %rd2;\n  st.global.u32 [%rd3], %r8;"
        )
    };
    let msg = fault(&h, 32, &body(""), buf, FaultKind::SharedRace);
    assert!(msg.contains("lane 0 of warp 0") && msg.contains("no barrier or warp collective"), "{msg}");
    let ptx = kernel_ptx(
        ".param .u64 p0",
        &format!("{REGS}  ld.param.u64 %rd1, [p0];\n{}\n  ret;", body("  bar.warp.sync -1;\n")),
    );
    h.run(&ptx, "k", [1, 1, 1], [32, 1, 1], 0, &[Arg::U64(buf)]).unwrap();
    assert_eq!(h.read_u32(buf, 32), (0..32u32).map(|l| l ^ 1).collect::<Vec<_>>());
}
