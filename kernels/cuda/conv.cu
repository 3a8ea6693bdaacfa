// kernels/cuda/conv.cu: 2-d convolution as an implicit GEMM on the tensor cores.
//
// Layouts (all contiguous, row-major):
//   x        [N, H, W, Cin]          NHWC activations
//   w        [Cout, KH, KW, Cin]     OHWI weights = a row-major [Cout, K] matrix, K = KH*KW*Cin
//   bias     [Cout]                  optional (nullptr = none)
//   residual [N, Ho, Wo, Cout]       optional (nullptr = none), added after the bias
//   y        [N, Ho, Wo, Cout]       Ho = (H + 2*pad - KH)/stride + 1, Wo likewise
//
// The GEMM: y[m, n] = sum_k A[m, k] * B[k, n] (+ bias[n]) (+ residual[m, n]) with
//   m = (b*Ho + oy)*Wo + ox         (M = N*Ho*Wo output pixels; y is exactly a row-major [M, Cout])
//   n = output channel              (N_gemm = Cout)
//   k = (ky*KW + kx)*Cin + ci       (the OHWI row order of the weights)
//   A[m, k] = x[b, oy*stride - pad + ky, ox*stride - pad + kx, ci], zero outside the image
//   B[k, n] = w[n, k]               (B is held "column-major": row n of w is column n of B)
// A is never materialised: each CTA gathers its tile of A from x while loading it into shared memory.
//
// Entry points (T = __nv_bfloat16 or __half, f32 accumulation):
//   conv2d_<bf16|f16>_tiled_128x128   Cin % 8 == 0 (any Cout): 16-byte cp.async gathers,
//                                     CTA tile 128(M) x 128(N) x 32(K), 8 warps of 64x32, 4 stages
//   conv2d_<bf16|f16>_tiled_128x128_k64  the same with a K tile of 64 and 3 stages (half the barriers
//                                     per FLOP, 108 KB of shared memory)
//   conv2d_<bf16|f16>_tiled_256x128   CTA tile 256x128x32, 8 warps of 64x64 (fewer ldmatrix per mma:
//                                     0.25 vs 0.375), 4 stages, 120 KB, one CTA per SM; for large M
//   conv2d_<bf16|f16>_tiled_128x64    the same with an N tile of 64 (8 warps of 32x32), for Cout
//                                     that is not a multiple of 128 (320) or small
//   conv2d_<bf16|f16>_generic         any Cin, Cout: scalar guarded loads, CTA tile 128x64x32,
//                                     2 stages (the loads are synchronous), same tensor-core math
// All take (x, w, bias, residual, y, n, h, w, cin, cout, kh, kw, stride, pad, ho, wo) and a 1-d grid
// of ceil(M/BM) * ceil(Cout/BN) CTAs of 256 threads with dynamic shared memory
// STAGES * (BM + BN) * LDS * sizeof(T) bytes. The tile constants are mirrored in kernels/src/conv.rs
// (`ConvVariant::tile`); keep the two in step.
//
// Every index inside the kernel is 32-bit: the launcher refuses tensors of 2^31 elements or more.
// residual may alias y (each element is read and then written by the same thread); x, w, bias may not.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace kiln_conv {

constexpr int THREADS = 256;  // 8 warps
// BK (the K extent of one tile: BK/16 m16n8k16 steps) is a template parameter, 32 or 64; shared rows
// are padded by 8 elements: pitch LDS = BK + 8 (80 or 144 bytes), see "Bank conflicts" below.
template <int BK> struct Pitch { static constexpr int LDS = BK + 8; };

// ---------------------------------------------------------------------------------------------
// Element traits: the mma type name and the f32 pair -> T pair conversion.
// ---------------------------------------------------------------------------------------------
template <typename T> struct Elem;
template <> struct Elem<__nv_bfloat16> {
    typedef __nv_bfloat162 T2;
    static __device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }
    static __device__ __forceinline__ float2 to_f32x2(T2 v) { return __bfloat1622float2(v); }
    static __device__ __forceinline__ T2 from_f32x2(float a, float b) { return __floats2bfloat162_rn(a, b); }
};
template <> struct Elem<__half> {
    typedef __half2 T2;
    static __device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half from_f32(float v) { return __float2half_rn(v); }
    static __device__ __forceinline__ float2 to_f32x2(T2 v) { return __half22float2(v); }
    static __device__ __forceinline__ T2 from_f32x2(float a, float b) { return __floats2half2_rn(a, b); }
};

// ---------------------------------------------------------------------------------------------
// PTX wrappers.
// ---------------------------------------------------------------------------------------------

// 16-byte global -> shared copy that bypasses L1 (.cg). With src_bytes = 0 nothing is read and the
// 16 destination bytes are zero-filled (PTX ISA: cp.async "src-size" operand; bytes past src-size are
// zeros). `src` must still be a valid-looking address, so callers pass the tensor base when masked.
__device__ __forceinline__ void cp_async_16(unsigned dst, const void* src, bool valid) {
    int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ldmatrix.x4: four 8x8 matrices of 16-bit elements. Lanes 8i..8i+7 give the shared addresses of the
// 8 rows (16 contiguous bytes each) of matrix i; afterwards register r[i] of lane l holds matrix i's
// elements (row l/4, columns 2*(l%4) and 2*(l%4)+1), the low half being the lower column.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// D = A * B + D for one m16n8k16 tile, f32 accumulators.
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16" with .bf16/.f16), with
// g = lane / 4 (group) and t = lane % 4 (thread in group):
//   A (16x16, row-major), four .b32 registers of two elements each:
//     a[0] = A[g    ][2t, 2t+1]   a[1] = A[g + 8][2t, 2t+1]
//     a[2] = A[g    ][2t+8, 2t+9] a[3] = A[g + 8][2t+8, 2t+9]
//   B (16x8, "col": k down, n across), two registers:
//     b[0] = B[2t, 2t+1][g]       b[1] = B[2t+8, 2t+9][g]
//   C/D (16x8, f32): c[0], c[1] = C[g][2t, 2t+1]; c[2], c[3] = C[g + 8][2t, 2t+1]
template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};
template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

// ---------------------------------------------------------------------------------------------
// Problem description shared by the loaders and the epilogue.
// ---------------------------------------------------------------------------------------------
struct Geo {
    int h, w, cin, cout, kh, kw, stride, pad, ho, wo;
    int m;  // N*Ho*Wo
    int k;  // KH*KW*Cin
};

// ---------------------------------------------------------------------------------------------
// Shared-memory layout of one pipeline stage (elements of T):
//   As[BM][LDS]  rows = output pixels of the tile, columns = the BK values of k of this tile
//   Bs[BN][LDS]  rows = output channels of the tile, columns = the same BK values of k
// Only columns 0..BK-1 are used; the 8 extra elements pad each row to 80 (BK 32) or 144 (BK 64) bytes.
//
// Bank conflicts: ldmatrix reads, per 8-lane phase, 8 rows x 16 bytes at the same column. With an
// 80-byte pitch (20 words) the rows start at 4-byte banks 0, 20, 8, 28, 16, 4, 24, 12 (mod 32); with
// 144 bytes (36 words) at 0, 4, 8, ..., 28; each row covers 4 banks: all 32 distinct, no conflict.
// Every row start is 16-byte aligned (80 = 5 * 16, 144 = 9 * 16), as cp.async 16 and ldmatrix require.
// ---------------------------------------------------------------------------------------------

// Vectorised loader (Cin % 8 == 0): a tile row holds BK/8 chunks of 8 channels, and because
// Cin % 8 == 0 (so K % 8 == 0 too) a chunk never straddles two taps. Thread `tid` owns chunk column
// c = tid % (BK/8) and rows tid/(BK/8) + (THREADS/(BK/8))*i. It keeps, for the next tile to load,
// the decomposition of its k = kt*BK + 8c into (ky, kx, ci), advanced by BK per tile without
// divisions.
template <typename T, int BM, int BN, int BK>
struct VecLoader {
    static constexpr int LDS = Pitch<BK>::LDS;
    static constexpr int ROWS_PER_PASS = THREADS / (BK / 8);  // 64 (BK 32) or 32 (BK 64)
    static constexpr int A_ITERS = BM / ROWS_PER_PASS;
    static constexpr int B_ITERS = BN / ROWS_PER_PASS;
    static_assert(BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0, "tile rows");

    int a_base[A_ITERS];  // b*H*W*Cin of the row's image, or -1 when m >= M
    int a_iy0[A_ITERS];   // oy*stride - pad
    int a_ix0[A_ITERS];   // ox*stride - pad
    int b_row[B_ITERS];   // n*K, or -1 when n >= Cout
    int kglob;            // k of this thread's chunk in the next tile
    int ky, kx, ci;       // its decomposition
    int col;              // chunk column, 0..BK/8-1
    int row0;             // first row

    __device__ __forceinline__ void init(const Geo& g, int m0, int n0, int tid) {
        col = tid % (BK / 8);
        row0 = tid / (BK / 8);
#pragma unroll
        for (int i = 0; i < A_ITERS; ++i) {
            int m = m0 + row0 + i * ROWS_PER_PASS;
            if (m < g.m) {
                int hw = g.ho * g.wo;
                int b = m / hw;
                int r = m - b * hw;
                int oy = r / g.wo;
                int ox = r - oy * g.wo;
                a_base[i] = b * g.h * g.w * g.cin;
                a_iy0[i] = oy * g.stride - g.pad;
                a_ix0[i] = ox * g.stride - g.pad;
            } else {
                a_base[i] = -1;
                a_iy0[i] = 0;
                a_ix0[i] = 0;
            }
        }
#pragma unroll
        for (int i = 0; i < B_ITERS; ++i) {
            int n = n0 + row0 + i * ROWS_PER_PASS;
            b_row[i] = n < g.cout ? n * g.k : -1;
        }
        kglob = col * 8;
        int tap = kglob / g.cin;  // Cin may be 8 or 16, so the first chunk may already be past tap 0
        ci = kglob - tap * g.cin;
        ky = tap / g.kw;
        kx = tap - ky * g.kw;
    }

    // Issues the cp.asyncs of the next tile into stage buffers (As, Bs: shared addresses) and
    // advances to the tile after it.
    __device__ __forceinline__ void load(const Geo& g, const T* __restrict__ x, const T* __restrict__ w,
                                         unsigned As, unsigned Bs) {
        const bool kvalid = kglob < g.k;  // equivalently ky < KH
#pragma unroll
        for (int i = 0; i < A_ITERS; ++i) {
            int iy = a_iy0[i] + ky;
            int ix = a_ix0[i] + kx;
            bool v = kvalid && a_base[i] >= 0 && (unsigned)iy < (unsigned)g.h && (unsigned)ix < (unsigned)g.w;
            const T* src = v ? x + (a_base[i] + (iy * g.w + ix) * g.cin + ci) : x;
            unsigned dst = As + (unsigned)(((row0 + i * ROWS_PER_PASS) * LDS + col * 8) * sizeof(T));
            cp_async_16(dst, src, v);
        }
#pragma unroll
        for (int i = 0; i < B_ITERS; ++i) {
            bool v = kvalid && b_row[i] >= 0;
            const T* src = v ? w + (b_row[i] + kglob) : w;
            unsigned dst = Bs + (unsigned)(((row0 + i * ROWS_PER_PASS) * LDS + col * 8) * sizeof(T));
            cp_async_16(dst, src, v);
        }
        // Advance k by BK: ci may wrap over several taps when Cin < BK.
        kglob += BK;
        ci += BK;
        while (ci >= g.cin) {
            ci -= g.cin;
            if (++kx == g.kw) {
                kx = 0;
                ++ky;
            }
        }
    }
};

// Generic loader (any Cin, Cout): element-wise guarded loads, stored straight to shared memory.
// Thread `tid` owns column kc = tid % BK of the tile and rows tid/BK + (THREADS/BK)*i; with BK 32 a
// warp therefore reads
// 32 consecutive k of one row (contiguous channels within a tap) and writes 64 contiguous bytes.
// Per-row gather data for the BM rows of A live in shared memory (filled once by init()).
template <typename T, int BM, int BN, int BK>
struct GenericLoader {
    static constexpr int LDS = Pitch<BK>::LDS;
    static constexpr int ROWS_PER_PASS = THREADS / BK;  // 8 for BK 32
    int kc;    // column within the tile
    int row0;  // first row
    int kt;    // index of the next tile
    int* rows; // [3][BM] in shared memory: image base (-1: m >= M), oy*stride - pad, ox*stride - pad

    __device__ __forceinline__ void init(const Geo& g, int m0, int n0, int tid, int* row_info) {
        kc = tid % BK;
        row0 = tid / BK;
        kt = 0;
        rows = row_info;
        for (int r = tid; r < BM; r += THREADS) {
            int m = m0 + r;
            if (m < g.m) {
                int hw = g.ho * g.wo;
                int b = m / hw;
                int rr = m - b * hw;
                int oy = rr / g.wo;
                int ox = rr - oy * g.wo;
                rows[r] = b * g.h * g.w * g.cin;
                rows[BM + r] = oy * g.stride - g.pad;
                rows[2 * BM + r] = ox * g.stride - g.pad;
            } else {
                rows[r] = -1;
                rows[BM + r] = 0;
                rows[2 * BM + r] = 0;
            }
        }
        __syncthreads();
    }

    __device__ __forceinline__ void load(const Geo& g, const T* __restrict__ x, const T* __restrict__ w,
                                         int n0, T* As, T* Bs) {
        const T zero = Elem<T>::from_f32(0.f);
        int k = kt * BK + kc;
        ++kt;
        bool kvalid = k < g.k;
        int tap = k / g.cin;
        int ci = k - tap * g.cin;
        int ky = tap / g.kw;
        int kx = tap - ky * g.kw;
#pragma unroll 4
        for (int i = 0; i < BM / ROWS_PER_PASS; ++i) {
            int r = row0 + i * ROWS_PER_PASS;
            int base = rows[r];
            int iy = rows[BM + r] + ky;
            int ix = rows[2 * BM + r] + kx;
            bool v = kvalid && base >= 0 && (unsigned)iy < (unsigned)g.h && (unsigned)ix < (unsigned)g.w;
            As[r * LDS + kc] = v ? x[base + (iy * g.w + ix) * g.cin + ci] : zero;
        }
#pragma unroll 4
        for (int i = 0; i < BN / ROWS_PER_PASS; ++i) {
            int r = row0 + i * ROWS_PER_PASS;
            int n = n0 + r;  // rows of Bs are output channels
            bool v = kvalid && n < g.cout;
            Bs[r * LDS + kc] = v ? w[n * g.k + k] : zero;
        }
    }
};

template <typename T, int BM, int BN, int BK, bool VEC> struct VecOrGeneric;
template <typename T, int BM, int BN, int BK> struct VecOrGeneric<T, BM, BN, BK, true> {
    typedef VecLoader<T, BM, BN, BK> type;
};
template <typename T, int BM, int BN, int BK> struct VecOrGeneric<T, BM, BN, BK, false> {
    typedef GenericLoader<T, BM, BN, BK> type;
};

// ---------------------------------------------------------------------------------------------
// The kernel. 8 warps in a WARPS_M x WARPS_N grid; warp (wm, wn) owns rows wm*WM .. +WM and
// columns wn*WN .. +WN of the CTA tile, as MF x NF m16n8 accumulator tiles (MF = WM/16, NF = WN/8).
// ---------------------------------------------------------------------------------------------
template <typename T, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, bool VEC>
__device__ __forceinline__ void conv2d_body(const T* __restrict__ x, const T* __restrict__ w,
                                            const T* __restrict__ bias, const T* residual, T* y, int n_img,
                                            int h, int wd, int cin, int cout, int kh, int kw, int stride,
                                            int pad, int ho, int wo) {
    static_assert(WARPS_M * WARPS_N * 32 == THREADS, "8 warps");
    static_assert(BK % 16 == 0 && THREADS % BK == 0, "BK: whole k16 steps");
    constexpr int LDS = Pitch<BK>::LDS;
    constexpr int WM = BM / WARPS_M;
    constexpr int WN = BN / WARPS_N;
    constexpr int MF = WM / 16;
    constexpr int NF = WN / 8;
    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile: whole m16 tiles and pairs of n8 tiles");
    constexpr int STAGE_ELEMS = (BM + BN) * LDS;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    const unsigned smem_addr = (unsigned)__cvta_generic_to_shared(smem);

    Geo g;
    g.h = h; g.w = wd; g.cin = cin; g.cout = cout; g.kh = kh; g.kw = kw;
    g.stride = stride; g.pad = pad; g.ho = ho; g.wo = wo;
    g.m = n_img * ho * wo;
    g.k = kh * kw * cin;

    // Tile coordinates: N tiles vary fastest so the CTAs that share an A tile (the gathered input)
    // run close together in time and hit it in L2.
    const int n_tiles = (cout + BN - 1) / BN;
    const int m0 = (int)(blockIdx.x / n_tiles) * BM;
    const int n0 = (int)(blockIdx.x % n_tiles) * BN;
    const int tid = threadIdx.x;
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wm = warp % WARPS_M;
    const int wn = warp / WARPS_M;

    const int k_tiles = (g.k + BK - 1) / BK;

    float acc[MF][NF][4];
#pragma unroll
    for (int i = 0; i < MF; ++i)
#pragma unroll
        for (int j = 0; j < NF; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    // Loader state.
    typedef typename VecOrGeneric<T, BM, BN, BK, VEC>::type Loader;
    Loader loader;
    __shared__ int row_info[VEC ? 1 : 3 * BM];
    if constexpr (VEC) {
        loader.init(g, m0, n0, tid);
    } else {
        loader.init(g, m0, n0, tid, row_info);
    }
    auto issue = [&](int stage) {
        if constexpr (VEC) {
            unsigned as = smem_addr + (unsigned)(stage * STAGE_ELEMS * sizeof(T));
            loader.load(g, x, w, as, as + (unsigned)(BM * LDS * sizeof(T)));
        } else {
            T* as = smem + stage * STAGE_ELEMS;
            loader.load(g, x, w, n0, as, as + BM * LDS);
        }
    };

    // Prologue: tiles 0 .. STAGES-2 in flight, one commit group each (empty groups past the end keep
    // the group count uniform, so wait_group<STAGES-2> below always means "tile kt has landed").
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < k_tiles) issue(s);
        cp_async_commit();
    }

    // ldmatrix lane addressing (element offsets within a stage, before the k16 step offset):
    //   A, per m16 tile i: lane l gives row (l % 16) and column 8*(l / 16): lanes 0-7 -> rows 0-7,
    //     k 0-7 (a[0]); 8-15 -> rows 8-15, k 0-7 (a[1]); 16-23 -> rows 0-7, k 8-15 (a[2]);
    //     24-31 -> rows 8-15, k 8-15 (a[3]): exactly the A fragment above.
    //   B, per pair of n8 tiles (j, j+1): lane l gives row n = (l % 8) + 8*(l / 16) and column
    //     8*((l / 8) % 2): matrices = (n 0-7, k 0-7) = b[0] of tile j, (n 0-7, k 8-15) = b[1] of j,
    //     (n 8-15, k 0-7) = b[0] of j+1, (n 8-15, k 8-15) = b[1] of j+1. Bs rows are n with k
    //     contiguous, so a non-transposed ldmatrix gives lane l the pair B[k = 2t, 2t+1][n = g].
    const int a_lane_off = (wm * WM + (lane % 16)) * LDS + (lane / 16) * 8;
    const int b_lane_off = BM * LDS + (wn * WN + (lane % 8) + (lane / 16) * 8) * LDS + ((lane / 8) % 2) * 8;

    for (int kt = 0; kt < k_tiles; ++kt) {
        // Tile kt has landed for this thread's copies; the barrier makes everyone's visible and also
        // guarantees every warp finished computing on tile kt-1, whose stage is refilled next.
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            int pf = kt + STAGES - 1;
            if (pf < k_tiles) issue(pf % STAGES);
            cp_async_commit();
        }
        const unsigned stage_addr = smem_addr + (unsigned)((kt % STAGES) * STAGE_ELEMS * sizeof(T));
#pragma unroll
        for (int ks = 0; ks < BK / 16; ++ks) {
            unsigned af[MF][4];
            unsigned bf[NF][2];
#pragma unroll
            for (int i = 0; i < MF; ++i)
                ldmatrix_x4(af[i], stage_addr + (unsigned)((a_lane_off + i * 16 * LDS + ks * 16) * sizeof(T)));
#pragma unroll
            for (int jp = 0; jp < NF / 2; ++jp) {
                unsigned r[4];
                ldmatrix_x4(r, stage_addr + (unsigned)((b_lane_off + jp * 16 * LDS + ks * 16) * sizeof(T)));
                bf[2 * jp][0] = r[0];
                bf[2 * jp][1] = r[1];
                bf[2 * jp + 1][0] = r[2];
                bf[2 * jp + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < MF; ++i)
#pragma unroll
                for (int j = 0; j < NF; ++j) Mma<T>::run(acc[i][j], af[i], bf[j][0], bf[j][1]);
        }
    }
    // Drain the (empty) trailing groups before the CTA exits.
    cp_async_wait<0>();

    // Epilogue: accumulator (i, j, r) of lane (g, t) is C[row][col] with
    //   row = m0 + wm*WM + 16i + g + 8*(r / 2),  col = n0 + wn*WN + 8j + 2t + (r % 2).
    // The pair (r, r+1) for r = 0, 2 is two adjacent channels. y = acc + bias + residual.
    typedef typename Elem<T>::T2 T2;
    const int gq = lane / 4;
    const int tq = lane % 4;
#pragma unroll
    for (int j = 0; j < NF; ++j) {
        const int col = n0 + wn * WN + 8 * j + 2 * tq;
        if (col >= cout) continue;
        // Paired (4-byte) accesses when Cout is even: col is even, so off below is even and col+1 <
        // Cout. Odd Cout (the VAE's last conv, Cout = 3) takes the scalar path.
        const bool vec_pairs = VEC && (cout & 1) == 0;
        const bool pair = vec_pairs || col + 1 < cout;
        float b0 = 0.f, b1 = 0.f;
        if (bias != nullptr) {
            b0 = Elem<T>::to_f32(bias[col]);
            if (pair) b1 = Elem<T>::to_f32(bias[col + 1]);
        }
#pragma unroll
        for (int i = 0; i < MF; ++i) {
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int row = m0 + wm * WM + 16 * i + gq + 8 * hh;
                if (row >= g.m) continue;
                float v0 = acc[i][j][2 * hh] + b0;
                float v1 = acc[i][j][2 * hh + 1] + b1;
                const int off = row * cout + col;
                if (vec_pairs) {
                    if (residual != nullptr) {
                        float2 rv = Elem<T>::to_f32x2(*reinterpret_cast<const T2*>(residual + off));
                        v0 += rv.x;
                        v1 += rv.y;
                    }
                    *reinterpret_cast<T2*>(y + off) = Elem<T>::from_f32x2(v0, v1);
                } else {
                    if (residual != nullptr) {
                        v0 += Elem<T>::to_f32(residual[off]);
                        if (pair) v1 += Elem<T>::to_f32(residual[off + 1]);
                    }
                    y[off] = Elem<T>::from_f32(v0);
                    if (pair) y[off + 1] = Elem<T>::from_f32(v1);
                }
            }
        }
    }
}

}  // namespace kiln_conv

// ---------------------------------------------------------------------------------------------
// Entry points: (name, T, BM, BN, BK, WARPS_M, WARPS_N, STAGES, VEC, MIN_CTAS); BM, BN, BK and
// STAGES are mirrored in kernels/src/conv.rs (`ConvVariant::tile`, checked by a unit test).
// __launch_bounds__(256, MIN_CTAS): 1 CTA per SM for the 256x128 tile (64x64 warp tiles: 128
// accumulators per thread, ~215 registers), 2 (at most 128 registers per thread) for the
// 128x128 tiles, 3 (at most 85 registers) for the 128x64 ones, whose 60 KB of shared memory fit
// three times in an H100/H200 SM (228 KB; an A100's 164 KB hold two).
// ---------------------------------------------------------------------------------------------
#define KILN_CONV_ENTRY(NAME, T, BM, BN, BK, WMS, WNS, STAGES, VEC, MIN_CTAS)                                  \
    extern "C" __global__ void __launch_bounds__(kiln_conv::THREADS, MIN_CTAS)                                 \
        NAME(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,                     \
             const T* residual, T* y, int n, int h, int wd, int cin, int cout, int kh, int kw,                 \
             int stride, int pad, int ho, int wo) {                                                            \
        kiln_conv::conv2d_body<T, BM, BN, BK, WMS, WNS, STAGES, VEC>(x, w, bias, residual, y, n, h, wd, cin,   \
                                                                  cout, kh, kw, stride, pad, ho, wo);          \
    }

KILN_CONV_ENTRY(conv2d_bf16_tiled_128x128, __nv_bfloat16, 128, 128, 32, 2, 4, 4, true, 2)
KILN_CONV_ENTRY(conv2d_f16_tiled_128x128, __half, 128, 128, 32, 2, 4, 4, true, 2)
KILN_CONV_ENTRY(conv2d_bf16_tiled_128x128_k64, __nv_bfloat16, 128, 128, 64, 2, 4, 3, true, 2)
KILN_CONV_ENTRY(conv2d_f16_tiled_128x128_k64, __half, 128, 128, 64, 2, 4, 3, true, 2)
KILN_CONV_ENTRY(conv2d_bf16_tiled_256x128, __nv_bfloat16, 256, 128, 32, 4, 2, 4, true, 1)
KILN_CONV_ENTRY(conv2d_f16_tiled_256x128, __half, 256, 128, 32, 4, 2, 4, true, 1)
KILN_CONV_ENTRY(conv2d_bf16_tiled_128x64, __nv_bfloat16, 128, 64, 32, 4, 2, 4, true, 3)
KILN_CONV_ENTRY(conv2d_f16_tiled_128x64, __half, 128, 64, 32, 4, 2, 4, true, 3)
KILN_CONV_ENTRY(conv2d_bf16_generic, __nv_bfloat16, 128, 64, 32, 4, 2, 2, false, 3)
KILN_CONV_ENTRY(conv2d_f16_generic, __half, 128, 64, 32, 4, 2, 2, false, 3)
