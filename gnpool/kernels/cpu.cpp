// Fused CPU kernels for gnpool, loaded through ctypes (no Python or torch headers).
// setup.py compiles this file once per instruction-set level (x86-64-v4, x86-64-v3,
// generic); cpu.py loads the best one the processor supports.
//
// Sets are CSR segments: set s holds rows perm[ptr[s]] .. perm[ptr[s+1] - 1] of a
// row-major [E, K] matrix (perm == nullptr: rows ptr[s] .. ptr[s+1] - 1). One thread
// handles one whole set, so each set's rows are read from memory once per pass and
// stay in cache between a set's two sweeps.
//
// The math mirrors gnp_composite.py (see its docstring): per part, r is the reference
// magnitude, s = sum (y / r)^p and G = r * (n^-q * s)^(1/p); a zero set (r == 0) pools
// to 0.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

namespace {

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

template <typename T>
struct Params {
  const T* p_pos;
  const T* q_pos;
  const T* p_neg;
  const T* q_neg;
  int64_t stride;  // 0: one shared value, 1: one per column
};

template <typename T>
void gnp_forward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                                 int64_t K, Params<T> prm, T* out, T* state, int nthreads) {
  // state: [6, S, K] = r_pos, s_pos, g_pos, r_neg, s_neg, g_neg
  const int64_t SK = S * K;
  T* r_pos = state;
  T* s_pos = state + SK;
  T* g_pos = state + 2 * SK;
  T* r_neg = state + 3 * SK;
  T* s_neg = state + 4 * SK;
  T* g_neg = state + 5 * SK;
  const T nan = std::numeric_limits<T>::quiet_NaN();
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> mx(K), mn(K), inv_p(K), inv_n(K), acc_p(K), acc_n(K), pp(K), pn(K), qp(K),
        qn(K);
    for (int64_t k = 0; k < K; ++k) {
      pp[k] = prm.p_pos[k * prm.stride];
      pn[k] = prm.p_neg[k * prm.stride];
      qp[k] = prm.q_pos[k * prm.stride];
      qn[k] = prm.q_neg[k * prm.stride];
    }
#pragma omp for schedule(dynamic, 256)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      if (e <= b) {
        for (int64_t k = 0; k < K; ++k) {
          out[o + k] = r_pos[o + k] = s_pos[o + k] = g_pos[o + k] = T(0);
          r_neg[o + k] = s_neg[o + k] = g_neg[o + k] = T(0);
        }
        continue;
      }
      const T* first = x + (perm ? perm[b] : b) * K;
      for (int64_t k = 0; k < K; ++k) mx[k] = mn[k] = first[k];
      for (int64_t i = b + 1; i < e; ++i) {
        const T* row = x + (perm ? perm[i] : i) * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T v = row[k];
          // NaN sticks: once mx is NaN no comparison replaces it.
          mx[k] = ((v > mx[k]) | (v != v)) ? v : mx[k];
          mn[k] = ((v < mn[k]) | (v != v)) ? v : mn[k];
        }
      }
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const T rp = relu(pp[k] > T(0) ? mx[k] : mn[k]);
        const T rn = relu(pn[k] > T(0) ? -mn[k] : -mx[k]);
        r_pos[o + k] = rp;
        r_neg[o + k] = rn;
        inv_p[k] = rp > T(0) ? T(1) / rp : T(1);
        inv_n[k] = rn > T(0) ? T(1) / rn : T(1);
        acc_p[k] = acc_n[k] = T(0);
      }
      for (int64_t i = b; i < e; ++i) {
        const T* row = x + (perm ? perm[i] : i) * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          // Every operand is loaded unconditionally so that the selects vectorise.
          const T v = row[k], ip = inv_p[k], in = inv_n[k], p_p = pp[k], p_n = pn[k];
          const bool neg = v < T(0);
          const T y = neg ? -v * in : v * ip;
          const T w = exp_core((neg ? p_n : p_p) * log_core(y));
          acc_p[k] += v > T(0) ? w : T(0);
          acc_n[k] += neg ? w : T(0);
        }
      }
      const T log_n = flog(static_cast<T>(e - b));
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const bool bad = mx[k] != mx[k];
        const T rp = r_pos[o + k], rn = r_neg[o + k];
        // acc >= 1 and r > 0 in a regular set; a zero set (r == 0) is selected away below.
        T gp = fexp(log_core(rp) + (log_core(acc_p[k]) - qp[k] * log_n) / pp[k]);
        T gn = fexp(log_core(rn) + (log_core(acc_n[k]) - qn[k] * log_n) / pn[k]);
        gp = rp > T(0) ? gp : T(0);
        gn = rn > T(0) ? gn : T(0);
        gp = bad ? nan : gp;
        gn = bad ? nan : gn;
        s_pos[o + k] = acc_p[k];
        s_neg[o + k] = acc_n[k];
        g_pos[o + k] = gp;
        g_neg[o + k] = gn;
        out[o + k] = gp - gn;
      }
    }
  }
}

// Per-set factor A of dG/dy_i = A * t_i^(p-1) (see gnp_composite.py) from log s, given the
// zero count of the part (only consulted for a zero set with p < 0). NaN in the set's
// output makes A NaN, so the set's gradients show it.
template <typename T>
inline T factor(T r, T log_s, T g, T p, T q, T log_n, T zeros) {
  const T regular = exp_core((-q * log_n + (T(1) - p) * log_s) / p);
  const T at_zero = ((p > T(0)) | (zeros == T(1))) ? exp_core(-q * log_n / p) : T(0);
  const T a = r > T(0) ? regular : at_zero;
  return g != g ? g : a;
}

template <typename T>
void gnp_backward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                                  int64_t K, Params<T> prm, const T* grad, const T* state,
                                  T* grad_x, T* grad_params, int nthreads) {
  // grad_params: [nthreads, 4, K] partial sums for p_pos, q_pos, p_neg, q_neg (or null).
  const int64_t SK = S * K;
  const T* r_pos = state;
  const T* s_pos = state + SK;
  const T* g_pos = state + 2 * SK;
  const T* r_neg = state + 3 * SK;
  const T* s_neg = state + 4 * SK;
  const T* g_neg = state + 5 * SK;
  const T inf = std::numeric_limits<T>::infinity();
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
    std::vector<T> pp(K), pn(K), qp(K), qn(K), ga_p(K), ga_n(K), inv_p(K), inv_n(K), half0(K),
        zp(K), zn(K), st_p(K), st_n(K), d_p(K), d_n(K), scratch(K);
    T* acc = grad_params ? grad_params + static_cast<int64_t>(tid) * 4 * K : nullptr;
    for (int64_t k = 0; k < K; ++k) {
      pp[k] = prm.p_pos[k * prm.stride];
      pn[k] = prm.p_neg[k * prm.stride];
      qp[k] = prm.q_pos[k * prm.stride];
      qn[k] = prm.q_neg[k * prm.stride];
      if (acc) acc[k] = acc[K + k] = acc[2 * K + k] = acc[3 * K + k] = T(0);
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      if (e <= b) continue;
      const int64_t o = s * K;
      const T log_n = flog(static_cast<T>(e - b));
      // Zero counts matter only for a zero set with p < 0 (unique zero or not).
      bool count = false;
      for (int64_t k = 0; k < K; ++k) {
        zp[k] = zn[k] = T(0);
        count |= ((r_pos[o + k] == T(0)) & (pp[k] < T(0))) | ((r_neg[o + k] == T(0)) & (pn[k] < T(0)));
      }
      if (count && grad_x) {
        for (int64_t i = b; i < e; ++i) {
          const T* row = x + (perm ? perm[i] : i) * K;
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) {
            zp[k] += row[k] <= T(0) ? T(1) : T(0);
            zn[k] += row[k] >= T(0) ? T(1) : T(0);
          }
        }
      }
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const T g = grad[o + k];
        const T rp = r_pos[o + k], rn = r_neg[o + k];
        // s >= 1 in a regular set; zero sets take the other branch of factor().
        const T ls_p = log_core(s_pos[o + k]), ls_n = log_core(s_neg[o + k]);
        ga_p[k] = g * factor(rp, ls_p, g_pos[o + k], pp[k], qp[k], log_n, zp[k]);
        ga_n[k] = g * factor(rn, ls_n, g_neg[o + k], pn[k], qn[k], log_n, zn[k]);
        d_p[k] = (ls_p - qp[k] * log_n) / pp[k];
        d_n[k] = (ls_n - qn[k] * log_n) / pn[k];
        inv_p[k] = rp > T(0) ? T(1) / rp : T(0);
        inv_n[k] = rn > T(0) ? T(1) / rn : T(0);
        // At x == 0 each part's one-sided derivative: t = 0 gives t^(p-1) = [p == 1] in a
        // regular set and 1 in a zero set; the gradient is their mean.
        const T phi_p = ((rp == T(0)) | (pp[k] == T(1))) ? T(1) : T(0);
        const T phi_n = ((rn == T(0)) | (pn[k] == T(1))) ? T(1) : T(0);
        half0[k] = T(0.5) * (ga_p[k] * phi_p + ga_n[k] * phi_n);
        st_p[k] = st_n[k] = T(0);
      }
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* row = x + r * K;
        // Without grad_x the loop still runs for the p statistics; it writes to scratch.
        T* gx = grad_x ? grad_x + r * K : scratch.data();
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T v = row[k], ip = inv_p[k], in = inv_n[k], p_p = pp[k], p_n = pn[k];
          const T a_p = ga_p[k], a_n = ga_n[k], h0 = half0[k];
          const bool neg = v < T(0);
          const T p = neg ? p_n : p_p;
          const T t = neg ? -v * in : v * ip;
          const T lt = log_core(t);
          T phi = exp_core((p - T(1)) * lt);
          // t == 0 off the kink: y/r underflowed (regular set) or a zero set with p < 0.
          phi = t == T(0) ? (p == T(1) ? T(1) : T(0)) : phi;
          const T c = ((t > T(0)) & (t < inf)) ? t * phi * lt : T(0);
          st_p[k] += v > T(0) ? c : T(0);
          st_n[k] += neg ? c : T(0);
          T d = (neg ? a_n : a_p) * phi;
          d = v == T(0) ? h0 : d;
          d = v != v ? v : d;
          gx[k] = d;
        }
      }
      if (!acc) continue;
      // dG/dp = G/p (sum t^p log t / s - d), dG/dq = -G log n / p; parts with G == 0 (zero
      // and empty sets) or NaN contribute nothing.
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const T g = grad[o + k];
        const T gp = g_pos[o + k], gn = g_neg[o + k];
        const T sp = s_pos[o + k], sn = s_neg[o + k];
        const bool live_p = gp > T(0), live_n = gn > T(0);
        acc[k] += live_p ? g * gp / pp[k] * (st_p[k] / sp - d_p[k]) : T(0);
        acc[K + k] += live_p ? -g * gp * log_n / pp[k] : T(0);
        acc[2 * K + k] -= live_n ? g * gn / pn[k] * (st_n[k] / sn - d_n[k]) : T(0);
        acc[3 * K + k] -= live_n ? -g * gn * log_n / pn[k] : T(0);
      }
    }
  }
}


template <typename T>
void attsets_forward_impl(const T* x, const T* z, const int64_t* ptr, const int64_t* perm,
                          int64_t S, int64_t K, T* out, T* m_out, T* l_out, int nthreads) {
  // m_out, l_out: [S, K] per-set max score m and l = sum exp(z - m)
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> m(K), l(K), num(K);
#pragma omp for schedule(dynamic, 256)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      if (e <= b) {
        for (int64_t k = 0; k < K; ++k) out[o + k] = m_out[o + k] = l_out[o + k] = T(0);
        continue;
      }
      const T* first = z + (perm ? perm[b] : b) * K;
      for (int64_t k = 0; k < K; ++k) {
        m[k] = first[k];
        l[k] = num[k] = T(0);
      }
      for (int64_t i = b + 1; i < e; ++i) {
        const T* row = z + (perm ? perm[i] : i) * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T v = row[k];
          m[k] = ((v > m[k]) | (v != v)) ? v : m[k];
        }
      }
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* zr = z + r * K;
        const T* xr = x + r * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T w = exp_core(zr[k] - m[k]);
          l[k] += w;
          num[k] += w * xr[k];
        }
      }
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        out[o + k] = num[k] / l[k];
        m_out[o + k] = m[k];
        l_out[o + k] = l[k];
      }
    }
  }
}

template <typename T>
void attsets_backward_impl(const T* x, const T* z, const int64_t* ptr, const int64_t* perm,
                           int64_t S, int64_t K, const T* grad, const T* out, const T* m_in,
                           const T* l_in, T* grad_x, T* grad_z, int nthreads) {
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> g(K), go(K), m(K), il(K), scratch_x(K), scratch_z(K);
#pragma omp for schedule(dynamic, 256)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      for (int64_t k = 0; k < K; ++k) {
        g[k] = grad[o + k];
        go[k] = grad[o + k] * out[o + k];
        m[k] = m_in[o + k];
        il[k] = T(1) / l_in[o + k];
      }
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* zr = z + r * K;
        const T* xr = x + r * K;
        // Without one of the gradients the loop writes that one to scratch.
        T* gx = grad_x ? grad_x + r * K : scratch_x.data();
        T* gz = grad_z ? grad_z + r * K : scratch_z.data();
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T w = exp_core(zr[k] - m[k]) * il[k];
          gx[k] = g[k] * w;
          gz[k] = w * (g[k] * xr[k] - go[k]);
        }
      }
    }
  }
}


// AttSets with its scoring layer z = act(W x + b) fused in: the scores of a row are
// computed from the row while it is in cache (in forward once per row for sets of up to
// 64 rows, twice for larger ones; once more in backward), so no [E, K] score tensor ever
// exists. W is [Ko, K] with
// Ko = K (one score per channel) or Ko = 1 (one score shared by every channel); Wt is W
// transposed. act: 0 none, 1 tanh. The small matrix products are register-blocked over
// BLOCK outputs so that the accumulators stay in vector registers.
// A 64-byte vector of T (GCC vector extension: split into the target's registers).
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64)));
  static constexpr int64_t lanes = 64 / sizeof(T);
  static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof(v)); }
  static type zero() { return type{} * T(0); }
};

// out[c] = init[c] + sum_j a[j] * M[j * ld + c] for c in [0, n): a row vector times a
// matrix, two vectors of outputs at a time kept in registers.
template <typename T>
inline void vecmat(const T* a, const T* M, int64_t rows, int64_t ld, int64_t n, const T* init,
                   T* out) {
  using V = Vec<T>;
  constexpr int64_t L = V::lanes;
  int64_t c0 = 0;
  for (; c0 + 2 * L <= n; c0 += 2 * L) {
    typename V::type acc0 = init ? V::load(init + c0) : V::zero();
    typename V::type acc1 = init ? V::load(init + c0 + L) : V::zero();
    for (int64_t j = 0; j < rows; ++j) {
      const T* m = M + j * ld + c0;
      acc0 += a[j] * V::load(m);
      acc1 += a[j] * V::load(m + L);
    }
    V::store(out + c0, acc0);
    V::store(out + c0 + L, acc1);
  }
  for (int64_t c = c0; c < n; ++c) {
    T acc = init ? init[c] : T(0);
    for (int64_t j = 0; j < rows; ++j) acc += a[j] * M[j * ld + c];
    out[c] = acc;
  }
}

template <typename T>
inline void score_row(const T* xr, const T* Wt, const T* bias, int64_t K, int64_t Ko, int act,
                      T* z) {
  if (Ko == 1) {
    T acc = bias ? bias[0] : T(0);
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < K; ++j) acc += Wt[j] * xr[j];
    if (act) acc = std::tanh(acc);
    for (int64_t k = 0; k < K; ++k) z[k] = acc;
    return;
  }
  vecmat(xr, Wt, K, K, K, bias, z);
  if (act)
    for (int64_t k = 0; k < K; ++k) z[k] = std::tanh(z[k]);
}

// gw[k, j] += sum_r gz[r, k] * x_r[j] over a block of n rows: 4 rows of gw times two
// vectors of columns accumulate in registers.
template <typename T>
void outer_update(const T* gz, const T* const* rows, int64_t n, int64_t Ko, int64_t K, T* gw) {
  using V = Vec<T>;
  constexpr int64_t L = V::lanes;
  int64_t k0 = 0;
  for (; k0 + 4 <= Ko; k0 += 4) {
    int64_t j0 = 0;
    for (; j0 + 2 * L <= K; j0 += 2 * L) {
      typename V::type acc[4][2];
      for (int a = 0; a < 4; ++a) {
        acc[a][0] = V::load(gw + (k0 + a) * K + j0);
        acc[a][1] = V::load(gw + (k0 + a) * K + j0 + L);
      }
      for (int64_t r = 0; r < n; ++r) {
        const typename V::type x0 = V::load(rows[r] + j0), x1 = V::load(rows[r] + j0 + L);
        for (int a = 0; a < 4; ++a) {
          const T ga = gz[r * Ko + k0 + a];
          acc[a][0] += ga * x0;
          acc[a][1] += ga * x1;
        }
      }
      for (int a = 0; a < 4; ++a) {
        V::store(gw + (k0 + a) * K + j0, acc[a][0]);
        V::store(gw + (k0 + a) * K + j0 + L, acc[a][1]);
      }
    }
    for (int64_t k = k0; k < k0 + 4; ++k)
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = j0; j < K; ++j) gw[k * K + j] += gz[r * Ko + k] * rows[r][j];
  }
  for (int64_t k = k0; k < Ko; ++k)
    for (int64_t r = 0; r < n; ++r) {
      const T g = gz[r * Ko + k];
#pragma omp simd
      for (int64_t j = 0; j < K; ++j) gw[k * K + j] += g * rows[r][j];
    }
}

template <typename T>
void attsets_linear_forward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                                 int64_t K, const T* Wt, const T* bias, int64_t Ko, int act,
                                 T* out, T* m_out, T* l_out, int nthreads) {
  // The scores of a set of up to CACHED rows are kept between the two sweeps; a larger
  // set's are computed again in the second sweep.
  constexpr int64_t CACHED = 64;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> zc(CACHED * K), z(K), m(K), l(K), num(K);
#pragma omp for schedule(dynamic, 256)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      if (e <= b) {
        for (int64_t k = 0; k < K; ++k) out[o + k] = m_out[o + k] = l_out[o + k] = T(0);
        continue;
      }
      const bool cached = e - b <= CACHED;
      for (int64_t k = 0; k < K; ++k) {
        m[k] = -std::numeric_limits<T>::infinity();
        l[k] = num[k] = T(0);
      }
      for (int64_t i = b; i < e; ++i) {
        T* zr = cached ? zc.data() + (i - b) * K : z.data();
        score_row(x + (perm ? perm[i] : i) * K, Wt, bias, K, Ko, act, zr);
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T v = zr[k];
          m[k] = ((v > m[k]) | (v != v)) ? v : m[k];
        }
      }
      for (int64_t i = b; i < e; ++i) {
        const T* xr = x + (perm ? perm[i] : i) * K;
        const T* zr = cached ? zc.data() + (i - b) * K : z.data();
        if (!cached) score_row(xr, Wt, bias, K, Ko, act, z.data());
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T w = exp_core(zr[k] - m[k]);
          l[k] += w;
          num[k] += w * xr[k];
        }
      }
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        out[o + k] = num[k] / l[k];
        m_out[o + k] = m[k];
        l_out[o + k] = l[k];
      }
    }
  }
}

template <typename T>
void attsets_linear_backward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                                  int64_t K, const T* W, const T* Wt, const T* bias, int64_t Ko,
                                  int act, const T* grad, const T* out, const T* m_in,
                                  const T* l_in, T* grad_x, T* grad_w, int nthreads) {
  // grad_w: [nthreads, Ko * K + Ko] partial sums of dW and db (or null). The score
  // gradients of up to ROWS rows are buffered and folded into dW in one blocked update.
  constexpr int64_t ROWS = 64;
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
    std::vector<T> z(K), g(K), go(K), m(K), il(K), gz(K), gzk(Ko), scratch(K), gzb(ROWS * Ko);
    std::vector<const T*> rows(ROWS);
    int64_t buffered = 0;
    T* gw = grad_w ? grad_w + static_cast<int64_t>(tid) * (Ko * K + Ko) : nullptr;
    if (gw)
      for (int64_t j = 0; j < Ko * K + Ko; ++j) gw[j] = T(0);
#pragma omp for schedule(static)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      for (int64_t k = 0; k < K; ++k) {
        g[k] = grad[o + k];
        go[k] = grad[o + k] * out[o + k];
        m[k] = m_in[o + k];
        il[k] = T(1) / l_in[o + k];
      }
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* xr = x + r * K;
        T* gx = grad_x ? grad_x + r * K : scratch.data();
        score_row(xr, Wt, bias, K, Ko, act, z.data());
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T w = exp_core(z[k] - m[k]) * il[k];
          gx[k] = g[k] * w;
          // d/d(score) of the softmax-weighted sum, then through tanh when present.
          const T d = w * (g[k] * xr[k] - go[k]);
          gz[k] = act ? d * (T(1) - z[k] * z[k]) : d;
        }
        if (Ko == 1) {
          T total = T(0);
#pragma omp simd reduction(+ : total)
          for (int64_t k = 0; k < K; ++k) total += gz[k];
          gzk[0] = total;
        } else {
          for (int64_t k = 0; k < K; ++k) gzk[k] = gz[k];
        }
        // gx += gz W (the scoring layer's share of the input gradient).
        if (grad_x) vecmat(gzk.data(), W, Ko, K, K, gx, gx);
        if (gw) {
          for (int64_t k = 0; k < Ko; ++k) {
            gzb[buffered * Ko + k] = gzk[k];
            gw[Ko * K + k] += gzk[k];
          }
          rows[buffered++] = xr;
          if (buffered == ROWS) {
            outer_update(gzb.data(), rows.data(), buffered, Ko, K, gw);
            buffered = 0;
          }
        }
      }
    }
    if (gw && buffered) outer_update(gzb.data(), rows.data(), buffered, Ko, K, gw);
  }
}

}  // namespace

extern "C" {

int gnpool_abi_version() { return 3; }

void gnpool_gnp_forward_f32(const float* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                            int64_t K, const float* p_pos, const float* q_pos, const float* p_neg,
                            const float* q_neg, int64_t stride, float* out, float* state,
                            int nthreads) {
  gnp_forward_impl<float>(x, ptr, perm, S, K, {p_pos, q_pos, p_neg, q_neg, stride}, out, state,
                          nthreads);
}

void gnpool_gnp_forward_f64(const double* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                            int64_t K, const double* p_pos, const double* q_pos,
                            const double* p_neg, const double* q_neg, int64_t stride,
                            double* out, double* state, int nthreads) {
  gnp_forward_impl<double>(x, ptr, perm, S, K, {p_pos, q_pos, p_neg, q_neg, stride}, out, state,
                           nthreads);
}

void gnpool_gnp_backward_f32(const float* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                             int64_t K, const float* p_pos, const float* q_pos,
                             const float* p_neg, const float* q_neg, int64_t stride,
                             const float* grad, const float* state, float* grad_x,
                             float* grad_params, int nthreads) {
  gnp_backward_impl<float>(x, ptr, perm, S, K, {p_pos, q_pos, p_neg, q_neg, stride}, grad, state,
                           grad_x, grad_params, nthreads);
}

void gnpool_gnp_backward_f64(const double* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                             int64_t K, const double* p_pos, const double* q_pos,
                             const double* p_neg, const double* q_neg, int64_t stride,
                             const double* grad, const double* state, double* grad_x,
                             double* grad_params, int nthreads) {
  gnp_backward_impl<double>(x, ptr, perm, S, K, {p_pos, q_pos, p_neg, q_neg, stride}, grad,
                            state, grad_x, grad_params, nthreads);
}

void gnpool_attsets_forward_f32(const float* x, const float* z, const int64_t* ptr,
                                const int64_t* perm, int64_t S, int64_t K, float* out,
                                float* m, float* l, int nthreads) {
  attsets_forward_impl<float>(x, z, ptr, perm, S, K, out, m, l, nthreads);
}

void gnpool_attsets_forward_f64(const double* x, const double* z, const int64_t* ptr,
                                const int64_t* perm, int64_t S, int64_t K, double* out,
                                double* m, double* l, int nthreads) {
  attsets_forward_impl<double>(x, z, ptr, perm, S, K, out, m, l, nthreads);
}

void gnpool_attsets_backward_f32(const float* x, const float* z, const int64_t* ptr,
                                 const int64_t* perm, int64_t S, int64_t K, const float* grad,
                                 const float* out, const float* m, const float* l, float* grad_x,
                                 float* grad_z, int nthreads) {
  attsets_backward_impl<float>(x, z, ptr, perm, S, K, grad, out, m, l, grad_x, grad_z,
                               nthreads);
}

void gnpool_attsets_backward_f64(const double* x, const double* z, const int64_t* ptr,
                                 const int64_t* perm, int64_t S, int64_t K, const double* grad,
                                 const double* out, const double* m, const double* l, double* grad_x,
                                 double* grad_z, int nthreads) {
  attsets_backward_impl<double>(x, z, ptr, perm, S, K, grad, out, m, l, grad_x, grad_z,
                                nthreads);
}

void gnpool_attsets_linear_forward_f32(const float* x, const int64_t* ptr, const int64_t* perm,
                                       int64_t S, int64_t K, const float* Wt, const float* bias,
                                       int64_t Ko, int act, float* out, float* m, float* l,
                                       int nthreads) {
  attsets_linear_forward_impl<float>(x, ptr, perm, S, K, Wt, bias, Ko, act, out, m, l,
                                     nthreads);
}

void gnpool_attsets_linear_forward_f64(const double* x, const int64_t* ptr, const int64_t* perm,
                                       int64_t S, int64_t K, const double* Wt,
                                       const double* bias, int64_t Ko, int act, double* out,
                                       double* m, double* l, int nthreads) {
  attsets_linear_forward_impl<double>(x, ptr, perm, S, K, Wt, bias, Ko, act, out, m, l,
                                      nthreads);
}

void gnpool_attsets_linear_backward_f32(const float* x, const int64_t* ptr, const int64_t* perm,
                                        int64_t S, int64_t K, const float* W, const float* Wt,
                                        const float* bias, int64_t Ko, int act,
                                        const float* grad, const float* out, const float* m,
                                        const float* l, float* grad_x, float* grad_w,
                                        int nthreads) {
  attsets_linear_backward_impl<float>(x, ptr, perm, S, K, W, Wt, bias, Ko, act, grad, out, m, l,
                                      grad_x, grad_w, nthreads);
}

void gnpool_attsets_linear_backward_f64(const double* x, const int64_t* ptr,
                                        const int64_t* perm, int64_t S, int64_t K,
                                        const double* W, const double* Wt, const double* bias,
                                        int64_t Ko, int act, const double* grad,
                                        const double* out, const double* m, const double* l,
                                        double* grad_x, double* grad_w, int nthreads) {
  attsets_linear_backward_impl<double>(x, ptr, perm, S, K, W, Wt, bias, Ko, act, grad, out, m,
                                       l, grad_x, grad_w, nthreads);
}

// Counting sort of an index vector into CSR: ptr [S + 1] and a stable perm [E].
// Returns 0, or 1 if an index value lies outside [0, S).
int gnpool_csr_from_index(const int64_t* index, int64_t E, int64_t S, int64_t* ptr,
                          int64_t* perm) {
  std::memset(ptr, 0, sizeof(int64_t) * (S + 1));
  for (int64_t i = 0; i < E; ++i) {
    const int64_t j = index[i];
    if (j < 0 || j >= S) return 1;
    ++ptr[j + 1];
  }
  for (int64_t s = 0; s < S; ++s) ptr[s + 1] += ptr[s];
  std::vector<int64_t> next(ptr, ptr + S);
  for (int64_t i = 0; i < E; ++i) perm[next[index[i]]++] = i;
  return 0;
}

}  // extern "C"
