//! Launch mechanics: parameters, grids, faults and their reports.

use kiln_softgpu::fault::FaultKind;
use kiln_softgpu::testing::{Arg, Harness, kernel_ptx};

#[test]
fn copies_through_params_and_vectors() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[7, 8, 9, 10, 0, 0, 0, 0]);
    let ptx = kernel_ptx(
        ".param .u64 p0",
        "  .reg .b32 %r<5>;\n  .reg .b64 %rd<2>;\n  ld.param.u64 %rd1, [p0];\n  ld.global.v4.u32 {%r1, %r2, %r3, %r4}, [%rd1];\n  st.global.v4.u32 [%rd1+16], {%r4, %r3, %r2, %r1};\n  ret;",
    );
    h.run(&ptx, "k", [1, 1, 1], [1, 1, 1], 0, &[Arg::U64(buf)]).unwrap();
    assert_eq!(h.read_u32(buf, 8), vec![7, 8, 9, 10, 10, 9, 8, 7]);
}

#[test]
fn faults_name_kernel_thread_and_instruction() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[1, 2]);
    let ptx = kernel_ptx(
        ".param .u64 p0",
        "  .reg .b32 %r<2>;\n  .reg .b64 %rd<2>;\n  ld.param.u64 %rd1, [p0];\n  ld.global.u32 %r1, [%rd1+8];\n  ret;",
    );
    let e = h.run(&ptx, "k", [2, 1, 1], [3, 1, 1], 0, &[Arg::U64(buf)]).unwrap_err();
    assert_eq!(e.fault_kind(), Some(FaultKind::IllegalAddress));
    let msg = e.to_string();
    assert!(msg.contains("kernel k, block (0, 0, 0), thread (0, 0, 0)"), "{msg}");
    assert!(msg.contains("ld.global.u32 %r1, [%rd1+8]"), "{msg}");
    assert!(msg.contains("0 bytes past the end of allocation"), "{msg}");
}

#[test]
fn misaligned_vector_access() {
    let h = Harness::new();
    let buf = h.buffer_u32(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let ptx = kernel_ptx(
        ".param .u64 p0",
        "  .reg .b32 %r<3>;\n  .reg .b64 %rd<2>;\n  ld.param.u64 %rd1, [p0];\n  ld.global.v2.u32 {%r1, %r2}, [%rd1+4];\n  ret;",
    );
    let e = h.run(&ptx, "k", [1, 1, 1], [1, 1, 1], 0, &[Arg::U64(buf)]).unwrap_err();
    assert_eq!(e.fault_kind(), Some(FaultKind::Misaligned));
}
