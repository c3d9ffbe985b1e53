/*
 * The subset of <wasm_simd128.h> that ../ddpm_kernels.c uses, for the native build: the same
 * four-lane operations written with the compiler's vector extensions, which clang and gcc lower to
 * SSE/AVX on x86-64 and NEON on arm64. Each is the exact IEEE operation wasm specifies for the
 * values the kernels feed it (finite floats; min/max only clamp), so that, with contraction off
 * (build.cjs passes -ffp-contract=off), the native kernels give the wasm module's bits.
 */
#ifndef DDPM_NATIVE_WASM_SIMD128_H
#define DDPM_NATIVE_WASM_SIMD128_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef int32_t v128_t __attribute__((vector_size(16), aligned(16)));
typedef float ddpm_f32x4 __attribute__((vector_size(16), aligned(16)));
typedef uint32_t ddpm_u32x4 __attribute__((vector_size(16), aligned(16)));

#define DDPM_F(v) ((ddpm_f32x4)(v))
#define DDPM_V(v) ((v128_t)(v))

static inline v128_t wasm_v128_load(const void* p) {
  v128_t v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void wasm_v128_store(void* p, v128_t v) { memcpy(p, &v, sizeof v); }
static inline v128_t wasm_v128_load32_splat(const void* p) {
  float f;
  memcpy(&f, p, sizeof f);
  return DDPM_V(((ddpm_f32x4){f, f, f, f}));
}
static inline v128_t wasm_f32x4_splat(float f) { return DDPM_V(((ddpm_f32x4){f, f, f, f})); }
static inline v128_t wasm_i32x4_splat(int32_t i) { return (v128_t){i, i, i, i}; }
static inline v128_t wasm_i32x4_make(int32_t a, int32_t b, int32_t c, int32_t d) { return (v128_t){a, b, c, d}; }
static inline v128_t wasm_f32x4_add(v128_t a, v128_t b) { return DDPM_V(DDPM_F(a) + DDPM_F(b)); }
static inline v128_t wasm_f32x4_sub(v128_t a, v128_t b) { return DDPM_V(DDPM_F(a) - DDPM_F(b)); }
static inline v128_t wasm_f32x4_mul(v128_t a, v128_t b) { return DDPM_V(DDPM_F(a) * DDPM_F(b)); }
static inline v128_t wasm_f32x4_div(v128_t a, v128_t b) { return DDPM_V(DDPM_F(a) / DDPM_F(b)); }
static inline v128_t wasm_f32x4_neg(v128_t a) { return DDPM_V(-DDPM_F(a)); }
static inline v128_t wasm_f32x4_min(v128_t a, v128_t b) {
  const v128_t less = (v128_t)(DDPM_F(a) < DDPM_F(b));
  return (less & a) | (~less & b);
}
static inline v128_t wasm_f32x4_max(v128_t a, v128_t b) {
  const v128_t more = (v128_t)(DDPM_F(a) > DDPM_F(b));
  return (more & a) | (~more & b);
}
static inline v128_t wasm_f32x4_sqrt(v128_t a) {
  const ddpm_f32x4 x = DDPM_F(a);
  return DDPM_V(((ddpm_f32x4){sqrtf(x[0]), sqrtf(x[1]), sqrtf(x[2]), sqrtf(x[3])}));
}
/* Round to nearest, ties to even (f32x4.nearest). */
static inline v128_t wasm_f32x4_nearest(v128_t a) {
  const ddpm_f32x4 x = DDPM_F(a);
  return DDPM_V(((ddpm_f32x4){nearbyintf(x[0]), nearbyintf(x[1]), nearbyintf(x[2]), nearbyintf(x[3])}));
}
static inline float wasm_f32x4_extract_lane(v128_t a, int i) { return DDPM_F(a)[i]; }
static inline int32_t wasm_i32x4_extract_lane(v128_t a, int i) { return a[i]; }
/* Saturating truncation (the kernels pass values well inside int32's range). */
static inline v128_t wasm_i32x4_trunc_sat_f32x4(v128_t a) { return __builtin_convertvector(DDPM_F(a), v128_t); }
static inline v128_t wasm_i32x4_add(v128_t a, v128_t b) { return (v128_t)((ddpm_u32x4)a + (ddpm_u32x4)b); }
static inline v128_t wasm_i32x4_mul(v128_t a, v128_t b) { return (v128_t)((ddpm_u32x4)a * (ddpm_u32x4)b); }
static inline v128_t wasm_i32x4_shl(v128_t a, int n) { return (v128_t)((ddpm_u32x4)a << n); }
static inline v128_t wasm_u32x4_shr(v128_t a, int n) { return (v128_t)((ddpm_u32x4)a >> n); }
static inline v128_t wasm_u32x4_ge(v128_t a, v128_t b) { return (v128_t)((ddpm_u32x4)a >= (ddpm_u32x4)b); }
static inline v128_t wasm_v128_xor(v128_t a, v128_t b) { return a ^ b; }
static inline v128_t wasm_v128_and(v128_t a, v128_t b) { return a & b; }
#define wasm_i32x4_shuffle(a, b, i0, i1, i2, i3) __builtin_shufflevector((a), (b), i0, i1, i2, i3)

/* One rounding per multiply-add where the target has FMA (relaxed SIMD's f32x4.relaxed_madd). */
#if defined(__FMA__) || defined(__aarch64__)
#define __builtin_wasm_relaxed_madd_f32x4(a, b, c) \
  DDPM_V(((ddpm_f32x4){fmaf(DDPM_F(a)[0], DDPM_F(b)[0], DDPM_F(c)[0]), fmaf(DDPM_F(a)[1], DDPM_F(b)[1], DDPM_F(c)[1]), \
                       fmaf(DDPM_F(a)[2], DDPM_F(b)[2], DDPM_F(c)[2]), fmaf(DDPM_F(a)[3], DDPM_F(b)[3], DDPM_F(c)[3])}))
#else
#define __builtin_wasm_relaxed_madd_f32x4(a, b, c) wasm_f32x4_add((c), wasm_f32x4_mul((a), (b)))
#endif

#endif
