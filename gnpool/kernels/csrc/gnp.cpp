// GNP forward and closed-form backward. The math mirrors gnp_composite.py (see its
// docstring): per part, p = tan(pi a / 2) with a in [-1, 1], r is the reference magnitude
// (largest y for p > 0, smallest for p <= 0), l = log(y / r), z = p l (0 at ties),
// A = sum exp(z) and G = r * exp(D + beta log n) with D = t log(A / n) (t = 1 / p), or its
// cumulant expansion for |p| < small_p. A zero part (r == 0) pools to 0, an infinite y
// makes a part with p >= 0 infinite. Where y / r leaves the float range (a set spanning
// more than the range, e.g. 1e-30 and 1e30 in float32), the set's element loop runs again
// with l = log(y) - log(r) (`log_ratio_exact`); the detection costs a few compares.

#include <type_traits>

#include "common.h"

namespace gnpool {
namespace {

constexpr double kHalfPi = 1.5707963267948966;

template <typename T>
struct Params {
  const T* a_pos;
  const T* b_pos;
  const T* a_neg;
  const T* b_neg;
  int64_t stride;  // 0: one shared value, 1: one per column
};

template <typename T>
constexpr T inf_v() {
  return std::numeric_limits<T>::infinity();
}

template <typename T>
constexpr T small_p() {
  return std::is_same_v<T, float> ? T(1e-2) : T(1e-5);
}

// p = tan(pi a / 2) and t = 1 / p, exact at a = +-1 (p = +-inf, t = 0) and a = 0 (p = 0,
// t = inf); for |a| > 1/2 through tan(pi (1 - |a|) / 2), where 1 - |a| is exact.
template <typename T>
inline void exponent(T a, T& p, T& t) {
  const double m = std::fabs(static_cast<double>(a));
  const bool inner = m <= 0.5;
  // tan(pi/4) is exactly 1 (p = 1, sum and mean), which std::tan misses by an ulp.
  const double tn = m == 0.5 ? 1.0 : std::tan(kHalfPi * (inner ? m : 1.0 - m));
  const double pp = inner ? tn : 1.0 / tn;
  const double tt = inner ? 1.0 / tn : tn;
  const double sign = a < T(0) ? -1.0 : 1.0;
  p = static_cast<T>(sign * pp);
  t = static_cast<T>(sign * tt);
}

// Per-column exponents of both parts, unpacked once per thread.
template <typename T>
struct Columns {
  // p, t = 1 / p and beta of each part; zp, zn are p with +-inf replaced by +-max, for the
  // element loops' z = p * l: exactly 0 at ties (l == 0, where inf * 0 would be NaN) and
  // still -inf, or beyond exp's range, off them.
  std::vector<T> pp, tp, bp, pn, tn, bn, zp, zn;
  Columns(const Params<T>& prm, int64_t K)
      : pp(K), tp(K), bp(K), pn(K), tn(K), bn(K), zp(K), zn(K) {
    for (int64_t k = 0; k < K; ++k) {
      exponent(prm.a_pos[k * prm.stride], pp[k], tp[k]);
      exponent(prm.a_neg[k * prm.stride], pn[k], tn[k]);
      bp[k] = prm.b_pos[k * prm.stride];
      bn[k] = prm.b_neg[k * prm.stride];
      const T big = std::numeric_limits<T>::max();
      zp[k] = pp[k] == inf_v<T>() ? big : (pp[k] == -inf_v<T>() ? -big : pp[k]);
      zn[k] = pn[k] == inf_v<T>() ? big : (pn[k] == -inf_v<T>() ? -big : pn[k]);
    }
  }
};

// Whether some column's exponent is in the cumulant expansion's range, so that the
// element loops must also sum l and l^2.
template <typename T>
bool any_small(const Params<T>& prm, int64_t K) {
  for (int64_t k = 0; k < (prm.stride ? K : 1); ++k) {
    T p, t;
    exponent(prm.a_pos[k * prm.stride], p, t);
    if (std::fabs(p) < small_p<T>()) return true;
    exponent(prm.a_neg[k * prm.stride], p, t);
    if (std::fabs(p) < small_p<T>()) return true;
  }
  return false;
}

// What the element loops divide each part's magnitudes by, per channel of one set:
// y = (|v| * pre) * inv with inv = 1 / (r * pre) (`other` for a zero or infinite
// reference). 1 / r overflows for r below about 1 / max (subnormal float r): such a part
// prescales by pre = 2^64. The references themselves are kept too: an element equal to
// its part's reference is a tie (l = 0 exactly), which the rounded y * inv may miss.
template <typename T>
struct Divisors {
  std::vector<T> pre_p, pre_n, inv_p, inv_n, ref_p, ref_n;
  bool scaled = false;  // some channel of the set has pre != 1
  explicit Divisors(int64_t K)
      : pre_p(K), pre_n(K), inv_p(K), inv_n(K), ref_p(K), ref_n(K) {}

  static T prescale(T r) {
    return (r > T(0)) & (r < T(5.421010862427522e-20)) ? T(18446744073709551616.0) : T(1);
  }
  void fill(const T* r_p, const T* r_n, int64_t K, T other) {
    const T inf = std::numeric_limits<T>::infinity();
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t k = 0; k < K; ++k) {
      const T rp = r_p[k], rn = r_n[k];
      ref_p[k] = rp;
      ref_n[k] = rn;
      pre_p[k] = prescale(rp);
      pre_n[k] = prescale(rn);
      inv_p[k] = (rp > T(0)) & (rp < inf) ? T(1) / (rp * pre_p[k]) : other;
      inv_n[k] = (rn > T(0)) & (rn < inf) ? T(1) / (rn * pre_n[k]) : other;
      any |= (pre_p[k] != T(1)) | (pre_n[k] != T(1));
    }
    scaled = any != 0;
  }
};

// l = log(y / r) of a magnitude y (exactly 0 at y == r; log_core leaves inf unspecified).
template <typename T>
inline T log_ratio(T y, T r, T ratio) {
  const T l = ratio == std::numeric_limits<T>::infinity() ? ratio : log_core(ratio);
  return y == r ? T(0) : l;
}

// 1 where ratio = y / r left the float range (inf for a finite y, or 0 for a positive
// one, against a positive finite reference), else 0. Products of value selects, not
// boolean operators: the element loops that count these must still vectorise (flag).
template <typename T>
inline T out_of_range(T y, T r, T ratio) {
  const T inf = std::numeric_limits<T>::infinity();
  const T over = (ratio == inf ? T(1) : T(0)) * (y < inf ? T(1) : T(0));
  const T under = (ratio == T(0) ? T(1) : T(0)) * (y > T(0) ? T(1) : T(0));
  return (over + under) * (r > T(0) ? T(1) : T(0)) * (r < inf ? T(1) : T(0));
}

// log_ratio, with log(y) - log(r) where y / r left the float range.
template <typename T>
inline T log_ratio_exact(T y, T r, T ratio) {
  return out_of_range(y, r, ratio) != T(0) ? log_core(y) - log_core(r)
                                            : log_ratio(y, r, ratio);
}

#if defined(__AVX512F__)
// The element loops of forward and backward for float on 16 channels at a time, with
// log16/exp16 (common.h); the same arithmetic as the generic loops in the impls below.

// Both parts' divisors and exponents for the 16 channels from k.
struct Lanes16 {
  __m512 pre_p, pre_n, inv_p, inv_n, p_p, p_n, ref_p, ref_n;
  Lanes16(const Divisors<float>& dv, const float* pp, const float* pn, int64_t k,
          __mmask16 mk)
      : pre_p(_mm512_maskz_loadu_ps(mk, dv.pre_p.data() + k)),
        pre_n(_mm512_maskz_loadu_ps(mk, dv.pre_n.data() + k)),
        inv_p(_mm512_maskz_loadu_ps(mk, dv.inv_p.data() + k)),
        inv_n(_mm512_maskz_loadu_ps(mk, dv.inv_n.data() + k)),
        p_p(_mm512_maskz_loadu_ps(mk, pp + k)),
        p_n(_mm512_maskz_loadu_ps(mk, pn + k)),
        ref_p(_mm512_maskz_loadu_ps(mk, dv.ref_p.data() + k)),
        ref_n(_mm512_maskz_loadu_ps(mk, dv.ref_n.data() + k)) {}
  // |v| / r of each lane's part (neg: the lanes of the negative part).
  template <bool SCALED>
  __m512 ratio(__m512 v, __mmask16 neg) const {
    __m512 a = _mm512_abs_ps(v);
    if constexpr (SCALED) a = _mm512_mul_ps(a, _mm512_mask_blend_ps(neg, pre_p, pre_n));
    return _mm512_mul_ps(a, _mm512_mask_blend_ps(neg, inv_p, inv_n));
  }
  __m512 p(__mmask16 neg) const { return _mm512_mask_blend_ps(neg, p_p, p_n); }
  // Lanes whose magnitude equals its part's reference.
  __mmask16 tie(__m512 v, __mmask16 neg) const {
    return _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_mask_blend_ps(neg, ref_p, ref_n),
                              _CMP_EQ_OQ);
  }
};

// Lanes whose ratio = |v| / r left the float range (out_of_range).
inline __mmask16 out_of_range16(__m512 v, __m512 ratio, __m512 ref, __mmask16 mk) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const __m512 y = _mm512_abs_ps(v);
  const __mmask16 over = _mm512_cmp_ps_mask(ratio, inf, _CMP_EQ_OQ) &
                         _mm512_cmp_ps_mask(y, inf, _CMP_LT_OQ);
  const __mmask16 under = _mm512_cmp_ps_mask(ratio, zero, _CMP_EQ_OQ) &
                          _mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ);
  const __mmask16 regular = _mm512_cmp_ps_mask(ref, zero, _CMP_GT_OQ) &
                            _mm512_cmp_ps_mask(ref, inf, _CMP_LT_OQ);
  return (over | under) & regular & mk;
}

// l = log(ratio) (+inf at ratio = inf, 0 at ties) and z = p l, with p from Columns::zp/zn
// (finite, so z is 0 at ties).
inline void log_and_z16(__m512 ratio, __m512 p, __mmask16 tie, __m512& l, __m512& z) {
  l = _mm512_mask_blend_ps(tie, log16(ratio), _mm512_setzero_ps());
  z = _mm512_mul_ps(p, l);
}

// Returns whether some ratio left the float range (the set is then run again by the
// generic loop with log_ratio_exact).
template <bool SCALED, bool SMALL>
inline bool forward_rows16(const float* x, const int64_t* perm, int64_t b, int64_t e,
                           int64_t K, const Divisors<float>& dv, const float* pp,
                           const float* pn, float* acc_p, float* acc_n, float* s1_p,
                           float* s1_n, float* s2_p, float* s2_n) {
  const __m512 zero = _mm512_setzero_ps();
  __mmask16 wide = 0;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mk = lanes16(K - k);
    const Lanes16 c(dv, pp, pn, k, mk);
    __m512 ap = zero, an = zero, l1p = zero, l1n = zero, l2p = zero, l2n = zero;
    for (int64_t i = b; i < e; ++i) {
      const __m512 v = _mm512_maskz_loadu_ps(mk, x + (perm ? perm[i] : i) * K + k);
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
      const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
      __m512 l, z;
      const __m512 ratio = c.ratio<SCALED>(v, neg);
      wide |= out_of_range16(v, ratio, _mm512_mask_blend_ps(neg, c.ref_p, c.ref_n), mk);
      log_and_z16(ratio, c.p(neg), c.tie(v, neg), l, z);
      const __m512 w = exp16(z);
      ap = _mm512_mask_add_ps(ap, pos, ap, w);
      an = _mm512_mask_add_ps(an, neg, an, w);
      if constexpr (SMALL) {
        l1p = _mm512_mask_add_ps(l1p, pos, l1p, l);
        l1n = _mm512_mask_add_ps(l1n, neg, l1n, l);
        l2p = _mm512_mask3_fmadd_ps(l, l, l2p, pos);
        l2n = _mm512_mask3_fmadd_ps(l, l, l2n, neg);
      }
    }
    _mm512_mask_storeu_ps(acc_p + k, mk, ap);
    _mm512_mask_storeu_ps(acc_n + k, mk, an);
    if constexpr (SMALL) {
      _mm512_mask_storeu_ps(s1_p + k, mk, l1p);
      _mm512_mask_storeu_ps(s1_n + k, mk, l1n);
      _mm512_mask_storeu_ps(s2_p + k, mk, l2p);
      _mm512_mask_storeu_ps(s2_n + k, mk, l2n);
    }
  }
  return wide != 0;
}

// Returns whether some ratio left the float range, as forward_rows16.
template <bool SCALED, bool SMALL>
inline bool backward_rows16(const float* x, const int64_t* perm, int64_t b, int64_t e,
                            int64_t K, const Divisors<float>& dv, const float* pp,
                            const float* pn, const float* ga_p, const float* ga_n,
                            const float* half0, float* st_p, float* st_n, float* s1_p,
                            float* s1_n, float* s2_p, float* s2_n, float* c_p, float* c_n,
                            float* grad_x) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __mmask16 wide = 0;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mk = lanes16(K - k);
    const Lanes16 c(dv, pp, pn, k, mk);
    const __m512 a_p = _mm512_maskz_loadu_ps(mk, ga_p + k), a_n = _mm512_maskz_loadu_ps(mk, ga_n + k);
    const __m512 h0 = _mm512_maskz_loadu_ps(mk, half0 + k);
    __m512 sp = zero, sn = zero, l1p = zero, l1n = zero, l2p = zero, l2n = zero, cp = zero,
           cn = zero;
    for (int64_t i = b; i < e; ++i) {
      const int64_t r = perm ? perm[i] : i;
      const __m512 v = _mm512_maskz_loadu_ps(mk, x + r * K + k);
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
      const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
      const __m512 p = c.p(neg);
      const __m512 ratio = c.ratio<SCALED>(v, neg);
      wide |= out_of_range16(v, ratio, _mm512_mask_blend_ps(neg, c.ref_p, c.ref_n), mk);
      __m512 l, z;
      log_and_z16(ratio, p, c.tie(v, neg), l, z);
      const __m512 w = exp16(z);
      // dG/dy = F w / ratio; at ratio == 0 the one-sided derivative [p == 1]; an infinite
      // one counts as 0.
      __m512 phi = _mm512_div_ps(w, ratio);
      phi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ratio, zero, _CMP_EQ_OQ), phi,
                                 _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(p, one, _CMP_EQ_OQ),
                                                     one));
      phi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(phi, inf, _CMP_EQ_OQ), phi, zero);
      const __m512 wz = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(w, zero, _CMP_GT_OQ), w, z);
      sp = _mm512_mask_add_ps(sp, pos, sp, wz);
      sn = _mm512_mask_add_ps(sn, neg, sn, wz);
      if constexpr (SMALL) {
        const __mmask16 fin = _mm512_cmp_ps_mask(_mm512_abs_ps(l), inf, _CMP_LT_OQ);
        l1p = _mm512_mask_add_ps(l1p, pos, l1p, l);
        l1n = _mm512_mask_add_ps(l1n, neg, l1n, l);
        l2p = _mm512_mask3_fmadd_ps(l, l, l2p, pos);
        l2n = _mm512_mask3_fmadd_ps(l, l, l2n, neg);
        cp = _mm512_mask_add_ps(cp, pos & fin, cp, one);
        cn = _mm512_mask_add_ps(cn, neg & fin, cn, one);
      }
      if (!grad_x) continue;
      const __m512 a = _mm512_mask_blend_ps(neg, a_p, a_n);
      __m512 d = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(a, zero, _CMP_NEQ_UQ), a, phi);
      d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_EQ_OQ), d, h0);
      d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), d, v);
      _mm512_mask_storeu_ps(grad_x + r * K + k, mk, d);
    }
    _mm512_mask_storeu_ps(st_p + k, mk, sp);
    _mm512_mask_storeu_ps(st_n + k, mk, sn);
    if constexpr (SMALL) {
      _mm512_mask_storeu_ps(s1_p + k, mk, l1p);
      _mm512_mask_storeu_ps(s1_n + k, mk, l1n);
      _mm512_mask_storeu_ps(s2_p + k, mk, l2p);
      _mm512_mask_storeu_ps(s2_n + k, mk, l2n);
      _mm512_mask_storeu_ps(c_p + k, mk, cp);
      _mm512_mask_storeu_ps(c_n + k, mk, cn);
    }
  }
  return wide != 0;
}
#endif

// 1 where `c` holds, else 0: conditions are combined as products of these, because GCC
// does not vectorise selects between booleans (as `a && b` becomes), only between values.
template <typename T>
inline T flag(bool c) { return c ? T(1) : T(0); }

// The value of one part of one set and channel (see the case table in gnp_composite.py).
// Written with value selects only, so that the per-set loop over the channels vectorises.
template <typename T>
inline T part_value(T r, T ymin, T ymax, T acc, T s1, T s2, T p, T t, T beta, T n, T log_n,
                    T bad) {
  const T inf = std::numeric_limits<T>::infinity();
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const T abs_p = p < T(0) ? -p : p;
  const T m1 = s1 / n;
  const T v = s2 / n - m1 * m1;
  const T var = v > T(0) ? v : T(0);
  const T direct = t * (log_core(acc) - log_n);
  const T expansion = m1 + p * var * T(0.5);
  // The cumulant expansion for |p| < small_p with every y positive and finite.
  const T expand = flag<T>(abs_p < small_p<T>()) * flag<T>(ymin > T(0)) * flag<T>(ymax < inf);
  const T d = expand != T(0) ? expansion : direct;
  const T rr = flag<T>(r > T(0)) * flag<T>(r < inf) != T(0) ? r : T(1);
  // r * exp(...) rather than exp(log r + ...): exactly r for max and min (D = 0, beta = 0);
  // the log form only where exp(...) alone would overflow or underflow.
  const T scale = d + beta * log_n;
  const T safe = std::is_same_v<T, float> ? T(80) : T(700);
  const bool plain = (scale < safe) & (scale > -safe);
  const T big = plain ? T(0) : log_core(rr);
  T g = (plain ? rr : T(1)) * fexp(big + scale);
  g = r == T(0) ? T(0) : g;
  g = flag<T>(ymax == inf) * flag<T>(p >= T(0)) + flag<T>(ymin == inf) != T(0) ? inf : g;
  g = flag<T>(p == T(0)) * flag<T>(ymin == T(0)) * flag<T>(ymax == inf) != T(0) ? nan : g;
  return bad != T(0) ? nan : g;
}

// The forward element loop of one set with l = log(y) - log(r) where y / r leaves the
// float range (log_ratio_exact): run only for a set where the fast loops saw that happen.
// Resets and fills the accumulators as they do. It repeats their arithmetic on purpose:
// one loop templated on exactness (a generic lambda with `if constexpr`) kept GCC from
// vectorising the fast path (1.8x to 3.9x slower on the AVX2 build,
// experiments/bench_warm_loop.py). tests/test_functional_gnp.py compares both exact loops
// with float64 (test_float32_sets_wider_than_the_float_range_stay_accurate).
template <typename T>
void forward_rows_exact(const T* x, const int64_t* perm, int64_t b, int64_t e, int64_t K,
                        const Divisors<T>& dv, const T* zp, const T* zn, bool small, T* acc_p,
                        T* acc_n, T* s1p, T* s1n, T* s2p, T* s2n) {
  for (int64_t k = 0; k < K; ++k)
    acc_p[k] = acc_n[k] = s1p[k] = s1n[k] = s2p[k] = s2n[k] = T(0);
  for (int64_t i = b; i < e; ++i) {
    const T* row = x + (perm ? perm[i] : i) * K;
    for (int64_t k = 0; k < K; ++k) {
      const T v = row[k];
      const bool neg = v < T(0), pos = v > T(0);
      const T ratio = neg ? -v * dv.pre_n[k] * dv.inv_n[k] : v * dv.pre_p[k] * dv.inv_p[k];
      const T l = log_ratio_exact(neg ? -v : v, neg ? dv.ref_n[k] : dv.ref_p[k], ratio);
      const T w = exp_core((neg ? zn[k] : zp[k]) * l);
      acc_p[k] += pos ? w : T(0);
      acc_n[k] += neg ? w : T(0);
      if (small) {
        s1p[k] += pos ? l : T(0);
        s1n[k] += neg ? l : T(0);
        s2p[k] += pos ? l * l : T(0);
        s2n[k] += neg ? l * l : T(0);
      }
    }
  }
}

// The backward element loop of one set with log_ratio_exact, as forward_rows_exact: resets
// and fills the p statistics and writes the set's rows of grad_x (or scratch).
template <typename T>
void backward_rows_exact(const T* x, const int64_t* perm, int64_t b, int64_t e, int64_t K,
                         const Divisors<T>& dv, const T* zp, const T* zn, const T* ga_p,
                         const T* ga_n, const T* half0, bool small, T* st_p, T* st_n, T* s1p,
                         T* s1n, T* s2p, T* s2n, T* cp, T* cn, T* grad_x, T* scratch) {
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < K; ++k)
    st_p[k] = st_n[k] = s1p[k] = s1n[k] = s2p[k] = s2n[k] = cp[k] = cn[k] = T(0);
  for (int64_t i = b; i < e; ++i) {
    const int64_t r = perm ? perm[i] : i;
    const T* row = x + r * K;
    T* gx = grad_x ? grad_x + r * K : scratch;
    for (int64_t k = 0; k < K; ++k) {
      const T v = row[k];
      const bool neg = v < T(0), pos = v > T(0);
      const T p = neg ? zn[k] : zp[k];
      const T ratio = neg ? -v * dv.pre_n[k] * dv.inv_n[k] : v * dv.pre_p[k] * dv.inv_p[k];
      const T l = log_ratio_exact(neg ? -v : v, neg ? dv.ref_n[k] : dv.ref_p[k], ratio);
      const T z = p * l;
      const T w = exp_core(z);
      // w / ratio = ratio^(p - 1): exactly 1 for p == 1, also where exp_core flushed a
      // subnormal w to 0 (a y below 1.2e-38 times r); at ratio == 0 the one-sided [p == 1].
      T phi = p == T(1) ? T(1) : (ratio == T(0) ? T(0) : w / ratio);
      phi = phi == inf ? T(0) : phi;
      const T wz = w > T(0) ? w * z : T(0);
      st_p[k] += pos ? wz : T(0);
      st_n[k] += neg ? wz : T(0);
      if (small) {
        const bool fin = std::fabs(l) < inf;
        s1p[k] += pos ? l : T(0);
        s1n[k] += neg ? l : T(0);
        s2p[k] += pos ? l * l : T(0);
        s2n[k] += neg ? l * l : T(0);
        cp[k] += pos & fin ? T(1) : T(0);
        cn[k] += neg & fin ? T(1) : T(0);
      }
      const T a = neg ? ga_n[k] : ga_p[k];
      T d = a != T(0) ? a * phi : T(0);
      d = v == T(0) ? half0[k] : d;
      d = v != v ? v : d;
      gx[k] = d;
    }
  }
}

template <typename T>
void gnp_forward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                      int64_t K, Params<T> prm, T* out, T* state, int nthreads) {
  // state: [6, S, K] = r_pos, A_pos, g_pos, r_neg, A_neg, g_neg
  const int64_t SK = S * K;
  T* r_pos = state;
  T* a_pos = state + SK;
  T* g_pos = state + 2 * SK;
  T* r_neg = state + 3 * SK;
  T* a_neg = state + 4 * SK;
  T* g_neg = state + 5 * SK;
  const bool small = any_small(prm, K);
#pragma omp parallel num_threads(nthreads)
  {
    const Columns<T> col(prm, K);
    Divisors<T> dv(K);
    std::vector<T> mx(K), mn(K), acc_p(K), acc_n(K), s1p(K), s1n(K), s2p(K), s2n(K), wk(K);
#pragma omp for schedule(dynamic, 256)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      if (e <= b) {
        for (int64_t k = 0; k < K; ++k) {
          out[o + k] = r_pos[o + k] = a_pos[o + k] = g_pos[o + k] = T(0);
          r_neg[o + k] = a_neg[o + k] = g_neg[o + k] = T(0);
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
        // Largest and smallest y of each part; the reference is the largest for p > 0.
        const T rp = col.pp[k] > T(0) ? relu(mx[k]) : relu(mn[k]);
        const T rn = col.pn[k] > T(0) ? relu(-mn[k]) : relu(-mx[k]);
        r_pos[o + k] = rp;
        r_neg[o + k] = rn;
        acc_p[k] = acc_n[k] = s1p[k] = s1n[k] = s2p[k] = s2n[k] = wk[k] = T(0);
      }
      dv.fill(r_pos + o, r_neg + o, K, T(1));
      bool wide;
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        auto fn = dv.scaled ? (small ? forward_rows16<true, true> : forward_rows16<true, false>)
                            : (small ? forward_rows16<false, true> : forward_rows16<false, false>);
        wide = fn(x, perm, b, e, K, dv, col.zp.data(), col.zn.data(), acc_p.data(),
                  acc_n.data(), s1p.data(), s1n.data(), s2p.data(), s2n.data());
      } else
#endif
      {
        for (int64_t i = b; i < e; ++i) {
          const T* row = x + (perm ? perm[i] : i) * K;
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) {
            // Every operand is loaded unconditionally so that the selects vectorise.
            const T v = row[k], p_p = col.zp[k], p_n = col.zn[k];
            const bool neg = v < T(0), pos = v > T(0);
            const T ratio = neg ? -v * dv.pre_n[k] * dv.inv_n[k] : v * dv.pre_p[k] * dv.inv_p[k];
            const T y = neg ? -v : v, ref = neg ? dv.ref_n[k] : dv.ref_p[k];
            const T l = log_ratio(y, ref, ratio);
            // Counted per channel: a reduction clause here keeps the loop from vectorising.
            wk[k] += out_of_range(y, ref, ratio);
            const T z = (neg ? p_n : p_p) * l;
            const T w = exp_core(z);
            acc_p[k] += pos ? w : T(0);
            acc_n[k] += neg ? w : T(0);
            if (small) {
              s1p[k] += pos ? l : T(0);
              s1n[k] += neg ? l : T(0);
              s2p[k] += pos ? l * l : T(0);
              s2n[k] += neg ? l * l : T(0);
            }
          }
        }
        wide = false;
        for (int64_t k = 0; k < K; ++k) wide |= wk[k] != T(0);
      }
      if (wide) forward_rows_exact(x, perm, b, e, K, dv, col.zp.data(), col.zn.data(), small,
                                   acc_p.data(), acc_n.data(), s1p.data(), s1n.data(),
                                   s2p.data(), s2n.data());
      const T n = static_cast<T>(e - b);
      const T log_n = flog(n);
      const T *mxp = mx.data(), *mnp = mn.data(), *pp = col.pp.data(), *tp = col.tp.data(),
              *bp = col.bp.data(), *pn = col.pn.data(), *tn = col.tn.data(),
              *bn = col.bn.data(), *ap = acc_p.data(), *an = acc_n.data(),
              *l1p = s1p.data(), *l1n = s1n.data(), *l2p = s2p.data(), *l2n = s2n.data();
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const T hi = mxp[k], lo = mnp[k];
        const T bad = hi != hi ? T(1) : T(0);
        const T gp = part_value(r_pos[o + k], relu(lo), relu(hi), ap[k], l1p[k], l2p[k], pp[k],
                                tp[k], bp[k], n, log_n, bad);
        const T gn = part_value(r_neg[o + k], relu(-hi), relu(-lo), an[k], l1n[k], l2n[k],
                                pn[k], tn[k], bn[k], n, log_n, bad);
        a_pos[o + k] = ap[k];
        a_neg[o + k] = an[k];
        g_pos[o + k] = gp;
        g_neg[o + k] = gn;
        out[o + k] = gp - gn;
      }
    }
  }
}

// Per-set factors of one part: `ga` multiplies w / ratio in the element loop, `k0` is the
// one-sided derivative at y == 0 (both times the upstream gradient g). NaN in the part
// makes both NaN, so the set's gradients show it.
template <typename T>
inline void part_factors(T g, T r, T acc, T gout, T p, T t, T beta, T log_n, T zeros, T& ga,
                         T& k0) {
  const T inf = std::numeric_limits<T>::infinity();
  const bool regular = (r > T(0)) & (gout < inf) & (gout == gout);
  const T f = regular ? gout / (r * acc) : T(0);
  // Zero part: n^(beta - t) per zero y for p > 0, for the single zero for p < 0.
  const bool passes = (r == T(0)) & ((p > T(0)) | ((p < T(0)) & (zeros == T(1))));
  T z = passes ? fexp((beta - (passes ? t : T(0))) * log_n) : T(0);
  z = z == inf ? T(0) : z;
  ga = g * f;
  k0 = r == T(0) ? g * z : (p == T(1) ? g * f : T(0));
  ga = gout != gout ? gout : ga;
  k0 = gout != gout ? gout : k0;
}

// dG/da = pi/2 G E (1 + t^2), or its expansion pi/2 G (1 + p^2) v / 2 (see
// gnp_composite.py); 0 for a part that is not finite and positive.
template <typename T>
inline T grad_unit(T g, T gout, T acc, T st, T s1, T s2, T cnt, T p, T t, T n, T log_n) {
  const T inf = std::numeric_limits<T>::infinity();
  const bool live = (gout > T(0)) & (gout < inf);
  const T m1 = s1 / n;
  const bool expand = (std::fabs(p) < small_p<T>()) & (cnt == n) & (std::fabs(m1) < inf);
  const T var = std::max(s2 / n - m1 * m1, T(0));
  const T e = st / acc - (log_core(acc) - log_n);
  const T da = expand ? T(kHalfPi) * gout * (T(1) + p * p) * var * T(0.5)
                      : T(kHalfPi) * gout * e * (T(1) + t * t);
  return live ? g * da : T(0);
}

template <typename T>
void gnp_backward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                       int64_t K, Params<T> prm, const T* grad, const T* state, T* grad_x,
                       T* grad_params, int nthreads) {
  // grad_params: [nthreads, 4, K] partial sums for a_pos, b_pos, a_neg, b_neg (or null).
  const int64_t SK = S * K;
  const T* r_pos = state;
  const T* a_pos = state + SK;
  const T* g_pos = state + 2 * SK;
  const T* r_neg = state + 3 * SK;
  const T* a_neg = state + 4 * SK;
  const T* g_neg = state + 5 * SK;
  const T inf = std::numeric_limits<T>::infinity();
  const bool small = grad_params && any_small(prm, K);
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
    const Columns<T> col(prm, K);
    Divisors<T> dv(K);
    std::vector<T> ga_p(K), ga_n(K), half0(K), zp(K), zn(K), st_p(K), st_n(K), s1p(K), s1n(K),
        s2p(K), s2n(K), cp(K), cn(K), scratch(K), wk(K);
    T* acc = grad_params ? grad_params + static_cast<int64_t>(tid) * 4 * K : nullptr;
    if (acc)
      for (int64_t k = 0; k < 4 * K; ++k) acc[k] = T(0);
#pragma omp for schedule(static)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      if (e <= b) continue;
      const int64_t o = s * K;
      const T n = static_cast<T>(e - b);
      const T log_n = flog(n);
      // Zero counts matter only for a zero part with p < 0 (a unique zero or not).
      bool count = false;
      for (int64_t k = 0; k < K; ++k) {
        zp[k] = zn[k] = T(0);
        count |= ((r_pos[o + k] == T(0)) & (col.pp[k] < T(0))) |
                 ((r_neg[o + k] == T(0)) & (col.pn[k] < T(0)));
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
        T k0p, k0n;
        part_factors(g, r_pos[o + k], a_pos[o + k], g_pos[o + k], col.pp[k], col.tp[k],
                     col.bp[k], log_n, zp[k], ga_p[k], k0p);
        part_factors(g, r_neg[o + k], a_neg[o + k], g_neg[o + k], col.pn[k], col.tn[k],
                     col.bn[k], log_n, zn[k], ga_n[k], k0n);
        // Elements equal to 0 sit on both parts' kink: each part contributes half.
        half0[k] = T(0.5) * (k0p + k0n);
        st_p[k] = st_n[k] = s1p[k] = s1n[k] = s2p[k] = s2n[k] = cp[k] = cn[k] = wk[k] = T(0);
      }
      dv.fill(r_pos + o, r_neg + o, K, T(0));
      bool wide;
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        auto fn = dv.scaled ? (small ? backward_rows16<true, true> : backward_rows16<true, false>)
                            : (small ? backward_rows16<false, true> : backward_rows16<false, false>);
        wide = fn(x, perm, b, e, K, dv, col.zp.data(), col.zn.data(), ga_p.data(), ga_n.data(),
                  half0.data(), st_p.data(), st_n.data(), s1p.data(), s1n.data(), s2p.data(),
                  s2n.data(), cp.data(), cn.data(), grad_x);
      } else
#endif
      {
        for (int64_t i = b; i < e; ++i) {
          const int64_t r = perm ? perm[i] : i;
          const T* row = x + r * K;
          // Without grad_x the loop still runs for the p statistics; it writes to scratch.
          T* gx = grad_x ? grad_x + r * K : scratch.data();
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) {
            const T v = row[k], p_p = col.zp[k], p_n = col.zn[k];
            const T a_p = ga_p[k], a_n = ga_n[k], h0 = half0[k];
            const bool neg = v < T(0), pos = v > T(0);
            const T p = neg ? p_n : p_p;
            const T ratio = neg ? -v * dv.pre_n[k] * dv.inv_n[k] : v * dv.pre_p[k] * dv.inv_p[k];
            const T y = neg ? -v : v, ref = neg ? dv.ref_n[k] : dv.ref_p[k];
            const T l = log_ratio(y, ref, ratio);
            wk[k] += out_of_range(y, ref, ratio);   // as in the forward
            const T z = p * l;
            const T w = exp_core(z);
            // w / ratio, exactly 1 for p == 1 (backward_rows_exact).
            T phi = p == T(1) ? T(1) : (ratio == T(0) ? T(0) : w / ratio);
            phi = phi == inf ? T(0) : phi;
            const T wz = w > T(0) ? w * z : T(0);
            st_p[k] += pos ? wz : T(0);
            st_n[k] += neg ? wz : T(0);
            if (small) {
              const bool fin = std::fabs(l) < inf;
              s1p[k] += pos ? l : T(0);
              s1n[k] += neg ? l : T(0);
              s2p[k] += pos ? l * l : T(0);
              s2n[k] += neg ? l * l : T(0);
              cp[k] += pos & fin ? T(1) : T(0);
              cn[k] += neg & fin ? T(1) : T(0);
            }
            const T a = neg ? a_n : a_p;
            T d = a != T(0) ? a * phi : T(0);
            d = v == T(0) ? h0 : d;
            d = v != v ? v : d;
            gx[k] = d;
          }
        }
        wide = false;
        for (int64_t k = 0; k < K; ++k) wide |= wk[k] != T(0);
      }
      if (wide)
        backward_rows_exact(x, perm, b, e, K, dv, col.zp.data(), col.zn.data(), ga_p.data(),
                            ga_n.data(), half0.data(), small, st_p.data(), st_n.data(),
                            s1p.data(), s1n.data(), s2p.data(), s2n.data(), cp.data(),
                            cn.data(), grad_x, scratch.data());
      if (!acc) continue;
      // Parameters learn from parts with a finite, positive value; out = G+ - G-, so the
      // negative part's gradients enter with a minus sign.
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const T g = grad[o + k];
        const T gp = g_pos[o + k], gn = g_neg[o + k];
        acc[k] += grad_unit(g, gp, a_pos[o + k], st_p[k], s1p[k], s2p[k], cp[k], col.pp[k],
                            col.tp[k], n, log_n);
        acc[K + k] += (gp > T(0)) & (gp < inf) ? g * gp * log_n : T(0);
        acc[2 * K + k] -= grad_unit(g, gn, a_neg[o + k], st_n[k], s1n[k], s2n[k], cn[k],
                                    col.pn[k], col.tn[k], n, log_n);
        acc[3 * K + k] -= (gn > T(0)) & (gn < inf) ? g * gn * log_n : T(0);
      }
    }
  }
}

}  // namespace
}  // namespace gnpool

using namespace gnpool;

extern "C" {

int gnpool_abi_version() { return 5; }

void gnpool_gnp_forward_f32(const float* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                            int64_t K, const float* a_pos, const float* b_pos, const float* a_neg,
                            const float* b_neg, int64_t stride, float* out, float* state,
                            int nthreads) {
  gnp_forward_impl<float>(x, ptr, perm, S, K, {a_pos, b_pos, a_neg, b_neg, stride}, out, state,
                          nthreads);
}

void gnpool_gnp_forward_f64(const double* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                            int64_t K, const double* a_pos, const double* b_pos,
                            const double* a_neg, const double* b_neg, int64_t stride,
                            double* out, double* state, int nthreads) {
  gnp_forward_impl<double>(x, ptr, perm, S, K, {a_pos, b_pos, a_neg, b_neg, stride}, out, state,
                           nthreads);
}

void gnpool_gnp_backward_f32(const float* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                             int64_t K, const float* a_pos, const float* b_pos,
                             const float* a_neg, const float* b_neg, int64_t stride,
                             const float* grad, const float* state, float* grad_x,
                             float* grad_params, int nthreads) {
  gnp_backward_impl<float>(x, ptr, perm, S, K, {a_pos, b_pos, a_neg, b_neg, stride}, grad, state,
                           grad_x, grad_params, nthreads);
}

void gnpool_gnp_backward_f64(const double* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                             int64_t K, const double* a_pos, const double* b_pos,
                             const double* a_neg, const double* b_neg, int64_t stride,
                             const double* grad, const double* state, double* grad_x,
                             double* grad_params, int nthreads) {
  gnp_backward_impl<double>(x, ptr, perm, S, K, {a_pos, b_pos, a_neg, b_neg, stride}, grad,
                            state, grad_x, grad_params, nthreads);
}

}  // extern "C"
