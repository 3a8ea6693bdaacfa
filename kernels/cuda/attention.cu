// kernels/cuda/attention.cu: fused flash-attention forward (FlashAttention-2 style), bf16 and f16.
//
// O = softmax(scale * Q K^T) V for every (batch, head), reading and writing the runtime's layout
// directly: q and o are [B, Lq, H, D], k and v are [B, Lk, H, D], all contiguous, so one head's
// rows are a strided matrix with row stride H*D elements. No permutes, no score matrix in memory.
//
// Entry points (one per storage type and head dim, see the KILN_ATTN_ENTRY list at the end):
//   flash_attention_<bf16|f16>_d<D>(const T* q, const T* k, const T* v, T* o,
//                                   int batch, int heads, int len_q, int len_k, float scale,
//                                   int causal)
// Launch: grid (ceil(len_q / BM), heads, batch), block NW*32 threads, dynamic shared memory
// (BM + 4*BN) * (DP + 8) * sizeof(T) bytes (kernels/src/attention.rs computes all of it from the
// tile table below). Requirements checked by the launcher: len_k > 0, q/k/v/o 16-byte aligned
// (rows then are too: H*D*2 bytes is a multiple of 16 because every D is a multiple of 8).
//
// ----------------------------------------------------------------------------------------------
// Algorithm (Dao 2023, FlashAttention-2, forward pass)
// ----------------------------------------------------------------------------------------------
// One CTA owns BM consecutive query rows of one (b, h): blockIdx = (query tile, h, b); the query
// tile index varies fastest so the CTAs sharing one head's K/V run together and share them in L2.
// Its NW warps each own WM*16 of those rows (WM m16 tiles), so no reduction across warps is
// ever needed: every row's running max, running sum and output accumulator live in one warp.
//
// The CTA walks the keys in tiles of BN. K and V tiles are staged in shared memory by cp.async
// with two stages: while tile j is being used, tile j+1 is in flight. Per key tile, per warp:
//   S  = Q K^T                     mma.m16n8k16, Q fragments held in registers for the whole
//                                  loop, K fragments by ldmatrix from shared memory;
//   S *= scale * log2(e)           so that exp(scale*x - max) becomes one ex2.approx;
//   keys >= len_k -> -inf          only in the last tile, when len_k is not a multiple of BN;
//   keys > query row -> -inf       causal only, only in the tiles that cross the warp's
//                                  diagonal (see "Causal mask" below);
//   m' = max(m, rowmax(S))         f32, per row (4 lanes share a row: shuffle-xor 1, 2);
//   P  = exp2(S - m'), alpha = exp2(m - m'), l = alpha*l + rowsum(P) (per-lane partial sum),
//   O  = alpha*O + P V             P re-used from the S accumulators as A fragments (converted
//                                  to T), V fragments by ldmatrix.trans from shared memory.
// At the end each row's l is summed over its 4 lanes and O / l is written as T.
//
// Head dims that are not a multiple of 16 (40) are padded to DP (48) in shared memory: the pad
// columns of every Q, K and V row are zeroed once at kernel start and never written by cp.async,
// so they add 0 to Q K^T; the output columns >= D are computed (zeros) and not stored. Global
// memory is never read past a row's D elements.
// Rows past len_q (Q) and len_k (K, V) are zero-filled by cp.async with src-size 0 (no global
// read); masked keys get -inf scores, hence P = 0, so the zero V rows contribute exactly 0.
// Output rows past len_q are not stored.
//
// Causal mask (causal != 0; CLIP's text encoders, len_q == len_k checked by the launcher): query
// row i sees keys 0..=i. The CTA's last row is q_tile0 + BM - 1, so its key loop stops after
// tile ceil((q_tile0 + BM) / BN) - 1 (tiles past that are masked for every row of the CTA). A
// warp masks a tile only when the tile's last key, kv0 + BN - 1, lies past the warp's first row,
// q_tile0 + warp_row0; other tiles are wholly visible and take the unmasked path. Every row sees
// key 0, in tile 0, so its running max is finite from the first tile on: a later tile masked
// whole for some row gives p = exp2(-inf - m) = 0 and alpha = 1, leaving that row unchanged.
//
// ----------------------------------------------------------------------------------------------
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16" with .f16/.bf16 inputs)
// ----------------------------------------------------------------------------------------------
// lane = threadIdx.x % 32, g = lane / 4 ("groupID"), t = lane % 4 ("threadID_in_group").
// A (16x16, row-major), four .b32 registers, two elements each, lower-indexed column in the low
// half:  a0 = A[g][2t, 2t+1]   a1 = A[g+8][2t, 2t+1]   a2 = A[g][2t+8, 2t+9]   a3 = A[g+8][2t+8, 2t+9]
// B (16x8, "col": element (k, n)), two .b32 registers:
//        b0 = B[2t, 2t+1][g]   b1 = B[2t+8, 2t+9][g]
// C, D (16x8, f32), four registers:
//        c0, c1 = C[g][2t, 2t+1]   c2, c3 = C[g+8][2t, 2t+1]
// So each lane holds, per m16 tile, two rows of S and O: row g ("half 0", registers c0, c1) and
// row g+8 ("half 1", registers c2, c3), at columns 2t, 2t+1 of every n8 tile.
//
// ldmatrix.m8n8.x4: lanes 8i..8i+7 give the addresses of the 8 rows (16 bytes each) of matrix i;
// register ri receives matrix i, lane holding stored row g, columns 2t, 2t+1 (with .trans: stored
// rows 2t, 2t+1 of column g).
//   Q (A operand), m tile at row r0, k step at column c0: lane points at row r0 + lane%16,
//     column c0 + (lane/16)*8  ->  r0..r3 = a0..a3.
//   K (B operand of Q K^T; B(k=d, n=key) = K[key][d], K stored [key][d]): matrix i = keys
//     n0 + (i/2)*8 + 0..7, dims c0 + (i%2)*8 + 0..7, non-transposed -> lane gets K[n0+g][c0+2t..]
//     = b0 of key tile n0 (r0), b1 of key tile n0 (r1), b0, b1 of key tile n0+8 (r2, r3).
//   V (B operand of P V; B(k=key, n=d) = V[key][d], V stored [key][d]): matrix i = keys
//     k0 + (i%2)*8 + 0..7, dims n0 + (i/2)*8 + 0..7, transposed -> lane gets V[k0+2t..][n0+g]
//     = b0, b1 of dim tile n0 (r0, r1), b0, b1 of dim tile n0+8 (r2, r3).
//   P (A operand of P V) from the S accumulators of key tiles 2kk, 2kk+1 (keys 16kk..16kk+15):
//     a0 = S[2kk].c0c1, a1 = S[2kk].c2c3, a2 = S[2kk+1].c0c1, a3 = S[2kk+1].c2c3.
//
// Shared memory: Q [BM][DP+8], K [2][BN][DP+8], V [2][BN][DP+8], contiguous, all of T. A row is
// (DP+8)*2 bytes, an odd multiple of 16 for every DP used here (112, 144, 176, 272, 336), so the
// 8 row addresses of one ldmatrix phase fall in 8 distinct 16-byte bank groups: conflict-free.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace kiln_attn {

// -inf without <math.h> (not available under NVRTC).
#define KILN_NEG_INF (-__int_as_float(0x7f800000))

// ---------------------------------------------------------------------------------------------
// Tile table: KILN_ATTN_TILE(D, WM, NW, BN) = head dim, m16 tiles per warp, warps per CTA, keys
// per tile. BM = 16*WM*NW query rows per CTA. Mirrored by `TILES` in kernels/src/attention.rs; a
// test there parses these lines, so keep one per line in exactly this form.
// Registers: WM*(DP/16)*4 (Q) + WM*(BN/8)*4 (S) + WM*(DP/8)*4 (O) f32/b32 per thread.
// ---------------------------------------------------------------------------------------------
template <int D>
struct Tile;
#define KILN_ATTN_TILE(D_, WM_, NW_, BN_)                                                           \
    template <>                                                                                    \
    struct Tile<D_> {                                                                              \
        static constexpr int WM = WM_;                                                             \
        static constexpr int NW = NW_;                                                             \
        static constexpr int BN = BN_;                                                             \
    };
KILN_ATTN_TILE(40, 2, 4, 64)
KILN_ATTN_TILE(64, 2, 4, 64)
KILN_ATTN_TILE(80, 2, 4, 32)
KILN_ATTN_TILE(128, 1, 8, 64)
KILN_ATTN_TILE(160, 1, 4, 32)

// --------------------------------------------------------------------------------------------
// PTX wrappers
// --------------------------------------------------------------------------------------------

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; `valid == false` zero-fills the 16 bytes without reading `src`.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Per storage type: the mma instruction and packing two f32 into one .b32 (low half = first).
template <typename T>
struct Ops;

template <>
struct Ops<__nv_bfloat16> {
    static __device__ __forceinline__ void mma(float c[4], const unsigned a[4], unsigned b0, unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
            "{%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo (low 16 bits), .y = hi
        return *reinterpret_cast<unsigned*>(&v);
    }
};

template <>
struct Ops<__half> {
    static __device__ __forceinline__ void mma(float c[4], const unsigned a[4], unsigned b0, unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
            "{%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);  // .x = lo (low 16 bits), .y = hi
        return *reinterpret_cast<unsigned*>(&v);
    }
};

// Copies rows [row0, row0 + ROWS) of a strided [len, D] matrix into shared rows of SROW elements
// (D elements each); rows >= limit are zero-filled without touching global memory.
template <typename T, int D, int SROW, int ROWS, int NT>
__device__ __forceinline__ void load_rows(T* s, const T* g, size_t row_stride, int row0, int limit, int tid) {
    constexpr int CH = D / 8;  // 16-byte chunks per row
#pragma unroll
    for (int i0 = 0; i0 < ROWS * CH; i0 += NT) {
        const int i = i0 + tid;
        if ((ROWS * CH) % NT == 0 || i < ROWS * CH) {
            const int r = i / CH, c = i % CH;
            const bool valid = row0 + r < limit;
            const T* src = valid ? g + (size_t)(row0 + r) * row_stride + c * 8 : g;
            cp_async16(s + r * SROW + c * 8, src, valid);
        }
    }
}

extern __shared__ __align__(16) unsigned char kiln_attn_smem[];

template <typename T, int D>
__device__ __forceinline__ void flash_fwd(const T* __restrict__ q, const T* __restrict__ k,
                                          const T* __restrict__ v, T* __restrict__ o, int heads, int len_q,
                                          int len_k, float scale, int causal) {
    using Cfg = Tile<D>;
    constexpr int WM = Cfg::WM, NW = Cfg::NW, BN = Cfg::BN;
    constexpr int DP = (D + 15) / 16 * 16;  // head dim padded to the mma k step
    constexpr int BM = 16 * WM * NW;        // query rows per CTA
    constexpr int NT = 32 * NW;             // threads per CTA
    constexpr int SROW = DP + 8;            // shared row stride in elements (bank-conflict pad)
    constexpr int KD = DP / 16;             // k steps of Q K^T (over the head dim)
    constexpr int NS = BN / 8;              // n8 tiles of S per m tile (keys)
    constexpr int KP = BN / 16;             // k steps of P V (over the keys)
    constexpr int ND = DP / 8;              // n8 tiles of O per m tile (head dim)
    static_assert(D % 8 == 0 && BN % 16 == 0, "tile table");
    using O = Ops<T>;

    T* sQ = reinterpret_cast<T*>(kiln_attn_smem);  // [BM][SROW]
    T* sK = sQ + BM * SROW;                        // [2][BN][SROW]
    T* sV = sK + 2 * BN * SROW;                    // [2][BN][SROW]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int q_tile0 = blockIdx.x * BM;
    const int h = blockIdx.y, b = blockIdx.z;
    const size_t row_stride = (size_t)heads * D;  // elements between consecutive tokens
    const T* qg = q + ((size_t)b * len_q * heads + h) * D;  // token 0 of (b, h)
    const T* kg = k + ((size_t)b * len_k * heads + h) * D;
    const T* vg = v + ((size_t)b * len_k * heads + h) * D;
    T* og = o + ((size_t)b * len_q * heads + h) * D;

    // Zero the pad columns [D, DP) of every shared row once (Q, both K and V stages are one run
    // of BM + 4*BN rows); cp.async never writes them.
    if constexpr (DP > D) {
        constexpr int PC = (DP - D) / 8;
        for (int i = tid; i < (BM + 4 * BN) * PC; i += NT) {
            const int r = i / PC, c = i % PC;
            *reinterpret_cast<uint4*>(sQ + r * SROW + D + c * 8) = make_uint4(0, 0, 0, 0);
        }
    }

    // Key tiles to visit: all of them, or (causal) up to the one holding key q_tile0 + BM - 1.
    const int n_kv_all = (len_k + BN - 1) / BN;
    const int n_kv = causal ? min(n_kv_all, (q_tile0 + BM + BN - 1) / BN) : n_kv_all;
    load_rows<T, D, SROW, BM, NT>(sQ, qg, row_stride, q_tile0, len_q, tid);
    load_rows<T, D, SROW, BN, NT>(sK, kg, row_stride, 0, len_k, tid);
    load_rows<T, D, SROW, BN, NT>(sV, vg, row_stride, 0, len_k, tid);
    cp_async_commit();

    const float scale_log2 = scale * 1.4426950408889634f;
    unsigned qf[WM][KD][4];      // Q A fragments: m tile, k step (16 dims)
    float oacc[WM][ND][4];       // O accumulators: m tile, n8 dim tile, C fragment
    float m_run[WM][2], l_run[WM][2];  // per m tile, per half (row g, row g+8)
#pragma unroll
    for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            m_run[mt][r] = KILN_NEG_INF;
            l_run[mt][r] = 0.f;
        }
#pragma unroll
        for (int dt = 0; dt < ND; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) oacc[mt][dt][e] = 0.f;
    }

    // Per-lane ldmatrix offsets (elements), see the layout notes at the top.
    const int warp_row0 = warp * WM * 16;
    // Causal: the first key tile crossing this warp's diagonal, i.e. the first j whose last key
    // j*BN + BN - 1 lies past the warp's first row R = q_tile0 + warp_row0: j >= (R + 1) / BN.
    // Never, when not causal.
    const int diag_from = causal ? (q_tile0 + warp_row0 + 1) / BN : 0x7fffffff;
    const int q_off = (warp_row0 + (lane & 15)) * SROW + (lane >> 4) * 8;
    const int mi = lane >> 3, r8 = lane & 7;
    const int k_off = ((mi >> 1) * 8 + r8) * SROW + (mi & 1) * 8;
    const int v_off = ((mi & 1) * 8 + r8) * SROW + (mi >> 1) * 8;

#pragma unroll 1
    for (int j = 0; j < n_kv; ++j) {
        const int st = j & 1;
        // Prefetch tile j+1 into the other stage (freed by the barrier that ended iteration j-1),
        // then wait for tile j (and, at j = 0, Q).
        if (j + 1 < n_kv) {
            const int nst = st ^ 1;
            load_rows<T, D, SROW, BN, NT>(sK + nst * BN * SROW, kg, row_stride, (j + 1) * BN, len_k, tid);
            load_rows<T, D, SROW, BN, NT>(sV + nst * BN * SROW, vg, row_stride, (j + 1) * BN, len_k, tid);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        if (j == 0) {
#pragma unroll
            for (int mt = 0; mt < WM; ++mt)
#pragma unroll
                for (int kk = 0; kk < KD; ++kk) ldmatrix_x4(qf[mt][kk], sQ + q_off + mt * 16 * SROW + kk * 16);
        }

        // S = Q K^T for this warp's rows and the BN keys of the tile.
        const T* sKs = sK + st * BN * SROW;
        float sacc[WM][NS][4];
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
#pragma unroll
            for (int nt = 0; nt < NS; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) sacc[mt][nt][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
            for (int np = 0; np < NS / 2; ++np) {
                unsigned kb[4];
                ldmatrix_x4(kb, sKs + k_off + np * 16 * SROW + kk * 16);
#pragma unroll
                for (int mt = 0; mt < WM; ++mt) {
                    O::mma(sacc[mt][2 * np], qf[mt][kk], kb[0], kb[1]);
                    O::mma(sacc[mt][2 * np + 1], qf[mt][kk], kb[2], kb[3]);
                }
            }
        }

        // Scale into the exp2 domain; mask keys >= len_k (last tile only) and, when causal, keys
        // past the row (tiles crossing this warp's diagonal only). Lane holds key
        // j*BN + nt*8 + 2t + (e & 1) of row q_tile0 + warp_row0 + mt*16 + g + 8*(e >> 1) in
        // sacc[mt][nt][e].
        const int kv0 = j * BN;
        const bool partial = kv0 + BN > len_k;
        const bool diagonal = j >= diag_from;  // warp-uniform
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
#pragma unroll
            for (int nt = 0; nt < NS; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) sacc[mt][nt][e] *= scale_log2;
        if (partial || diagonal) {
            const int row_lane = q_tile0 + warp_row0 + (lane >> 2);  // row of mt = 0, e < 2
            const int key_lane = kv0 + 2 * (lane & 3);               // key of nt = 0, e = 0
#pragma unroll
            for (int mt = 0; mt < WM; ++mt)
#pragma unroll
                for (int nt = 0; nt < NS; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int key = key_lane + nt * 8 + (e & 1);
                        const int row = row_lane + mt * 16 + 8 * (e >> 1);
                        const int limit = diagonal ? min(len_k, row + 1) : len_k;
                        if (key >= limit) sacc[mt][nt][e] = KILN_NEG_INF;
                    }
        }

        // Online softmax, per m tile and half (r = 0: row g, registers e = 0, 1; r = 1: row g+8,
        // registers e = 2, 3). The 4 lanes of a quad hold the same rows: reduce with xor 1, 2.
#pragma unroll
        for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float mx = KILN_NEG_INF;
#pragma unroll
                for (int nt = 0; nt < NS; ++nt) mx = fmaxf(mx, fmaxf(sacc[mt][nt][2 * r], sacc[mt][nt][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m_run[mt][r], mx);
                // A row with every key so far masked keeps m = -inf; subtract 0 then, so that
                // exp2(-inf - m) is 0 rather than NaN. (Cannot happen with len_k > 0, kept for safety.)
                const float m_use = m_new == KILN_NEG_INF ? 0.f : m_new;
                const float alpha = ex2(m_run[mt][r] - m_use);  // 0 on the first tile
                m_run[mt][r] = m_new;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < NS; ++nt) {
#pragma unroll
                    for (int e = 2 * r; e < 2 * r + 2; ++e) {
                        const float p = ex2(sacc[mt][nt][e] - m_use);
                        sacc[mt][nt][e] = p;
                        sum += p;
                    }
                }
                l_run[mt][r] = l_run[mt][r] * alpha + sum;  // this lane's partial row sum
#pragma unroll
                for (int dt = 0; dt < ND; ++dt) {
                    oacc[mt][dt][2 * r] *= alpha;
                    oacc[mt][dt][2 * r + 1] *= alpha;
                }
            }
        }

        // O += P V: P as A fragments straight from the S accumulators (see the layout notes).
        const T* sVs = sV + st * BN * SROW;
#pragma unroll
        for (int kk = 0; kk < KP; ++kk) {
            unsigned pf[WM][4];
#pragma unroll
            for (int mt = 0; mt < WM; ++mt) {
                pf[mt][0] = O::pack(sacc[mt][2 * kk][0], sacc[mt][2 * kk][1]);
                pf[mt][1] = O::pack(sacc[mt][2 * kk][2], sacc[mt][2 * kk][3]);
                pf[mt][2] = O::pack(sacc[mt][2 * kk + 1][0], sacc[mt][2 * kk + 1][1]);
                pf[mt][3] = O::pack(sacc[mt][2 * kk + 1][2], sacc[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < DP / 16; ++dp) {
                unsigned vb[4];
                ldmatrix_x4_trans(vb, sVs + v_off + kk * 16 * SROW + dp * 16);
#pragma unroll
                for (int mt = 0; mt < WM; ++mt) {
                    O::mma(oacc[mt][2 * dp], pf[mt], vb[0], vb[1]);
                    O::mma(oacc[mt][2 * dp + 1], pf[mt], vb[2], vb[3]);
                }
            }
        }
        // Every warp is done with stage st before iteration j+1 prefetches tile j+2 into it.
        __syncthreads();
    }

    // Epilogue: full row sums over the quad, O / l, store T pairs. Lane holds row
    // q_tile0 + warp_row0 + mt*16 + g + 8r, dims dt*8 + 2t, +1 in oacc[mt][dt][2r], [2r+1].
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = l_run[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int row = q_tile0 + warp_row0 + mt * 16 + g + 8 * r;
            if (row < len_q) {
                T* dst = og + (size_t)row * row_stride + 2 * t;
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt)
                    *reinterpret_cast<unsigned*>(dst + dt * 8) =
                        O::pack(oacc[mt][dt][2 * r] * inv, oacc[mt][dt][2 * r + 1] * inv);
            }
        }
    }
}

}  // namespace kiln_attn

// ---------------------------------------------------------------------------------------------
// Entry points: flash_attention_<dtype>_d<D>. Listed by AttentionKernel::all() in Rust.
// `batch` is implied by gridDim.z and kept in the signature for the launcher's documentation.
// ---------------------------------------------------------------------------------------------
#define KILN_ATTN_ENTRY(TN, T, D)                                                                  \
    extern "C" __global__ void __launch_bounds__(kiln_attn::Tile<D>::NW * 32)                      \
        flash_attention_##TN##_d##D(const T* __restrict__ q, const T* __restrict__ k,              \
                                    const T* __restrict__ v, T* __restrict__ o, int batch,        \
                                    int heads, int len_q, int len_k, float scale, int causal) {   \
        (void)batch;                                                                               \
        kiln_attn::flash_fwd<T, D>(q, k, v, o, heads, len_q, len_k, scale, causal);                \
    }

KILN_ATTN_ENTRY(bf16, __nv_bfloat16, 40)
KILN_ATTN_ENTRY(bf16, __nv_bfloat16, 64)
KILN_ATTN_ENTRY(bf16, __nv_bfloat16, 80)
KILN_ATTN_ENTRY(bf16, __nv_bfloat16, 128)
KILN_ATTN_ENTRY(bf16, __nv_bfloat16, 160)
KILN_ATTN_ENTRY(f16, __half, 40)
KILN_ATTN_ENTRY(f16, __half, 64)
KILN_ATTN_ENTRY(f16, __half, 80)
KILN_ATTN_ENTRY(f16, __half, 128)
KILN_ATTN_ENTRY(f16, __half, 160)
