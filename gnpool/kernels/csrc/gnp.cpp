// GNP forward and closed-form backward. The math mirrors gnp_composite.py (see its
// docstring): per part, r is the reference magnitude, s = sum (y / r)^p and
// G = r * (n^-q * s)^(1/p); a zero set (r == 0) pools to 0.

#include <type_traits>

#include "common.h"

namespace gnpool {
namespace {

template <typename T>
struct Params {
  const T* p_pos;
  const T* q_pos;
  const T* p_neg;
  const T* q_neg;
  int64_t stride;  // 0: one shared value, 1: one per column
};

// What the element loops divide each part's magnitudes by, per channel of one set:
// y = (|v| * pre) * inv with inv = 1 / (r * pre) (`empty` for a zero part). 1 / r overflows
// for r below about 1 / max (subnormal float r): such a part prescales by pre = 2^64.
template <typename T>
struct Divisors {
  std::vector<T> pre_p, pre_n, inv_p, inv_n;
  bool scaled = false;  // some channel of the set has pre != 1
  explicit Divisors(int64_t K) : pre_p(K), pre_n(K), inv_p(K), inv_n(K) {}

  static T prescale(T r) {
    return (r > T(0)) & (r < T(5.421010862427522e-20)) ? T(18446744073709551616.0) : T(1);
  }
  void fill(const T* r_p, const T* r_n, int64_t K, T empty) {
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t k = 0; k < K; ++k) {
      const T rp = r_p[k], rn = r_n[k];
      pre_p[k] = prescale(rp);
      pre_n[k] = prescale(rn);
      inv_p[k] = rp > T(0) ? T(1) / (rp * pre_p[k]) : empty;
      inv_n[k] = rn > T(0) ? T(1) / (rn * pre_n[k]) : empty;
      any |= (pre_p[k] != T(1)) | (pre_n[k] != T(1));
    }
    scaled = any != 0;
  }
};

#if defined(__AVX512F__)
// The element loops of forward and backward for float on 16 channels at a time, with
// log16/exp16 (common.h); the same arithmetic as the generic loops in the impls below.

// Both parts' divisors and exponents for the 16 channels from k.
struct Lanes16 {
  __m512 pre_p, pre_n, inv_p, inv_n, p_p, p_n;
  Lanes16(const Divisors<float>& dv, const float* pp, const float* pn, int64_t k,
          __mmask16 mk)
      : pre_p(_mm512_maskz_loadu_ps(mk, dv.pre_p.data() + k)),
        pre_n(_mm512_maskz_loadu_ps(mk, dv.pre_n.data() + k)),
        inv_p(_mm512_maskz_loadu_ps(mk, dv.inv_p.data() + k)),
        inv_n(_mm512_maskz_loadu_ps(mk, dv.inv_n.data() + k)),
        p_p(_mm512_maskz_loadu_ps(mk, pp + k)),
        p_n(_mm512_maskz_loadu_ps(mk, pn + k)) {}
  // |v| / r of each lane's part (neg: the lanes of the negative part).
  template <bool SCALED>
  __m512 ratio(__m512 v, __mmask16 neg) const {
    __m512 a = _mm512_abs_ps(v);
    if constexpr (SCALED) a = _mm512_mul_ps(a, _mm512_mask_blend_ps(neg, pre_p, pre_n));
    return _mm512_mul_ps(a, _mm512_mask_blend_ps(neg, inv_p, inv_n));
  }
  __m512 p(__mmask16 neg) const { return _mm512_mask_blend_ps(neg, p_p, p_n); }
};

template <bool SCALED>
inline void forward_rows16(const float* x, const int64_t* perm, int64_t b, int64_t e,
                           int64_t K, const Divisors<float>& dv, const float* pp,
                           const float* pn, float* acc_p, float* acc_n) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mk = lanes16(K - k);
    const Lanes16 c(dv, pp, pn, k, mk);
    __m512 ap = zero, an = zero;
    for (int64_t i = b; i < e; ++i) {
      const __m512 v = _mm512_maskz_loadu_ps(mk, x + (perm ? perm[i] : i) * K + k);
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
      const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
      const __m512 w = exp16(_mm512_mul_ps(c.p(neg), log16(c.ratio<SCALED>(v, neg))));
      ap = _mm512_mask_add_ps(ap, pos, ap, w);
      an = _mm512_mask_add_ps(an, neg, an, w);
    }
    _mm512_mask_storeu_ps(acc_p + k, mk, ap);
    _mm512_mask_storeu_ps(acc_n + k, mk, an);
  }
}

template <bool SCALED>
inline void backward_rows16(const float* x, const int64_t* perm, int64_t b, int64_t e,
                            int64_t K, const Divisors<float>& dv, const float* pp,
                            const float* pn, const float* ga_p, const float* ga_n,
                            const float* half0, float* st_p, float* st_n, float* grad_x) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mk = lanes16(K - k);
    const Lanes16 c(dv, pp, pn, k, mk);
    const __m512 a_p = _mm512_maskz_loadu_ps(mk, ga_p + k), a_n = _mm512_maskz_loadu_ps(mk, ga_n + k);
    const __m512 h0 = _mm512_maskz_loadu_ps(mk, half0 + k);
    __m512 sp = zero, sn = zero;
    for (int64_t i = b; i < e; ++i) {
      const int64_t r = perm ? perm[i] : i;
      const __m512 v = _mm512_maskz_loadu_ps(mk, x + r * K + k);
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
      const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
      const __m512 p = c.p(neg);
      const __m512 t = c.ratio<SCALED>(v, neg);
      const __m512 lt = log16(t);
      __m512 phi = exp16(_mm512_mul_ps(_mm512_sub_ps(p, one), lt));
      // t == 0 off the kink: y/r underflowed (regular set) or a zero set with p < 0.
      const __mmask16 p1 = _mm512_cmp_ps_mask(p, one, _CMP_EQ_OQ);
      phi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, zero, _CMP_EQ_OQ), phi,
                                 _mm512_mask_blend_ps(p1, zero, one));
      const __mmask16 fin = _mm512_cmp_ps_mask(t, zero, _CMP_GT_OQ) &
                            _mm512_cmp_ps_mask(t, inf, _CMP_LT_OQ);
      const __m512 c = _mm512_maskz_mul_ps(fin, _mm512_mul_ps(t, phi), lt);
      sp = _mm512_mask_add_ps(sp, pos, sp, c);
      sn = _mm512_mask_add_ps(sn, neg, sn, c);
      if (!grad_x) continue;
      __m512 d = _mm512_mul_ps(_mm512_mask_blend_ps(neg, a_p, a_n), phi);
      d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_EQ_OQ), d, h0);
      d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), d, v);
      _mm512_mask_storeu_ps(grad_x + r * K + k, mk, d);
    }
    _mm512_mask_storeu_ps(st_p + k, mk, sp);
    _mm512_mask_storeu_ps(st_n + k, mk, sn);
  }
}
#endif

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
    Divisors<T> dv(K);
    std::vector<T> mx(K), mn(K), acc_p(K), acc_n(K), pp(K), pn(K), qp(K), qn(K);
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
        acc_p[k] = acc_n[k] = T(0);
      }
      dv.fill(r_pos + o, r_neg + o, K, T(1));
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        (dv.scaled ? forward_rows16<true> : forward_rows16<false>)(
            x, perm, b, e, K, dv, pp.data(), pn.data(), acc_p.data(), acc_n.data());
      } else
#endif
      for (int64_t i = b; i < e; ++i) {
        const T* row = x + (perm ? perm[i] : i) * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          // Every operand is loaded unconditionally so that the selects vectorise.
          const T v = row[k], p_p = pp[k], p_n = pn[k];
          const bool neg = v < T(0);
          const T y = neg ? -v * dv.pre_n[k] * dv.inv_n[k] : v * dv.pre_p[k] * dv.inv_p[k];
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
    Divisors<T> dv(K);
    std::vector<T> pp(K), pn(K), qp(K), qn(K), ga_p(K), ga_n(K), half0(K),
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
        // At x == 0 each part's one-sided derivative: t = 0 gives t^(p-1) = [p == 1] in a
        // regular set and 1 in a zero set; the gradient is their mean.
        const T phi_p = ((rp == T(0)) | (pp[k] == T(1))) ? T(1) : T(0);
        const T phi_n = ((rn == T(0)) | (pn[k] == T(1))) ? T(1) : T(0);
        half0[k] = T(0.5) * (ga_p[k] * phi_p + ga_n[k] * phi_n);
        st_p[k] = st_n[k] = T(0);
      }
      dv.fill(r_pos + o, r_neg + o, K, T(0));
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        (dv.scaled ? backward_rows16<true> : backward_rows16<false>)(
            x, perm, b, e, K, dv, pp.data(), pn.data(), ga_p.data(), ga_n.data(), half0.data(),
            st_p.data(), st_n.data(), grad_x);
      } else
#endif
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* row = x + r * K;
        // Without grad_x the loop still runs for the p statistics; it writes to scratch.
        T* gx = grad_x ? grad_x + r * K : scratch.data();
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T v = row[k], p_p = pp[k], p_n = pn[k];
          const T a_p = ga_p[k], a_n = ga_n[k], h0 = half0[k];
          const bool neg = v < T(0);
          const T p = neg ? p_n : p_p;
          const T t = neg ? -v * dv.pre_n[k] * dv.inv_n[k] : v * dv.pre_p[k] * dv.inv_p[k];
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


}  // namespace
}  // namespace gnpool

using namespace gnpool;

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

}  // extern "C"
