/*
 * Float64 dense linear algebra for the Fréchet distance (../src/linalg/product-eigenvalues.ts
 * and linalg-wasm.ts), compiled by clang to a small WebAssembly module with a memory of its own
 * (build.cjs):
 *
 *   - gemm: C += ±op(A) op(B), packed panels and a 4 × 4 f64x2 register block (the Goto/BLIS
 *     layering: a kc × n panel of B, an mc × kc block of A, micro-tiles of both), with flags that
 *     skip the zero blocks of triangular operands and the half of a symmetric result not needed;
 *   - pstrf: Cholesky with complete (diagonal) pivoting, LAPACK's dpstrf, which stops at the
 *     numerical rank of a semi-definite matrix;
 *   - mirror_lower, gather_lower_half, sandwich: Lᵀ Pᵀ Σ P L from the factor and another
 *     covariance, in n³ operations as LAPACK's dsygst arranges it;
 *   - sytrd: Householder reduction of a symmetric matrix to tridiagonal form, LAPACK's dsytrd
 *     (dlatrd panels, dsyr2k updates through gemm, dsytd2 for the last block);
 *   - tridiagonal_ql: eigenvalues of a symmetric tridiagonal matrix by the implicit QL iteration
 *     (Golub & Van Loan, "Matrix Computations", §8.3.5), values only.
 *
 * Storage is column-major with a leading dimension, as in LAPACK. A symmetric matrix stored
 * row-major is the same bytes, so callers pass covariances as they are.
 *
 * Determinism: SIMD128 f64x2 multiplies and adds (never a fused multiply-add, never relaxed
 * SIMD), IEEE scalar operations, square roots by f64.sqrt, fixed block sizes and summation
 * orders, one thread: every CPU computes the same bits. No static data; work buffers come from
 * the caller. `progress` (imported) is called between blocks so that a caller can show life.
 */
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
/*
 * V8 runs a function's first calls in baseline (Liftoff) code and swaps in optimised code only
 * for later calls, so every hot loop lives in a function called many times, never inlined into
 * a long-running caller.
 */
#define HOT __attribute__((noinline))

__attribute__((import_module("env"), import_name("progress"))) void progress(void);

typedef v128_t V;
#define LD(p) wasm_v128_load(p)
#define ST(p, v) wasm_v128_store(p, v)
#define SPLAT(p) wasm_v128_load64_splat(p)
#define ADD wasm_f64x2_add
#define SUB wasm_f64x2_sub
#define MUL wasm_f64x2_mul

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline double dabs(double x) { return __builtin_fabs(x); }
static inline double dsqrt(double x) { return __builtin_sqrt(x); }
static inline double hsum(V v) { return wasm_f64x2_extract_lane(v, 0) + wasm_f64x2_extract_lane(v, 1); }

/* ---------------------------------------------------------------------------------------------
 * gemm
 * ------------------------------------------------------------------------------------------- */

#define GEMM_TRANS_A 1  /* op(A) = Aᵀ */
#define GEMM_TRANS_B 2  /* op(B) = Bᵀ */
#define GEMM_NEGATE 4   /* C −= op(A) op(B) */
#define GEMM_LOWER 8    /* only C(i, j) with i ≥ j is updated (a symmetric result, dsyrk/dsyr2k) */
#define GEMM_A_UPPER 16 /* op(A)(i, k) = 0 for i > k (Lᵀ of a lower-triangular L): skipped */
#define GEMM_B_LOWER 32 /* op(B)(k, j) = 0 for j > k (a lower-triangular L): skipped */
#define GEMM_A_LOWER 64 /* op(A)(i, k) = 0 for i < k (a lower-triangular S): skipped */

enum { KC = 256, MC = 128 };

/* Doubles of work gemm needs for n columns of C. */
EXPORT(gemm_work_size)
int gemm_work_size(int n) { return KC * (((n + 3) & ~3) + MC) + 16; }

/*
 * ap[p][k][r] = ±op(A)(i0 + 4p + r, k0 + k): micro-panels of 4 rows, k-major, zero rows past mc.
 * The sign is applied here, exactly, so that the kernel only ever adds.
 */
HOT static void pack_a(int flags, const double* a, int lda, int i0, int mc, int k0, int kc, double* ap) {
  const int neg = flags & GEMM_NEGATE;
  const V sign = wasm_f64x2_splat(neg ? -1.0 : 1.0);
  for (int p = 0; p < mc; p += 4) {
    const int rows = imin(4, mc - p);
    if (!(flags & GEMM_TRANS_A) && rows == 4) {
      const double* src = a + (i0 + p) + k0 * lda;
      for (int k = 0; k < kc; k++, src += lda, ap += 4) {
        ST(ap, MUL(LD(src), sign));
        ST(ap + 2, MUL(LD(src + 2), sign));
      }
      continue;
    }
    for (int k = 0; k < kc; k++, ap += 4) {
      for (int r = 0; r < 4; r++) {
        double v = 0.0;
        if (r < rows) {
          const int i = i0 + p + r;
          v = (flags & GEMM_TRANS_A) ? a[(k0 + k) + i * lda] : a[i + (k0 + k) * lda];
        }
        ap[r] = neg ? -v : v;
      }
    }
  }
}

/* bp[q][k][c] = op(B)(k0 + k, 4q + c): micro-panels of 4 columns, k-major, zero columns past n. */
HOT static void pack_b(int flags, const double* b, int ldb, int k0, int kc, int n, double* bp) {
  for (int q = 0; q < n; q += 4) {
    const int cols = imin(4, n - q);
    if ((flags & GEMM_TRANS_B) && cols == 4) {
      const double* src = b + q + k0 * ldb;
      for (int k = 0; k < kc; k++, src += ldb, bp += 4) {
        ST(bp, LD(src));
        ST(bp + 2, LD(src + 2));
      }
      continue;
    }
    for (int k = 0; k < kc; k++, bp += 4) {
      for (int c = 0; c < 4; c++) {
        const int j = q + c;
        bp[c] = c >= cols ? 0.0 : (flags & GEMM_TRANS_B) ? b[j + (k0 + k) * ldb] : b[(k0 + k) + j * ldb];
      }
    }
  }
}

/*
 * C[0..4, 0..4] += Σ_k ap[k][·] bp[k][·]ᵀ: 8 accumulators of two rows each, two vector loads of
 * A and four splats of B feed 8 multiplies and 8 adds per k. The sum over this kc block is formed
 * first and added to C once.
 */
HOT static void kernel_4x4(int kc, const double* ap, const double* bp, double* c, int ldc) {
  V c00 = wasm_f64x2_splat(0.0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int k = 0; k < kc; k++, ap += 4, bp += 4) {
    const V a0 = LD(ap), a1 = LD(ap + 2);
    V b = SPLAT(bp);
    c00 = ADD(c00, MUL(a0, b));
    c01 = ADD(c01, MUL(a1, b));
    b = SPLAT(bp + 1);
    c10 = ADD(c10, MUL(a0, b));
    c11 = ADD(c11, MUL(a1, b));
    b = SPLAT(bp + 2);
    c20 = ADD(c20, MUL(a0, b));
    c21 = ADD(c21, MUL(a1, b));
    b = SPLAT(bp + 3);
    c30 = ADD(c30, MUL(a0, b));
    c31 = ADD(c31, MUL(a1, b));
  }
  ST(c, ADD(LD(c), c00));
  ST(c + 2, ADD(LD(c + 2), c01));
  c += ldc;
  ST(c, ADD(LD(c), c10));
  ST(c + 2, ADD(LD(c + 2), c11));
  c += ldc;
  ST(c, ADD(LD(c), c20));
  ST(c + 2, ADD(LD(c + 2), c21));
  c += ldc;
  ST(c, ADD(LD(c), c30));
  ST(c + 2, ADD(LD(c + 2), c31));
}

/*
 * A micro-tile on an edge of C or across the diagonal of a GEMM_LOWER result: the kernel writes
 * into a zeroed tile, whose entries inside C (and on or below the diagonal) are then added. The
 * sums are the same bits as the direct path's (0 + s = s, then c + s).
 */
HOT static void edge_tile(int kc, const double* ap, const double* bp, double* c, int ldc, int rows, int cols, int diag, double* tile) {
  for (int t = 0; t < 16; t++) tile[t] = 0.0;
  kernel_4x4(kc, ap, bp, tile, 4);
  for (int j = 0; j < cols; j++)
    for (int i = 0; i < rows; i++)
      if (i - j >= diag) c[i + j * ldc] += tile[i + 4 * j];
}

/*
 * C(m × n) += ±op(A)(m × k) · op(B)(k × n), column-major, with the flags above. Loops: for each
 * kc block of k, pack B's kc × n panel (L3), then for each mc block of rows pack A (L2) and run
 * the 4 × 4 kernel over the micro-tiles (B's micro-panel stays in L1). `work` holds
 * gemm_work_size(n) doubles.
 */
EXPORT(gemm)
void gemm(int flags, int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c, int ldc, double* work) {
  double* bp = work;
  double* ap = bp + KC * ((n + 3) & ~3);
  double* tile = ap + MC * KC;
  const int lower = flags & GEMM_LOWER;
  for (int pc = 0; pc < k; pc += KC) {
    const int kc = imin(KC, k - pc);
    const int mStart = (flags & GEMM_A_LOWER) ? imin(m, pc) : 0;
    const int mEnd = (flags & GEMM_A_UPPER) ? imin(m, pc + kc) : m;
    int nEnd = (flags & GEMM_B_LOWER) ? imin(n, pc + kc) : n;
    if (lower) nEnd = imin(nEnd, mEnd);
    if (mEnd <= 0 || nEnd <= 0) continue;
    pack_b(flags, b, ldb, pc, kc, nEnd, bp);
    for (int ic = mStart; ic < mEnd; ic += MC) {
      const int mc = imin(MC, mEnd - ic);
      const int jEnd = lower ? imin(nEnd, ic + mc) : nEnd;
      pack_a(flags, a, lda, ic, mc, pc, kc, ap);
      for (int jr = 0; jr < jEnd; jr += 4) {
        const double* bq = bp + jr * kc;
        const int cols = imin(4, jEnd - jr);
        /* Tiles wholly above the diagonal (every i < j) are skipped. */
        for (int ir = lower ? imax(0, jr - ic) : 0; ir < mc; ir += 4) {
          double* cp = c + (ic + ir) + jr * ldc;
          const int rows = imin(4, mc - ir);
          const int straddles = lower && ic + ir < jr + 3;
          if (rows == 4 && cols == 4 && !straddles) kernel_4x4(kc, ap + ir * kc, bq, cp, ldc);
          else edge_tile(kc, ap + ir * kc, bq, cp, ldc, rows, cols, lower ? jr - (ic + ir) : -4, tile);
        }
      }
    }
    progress();
  }
}

/* ---------------------------------------------------------------------------------------------
 * Level-2 pieces (vectorised over contiguous columns)
 * ------------------------------------------------------------------------------------------- */

/* y[0..m) −= Σ_c x[c·incx] · A(0..m, c), c < cols: four columns per pass over y. */
HOT static void gemv_n_sub(int m, int cols, const double* a, int lda, const double* x, int incx, double* y) {
  int c = 0;
  for (; c + 4 <= cols; c += 4) {
    const double* a0 = a + c * lda;
    const double* a1 = a0 + lda;
    const double* a2 = a1 + lda;
    const double* a3 = a2 + lda;
    const double x0 = x[c * incx], x1 = x[(c + 1) * incx], x2 = x[(c + 2) * incx], x3 = x[(c + 3) * incx];
    const V v0 = wasm_f64x2_splat(x0), v1 = wasm_f64x2_splat(x1), v2 = wasm_f64x2_splat(x2), v3 = wasm_f64x2_splat(x3);
    int i = 0;
    for (; i + 2 <= m; i += 2) {
      const V t = ADD(ADD(MUL(LD(a0 + i), v0), MUL(LD(a1 + i), v1)), ADD(MUL(LD(a2 + i), v2), MUL(LD(a3 + i), v3)));
      ST(y + i, SUB(LD(y + i), t));
    }
    for (; i < m; i++) y[i] -= (a0[i] * x0 + a1[i] * x1) + (a2[i] * x2 + a3[i] * x3);
  }
  for (; c < cols; c++) {
    const double* a0 = a + c * lda;
    const double x0 = x[c * incx];
    const V v0 = wasm_f64x2_splat(x0);
    int i = 0;
    for (; i + 2 <= m; i += 2) ST(y + i, SUB(LD(y + i), MUL(LD(a0 + i), v0)));
    for (; i < m; i++) y[i] -= a0[i] * x0;
  }
}

HOT static void zero(double* p, int count) {
  for (int i = 0; i < count; i++) p[i] = 0.0;
}

HOT static void copy(int m, const double* src, double* dst) {
  for (int i = 0; i < m; i++) dst[i] = src[i];
}

/* Σ_i a[i] b[i], two lanes then folded. */
HOT static double dot(int m, const double* a, const double* b) {
  V s = wasm_f64x2_splat(0.0);
  int i = 0;
  for (; i + 2 <= m; i += 2) s = ADD(s, MUL(LD(a + i), LD(b + i)));
  double t = hsum(s);
  for (; i < m; i++) t += a[i] * b[i];
  return t;
}

/* y[c] = A(0..m, c) · x for c < cols (dgemv 'T', β = 0). */
static void gemv_t(int m, int cols, const double* a, int lda, const double* x, double* y) {
  for (int c = 0; c < cols; c++) y[c] = dot(m, a + c * lda, x);
}

/* y[0..m) += α x[0..m). */
HOT static void axpy(int m, double alpha, const double* x, double* y) {
  const V va = wasm_f64x2_splat(alpha);
  int i = 0;
  for (; i + 2 <= m; i += 2) ST(y + i, ADD(LD(y + i), MUL(va, LD(x + i))));
  for (; i < m; i++) y[i] += alpha * x[i];
}

HOT static void scal(int m, double alpha, double* x) {
  const V va = wasm_f64x2_splat(alpha);
  int i = 0;
  for (; i + 2 <= m; i += 2) ST(x + i, MUL(va, LD(x + i)));
  for (; i < m; i++) x[i] *= alpha;
}

/*
 * y = A x for the symmetric n × n A of which the lower triangle is stored (dsymv 'L', α = 1,
 * β = 0). Four columns per pass: each stored entry below their diagonal block serves twice, once
 * for y(i) (an axpy of the four columns) and once for y(j) (a dot product), so the triangle is
 * read once and y is read and written once per four columns.
 */
HOT static void symv_lower(int n, const double* a, int lda, const double* x, double* y) {
  for (int i = 0; i < n; i++) y[i] = 0.0;
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    const double* c0 = a + j * lda;
    const double* c1 = c0 + lda;
    const double* c2 = c1 + lda;
    const double* c3 = c2 + lda;
    const double x0 = x[j], x1 = x[j + 1], x2 = x[j + 2], x3 = x[j + 3];
    /* The diagonal block, lower part. */
    double y0 = c0[j] * x0 + c0[j + 1] * x1 + c0[j + 2] * x2 + c0[j + 3] * x3;
    double y1 = c0[j + 1] * x0 + c1[j + 1] * x1 + c1[j + 2] * x2 + c1[j + 3] * x3;
    double y2 = c0[j + 2] * x0 + c1[j + 2] * x1 + c2[j + 2] * x2 + c2[j + 3] * x3;
    double y3 = c0[j + 3] * x0 + c1[j + 3] * x1 + c2[j + 3] * x2 + c3[j + 3] * x3;
    const V v0 = wasm_f64x2_splat(x0), v1 = wasm_f64x2_splat(x1), v2 = wasm_f64x2_splat(x2), v3 = wasm_f64x2_splat(x3);
    V s0 = wasm_f64x2_splat(0.0), s1 = s0, s2 = s0, s3 = s0;
    int i = j + 4;
    for (; i + 2 <= n; i += 2) {
      const V xi = LD(x + i);
      const V a0 = LD(c0 + i), a1 = LD(c1 + i), a2 = LD(c2 + i), a3 = LD(c3 + i);
      ST(y + i, ADD(LD(y + i), ADD(ADD(MUL(a0, v0), MUL(a1, v1)), ADD(MUL(a2, v2), MUL(a3, v3)))));
      s0 = ADD(s0, MUL(a0, xi));
      s1 = ADD(s1, MUL(a1, xi));
      s2 = ADD(s2, MUL(a2, xi));
      s3 = ADD(s3, MUL(a3, xi));
    }
    y0 += hsum(s0);
    y1 += hsum(s1);
    y2 += hsum(s2);
    y3 += hsum(s3);
    for (; i < n; i++) {
      const double xi = x[i];
      y[i] += (c0[i] * x0 + c1[i] * x1) + (c2[i] * x2 + c3[i] * x3);
      y0 += c0[i] * xi;
      y1 += c1[i] * xi;
      y2 += c2[i] * xi;
      y3 += c3[i] * xi;
    }
    y[j] += y0;
    y[j + 1] += y1;
    y[j + 2] += y2;
    y[j + 3] += y3;
  }
  for (; j < n; j++) {
    const double* cj = a + j * lda;
    const double xj = x[j];
    double yj = cj[j] * xj;
    for (int i = j + 1; i < n; i++) {
      y[i] += cj[i] * xj;
      yj += cj[i] * x[i];
    }
    y[j] += yj;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Pivoted Cholesky (dpstrf)
 * ------------------------------------------------------------------------------------------- */

enum { PSTRF_NB = 64 };

/* Swaps the rows and columns j < p of the symmetric matrix whose lower triangle is stored (dpstrf). */
static void swap_symmetric(int n, double* a, int lda, int j, int p) {
  double t;
  a[p + p * lda] = a[j + j * lda];
  for (int c = 0; c < j; c++) {
    t = a[j + c * lda];
    a[j + c * lda] = a[p + c * lda];
    a[p + c * lda] = t;
  }
  for (int i = p + 1; i < n; i++) {
    t = a[i + j * lda];
    a[i + j * lda] = a[i + p * lda];
    a[i + p * lda] = t;
  }
  for (int i = j + 1; i < p; i++) {
    t = a[i + j * lda];
    a[i + j * lda] = a[p + i * lda];
    a[p + i * lda] = t;
  }
}

/*
 * The trailing diagonal for column j of a dpstrf panel that began at column k: dots[i] += A(i,
 * j − 1)² (the panel's columns so far), dots[n + i] = A(i, i) − dots[i], for i ≥ j. Returns the
 * first index of the largest, the next pivot.
 */
HOT static int pivot_scan(int n, const double* a, int lda, int j, int k, double* dots) {
  const double* prev = j > k ? a + (j - 1) * lda : a;
  int pvt = j;
  for (int i = j; i < n; i++) {
    if (j > k) dots[i] += prev[i] * prev[i];
    const double v = a[i + i * lda] - dots[i];
    dots[n + i] = v;
    if (v > dots[n + pvt]) pvt = i;
  }
  return pvt;
}

/*
 * A = P L Lᵀ Pᵀ for the symmetric positive semi-definite n × n A (lower triangle read and
 * overwritten by L; columns from `rank` on are left partly updated), pivoting on the largest
 * remaining diagonal entry until it falls to n·ε·max diag(A) or below (LAPACK's dpstrf with
 * TOL < 0; ε = 2⁻⁵²). piv[j] is the row of A that became row j. Blocked as dpstrf: within a panel
 * of PSTRF_NB columns the trailing diagonal is kept current through running sums of squares and
 * each column is updated by a matrix-vector product with the panel's earlier columns; after the
 * panel, one rank-PSTRF_NB update of the trailing matrix (gemm, lower half). The strict upper
 * triangle of the first `rank` columns is zeroed, so that L can be used as a full matrix.
 * Returns the rank. `work` holds 2n + gemm_work_size(n) doubles.
 */
EXPORT(pstrf)
int pstrf(int n, double* a, int lda, int* piv, double* work) {
  double* dots = work;
  double* gwork = work + 2 * n;
  int rank = n;
  for (int i = 0; i < n; i++) piv[i] = i;
  double amax = 0.0;
  for (int i = 0; i < n; i++) amax = a[i + i * lda] > amax ? a[i + i * lda] : amax;
  if (!(amax > 0.0)) return 0;
  const double dstop = (double)n * 0x1p-52 * amax;
  for (int k = 0; k < n && rank == n; k += PSTRF_NB) {
    const int jb = imin(PSTRF_NB, n - k);
    for (int i = k; i < n; i++) dots[i] = 0.0;
    for (int j = k; j < k + jb; j++) {
      const int pvt = pivot_scan(n, a, lda, j, k, dots);
      double ajj = dots[n + pvt];
      if (!(ajj > dstop)) {
        a[j + j * lda] = ajj;
        rank = j;
        break;
      }
      if (j != pvt) {
        swap_symmetric(n, a, lda, j, pvt);
        const double t = dots[j];
        dots[j] = dots[pvt];
        dots[pvt] = t;
        const int s = piv[j];
        piv[j] = piv[pvt];
        piv[pvt] = s;
      }
      ajj = dsqrt(ajj);
      a[j + j * lda] = ajj;
      if (j < n - 1) {
        double* col = a + (j + 1) + j * lda;
        gemv_n_sub(n - j - 1, j - k, a + (j + 1) + k * lda, lda, a + j + k * lda, lda, col);
        scal(n - j - 1, 1.0 / ajj, col);
      }
    }
    if (rank == n && k + jb < n) {
      const int m = n - k - jb;
      double* l21 = a + (k + jb) + k * lda;
      gemm(GEMM_TRANS_B | GEMM_NEGATE | GEMM_LOWER, m, m, jb, l21, lda, l21, lda, a + (k + jb) + (k + jb) * lda, lda, gwork);
    }
    progress();
  }
  for (int c = 1; c < rank; c++) zero(a + c * lda, c);
  return rank;
}

/* ---------------------------------------------------------------------------------------------
 * Symmetric helpers
 * ------------------------------------------------------------------------------------------- */

HOT static void mirror_tile(int n, double* a, int i0, int j0) {
  const int i1 = imin(n, i0 + 32), j1 = imin(n, j0 + 32);
  for (int i = i0; i < i1; i++)
    for (int j = j0; j < j1 && j < i; j++) a[j * n + i] = a[i * n + j];
}

/*
 * Makes the n × n row-major a exactly symmetric from its lower triangle (a[i·n + j], i ≥ j: the
 * triangle NumPy's eigh reads by default), in 32 × 32 tiles so that both sides stay in cache.
 */
EXPORT(mirror_lower)
void mirror_lower(int n, double* a) {
  for (int i0 = 0; i0 < n; i0 += 32)
    for (int j0 = 0; j0 <= i0; j0 += 32) mirror_tile(n, a, i0, j0);
}

HOT static void gather_lower(int n, int k, const double* src, const int* piv, double* dst) {
  zero(dst, k);
  dst[k] = 0.5 * src[piv[k]];
  for (int i = k + 1; i < n; i++) dst[i] = src[piv[i]];
}

/*
 * The lower triangle of s = Pᵀ Σ P for symmetric Σ, with its diagonal halved and zeros above:
 * s(i, k) = Σ(piv[i], piv[k]) for i > k, so that Pᵀ Σ P = s + sᵀ. Column k gathers from column
 * piv[k] of Σ.
 */
EXPORT(gather_lower_half)
void gather_lower_half(int n, const double* sigma, const int* piv, double* s) {
  for (int k = 0; k < n; k++) gather_lower(n, k, sigma + piv[k] * n, piv, s + k * n);
}

/*
 * The lower triangle of M = Lᵀ S L (r × r, ld r) for the n × r lower-trapezoidal L (ld n, zeros
 * above its diagonal) and S = s + sᵀ (s from gather_lower_half): with Y = s L, which is lower
 * trapezoidal (n³/3 operations for r = n), M = Lᵀ Y + Yᵀ L (two products of 2n³/3 together for
 * the lower half), n³ in all where Lᵀ (S L) would take 4n³/3 — the saving of LAPACK's dsygst
 * over two plain products. Y is written over y (n × r, ld n).
 */
EXPORT(sandwich)
void sandwich(int n, int r, const double* l, const double* s, double* y, double* m, double* work) {
  for (int j = 0; j < r; j++) zero(y + j * n, n);
  gemm(GEMM_A_LOWER | GEMM_B_LOWER | GEMM_LOWER, n, r, n, s, n, l, n, y, n, work);
  for (int j = 0; j < r; j++) zero(m + j * r, r);
  progress();
  gemm(GEMM_TRANS_A | GEMM_A_UPPER | GEMM_LOWER, r, r, n, l, n, y, n, m, r, work);
  gemm(GEMM_TRANS_A | GEMM_A_UPPER | GEMM_LOWER, r, r, n, y, n, l, n, m, r, work);
}

/* ---------------------------------------------------------------------------------------------
 * Tridiagonalisation (dsytrd, lower)
 * ------------------------------------------------------------------------------------------- */

enum { TRD_NB = 32, TRD_NX = 128 };

/* Doubles of work sytrd needs for order n. */
EXPORT(sytrd_work_size)
int sytrd_work_size(int n) { return 6 * TRD_NB * n + 2 * n + gemm_work_size(n); }

/* √(Σ x²) without overflow or harmful underflow: the plain sum where it is safe, else scaled. */
static double nrm2(int m, const double* x) {
  const double ssq = dot(m, x, x);
  if (ssq > 0x1p-900 && ssq < 0x1p900) return dsqrt(ssq);
  double scale = 0.0;
  for (int i = 0; i < m; i++) scale = dabs(x[i]) > scale ? dabs(x[i]) : scale;
  if (scale == 0.0) return 0.0;
  double s = 0.0;
  for (int i = 0; i < m; i++) s += (x[i] / scale) * (x[i] / scale);
  return scale * dsqrt(s);
}

/* √(a² + b²) as LAPACK's dlapy2: scaled by the larger magnitude. */
static double lapy2(double a, double b) {
  const double x = dabs(a), y = dabs(b);
  const double w = x > y ? x : y, z = x > y ? y : x;
  if (z == 0.0) return w;
  return w * dsqrt(1.0 + (z / w) * (z / w));
}

/*
 * dlarfg: H = I − τ v vᵀ with v = (1, x') maps (α, x) to (β, 0). α becomes β, x becomes x';
 * returns τ (0 when x is already 0).
 */
static double larfg(int m, double* alpha, double* x) {
  if (m <= 1) return 0.0;
  double xnorm = nrm2(m - 1, x);
  if (xnorm == 0.0) return 0.0;
  double beta = lapy2(*alpha, xnorm);
  if (*alpha >= 0.0) beta = -beta;
  const double safmin = 0x1p-1022 / 0x1p-53;
  int knt = 0;
  if (dabs(beta) < safmin) {
    /* β may be inaccurate at this size: scale x and α up and recompute (as dlarfg). */
    const double rsafmn = 1.0 / safmin;
    do {
      knt++;
      scal(m - 1, rsafmn, x);
      beta *= rsafmn;
      *alpha *= rsafmn;
    } while (dabs(beta) < safmin && knt < 20);
    xnorm = nrm2(m - 1, x);
    beta = lapy2(*alpha, xnorm);
    if (*alpha >= 0.0) beta = -beta;
  }
  const double tau = (beta - *alpha) / beta;
  scal(m - 1, 1.0 / (*alpha - beta), x);
  for (int j = 0; j < knt; j++) beta *= safmin;
  *alpha = beta;
  return tau;
}

/*
 * dlatrd (lower): reduces the first nb columns of the n × n symmetric a, returning in w (n × nb,
 * ld n) the matrix W of the update A − V Wᵀ − W Vᵀ that the caller applies to the trailing block
 * (V: the Householder vectors, stored below the sub-diagonal with the unit entries in place).
 * The trailing block is read (dsymv) but not written; e[i] gets the sub-diagonal.
 */
static void latrd(int n, int nb, double* a, int lda, double* e, double* tau, double* w) {
  const int ldw = n;
  for (int i = 0; i < nb; i++) {
    double* ai = a + i + i * lda;
    /* A(i:n, i) −= A(i:n, 0:i) W(i, 0:i)ᵀ + W(i:n, 0:i) A(i, 0:i)ᵀ */
    gemv_n_sub(n - i, i, a + i, lda, w + i, ldw, ai);
    gemv_n_sub(n - i, i, w + i, ldw, a + i, lda, ai);
    if (i >= n - 1) continue;
    double* v = ai + 1;
    const int m = n - i - 1;
    tau[i] = larfg(m, v, a + imin(i + 2, n - 1) + i * lda);
    e[i] = *v;
    *v = 1.0;
    double* wi = w + (i + 1) + i * ldw;
    double* tmp = w + i * ldw; /* W(0:i, i), free until the end of this step */
    symv_lower(m, a + (i + 1) + (i + 1) * lda, lda, v, wi);
    gemv_t(m, i, w + (i + 1), ldw, v, tmp);
    gemv_n_sub(m, i, a + (i + 1), lda, tmp, 1, wi);
    gemv_t(m, i, a + (i + 1), lda, v, tmp);
    gemv_n_sub(m, i, w + (i + 1), ldw, tmp, 1, wi);
    scal(m, tau[i], wi);
    axpy(m, -0.5 * tau[i] * dot(m, wi, v), v, wi);
  }
}

/* col[0..m) −= v[0..m) wj + w[0..m) vj: one column of dsyr2. */
HOT static void syr2_column(int m, const double* v, const double* w, double vj, double wj, double* col) {
  const V sv = wasm_f64x2_splat(vj), sw = wasm_f64x2_splat(wj);
  int r = 0;
  for (; r + 2 <= m; r += 2) ST(col + r, SUB(LD(col + r), ADD(MUL(LD(v + r), sw), MUL(LD(w + r), sv))));
  for (; r < m; r++) col[r] -= v[r] * wj + w[r] * vj;
}

/* dsytd2 (lower): the unblocked reduction, for the last block. */
static void sytd2(int n, double* a, int lda, double* d, double* e, double* w) {
  for (int i = 0; i < n - 1; i++) {
    const int m = n - i - 1;
    double* v = a + (i + 1) + i * lda;
    const double taui = larfg(m, v, a + imin(i + 2, n - 1) + i * lda);
    e[i] = *v;
    if (taui != 0.0) {
      *v = 1.0;
      double* trail = a + (i + 1) + (i + 1) * lda;
      symv_lower(m, trail, lda, v, w);
      scal(m, taui, w);
      axpy(m, -0.5 * taui * dot(m, w, v), v, w);
      /* A −= v wᵀ + w vᵀ, lower triangle (dsyr2). */
      for (int j = 0; j < m; j++) syr2_column(m - j, v + j, w + j, v[j], w[j], trail + j + j * lda);
      *v = e[i];
    }
    d[i] = a[i + i * lda];
  }
  d[n - 1] = a[(n - 1) + (n - 1) * lda];
}

/*
 * Q T Qᵀ = A for the symmetric n × n A (lower triangle read and overwritten): d gets T's
 * diagonal, e[0..n−1) its sub-diagonal and e[n − 1] = 0. dsytrd: panels of TRD_NB columns by
 * latrd, each followed by A22 −= V Wᵀ + W Vᵀ as one gemm of inner dimension 2·TRD_NB over
 * [V W] and [W V] (lower half only), the last TRD_NX columns unblocked. `work` holds
 * sytrd_work_size(n) doubles.
 */
EXPORT(sytrd)
void sytrd(int n, double* a, int lda, double* d, double* e, double* work) {
  double* w = work;                 /* n × NB: W of the panel */
  double* x = w + TRD_NB * n;       /* n × 2NB: [V W] */
  double* y = x + 2 * TRD_NB * n;   /* n × 2NB: [W V] */
  double* tau = y + 2 * TRD_NB * n; /* n */
  double* vec = tau + n;            /* n */
  double* gwork = vec + n;
  if (n < 1) return;
  int i = 0;
  if (n > TRD_NX) {
    for (; i < n - TRD_NX; i += TRD_NB) {
      const int size = n - i;
      double* ai = a + i + i * lda;
      latrd(size, TRD_NB, ai, lda, e + i, tau, w);
      const int m = size - TRD_NB;
      for (int c = 0; c < TRD_NB; c++) {
        const double* vc = ai + TRD_NB + c * lda;
        const double* wc = w + TRD_NB + c * size;
        copy(m, vc, x + c * m);
        copy(m, wc, x + (c + TRD_NB) * m);
        copy(m, wc, y + c * m);
        copy(m, vc, y + (c + TRD_NB) * m);
      }
      gemm(GEMM_TRANS_B | GEMM_NEGATE | GEMM_LOWER, m, m, 2 * TRD_NB, x, m, y, m, ai + TRD_NB + TRD_NB * lda, lda, gwork);
      for (int j = i; j < i + TRD_NB; j++) {
        a[(j + 1) + j * lda] = e[j];
        d[j] = a[j + j * lda];
      }
      progress();
    }
  }
  sytd2(n - i, a + i + i * lda, lda, d + i, e + i, vec);
  e[n - 1] = 0.0;
}

/* ---------------------------------------------------------------------------------------------
 * Tridiagonal QL (values only)
 * ------------------------------------------------------------------------------------------- */

/* √(a² + b²): the plain formula where neither square can overflow or lose all digits. */
static double hypot2(double a, double b) {
  const double x = dabs(a), y = dabs(b);
  const double big = x > y ? x : y;
  if (big > 0x1p-500 && big < 0x1p500) return dsqrt(a * a + b * b);
  if (big == 0.0 || big != big) return big;
  const double s = big >= 0x1p500 ? 0x1p-600 : 0x1p600; /* a power of two: exact scaling */
  const double as = a * s, bs = b * s;
  return dsqrt(as * as + bs * bs) / s;
}

/*
 * QL sweeps for eigenvalue l, where e[m] is the first negligible sub-diagonal entry at or after
 * l, until e[l] is negligible too. Each sweep shifts by the eigenvalue of the leading 2 × 2 block
 * nearer d[l] (Wilkinson) and chases the bulge from m up to l with plane rotations. Returns the
 * total shift subtracted from d[l + 2 ..] (the caller adds it back to each eigenvalue as it is
 * found), or NaN after 60 sweeps without convergence; counts[0] counts the rotations.
 */
HOT static double ql_sweeps(int n, int l, int m, double* d, double* e, double tst, int* counts) {
  const double eps = 0x1p-52;
  double shift = 0.0;
  int sweeps = 0;
  do {
    if (++sweeps > 60) return 0.0 / 0.0;
    const double g0 = d[l];
    double p = (d[l + 1] - g0) / (2.0 * e[l]);
    double r = hypot2(p, 1.0);
    if (p < 0) r = -r;
    d[l] = e[l] / (p + r);
    d[l + 1] = e[l] * (p + r);
    const double dl1 = d[l + 1];
    double h = g0 - d[l];
    for (int i = l + 2; i < n; i++) d[i] -= h;
    shift += h;
    p = d[m];
    double c = 1.0, c2 = 1.0, c3 = 1.0, s = 0.0, s2 = 0.0;
    const double el1 = e[l + 1];
    for (int i = m - 1; i >= l; i--) {
      c3 = c2;
      c2 = c;
      s2 = s;
      const double g = c * e[i];
      h = c * p;
      r = hypot2(p, e[i]);
      e[i + 1] = s * r;
      s = e[i] / r;
      c = p / r;
      p = c * d[i] - s * g;
      d[i + 1] = h + s * (c * g + s * d[i]);
    }
    counts[0] += m - l;
    p = (-s * s2 * c3 * el1 * e[l]) / dl1;
    e[l] = s * p;
    d[l] = c * p;
  } while (dabs(e[l]) > eps * tst);
  return shift;
}

/*
 * The eigenvalues of the symmetric tridiagonal matrix with diagonal d and sub-diagonal e
 * (e[k] = T(k + 1, k), e[n − 1] = 0), in place in d, unordered: the implicit QL iteration with
 * Wilkinson shifts (EISPACK tql1; Golub & Van Loan §8.3.5), the same iteration as
 * symmetric-eigen.ts. counts[0] gets the number of plane rotations. Returns 0, or −1 − l when
 * eigenvalue l does not converge in 60 sweeps.
 */
EXPORT(tridiagonal_ql)
int tridiagonal_ql(int n, double* d, double* e, int* counts) {
  const double eps = 0x1p-52;
  double shift = 0.0, tst = 0.0;
  counts[0] = 0;
  for (int l = 0; l < n; l++) {
    const double t = dabs(d[l]) + dabs(e[l]);
    if (t > tst) tst = t;
    int m = l;
    while (m < n - 1 && dabs(e[m]) > eps * tst) m++;
    if (m > l) {
      const double h = ql_sweeps(n, l, m, d, e, tst, counts);
      if (h != h) return -1 - l;
      shift += h;
    }
    d[l] += shift;
    e[l] = 0.0;
    if ((l & 255) == 0) progress();
  }
  return 0;
}
