/*
 * The native build of our kernels: ../ddpm_kernels.c as it is (through wasm_simd128.h here, the
 * same four-lane operations natively), and, for the kernels that carry most of a step's work, the
 * machine's vector width (16 floats with AVX-512, 8 with AVX2, 4 otherwise) and the pool's
 * threads. Each output is still summed in the order the wasm kernels sum it, one multiply-add
 * at a time (fused exactly where DDPM_FMA is), so every kernel gives the wasm module's bits, for
 * any number of threads.
 */
#include "../ddpm_kernels.c"

#include "pool.h"

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX2__)
#define VL 8
#else
#define VL 4
#endif

typedef float vf __attribute__((vector_size(VL * 4)));

static inline vf vload(const float* p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float* p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsplat(float f) {
  vf v = {0};
  return v + f;
}
#ifdef DDPM_FMA
static inline vf vmadd(vf a, vf b, vf c) {
  vf r;
  for (int l = 0; l < VL; l++) r[l] = fmaf(a[l], b[l], c[l]);
  return r;
}
#else
static inline vf vmadd(vf a, vf b, vf c) { return c + a * b; }
#endif

/*
 * Four rows of a product: o[r][j] (+)= Σ_p a[r·a_row + p·a_step]·b[p·ldb + j] for r < 4 and j < n
 * (a multiple of 4), p ascending, in 4 × 2 vectors of registers (then one vector of four lanes
 * at a time); `acc` adds to o instead of overwriting it. The strides make it both products: a's
 * rows (a_row = lda, a_step = 1) and a's columns (a_row = 1, a_step = lda, the transposed one).
 */
static inline void gemm_rows4(const float* a, long a_row, long a_step, const float* b, long ldb, int kk, int n,
                              float* o, long ldo, int acc) {
  int j = 0;
  for (; j + 2 * VL <= n; j += 2 * VL) {
    vf c[4][2];
    for (int r = 0; r < 4; r++)
      for (int h = 0; h < 2; h++) c[r][h] = acc ? vload(o + r * ldo + j + h * VL) : vsplat(0.0f);
    for (int p = 0; p < kk; p++) {
      const float* ap = a + p * a_step;
      const vf b0 = vload(b + p * ldb + j), b1 = vload(b + p * ldb + j + VL);
      for (int r = 0; r < 4; r++) {
        const vf ar = vsplat(ap[r * a_row]);
        c[r][0] = vmadd(ar, b0, c[r][0]);
        c[r][1] = vmadd(ar, b1, c[r][1]);
      }
    }
    for (int r = 0; r < 4; r++)
      for (int h = 0; h < 2; h++) vstore(o + r * ldo + j + h * VL, c[r][h]);
  }
  for (; j < n; j += 4) {
    v128_t c[4];
    for (int r = 0; r < 4; r++) c[r] = acc ? wasm_v128_load(o + r * ldo + j) : wasm_f32x4_splat(0.0f);
    for (int p = 0; p < kk; p++) {
      const float* ap = a + p * a_step;
      const v128_t b0 = wasm_v128_load(b + p * ldb + j);
      for (int r = 0; r < 4; r++) c[r] = MADD(wasm_f32x4_splat(ap[r * a_row]), b0, c[r]);
    }
    for (int r = 0; r < 4; r++) wasm_v128_store(o + r * ldo + j, c[r]);
  }
}

/*
 * out[i][j] (+)= Σ_p a[i·lda + p]·b[p·ldb + j] for rows × n outputs (n a multiple of 4), p
 * ascending; `acc` adds to out instead of overwriting it.
 */
static void gemm_wide(const float* a, long lda, const float* b, long ldb, int rows, int kk, int n, float* out,
                      long ldo, int acc) {
  int i = 0;
  for (; i + 4 <= rows; i += 4) gemm_rows4(a + (long)i * lda, lda, 1, b, ldb, kk, n, out + (long)i * ldo, ldo, acc);
  for (; i < rows; i++) {
    const float* ar = a + (long)i * lda;
    float* o = out + (long)i * ldo;
    int j = 0;
    for (; j + VL <= n; j += VL) {
      vf c = acc ? vload(o + j) : vsplat(0.0f);
      for (int p = 0; p < kk; p++) c = vmadd(vsplat(ar[p]), vload(b + p * ldb + j), c);
      vstore(o + j, c);
    }
    for (; j < n; j += 4) {
      v128_t c = acc ? wasm_v128_load(o + j) : wasm_f32x4_splat(0.0f);
      for (int p = 0; p < kk; p++) c = MADD(wasm_f32x4_splat(ar[p]), wasm_v128_load(b + p * ldb + j), c);
      wasm_v128_store(o + j, c);
    }
  }
}

/*
 * out[i][j] += Σ_t a[t·lda + i]·b[t·ldb + j] for i in [i0, i1) (a multiple of 4 apart) and j < n (a
 * multiple of 4), t ascending: gemm_tn_acc's sums, four rows of the output at a time.
 */
static void gemm_tn_wide(const float* a, long lda, const float* b, long ldb, int rows, int i0, int i1, int n,
                         float* out, long ldo) {
  for (int i = i0; i < i1; i += 4) gemm_rows4(a + i, 1, lda, b, ldb, rows, n, out + (long)i * ldo, ldo, 1);
}

/* ---- Winograd convolution: blocks of tiles on the pool ------------------------------------ */

typedef struct {
  const float *x, *u, *bias, *dy;
  int b, h, w, cin, cout;
  long tiles;
  float *y, *du;
  int groups; /* of the 16 positions, for the filter gradient */
} winograd_job;

static int block_tiles(const winograd_job* j, long t0) {
  return (int)(j->tiles - t0 < WINO_BLOCK ? j->tiles - t0 : WINO_BLOCK);
}

static void conv_block(void* ctx, long task, float* scratch) {
  const winograd_job* j = ctx;
  const long t0 = task * WINO_BLOCK;
  const int nt = block_tiles(j, t0);
  float* v = scratch;
  float* m = scratch + 16 * WINO_BLOCK * j->cin;
  input_block(j->x, j->h, j->w, j->cin, t0, nt, v);
  for (int xi = 0; xi < 16; xi++)
    gemm_wide(v + (long)xi * nt * j->cin, j->cin, j->u + (long)xi * j->cin * j->cout, j->cout, nt, j->cin, j->cout,
              m + (long)xi * nt * j->cout, j->cout, 0);
  output_block(m, j->bias, j->h, j->w, j->cout, t0, nt, j->y);
}

void native_winograd_conv(const float* x, const float* u, const float* bias, int b, int h, int w, int cin, int cout,
                          float* y, float* scratch) {
  const winograd_job job = {.x = x, .u = u, .bias = bias, .b = b, .h = h, .w = w, .cin = cin, .cout = cout,
                            .tiles = (long)b * ((h + 1) / 2) * ((w + 1) / 2), .y = y};
  const long blocks = (job.tiles + WINO_BLOCK - 1) / WINO_BLOCK;
  if (pool_run(blocks, conv_block, (void*)&job, 16L * WINO_BLOCK * (cin + cout)) != 0)
    winograd_conv(x, u, bias, b, h, w, cin, cout, y, scratch);
}

/* One group of the 16 positions, for every block in ascending order (each task transforms the blocks itself). */
static void filter_group(void* ctx, long task, float* scratch) {
  const winograd_job* j = ctx;
  const int from = (int)(task * 16 / j->groups), to = (int)((task + 1) * 16 / j->groups);
  float* v = scratch;
  float* dm = scratch + 16 * WINO_BLOCK * j->cin;
  for (long t0 = 0; t0 < j->tiles; t0 += WINO_BLOCK) {
    const int nt = block_tiles(j, t0);
    input_block(j->x, j->h, j->w, j->cin, t0, nt, v);
    output_grad_block(j->dy, j->h, j->w, j->cout, t0, nt, dm);
    for (int xi = from; xi < to; xi++)
      gemm_tn_wide(v + (long)xi * nt * j->cin, j->cin, dm + (long)xi * nt * j->cout, j->cout, nt, 0, j->cin, j->cout,
                   j->du + (long)xi * j->cin * j->cout, j->cout);
  }
}

void native_winograd_filter_products(const float* x, const float* dy, int b, int h, int w, int cin, int cout, float* du,
                                     float* scratch) {
  const int threads = pool_threads();
  const winograd_job job = {.x = x, .dy = dy, .b = b, .h = h, .w = w, .cin = cin, .cout = cout,
                            .tiles = (long)b * ((h + 1) / 2) * ((w + 1) / 2), .du = du,
                            .groups = threads < 16 ? threads : 16};
  zero_floats(du, 16L * cin * cout);
  if (pool_run(job.groups, filter_group, (void*)&job, 16L * WINO_BLOCK * (cin + cout)) != 0)
    winograd_filter_products(x, dy, b, h, w, cin, cout, du, scratch);
}

/* ---- the batched products of attention ------------------------------------------------------ */

typedef struct {
  const float *a, *b;
  int batch, m, k, n, t, chunks;
  float* out;
} matmul_job;

/* Rows of the output per task. */
#define MATMUL_ROWS 32

static void matmul_nn_rows(void* ctx, long task, float* scratch) {
  const matmul_job* j = ctx;
  const int z = (int)(task / j->chunks), r0 = (int)(task % j->chunks) * MATMUL_ROWS;
  const int rows = j->m - r0 < MATMUL_ROWS ? j->m - r0 : MATMUL_ROWS;
  gemm_wide(j->a + ((long)z * j->m + r0) * j->k, j->k, j->b + (long)z * j->k * j->n, j->n, rows, j->k, j->n,
            j->out + ((long)z * j->m + r0) * j->n, j->n, 0);
}

void native_matmul_nn(const float* a, const float* b, int batch, int m, int k, int n, float* out) {
  const matmul_job job = {.a = a, .b = b, .batch = batch, .m = m, .k = k, .n = n,
                          .chunks = (m + MATMUL_ROWS - 1) / MATMUL_ROWS, .out = out};
  if (pool_run((long)batch * job.chunks, matmul_nn_rows, (void*)&job, 0) != 0) matmul_nn(a, b, batch, m, k, n, out);
}

/* out[z][i][j] = Σ_t a[z][t][i]·b[z][t][j] for rows i of one task, t ascending in TN_CHUNK steps as matmul_tn. */
static void matmul_tn_rows(void* ctx, long task, float* scratch) {
  const matmul_job* j = ctx;
  const int z = (int)(task / j->chunks), i0 = (int)(task % j->chunks) * MATMUL_ROWS;
  const int i1 = j->m - i0 < MATMUL_ROWS ? j->m : i0 + MATMUL_ROWS;
  const float* az = j->a + (long)z * j->t * j->m;
  const float* bz = j->b + (long)z * j->t * j->n;
  float* o = j->out + (long)z * j->m * j->n;
  zero_floats(o + (long)i0 * j->n, (long)(i1 - i0) * j->n);
  for (int p0 = 0; p0 < j->t; p0 += TN_CHUNK) {
    const int rows = p0 + TN_CHUNK < j->t ? TN_CHUNK : j->t - p0;
    gemm_tn_wide(az + (long)p0 * j->m, j->m, bz + (long)p0 * j->n, j->n, rows, i0, i1, j->n, o, j->n);
  }
}

void native_matmul_tn(const float* a, const float* b, int batch, int t, int m, int n, float* out) {
  const matmul_job job = {.a = a, .b = b, .batch = batch, .m = m, .t = t, .n = n,
                          .chunks = (m + MATMUL_ROWS - 1) / MATMUL_ROWS, .out = out};
  if (pool_run((long)batch * job.chunks, matmul_tn_rows, (void*)&job, 0) != 0) matmul_tn(a, b, batch, t, m, n, out);
}

/* Threads the kernels use, the caller's included. */
void native_set_threads(int threads) { pool_set_threads(threads); }
