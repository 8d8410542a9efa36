// Shared pieces of gnpool's fused CPU kernels, which are loaded through ctypes (no Python
// or torch headers). setup.py compiles the kernels once per instruction-set level
// (x86-64-v4, x86-64-v3, generic); cpu.py loads the best one the processor supports.
//
// Sets are CSR segments: set s holds rows perm[ptr[s]] .. perm[ptr[s+1] - 1] of a
// row-major [E, K] matrix (perm == nullptr: rows ptr[s] .. ptr[s+1] - 1). One thread
// handles one whole set, so each set's rows are read from memory once per pass and
// stay in cache between a set's sweeps.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace gnpool {

// Branch-free float log and exp (Cephes polynomials, ~1 ulp on normal numbers) so that
// the element loops vectorise. The cores handle only what the element loops need:
// log_core: x >= 0 with subnormals, log(0) = -inf (inf and NaN give unspecified finite
// values); exp_core: exp(-inf) = 0, results below ~2e-38 flush to 0, arguments above
// ~88.7 clamp to ~3.4e38. Every element loop masks the lanes where those cases occur;
// flog and fexp add full special-value handling for the per-set code.
// Cephes' polynomial coefficients, highest degree first: log(1 + f) = f - f^2 / 2 +
// f^3 LOG_POLY(f) on [sqrt(1/2) - 1, sqrt(2) - 1]; exp(g) = 1 + g + g^2 EXP_POLY(g) on
// |g| <= ln 2 / 2. Shared by the scalar cores and the AVX-512 versions below.
constexpr float LOG_POLY[] = {7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f,
                              -1.2420140846e-1f, 1.4249322787e-1f, -1.6668057665e-1f,
                              2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f};
constexpr float EXP_POLY[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                              4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
// ln 2 split into a part exact in float and the rest.
constexpr float LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;

inline float log_core(float x) {
  const bool sub = x < 1.17549435e-38f;
  const float xs = sub ? x * 8388608.0f : x;
  const uint32_t ix = __builtin_bit_cast(uint32_t, xs);
  int e = static_cast<int>(ix >> 23) - 127 - (sub ? 23 : 0);
  float m = __builtin_bit_cast(float, (ix & 0x007fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float y = LOG_POLY[0];
  for (int i = 1; i < 9; ++i) y = y * f + LOG_POLY[i];
  y = y * f * z;
  const float fe = static_cast<float>(e);
  y += fe * LN2_LO;
  y += -0.5f * z;
  const float r = f + y + fe * LN2_HI;
  return x == 0.0f ? -std::numeric_limits<float>::infinity() : r;
}

inline float exp_core(float x) {
  const float lo = -87.33654f, hi = 88.72283f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);
  // Round to nearest by the 1.5 * 2^23 trick (no floor instruction needed): |g| <= ln2 / 2.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float g = xc - n * LN2_HI - n * LN2_LO;
  const float z = g * g;
  float y = EXP_POLY[0];
  for (int i = 1; i < 6; ++i) y = y * g + EXP_POLY[i];
  y = y * z + g + 1.0f;
  // 2^(n-1) * 2 keeps the exponent field valid up to n = 128.
  const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 126) << 23);
  const float r = y * scale * 2.0f;
  return x < lo ? 0.0f : r;
}

inline float flog(float x) {
  float r = log_core(x);
  r = (x == std::numeric_limits<float>::infinity()) ? x : r;
  r = ((x < 0.0f) | (x != x)) ? std::numeric_limits<float>::quiet_NaN() : r;
  return r;
}

inline float fexp(float x) {
  float r = exp_core(x);
  r = x > 88.72283f ? std::numeric_limits<float>::infinity() : r;
  r = x != x ? x : r;
  return r;
}

inline double log_core(double x) { return std::log(x); }
inline double exp_core(double x) { return std::exp(x); }
inline double flog(double x) { return std::log(x); }
inline double fexp(double x) { return std::exp(x); }

template <typename T>
inline T relu(T v) { return v > T(0) ? v : T(0); }

#if defined(__AVX512F__)
// log_core and exp_core on 16 floats with AVX-512's exponent and mantissa instructions
// (same polynomials). log16: x >= 0 with subnormals, log(0) = -inf, log(inf) = inf;
// exp16: exp(-inf) = 0,
// arguments clamped to [-110, 88] (results below the smallest subnormal are 0).
inline __m512 log16(__m512 x) {
  __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  __m512 fe = _mm512_getexp_ps(x);
  const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
  fe = _mm512_mask_add_ps(fe, big, fe, _mm512_set1_ps(1.0f));
  const __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
  const __m512 z = _mm512_mul_ps(f, f);
  __m512 y = _mm512_set1_ps(LOG_POLY[0]);
  for (int i = 1; i < 9; ++i) y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(LOG_POLY[i]));
  y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
  y = _mm512_fmadd_ps(fe, _mm512_set1_ps(LN2_LO), y);
  y = _mm512_fmadd_ps(z, _mm512_set1_ps(-0.5f), y);
  const __m512 r = _mm512_fmadd_ps(fe, _mm512_set1_ps(LN2_HI), _mm512_add_ps(f, y));
  // x = 0 and x = inf have the exponent -inf and +inf, which is also their log.
  const __mmask16 edge = _mm512_cmp_ps_mask(_mm512_abs_ps(fe),
                                            _mm512_set1_ps(std::numeric_limits<float>::infinity()),
                                            _CMP_EQ_OQ);
  return _mm512_mask_blend_ps(edge, r, fe);
}

inline __m512 exp16(__m512 x) {
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-110.0f)),
                                  _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 g = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
  g = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), g);
  const __m512 z = _mm512_mul_ps(g, g);
  __m512 y = _mm512_set1_ps(EXP_POLY[0]);
  for (int i = 1; i < 6; ++i) y = _mm512_fmadd_ps(y, g, _mm512_set1_ps(EXP_POLY[i]));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, z, g), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

// Lanes [0, n) of a block of 16 (all 16 for n >= 16).
inline __mmask16 lanes16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}
#endif

}  // namespace gnpool
