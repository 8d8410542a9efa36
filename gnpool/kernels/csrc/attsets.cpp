// AttSets forward and backward, with scores either given or computed by a fused linear
// scoring layer.

#include "common.h"

namespace gnpool {
namespace {

// AttSets with its scoring layer z = act(W x + b) fused in: the scores of a row are
// computed from the row while it is in cache (once per row in forward and once in backward
// for sets of up to 64 rows, computed for the whole set at a time; twice in forward for
// larger sets), so no [E, K] score tensor ever exists. W is [Ko, K] with
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

// The same for n rows at once: out[r][c] = init_r[c] + sum_j a[r][j] * M[j * ld + c], where
// init_r is bias (or 0) or, with accumulate, out[r] itself. ROW_BLOCK rows times two vectors
// of outputs accumulate in registers, so each vector of M loaded serves ROW_BLOCK rows.
#if defined(__AVX512F__)
constexpr int ROW_BLOCK = 4;
#else
constexpr int ROW_BLOCK = 2;
#endif

template <typename T>
inline void rowsmat(const T* const* a, int64_t n, const T* M, int64_t inner, int64_t ld,
                    int64_t ncols, const T* bias, bool accumulate, T* const* out) {
  using V = Vec<T>;
  constexpr int64_t L = V::lanes;
  constexpr int RB = ROW_BLOCK;
  int64_t r0 = 0;
  for (; r0 + RB <= n; r0 += RB) {
    int64_t c0 = 0;
    for (; c0 + 2 * L <= ncols; c0 += 2 * L) {
      typename V::type acc[RB][2];
      for (int q = 0; q < RB; ++q) {
        if (accumulate) {
          acc[q][0] = V::load(out[r0 + q] + c0);
          acc[q][1] = V::load(out[r0 + q] + c0 + L);
        } else if (bias) {
          acc[q][0] = V::load(bias + c0);
          acc[q][1] = V::load(bias + c0 + L);
        } else {
          acc[q][0] = acc[q][1] = V::zero();
        }
      }
      for (int64_t j = 0; j < inner; ++j) {
        const typename V::type m0 = V::load(M + j * ld + c0), m1 = V::load(M + j * ld + c0 + L);
        for (int q = 0; q < RB; ++q) {
          const T v = a[r0 + q][j];
          acc[q][0] += v * m0;
          acc[q][1] += v * m1;
        }
      }
      for (int q = 0; q < RB; ++q) {
        V::store(out[r0 + q] + c0, acc[q][0]);
        V::store(out[r0 + q] + c0 + L, acc[q][1]);
      }
    }
    for (int q = 0; q < RB; ++q)
      for (int64_t c = c0; c < ncols; ++c) {
        T acc = accumulate ? out[r0 + q][c] : (bias ? bias[c] : T(0));
        for (int64_t j = 0; j < inner; ++j) acc += a[r0 + q][j] * M[j * ld + c];
        out[r0 + q][c] = acc;
      }
  }
  for (int64_t r = r0; r < n; ++r)
    vecmat(a[r], M, inner, ld, ncols, accumulate ? out[r] : bias, out[r]);
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

// Where AttSets' scores come from. GivenScores reads a score tensor; LinearScores computes
// act(W x + b) from the row. row() returns the scores of row r (x row xr), using buf when it
// has to compute them; a Grad, one per thread, takes each row's score gradient.
template <typename T>
struct GivenScores {
  static constexpr bool computed = false;
  const T* z;
  int64_t K;
  int act = 0;
  const T* row(int64_t r, const T*, T*) const { return z + r * K; }

  struct Grad {
    T* grad_z;  // [E, K] or null
    int64_t K;
    Grad(const GivenScores& sc, T* grad_z, T*, int) : grad_z(grad_z), K(sc.K) {}
    void add(int64_t r, const T*, const T* gz, T*) {
      if (grad_z) std::memcpy(grad_z + r * K, gz, sizeof(T) * K);
    }
    void finish() {}
  };
};

template <typename T>
struct LinearScores {
  static constexpr bool computed = true;
  const T* W;   // [Ko, K]
  const T* Wt;  // [K, Ko]
  const T* bias;
  int64_t K, Ko;
  int act;
  const T* row(int64_t, const T* xr, T* buf) const {
    score_row(xr, Wt, bias, K, Ko, act, buf);
    return buf;
  }
  // The scores of the n rows xr[i] into z[i].
  void rows(const T* const* xr, int64_t n, T* const* z) const {
    if (Ko == 1) {
      for (int64_t i = 0; i < n; ++i) score_row(xr[i], Wt, bias, K, Ko, act, z[i]);
      return;
    }
    rowsmat(xr, n, Wt, K, K, K, bias, false, z);
    if (act)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < K; ++k) z[i][k] = std::tanh(z[i][k]);
  }

  // dx += dz W; dW += dz^T x and db += dz, folded in blocks of ROWS rows.
  struct Grad {
    static constexpr int64_t ROWS = 64;
    const LinearScores& sc;
    T* gw;  // this thread's [Ko * K + Ko] partial dW, db, or null
    std::vector<T> gzb;
    std::vector<const T*> rows, gzrows;
    std::vector<T*> gxrows;
    int64_t buffered = 0;
    bool with_gx = false;
    Grad(const LinearScores& sc, T*, T* grad_w, int tid)
        : sc(sc), gw(grad_w ? grad_w + static_cast<int64_t>(tid) * (sc.Ko * sc.K + sc.Ko)
                            : nullptr),
          gzb(ROWS * sc.Ko), rows(ROWS), gzrows(ROWS), gxrows(ROWS) {
      if (gw)
        for (int64_t j = 0; j < sc.Ko * sc.K + sc.Ko; ++j) gw[j] = T(0);
      for (int64_t i = 0; i < ROWS; ++i) gzrows[i] = gzb.data() + i * sc.Ko;
    }
    // gx (null when x needs no gradient) already holds g w; the dz W part is added in finish.
    void add(int64_t, const T* xr, const T* gz, T* gx) {
      const int64_t K = sc.K, Ko = sc.Ko;
      if (!gx && !gw) return;
      T* gzk = gzb.data() + buffered * Ko;
      if (Ko == 1) {
        T total = T(0);
#pragma omp simd reduction(+ : total)
        for (int64_t k = 0; k < K; ++k) total += gz[k];
        gzk[0] = total;
      } else {
        for (int64_t k = 0; k < K; ++k) gzk[k] = gz[k];
      }
      if (gw)
        for (int64_t k = 0; k < Ko; ++k) gw[Ko * K + k] += gzk[k];
      with_gx = gx != nullptr;
      gxrows[buffered] = gx;
      rows[buffered++] = xr;
      if (buffered == ROWS) finish();
    }
    void finish() {
      if (!buffered) return;
      if (with_gx)
        rowsmat(gzrows.data(), buffered, sc.W, sc.Ko, sc.K, sc.K, static_cast<const T*>(nullptr),
                true, gxrows.data());
      if (gw) outer_update(gzb.data(), rows.data(), buffered, sc.Ko, sc.K, gw);
      buffered = 0;
    }
  };
};

// Computed scores of a whole set of up to ROWS rows, one thread's buffer: fill() computes
// them (row-blocked) and says whether it did; row(j) is the set's j-th row's scores. With
// given scores it never caches.
template <typename T, typename Scores>
struct SetScores {
  static constexpr int64_t ROWS = Scores::computed ? 64 : 0;
  int64_t K;
  std::vector<T> z;
  std::vector<const T*> xrows;
  std::vector<T*> zrows;
  explicit SetScores(int64_t K) : K(K), z(ROWS * K), xrows(ROWS), zrows(ROWS) {}
  bool fill(const Scores& sc, const T* x, const int64_t* perm, int64_t b, int64_t e) {
    if constexpr (!Scores::computed) {
      return false;
    } else {
      if (e - b > ROWS) return false;
      for (int64_t i = b; i < e; ++i) {
        xrows[i - b] = x + (perm ? perm[i] : i) * K;
        zrows[i - b] = z.data() + (i - b) * K;
      }
      sc.rows(xrows.data(), e - b, zrows.data());
      return true;
    }
  }
  const T* row(int64_t j) const { return z.data() + j * K; }
};

// AttSets forward: per set and channel m = max z, l = sum exp(z - m), out = sum w x. Computed
// scores of a set of up to SetScores::ROWS rows are kept between the two sweeps. A -inf
// score gives its element weight exactly 0; a channel with only -inf scores pools to 0
// (stored as m = 0, l = 0, which the backward turns into zero gradients).
template <typename T, typename Scores>
void attsets_forward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                          int64_t K, const Scores& sc, T* out, T* m_out, T* l_out,
                          int nthreads) {
#pragma omp parallel num_threads(nthreads)
  {
    SetScores<T, Scores> cache(K);
    std::vector<T> z(K), m(K), l(K), num(K);
#pragma omp for schedule(dynamic, 256)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      if (e <= b) {
        for (int64_t k = 0; k < K; ++k) out[o + k] = m_out[o + k] = l_out[o + k] = T(0);
        continue;
      }
      const bool cached = cache.fill(sc, x, perm, b, e);
      for (int64_t k = 0; k < K; ++k) {
        m[k] = -std::numeric_limits<T>::infinity();
        l[k] = num[k] = T(0);
      }
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* zr = cached ? cache.row(i - b) : sc.row(r, x + r * K, z.data());
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T v = zr[k];
          // NaN sticks: once m is NaN no comparison replaces it.
          m[k] = ((v > m[k]) | (v != v)) ? v : m[k];
        }
      }
      // A channel whose scores are all -inf (a fully masked set) has no weight anywhere:
      // with m = 0 its exp(z - m) are exactly 0 instead of NaN, and l = 0 makes it pool to
      // 0 like an empty set. NaN stays NaN.
      for (int64_t k = 0; k < K; ++k)
        if (m[k] == -std::numeric_limits<T>::infinity()) m[k] = T(0);
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* xr = x + r * K;
        const T* zr = cached ? cache.row(i - b) : sc.row(r, xr, z.data());
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T w = exp_core(zr[k] - m[k]);
          l[k] += w;
          num[k] += w * xr[k];
        }
      }
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        out[o + k] = l[k] == T(0) ? T(0) : num[k] / l[k];
        m_out[o + k] = m[k];
        l_out[o + k] = l[k];
      }
    }
  }
}

// AttSets backward: dx_i = g w_i and dz_i = g w_i (x_i - out) (through tanh when present),
// with the weights recomputed from m and l; the score gradient goes to the Scores' Grad.
template <typename T, typename Scores>
void attsets_backward_impl(const T* x, const int64_t* ptr, const int64_t* perm, int64_t S,
                           int64_t K, const Scores& sc, const T* grad, const T* out,
                           const T* m_in, const T* l_in, T* grad_x, T* grad_z, T* grad_w,
                           int nthreads) {
#pragma omp parallel num_threads(nthreads)
  {
    typename Scores::Grad back(sc, grad_z, grad_w, omp_get_thread_num());
    SetScores<T, Scores> cache(K);
    std::vector<T> z(K), g(K), go(K), m(K), il(K), gz(K), scratch(K);
#pragma omp for schedule(static)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t b = ptr[s], e = ptr[s + 1];
      const int64_t o = s * K;
      for (int64_t k = 0; k < K; ++k) {
        g[k] = grad[o + k];
        go[k] = grad[o + k] * out[o + k];
        m[k] = m_in[o + k];
        // l = 0: every weight of the channel is 0 (all scores -inf), and so is its gradient.
        il[k] = l_in[o + k] == T(0) ? T(0) : T(1) / l_in[o + k];
      }
      const bool cached = cache.fill(sc, x, perm, b, e);
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = perm ? perm[i] : i;
        const T* xr = x + r * K;
        // Without grad_x the loop writes that gradient to scratch.
        T* gx = grad_x ? grad_x + r * K : scratch.data();
        const T* zr = cached ? cache.row(i - b) : sc.row(r, xr, z.data());
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) {
          const T w = exp_core(zr[k] - m[k]) * il[k];
          gx[k] = g[k] * w;
          const T d = w * (g[k] * xr[k] - go[k]);
          gz[k] = sc.act ? d * (T(1) - zr[k] * zr[k]) : d;
        }
        back.add(r, xr, gz.data(), grad_x ? gx : nullptr);
      }
    }
    back.finish();
  }
}

}  // namespace
}  // namespace gnpool

using namespace gnpool;

extern "C" {

#define GNP_ATTSETS_API(T, SUFFIX)                                                            \
  void gnpool_attsets_forward_##SUFFIX(const T* x, const T* z, const int64_t* ptr,            \
                                       const int64_t* perm, int64_t S, int64_t K, T* out, T* m, \
                                       T* l, int nthreads) {                                    \
    attsets_forward_impl<T>(x, ptr, perm, S, K, GivenScores<T>{z, K}, out, m, l, nthreads);    \
  }                                                                                           \
  void gnpool_attsets_backward_##SUFFIX(const T* x, const T* z, const int64_t* ptr,           \
                                        const int64_t* perm, int64_t S, int64_t K,            \
                                        const T* grad, const T* out, const T* m, const T* l,  \
                                        T* grad_x, T* grad_z, int nthreads) {                 \
    attsets_backward_impl<T>(x, ptr, perm, S, K, GivenScores<T>{z, K}, grad, out, m, l,        \
                             grad_x, grad_z, nullptr, nthreads);                              \
  }                                                                                           \
  void gnpool_attsets_linear_forward_##SUFFIX(const T* x, const int64_t* ptr,                 \
                                              const int64_t* perm, int64_t S, int64_t K,      \
                                              const T* Wt, const T* bias, int64_t Ko, int act, \
                                              T* out, T* m, T* l, int nthreads) {             \
    const LinearScores<T> sc{nullptr, Wt, bias, K, Ko, act};                                  \
    attsets_forward_impl<T>(x, ptr, perm, S, K, sc, out, m, l, nthreads);                     \
  }                                                                                           \
  void gnpool_attsets_linear_backward_##SUFFIX(                                               \
      const T* x, const int64_t* ptr, const int64_t* perm, int64_t S, int64_t K, const T* W,  \
      const T* Wt, const T* bias, int64_t Ko, int act, const T* grad, const T* out,           \
      const T* m, const T* l, T* grad_x, T* grad_w, int nthreads) {                           \
    const LinearScores<T> sc{W, Wt, bias, K, Ko, act};                                        \
    attsets_backward_impl<T>(x, ptr, perm, S, K, sc, grad, out, m, l, grad_x, nullptr, grad_w, \
                             nthreads);                                                       \
  }

GNP_ATTSETS_API(float, f32)
GNP_ATTSETS_API(double, f64)

}  // extern "C"
