//! The interpreter's speed in thread-instructions per second on one core: a loop of integer,
//! floating-point, compare and branch instructions (the mix of kiln's elementwise kernels) and
//! a shared-memory loop with a barrier, over 8 CTAs of 256 threads on a one-thread pool.
//!
//! `cargo bench -p kiln-softgpu --bench interpreter`; criterion's "elem/s" is thread-instructions
//! per second (the launch's own counter).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_softgpu::exec::{LaunchConfig, launch};
use kiln_softgpu::testing::{Harness, kernel_ptx};

const ALU_LOOP: &str = "
  .reg .pred %p<2>;
  .reg .b32 %r<8>;
  .reg .f32 %f<6>;
  .reg .b64 %rd<4>;
  ld.param.u64 %rd1, [p0];
  ld.param.u32 %r3, [p1];
  mov.u32 %r1, %tid.x;
  mov.u32 %r2, 0;
  cvt.rn.f32.u32 %f2, %r1;
  mov.f32 %f1, 0f3F800000;
$L_loop:
  fma.rn.f32 %f1, %f1, 0f3F7FF000, %f2;
  mul.f32 %f3, %f1, 0f3F000000;
  max.f32 %f1, %f3, 0fBF800000;
  mad.lo.s32 %r4, %r2, 3, %r1;
  xor.b32 %r5, %r4, %r2;
  shr.u32 %r6, %r5, 2;
  add.s32 %r2, %r2, 1;
  setp.lt.u32 %p1, %r2, %r3;
  @%p1 bra $L_loop;
  mul.wide.u32 %rd2, %r1, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.f32 [%rd3], %f1;
  ret;";

const SHARED_LOOP: &str = "
  .reg .pred %p<2>;
  .reg .b32 %r<10>;
  .reg .b64 %rd<4>;
  .shared .align 4 .b8 tile[1024];
  ld.param.u64 %rd1, [p0];
  ld.param.u32 %r3, [p1];
  mov.u32 %r1, %tid.x;
  shl.b32 %r7, %r1, 2;
  mov.u32 %r8, tile;
  add.s32 %r9, %r8, %r7;
  mov.u32 %r2, 0;
  st.shared.u32 [%r9], %r1;
$L_loop:
  bar.sync 0;
  ld.shared.u32 %r4, [%r9];
  add.s32 %r4, %r4, %r2;
  bar.sync 0;
  st.shared.u32 [%r9], %r4;
  add.s32 %r2, %r2, 1;
  setp.lt.u32 %p1, %r2, %r3;
  @%p1 bra $L_loop;
  mul.wide.u32 %rd2, %r1, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.u32 [%rd3], %r4;
  ret;";

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    let h = Harness::new();
    let mut group = c.benchmark_group("interpreter");
    for (name, body, iters) in [("alu_loop", ALU_LOOP, 200u32), ("shared_barrier_loop", SHARED_LOOP, 100)] {
        let ptx = kernel_ptx(".param .u64 p0, .param .u32 p1", body);
        let program = h.load(&ptx).expect("the bench kernel loads");
        let kernel = program.kernel("k").expect("kernel k");
        let out = h.uninit(256 * 4);
        let mut params = out.to_le_bytes().to_vec();
        params.extend_from_slice(&iters.to_le_bytes());
        params.resize(kernel.param_bytes as usize, 0);
        let cfg = LaunchConfig { grid: [8, 1, 1], block: [256, 1, 1], dynamic_shared: 0 };
        let view = Arc::clone(&h.device.memory).view();
        let run = || {
            pool.install(|| launch(kernel, &cfg, &params, &view, &h.device.spec, &h.options).expect("launch"))
        };
        let counters = run();
        println!("{name}: {counters}");
        group.throughput(Throughput::Elements(counters.thread_instructions));
        group.bench_function(name, |b| b.iter(|| black_box(run())));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
