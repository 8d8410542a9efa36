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

namespace gnpool {

// Branch-free float log and exp (Cephes polynomials, ~1 ulp on normal numbers) so that
// the element loops vectorise. The cores handle only what the element loops need:
// log_core: x >= 0 with subnormals, log(0) = -inf (inf and NaN give unspecified finite
// values); exp_core: exp(-inf) = 0, results below ~2e-38 flush to 0, arguments above
// ~88.7 clamp to ~3.4e38. Every element loop masks the lanes where those cases occur;
// flog and fexp add full special-value handling for the per-set code.
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
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float fe = static_cast<float>(e);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  const float r = f + y + fe * 0.693359375f;
  return x == 0.0f ? -std::numeric_limits<float>::infinity() : r;
}

inline float exp_core(float x) {
  const float lo = -87.33654f, hi = 88.72283f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);
  // Round to nearest by the 1.5 * 2^23 trick (no floor instruction needed): |g| <= ln2 / 2.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float g = xc - n * 0.693359375f - n * -2.12194440e-4f;
  const float z = g * g;
  float y = 1.9875691500e-4f;
  y = y * g + 1.3981999507e-3f;
  y = y * g + 8.3334519073e-3f;
  y = y * g + 4.1665795894e-2f;
  y = y * g + 1.6666665459e-1f;
  y = y * g + 5.0000001201e-1f;
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

}  // namespace gnpool
