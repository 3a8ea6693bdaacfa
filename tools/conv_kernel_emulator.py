"""Emulates the index math of kernels/cuda/conv.cu in numpy, for checking it without a GPU.

Mirrors, step by step and thread by thread: the two loaders (VecLoader's per-thread (ky, kx, ci)
tracking advanced by BK without divisions, GenericLoader's per-element gathers), the padded shared
layout (pitch BK + 8) and the pipeline's stage indices, ldmatrix.x4 (lanes 8i..8i+7 address the
rows of matrix i; lane l receives row l/4, columns 2(l%4), 2(l%4)+1), mma.m16n8k16's A/B/C
fragment layouts as the PTX ISA gives them, and the epilogue (bias, residual, guarded stores,
every output written exactly once). Compares each variant with a direct convolution on small
integer-valued inputs (exact in f64).

What it cannot check: the hardware's own behaviour (asynchronous copies, barriers, the real
ldmatrix/mma semantics beyond this model of them), performance. It is a hand copy of the kernel's
logic, so keep it in step with conv.cu when the loaders or the tiling change.

Run: /work/venv/bin/python tools/conv_kernel_emulator.py [variant ...]   (numpy only; ~10 min for
all variants, pass e.g. `128x64` to run one)
"""
# Emulates conv.cu's index math (loaders, smem layout, ldmatrix, mma fragments, epilogue) in numpy.
import numpy as np, sys
THREADS, BK, LDS = 256, 32, 40

def ldmatrix_x4(smem, addrs):
    # addrs[l]: element address of row supplied by lane l. Returns r[j][l] = (lo, hi) pair.
    rows = np.stack([smem[a:a+8] for a in addrs])  # [32, 8]
    out = np.zeros((4, 32, 2))
    for j in range(4):
        mat = rows[8*j:8*j+8]  # rows of matrix j
        for l in range(32):
            out[j, l] = mat[l//4, 2*(l%4):2*(l%4)+2]
    return out

def mma(acc, a, b0, b1):
    # acc [32,4], a [4,32,2], b0,b1 [32,2]
    A = np.zeros((16,16)); B = np.zeros((16,8)); C = np.zeros((16,8))
    for l in range(32):
        g, t = l//4, l%4
        for c in range(2):
            A[g][2*t+c] = a[0,l,c]; A[g+8][2*t+c] = a[1,l,c]
            A[g][2*t+8+c] = a[2,l,c]; A[g+8][2*t+8+c] = a[3,l,c]
            B[2*t+c][g] = b0[l,c]; B[2*t+8+c][g] = b1[l,c]
            C[g][2*t+c] = acc[l,c]; C[g+8][2*t+c] = acc[l,2+c]
    D = C + A @ B
    for l in range(32):
        g, t = l//4, l%4
        for c in range(2):
            acc[l,c] = D[g][2*t+c]; acc[l,2+c] = D[g+8][2*t+c]

def run(x, w, bias, res, n, h, wd, cin, cout, kh, kw, stride, pad, BM, BN, BKp, WMS, WNS, STAGES, VEC):
    global BK, LDS
    BK = BKp; LDS = BK + 8
    CPR = BK//8; RP = THREADS//CPR
    ho = (h + 2*pad - kh)//stride + 1; wo = (wd + 2*pad - kw)//stride + 1
    M = n*ho*wo; K = kh*kw*cin
    y = np.full(M*cout, np.nan)
    WM, WN = BM//WMS, BN//WNS; MF, NF = WM//16, WN//8
    SE = (BM+BN)*LDS
    n_tiles = (cout+BN-1)//BN; m_tiles = (M+BM-1)//BM
    k_tiles = (K+BK-1)//BK
    for bid in range(m_tiles*n_tiles):
        m0 = (bid//n_tiles)*BM; n0 = (bid % n_tiles)*BN
        smem = np.full(STAGES*SE + 8, np.nan)
        # loader state per thread
        st = []
        for tid in range(THREADS):
            if VEC:
                col = tid % CPR; row0 = tid//CPR
                ab=[];iy0=[];ix0=[]
                for i in range(BM//RP):
                    m = m0+row0+i*RP
                    if m < M:
                        b = m//(ho*wo); r = m-b*ho*wo; oy = r//wo; ox = r-oy*wo
                        ab.append(b*h*wd*cin); iy0.append(oy*stride-pad); ix0.append(ox*stride-pad)
                    else: ab.append(-1); iy0.append(0); ix0.append(0)
                br = [ (n0+row0+i*RP)*K if n0+row0+i*RP < cout else -1 for i in range(BN//RP)]
                kg = col*8; tap = kg//cin; ci = kg-tap*cin; ky = tap//kw; kx = tap-ky*kw
                st.append(dict(col=col,row0=row0,ab=ab,iy0=iy0,ix0=ix0,br=br,kg=kg,ci=ci,ky=ky,kx=kx))
            else:
                st.append(dict(kc=tid%BK, row0=tid//BK, kt=0))
        rows = None
        if not VEC:
            rows = np.zeros(3*BM, dtype=np.int64)
            for r in range(BM):
                m = m0+r
                if m < M:
                    b = m//(ho*wo); rr = m-b*ho*wo; oy = rr//wo; ox = rr-oy*wo
                    rows[r]=b*h*wd*cin; rows[BM+r]=oy*stride-pad; rows[2*BM+r]=ox*stride-pad
                else: rows[r]=-1; rows[BM+r]=0; rows[2*BM+r]=0
        def issue(stage):
            As = stage*SE; Bs = As + BM*LDS
            for tid in range(THREADS):
                s = st[tid]
                if VEC:
                    kvalid = s['kg'] < K
                    for i in range(BM//RP):
                        iy = s['iy0'][i]+s['ky']; ix = s['ix0'][i]+s['kx']
                        v = kvalid and s['ab'][i] >= 0 and 0 <= iy < h and 0 <= ix < wd
                        dst = As + (s['row0']+i*RP)*LDS + s['col']*8
                        if v:
                            off = s['ab'][i] + (iy*wd+ix)*cin + s['ci']
                            assert off % 8 == 0 and off+8 <= len(x)
                            smem[dst:dst+8] = x[off:off+8]
                        else: smem[dst:dst+8] = 0
                    for i in range(BN//RP):
                        v = kvalid and s['br'][i] >= 0
                        dst = Bs + (s['row0']+i*RP)*LDS + s['col']*8
                        if v:
                            off = s['br'][i]+s['kg']; assert off % 8 == 0 and off+8 <= len(w)
                            smem[dst:dst+8] = w[off:off+8]
                        else: smem[dst:dst+8] = 0
                    s['kg'] += BK; s['ci'] += BK
                    while s['ci'] >= cin:
                        s['ci'] -= cin; s['kx'] += 1
                        if s['kx'] == kw: s['kx'] = 0; s['ky'] += 1
                else:
                    k = s['kt']*BK + s['kc']; s['kt'] += 1
                    kvalid = k < K; tap = k//cin; ci = k-tap*cin; ky = tap//kw; kx = tap-ky*kw
                    for i in range(BM//(THREADS//BK)):
                        r = s['row0']+i*(THREADS//BK); base = rows[r]; iy = rows[BM+r]+ky; ix = rows[2*BM+r]+kx
                        v = kvalid and base >= 0 and 0 <= iy < h and 0 <= ix < wd
                        smem[As + r*LDS + s['kc']] = x[base+(iy*wd+ix)*cin+ci] if v else 0
                    for i in range(BN//(THREADS//BK)):
                        r = s['row0']+i*(THREADS//BK); nn = n0+r
                        v = kvalid and nn < cout
                        smem[Bs + r*LDS + s['kc']] = w[nn*K+k] if v else 0
        acc = np.zeros((8, MF, NF, 32, 4))
        for s_ in range(STAGES-1):
            if s_ < k_tiles: issue(s_)
        L = np.arange(32)
        for kt in range(k_tiles):
            pf = kt+STAGES-1
            if pf < k_tiles: issue(pf % STAGES)
            sa = (kt % STAGES)*SE
            for warp in range(8):
                wm = warp % WMS; wn = warp // WMS
                a_off = (wm*WM + L % 16)*LDS + (L//16)*8
                b_off = BM*LDS + (wn*WN + L % 8 + (L//16)*8)*LDS + ((L//8) % 2)*8
                for ks in range(BK//16):
                    af = [ldmatrix_x4(smem, sa + a_off + i*16*LDS + ks*16) for i in range(MF)]
                    bf = [None]*NF
                    for jp in range(NF//2):
                        r = ldmatrix_x4(smem, sa + b_off + jp*16*LDS + ks*16)
                        bf[2*jp] = (r[0], r[1]); bf[2*jp+1] = (r[2], r[3])
                    for i in range(MF):
                        for j in range(NF):
                            mma(acc[warp, i, j], af[i], bf[j][0], bf[j][1])
        for warp in range(8):
            wm = warp % WMS; wn = warp // WMS
            for l in range(32):
                gq, tq = l//4, l%4
                for j in range(NF):
                    col = n0 + wn*WN + 8*j + 2*tq
                    if col >= cout: continue
                    vec_pairs = VEC and cout % 2 == 0
                    pair = vec_pairs or col+1 < cout
                    if vec_pairs: assert col+1 < cout
                    b0 = bias[col] if bias is not None else 0; b1 = bias[col+1] if (bias is not None and pair) else 0
                    for i in range(MF):
                        for hh in range(2):
                            row = m0 + wm*WM + 16*i + gq + 8*hh
                            if row >= M: continue
                            v0 = acc[warp,i,j,l,2*hh]+b0; v1 = acc[warp,i,j,l,2*hh+1]+b1
                            off = row*cout+col
                            if res is not None:
                                v0 += res[off]
                                if pair: v1 += res[off+1]
                            assert np.isnan(y[off]); y[off] = v0
                            if pair: assert np.isnan(y[off+1]); y[off+1] = v1
    return y, ho, wo

def ref(x, w, bias, res, n, h, wd, cin, cout, kh, kw, stride, pad):
    ho = (h + 2*pad - kh)//stride + 1; wo = (wd + 2*pad - kw)//stride + 1
    X = x.reshape(n,h,wd,cin); Xp = np.zeros((n,h+2*pad,wd+2*pad,cin)); Xp[:,pad:pad+h,pad:pad+wd] = X
    W = w.reshape(cout,kh,kw,cin)
    Y = np.zeros((n,ho,wo,cout))
    for ky in range(kh):
        for kx in range(kw):
            patch = Xp[:, ky:ky+stride*(ho-1)+1:stride, kx:kx+stride*(wo-1)+1:stride]
            Y += patch @ W[:,ky,kx,:].T
    Y = Y.reshape(-1)
    if bias is not None: Y = Y + np.tile(bias, n*ho*wo)
    if res is not None: Y = Y + res
    return Y

VARIANTS = {'128x128': (128,128,32,2,4,4,True), '128x128_k64': (128,128,64,2,4,3,True), '256x128': (256,128,32,4,2,4,True), '128x64': (128,64,32,4,2,4,True), 'generic': (128,64,32,4,2,2,False)}
if len(sys.argv) > 1: VARIANTS = {k: v for k, v in VARIANTS.items() if k in sys.argv[1:]}
cases = [ (1,5,6,16,128,3,3,1,1,True,True), (2,3,5,8,18,3,3,1,2,True,True), (1,9,11,24,64,3,3,2,1,False,True),
          (1,4,5,40,130,1,1,1,0,True,False), (1,6,7,64,66,3,3,1,1,True,True), (1,7,5,3,5,3,3,1,1,True,True),
          (1,9,7,5,7,5,3,3,2,True,False), (1,12,12,48,64,3,3,1,1,True,False),
          (1,6,5,72,32,3,3,1,1,True,True), (2,7,9,24,20,3,3,2,1,True,True),
          (1,9,10,16,3,3,3,1,1,True,True), (1,5,7,8,7,1,1,1,0,True,False),
          (1,17,17,24,130,3,3,1,1,True,True)]
rng = np.random.default_rng(0)
for c in cases:
    n,h,wd,cin,cout,kh,kw,stride,pad,hb,hr = c
    ho = (h + 2*pad - kh)//stride + 1; wo = (wd + 2*pad - kw)//stride + 1
    x = rng.integers(-3,4,n*h*wd*cin).astype(float); w = rng.integers(-3,4,cout*kh*kw*cin).astype(float)
    b = rng.integers(-3,4,cout).astype(float) if hb else None
    r = rng.integers(-3,4,n*ho*wo*cout).astype(float) if hr else None
    e = ref(x,w,b,r,n,h,wd,cin,cout,kh,kw,stride,pad)
    for name,(BM,BN,BKv,WMS,WNS,S,VEC) in VARIANTS.items():
        if VEC and cin % 8: continue
        y,_,_ = run(x,w,b,r,n,h,wd,cin,cout,kh,kw,stride,pad,BM,BN,BKv,WMS,WNS,S,VEC)
        bad = np.sum(~(np.abs(y-e) < 1e-9))
        print(c, name, 'OK' if bad == 0 else f'{bad} BAD', flush=True)
