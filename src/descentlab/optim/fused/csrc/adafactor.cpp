// Adafactor's CPU kernel (transforms/factored.py; cpu_kernels.adafactor).
//
// For a tensor of ndim >= 2, a stack of n x m matrices (the last two dims)
// with the row statistics R (n per matrix) and column statistics C (m per
// matrix); for ndim <= 1 the full second moment V. Per element:
//   U = u * rsqrt(max(R_i*C_j / max(mean_i(R), eps1), eps1^2))   (factored; see Factored)
//   U = u * rsqrt(max(V, eps1^2))                                 (full)
// Per tensor, a first pass (sums) updates R and C (or V) and returns ||U||^2
// and ||p||^2, from which the clipping denominator and the parameter scale
// follow (the chain's ClipByBlockRms and ScaleByParamBlockRms), and a second
// pass (step) writes p = p + decays(U/denom*scale*(-rho)). Both are per tensor,
// so the op runs them tensor by tensor: the second pass then finds g and p of a
// tensor of up to about half the last-level cache still there (a 1024 x 1024
// float32 matrix: 8 MB), and moves 12 bytes per parameter less from memory.

#include "common.h"

namespace descentlab {
namespace {

// One pass over an n x m matrix of the stack, rows in parallel, reading g (and
// p) once. Per row i, a sweep computes u^2, adds it to per-column sums, and sums
// it, from which the row statistic R_i is updated at once (it depends on that
// row only); u^2/R_i is added to other per-column sums during the next row's
// sweep. Returned: the column sums of u^2 (m), of u^2/R_i (m), and ||p||^2 (1),
// in double (columns summed in T over blocks of kRows rows first). With them, ||U||^2 = norm * sum_j (sum_i u_ij^2/R_i)/C_j
// needs no second pass over g, wherever the eps1 cap of U is inactive (see
// adafactor_sums).
template <typename T>
std::vector<double> first_pass(const T* g, const T* p, T* R, const Reg<T>& reg, int64_t n, int64_t m,
                               double weight) {
  constexpr int64_t W = V<T>::size();
  constexpr int64_t kRows = 16;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(m, 1));
  const Lerp<T> lerp(weight);
  auto add = [](V<T>& a, V<T>& b) { return a + b; };
  return at::parallel_reduce(
      0, n, grain, std::vector<double>(2 * m + 1, 0.0),
      [&](int64_t begin, int64_t end, std::vector<double> acc) {
        const Reg<T> rg = reg;  // local copies stay in registers (see for_each)
        const Lerp<T> to_mean = lerp;
        std::vector<T> cols(m, T(0)), ys(m, T(0));
        const bool read_p = rg.has_l1 || rg.has_l2;
        // Row r's u^2/R_r is added to ys while row r + 1 streams in from memory;
        // its u^2 is recomputed from row r of g (and p), still in the L1 cache.
        const T* g_prev = nullptr;
        const T* p_prev = nullptr;
        V<T> inv_prev = splat<T>(0), p_sq = splat<T>(0);
        auto add_prev = [&](int64_t j, int64_t w) {
          const V<T> u = rg.grad(g_prev, read_p ? load(p_prev + j, w) : splat<T>(0), j, w);
          store(muladd(u * u, inv_prev, load(ys.data() + j, w)), ys.data() + j, w);
        };
        auto fold = [&] {
          for (int64_t j = 0; j < m; ++j) {
            acc[j] += double(cols[j]);
            acc[m + j] += double(ys[j]);
          }
          std::fill(cols.begin(), cols.end(), T(0));
          std::fill(ys.begin(), ys.end(), T(0));
        };
        for (int64_t r = begin; r < end; ++r) {
          const T* gr = g + r * m;
          const T* pr = p + r * m;
          const bool has_prev = g_prev != nullptr;
          // Column vectors [j, j + w); w is the constant W in the loops over
          // whole vectors, so the compiler drops the tail handling there.
          auto column = [&](int64_t j, int64_t w, V<T>& part) {
            const V<T> pj = load(pr + j, w);  // lanes past w are 0, so are u and sq
            const V<T> u = rg.grad(gr, pj, j, w);
            const V<T> sq = u * u;
            store(load(cols.data() + j, w) + sq, cols.data() + j, w);
            if (has_prev) add_prev(j, w);
            part = part + sq;
            p_sq = muladd(pj, pj, p_sq);
          };
          // The row's sum: lanes over blocks of 16 vectors, then in double.
          double sum = 0.0;
          int64_t j = 0;
          for (; j + 16 * W <= m;) {
            V<T> part = splat<T>(0);
            for (int64_t k = 0; k < 16; ++k, j += W) column(j, W, part);
            sum += at::vec::vec_reduce_all<T>(add, part);
          }
          V<T> part = splat<T>(0);
          for (; j + W <= m; j += W) column(j, W, part);
          if (j < m) column(j, m - j, part);
          sum += at::vec::vec_reduce_all<T>(add, part);
          // the chain's vector_norm(u, dim=-1).square_().div_(m), then lerp_
          const T root = T(std::sqrt(sum));
          T updated[W];
          to_mean(V<T>(R[r]), V<T>(root * root / T(m))).store(updated);
          R[r] = updated[0];
          inv_prev = V<T>(updated[0] > T(0) ? T(1) / updated[0] : T(0));
          g_prev = gr;
          p_prev = pr;
          if ((r - begin + 1) % kRows == 0) fold();
        }
        if (g_prev != nullptr) {
          int64_t j = 0;
          for (; j + W <= m; j += W) add_prev(j, W);
          if (j < m) add_prev(j, m - j);
        }
        fold();
        acc[2 * m] += at::vec::vec_reduce_all<T>(add, p_sq);
        return acc;
      },
      [](std::vector<double> a, const std::vector<double>& b) {
        for (size_t j = 0; j < a.size(); ++j) a[j] += b[j];
        return a;
      });
}

// stat = lerp(stat, (T(sqrt(sum)))^2 / count, weight) for each of `size` statistics:
// the chain's vector_norm(u, dim).square_().div_(count), then lerp_.
template <typename T>
void update_means(T* stat, const double* sums, int64_t size, int64_t count, double weight) {
  std::vector<T> mean(size);
  for (int64_t i = 0; i < size; ++i) {
    const T root = T(std::sqrt(sums[i]));
    mean[i] = root * root / T(count);
  }
  const Lerp<T> lerp(weight);
  constexpr int64_t W = V<T>::size();
  for (int64_t i = 0; i < size; i += W) {
    const int64_t w = std::min(W, size - i);
    store(lerp(load(stat + i, w), load(mean.data() + i, w)), stat + i, w);
  }
}

// The factors of U = u * min(a_i * b_j, cap) for a stack of matrices, the
// factored scaling with a multiplication per element instead of a division
// and a square root:
//   rsqrt(max(R_i*C_j/norm, eps1^2)) = min(sqrt(norm/R_i) * rsqrt(C_j), rsqrt(eps1^2))
// with norm = max(mean_i(R), eps1) per matrix, a_i = sqrt(norm/R_i) and
// b_j = rsqrt(C_j) computed in double and rounded once: within two ulps of
// the chain's per-element arithmetic (a zero R_i or C_j gives an infinite
// factor, which the cap turns into the chain's 1/eps1).
template <typename T>
struct Factored {
  std::vector<T> a, b;
  std::vector<double> norms;  // max(mean_i(R), eps1) per matrix
  V<T> cap;
  T cap_value, max_a = T(0), max_b = T(0);  // the largest factors of non-zero statistics
  int64_t n, m;
  Factored(const T* R, const T* C, int64_t batches, int64_t n_, int64_t m_, double eps1)
      : a(batches * n_), b(batches * m_), norms(batches), cap(splat<T>(eps1 * eps1).rsqrt()), n(n_), m(m_) {
    T lanes[V<T>::size()];
    cap.store(lanes);
    cap_value = lanes[0];
    for (int64_t s = 0; s < batches; ++s) {
      double total = 0.0;
      for (int64_t i = 0; i < n; ++i) total += double(R[s * n + i]);
      // the chain's row_var.mean(dim=-2).clamp_(min=eps1), in T
      const double norm = norms[s] = double(std::max(T(total / double(n)), T(eps1)));
      for (int64_t i = 0; i < n; ++i) {
        a[s * n + i] = T(std::sqrt(norm / double(R[s * n + i])));
        if (R[s * n + i] > T(0)) max_a = std::max(max_a, a[s * n + i]);
      }
      for (int64_t j = 0; j < m; ++j) {
        b[s * m + j] = T(1.0 / std::sqrt(double(C[s * m + j])));
        if (C[s * m + j] > T(0)) max_b = std::max(max_b, b[s * m + j]);
      }
    }
  }
  // Whether no element with a non-zero row and column statistic reaches the
  // cap (elements of a zero row or column have u = 0: they add nothing).
  bool uncapped() const { return double(max_a) * double(max_b) < double(cap_value); }
  // U at row r, columns [j, j + w), of matrix s.
  inline V<T> operator()(const V<T>& u, int64_t s, int64_t r, int64_t j, int64_t w) const {
    return at::vec::minimum(V<T>(a[s * n + r]) * load(b.data() + s * m + j, w), cap) * u;
  }
};

// (Σ a², Σ b²) of f(b, r, j, w) -> (a, b) over every row r of every matrix b of
// the stack (rows in parallel), for the vectors [j, j + w) of the row.
template <typename T, typename F>
inline std::pair<double, double> row_sum_squares(int64_t batches, int64_t n, int64_t m, const F& f) {
  using P = std::pair<double, double>;
  constexpr int64_t W = V<T>::size();
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(m, 1));
  return at::parallel_reduce(
      0, batches * n, grain, P(0.0, 0.0),
      [&](int64_t begin, int64_t end, P acc) {
        const F fn = f;
        for (int64_t row = begin; row < end; ++row) {
          for (int64_t j0 = 0; j0 < m; j0 += 64 * W) {
            V<T> sa = splat<T>(0), sb = splat<T>(0);
            for (int64_t j = j0; j < std::min(m, j0 + 64 * W); j += W) {
              const auto ab = fn(row / n, row % n, j, std::min(W, m - j));  // lanes past w are 0
              sa = muladd(ab.first, ab.first, sa);
              sb = muladd(ab.second, ab.second, sb);
            }
            acc.first += at::vec::vec_reduce_all<T>([](V<T>& a, V<T>& b) { return a + b; }, sa);
            acc.second += at::vec::vec_reduce_all<T>([](V<T>& a, V<T>& b) { return a + b; }, sb);
          }
        }
        return acc;
      },
      [](P x, P y) { return P(x.first + y.first, x.second + y.second); });
}

// The shape of parameter k as a stack of matrices: (batches, n, m).
inline std::array<int64_t, 3> stack_shape(const at::Tensor& p) {
  int64_t batches = 1;
  for (int64_t d = 0; d < p.dim() - 2; ++d) batches *= p.size(d);
  return {batches, p.size(-2), p.size(-1)};
}

inline void check_factored(const char* kernel, at::TensorList params, at::TensorList grads,
                           at::TensorList firsts, at::TensorList seconds, at::IntArrayRef factored) {
  check_tensors(kernel, params, {{"grads", grads}});
  TORCH_CHECK(firsts.size() == params.size() && seconds.size() == params.size() &&
                  factored.size() == params.size(),
              "descentlab fused ", kernel, ": one statistic per parameter expected");
  for (size_t k = 0; k < params.size(); ++k) {
    const auto& p = params[k];
    const bool f = factored[k] != 0;
    TORCH_CHECK(!f || p.dim() > 1, "descentlab fused ", kernel, ": parameter ", k, " is not a matrix");
    const auto shape = f ? stack_shape(p) : std::array<int64_t, 3>{0, 0, 0};
    const int64_t want_first = f ? shape[0] * shape[1] : p.numel();
    const int64_t want_second = f ? shape[0] * shape[2] : p.numel();
    for (const auto& [t, want] : {std::make_pair(firsts[k], want_first), std::make_pair(seconds[k], want_second)}) {
      TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == p.scalar_type() &&
                      t.numel() == want,
                  "descentlab fused ", kernel, ": the second-moment statistics of parameter ", k,
                  " are not contiguous CPU tensors of its dtype and expected size (use fused=False)");
    }
  }
}

// The first pass over a parameter: updates its statistics, returns (||U||^2, ||p||^2).
template <typename T>
std::pair<double, double> adafactor_sums(const at::Tensor& param, const at::Tensor& grad,
                                         const at::Tensor& row_var, const at::Tensor& col_var, bool factored,
                                         double weight, double eps1, double l1, double l2) {
  const T* p = ptr<T>(param);
  const T* g = ptr<T>(grad);
  T* first = ptr<T>(row_var);
  const Reg<T> reg(l1, l2, 0.0, 0.0);
  const bool read_p = reg.has_l1 || reg.has_l2;
  const V<T> eps1_sq = splat<T>(eps1 * eps1);
  std::pair<double, double> sums;
  if (factored) {
    T* C = ptr<T>(col_var);
    const auto shape = stack_shape(param);
    const int64_t batches = shape[0], n = shape[1], m = shape[2];
    std::vector<std::vector<double>> ys(batches);
    sums = {0.0, 0.0};
    for (int64_t b = 0; b < batches; ++b) {
      auto acc = first_pass<T>(g + b * n * m, p + b * n * m, first + b * n, reg, n, m, weight);
      update_means<T>(C + b * m, acc.data(), m, n, weight);
      sums.second += acc[2 * m];
      ys[b].assign(acc.begin() + m, acc.begin() + 2 * m);
    }
    const Factored<T> factored_scale(first, C, batches, n, m, eps1);
    if (factored_scale.uncapped()) {
      // ||U||^2 = sum_ij u_ij^2 a_i^2 b_j^2 = norm * sum_j b_j^2 sum_i u_ij^2 / R_i
      for (int64_t b = 0; b < batches; ++b) {
        double total = 0.0;
        for (int64_t j = 0; j < m; ++j) {
          if (C[b * m + j] > T(0)) total += ys[b][j] / double(C[b * m + j]);
        }
        sums.first += factored_scale.norms[b] * total;
      }
    } else {
      // Some R_i*C_j/norm < eps1^2: a second pass over g, per element.
      const Factored<T>* scale = &factored_scale;
      sums.first = row_sum_squares<T>(batches, n, m, [=](int64_t b, int64_t r, int64_t j, int64_t w) {
        const int64_t at = (b * n + r) * m + j;
        const V<T> u = reg.pre(load(g + at, w), read_p ? load(p + at, w) : splat<T>(0));
        return std::make_pair((*scale)(u, b, r, j, w), splat<T>(0));
      }).first;
    }
  } else {
    const Lerp<T> lerp(weight);
    sums = sum_squares<T>(param.numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> v = lerp(load(first + i, n), u * u);
      store(v, first + i, n);
      return std::make_pair(at::vec::maximum(v, eps1_sq).rsqrt() * u, pi);
    });
  }
  return sums;
}

// The second pass over a parameter, given the clipping denominator, scale and -rho.
template <typename T>
void adafactor_step(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& row_var,
                    const at::Tensor& col_var, bool factored, double eps1, double denom_, double scale_,
                    double neg_rho_, double own_decay, double l1, double l2, double decay) {
  T* p = ptr<T>(param);
  const T* g = ptr<T>(grad);
  const T* first = ptr<T>(row_var);
  const Reg<T> reg(l1, l2, decay, 0.0);
  const V<T> eps1_sq = splat<T>(eps1 * eps1);
  const V<T> denom = splat<T>(denom_), scale = splat<T>(scale_), neg_rho = splat<T>(neg_rho_);
  const V<T> own = splat<T>(own_decay);
  const bool clip = denom_ != 1.0, has_own = own_decay != 0;
  auto finish = [=](V<T> x, const V<T>& pi) {
    if (clip) x = x / denom;
    x = x * scale * neg_rho;
    if (has_own) x = muladd(pi, own, x);
    return reg.step(x, pi);
  };
  if (factored) {
    const T* C = ptr<T>(col_var);
    const auto shape = stack_shape(param);
    const int64_t batches = shape[0], n = shape[1], m = shape[2];
    const Factored<T> factor(first, C, batches, n, m, eps1);
    const T* a = factor.a.data();
    const T* b = factor.b.data();
    const V<T> cap = factor.cap;
    constexpr int64_t W = V<T>::size();
    at::parallel_for(0, batches * n, std::max<int64_t>(1, kGrain / std::max<int64_t>(m, 1)),
                     [&](int64_t begin, int64_t end) {
      // Local copies: the compiler keeps them in registers (see for_each).
      const auto fin = finish;
      const auto rg = reg;
      const V<T> top = cap;
      for (int64_t row = begin; row < end; ++row) {
        const V<T> ai = V<T>(a[row]);
        const T* bj = b + (row / n) * m;
        const T* gr = g + row * m;
        T* pr = p + row * m;
        auto column = [&](int64_t j, int64_t w) {
          const V<T> pj = load(pr + j, w);
          const V<T> scaled = at::vec::minimum(ai * load(bj + j, w), top) * rg.grad(gr, pj, j, w);
          store(fin(scaled, pj), pr + j, w);
        };
        int64_t j = 0;
        for (; j + W <= m; j += W) column(j, W);  // whole vectors: no tail handling
        if (j < m) column(j, m - j);
      }
    });
  } else {
    for_each<T>(param.numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      store(finish(at::vec::maximum(load(first + i, n), eps1_sq).rsqrt() * u, pi), p + i, n);
    });
  }
}

// `x` rounded to T, as the chain's norm, computed in T, is before `.item()`.
template <typename T>
inline double rounded(double x) { return double(T(x)); }

void adafactor(at::TensorList params, at::TensorList grads, at::TensorList row_vars, at::TensorList col_vars,
               at::IntArrayRef factored, at::ArrayRef<double> weights, at::ArrayRef<double> eps1s,
               at::ArrayRef<double> roots, at::ArrayRef<double> neg_rhos, double clip_threshold, double eps2,
               double own_decay, double l1, double l2, double decay) {
  check_factored("adafactor", params, grads, row_vars, col_vars, factored);
  DL_REQUIRE("adafactor", weights.size() == params.size() && eps1s.size() == params.size());
  DL_REQUIRE("adafactor", roots.size() == params.size() && neg_rhos.size() == params.size());
  for_tensors("adafactor", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    const bool f = factored[k] != 0;
    const auto sums =
        adafactor_sums<T>(params[k], grads[k], row_vars[k], col_vars[k], f, weights[k], eps1s[k], l1, l2);
    // ClipByBlockRms: max(1, RMS(U)/d); ScaleByParamBlockRms: max(eps2, RMS(p)), with
    // RMS = norm/sqrt(numel) and the norm rounded to T, as the chain computes them.
    const double denom = std::max(1.0, rounded<T>(std::sqrt(sums.first)) / (roots[k] * clip_threshold));
    const double scale = std::max(eps2, rounded<T>(std::sqrt(sums.second)) / roots[k]);
    adafactor_step<T>(params[k], grads[k], row_vars[k], col_vars[k], f, eps1s[k], denom, scale, neg_rhos[k],
                      own_decay, l1, l2, decay);
  });
}

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY_FRAGMENT(descentlab_fused, m) {
  using namespace descentlab;
  m.def("adafactor(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] row_vars, Tensor(c!)[] col_vars, "
        "int[] factored, float[] weights, float[] eps1s, float[] roots, float[] neg_rhos, "
        "float clip_threshold, float eps2, float own_decay, float l1, float l2, float decay) -> ()",
        &adafactor);
}
