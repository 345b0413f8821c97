// CPU kernels for optimizers whose step needs sums over whole tensors (or the
// whole param group) before it can write: a first pass computes the sums, the
// Python side turns them into the per-tensor scalars the chain would compute
// (cpu_kernels.py), and a last pass writes. Each pass reads only what it
// needs; see the byte counts in benchmarks/optimizer_step.py.
//
//   LAMB       ||p||, ||r|| per tensor, then the step          (one op, two passes)
//   LARS       ||g||, ||p|| per tensor, then the step          (one op, two passes)
//   Prodigy    <g, p0 - p> and ||s||_1 per tensor (s updated), then the moments and the step
//   Adafactor  row and column sums of g^2 (factored statistics updated), then
//              ||U|| and ||p|| per tensor, then the step       (two ops, three passes)

#include "common.h"

namespace descentlab {
namespace {

// -- LAMB: Adam direction + decoupled decay, scaled per tensor by ||p||/||r|| ------
//
// The first pass updates the moments and sums ||p||^2 and ||r||^2, the second
// recomputes r from the updated moments and writes p.

void lamb(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
          at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
          at::ArrayRef<double> bias_corrections1, at::ArrayRef<double> sqrt_bias_corrections2,
          double lr, double beta1, double beta2, double eps, double weight_decay,
          double trust_coefficient, bool amsgrad, double l1, double l2, double decay) {
  check_tensors("lamb", params,
                {{"grads", grads}, {"exp_avgs", exp_avgs},
                 {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}});
  DL_REQUIRE("lamb", !amsgrad || !max_exp_avg_sqs.empty());
  DL_REQUIRE("lamb", bias_corrections1.size() == params.size());
  DL_REQUIRE("lamb", sqrt_bias_corrections2.size() == params.size());
  for_tensors("lamb", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* m = ptr<T>(exp_avgs[k]);
    T* v = ptr<T>(exp_avg_sqs[k]);
    T* vmax = amsgrad ? ptr<T>(max_exp_avg_sqs[k]) : nullptr;
    const Reg<T> reg(l1, l2, decay, lr);
    const AdamMoments<T> adam(beta1, beta2, eps, bias_corrections1[k], sqrt_bias_corrections2[k]);
    const V<T> wd = splat<T>(weight_decay);
    const bool has_wd = weight_decay != 0;
    auto direction = [=](const V<T>& mi, const V<T>& vi, const V<T>& pi) {
      const V<T> r = adam.direction(mi, vi);
      return has_wd ? muladd(pi, wd, r) : r;
    };
    const auto sums = sum_squares<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const auto mv = adam_moments(adam, reg.grad(g, pi, i, n), m, v, vmax, i, n);
      return std::make_pair(pi, direction(mv.first, mv.second, pi));
    });
    const T p_norm = T(std::sqrt(sums.first)), r_norm = T(std::sqrt(sums.second));
    const V<T> ratio = V<T>((p_norm > 0 && r_norm > 0) ? T(trust_coefficient) * p_norm / r_norm : T(1));
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> vi = load(vmax ? vmax + i : v + i, n);
      store(reg.post(direction(load(m + i, n), vi, pi) * ratio, pi), p + i, n);
    });
  });
}

// -- LARS: eta*||p||/(||g|| + wd*||p||) for matrices, momentum from a zero buffer ---

void lars(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers,
          at::IntArrayRef scaled, double lr, double weight_decay, double momentum, double dampening,
          double trust_coefficient, bool nesterov, double l1, double l2, double decay) {
  check_tensors("lars", params, {{"grads", grads}, {"momentum_buffers", momentum_buffers}});
  DL_REQUIRE("lars", momentum == 0 || !momentum_buffers.empty());
  DL_REQUIRE("lars", scaled.size() == params.size());
  const bool has_momentum = momentum != 0;
  for_tensors("lars", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* buf = has_momentum ? ptr<T>(momentum_buffers[k]) : nullptr;
    const Reg<T> reg(l1, l2, decay, lr);
    const V<T> wd = splat<T>(weight_decay), mu = splat<T>(momentum);
    const V<T> damp = splat<T>(1.0 - dampening);
    const bool matrix = scaled[k] != 0;
    T ratio_value = T(1);
    if (matrix) {
      const auto sums = sum_squares<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        return std::make_pair(reg.grad(g, pi, i, n), pi);
      });
      const T g_norm = T(std::sqrt(sums.first)), p_norm = T(std::sqrt(sums.second));
      const T den = g_norm + T(weight_decay) * p_norm;
      if (p_norm > 0 && den > 0) ratio_value = T(trust_coefficient) * p_norm / den;
    }
    const V<T> ratio = V<T>(ratio_value);
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      V<T> u = reg.grad(g, pi, i, n);
      if (matrix) u = muladd(pi, wd, u) * ratio;
      V<T> d = u;
      if (has_momentum) {
        const V<T> b = muladd(u, damp, load(buf + i, n) * mu);
        store(b, buf + i, n);
        d = nesterov ? muladd(b, mu, u) : b;
      }
      store(reg.post(d, pi), p + i, n);
    });
  });
}

// -- Prodigy (transforms/prodigy.py) -------------------------------------------------
//
// Pass 1 (prodigy_sums): s = beta3*s + s_scale*u, and per tensor <u, p0 - p>
// and ||s||_1, which the Python side turns into the new estimate of d. Pass 2
// (prodigy_step): the moments, with the d of the previous step, and
// p = p*keep - d_lr*m/(sqrt(v) + d_new*eps) (or atan2(m, sqrt(v)) when
// eps is None), the step the chain returns as p_new - p. Moving the moments to
// the second pass lets the first read 4 tensors and write 1, the second read
// 4 and write 3: 48 bytes per float32 parameter, against 52 with the moments
// in the first pass.

at::Tensor prodigy_sums(at::TensorList params, at::TensorList grads, at::TensorList p0s,
                        at::TensorList ss, double beta3, double s_scale, double weight_decay,
                        double l1, double l2) {
  check_tensors("prodigy_sums", params, {{"grads", grads}, {"p0s", p0s}, {"ss", ss}});
  DL_REQUIRE("prodigy_sums", !p0s.empty() && !ss.empty());
  const int64_t count = static_cast<int64_t>(params.size());
  at::Tensor out = at::zeros({2, count}, at::kDouble);
  double* dots = out.data_ptr<double>();
  double* l1s = dots + count;
  for_tensors("prodigy_sums", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    const T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const T* p0 = ptr<T>(p0s[k]);
    T* s = ptr<T>(ss[k]);
    const Reg<T> reg(l1, l2, 0.0, 0.0, weight_decay);
    const V<T> b3 = splat<T>(beta3), scale = splat<T>(s_scale);
    // Short blocks of float lanes: the dot product is a sum of terms of both
    // signs that the estimate of d amplifies (see ProdigyStep._estimate).
    const auto sums = descentlab::sums<T, 4, false>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> si = muladd(u, scale, load(s + i, n) * b3);
      store(si, s + i, n);
      return std::make_pair(u * (load(p0 + i, n) - pi), si.abs());
    });
    dots[k] = sums.first;
    l1s[k] = sums.second;
  });
  return out;
}

void prodigy_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                  at::TensorList exp_avg_sqs, double beta1, double m_scale, double beta2,
                  double v_scale, bool move, double keep, double neg_step, double eps_d, bool atan2,
                  double weight_decay, double l1, double l2, double decay) {
  check_tensors("prodigy_step", params, {{"grads", grads}, {"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  DL_REQUIRE("prodigy_step", !exp_avgs.empty() && !exp_avg_sqs.empty());
  for_tensors("prodigy_step", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* m = ptr<T>(exp_avgs[k]);
    T* v = ptr<T>(exp_avg_sqs[k]);
    const Reg<T> reg(l1, l2, decay, 1.0, weight_decay);
    const V<T> b1 = splat<T>(beta1), cm = splat<T>(m_scale);
    const V<T> b2 = splat<T>(beta2), cv = splat<T>(v_scale);
    const V<T> kp = splat<T>(keep), step = splat<T>(neg_step), e = splat<T>(eps_d);
    const bool scale_p = keep != 1.0;
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> mi = muladd(u, cm, load(m + i, n) * b1);
      store(mi, m + i, n);
      const V<T> vi = muladd(cv * u, u, load(v + i, n) * b2);
      store(vi, v + i, n);
      V<T> d = V<T>(T(0));
      if (move) {
        const V<T> kept = scale_p ? pi * kp : pi;
        const V<T> den = vi.sqrt();
        const V<T> x = atan2 ? muladd(mi.atan2(den), step, kept) : kept + step * mi / (den + e);
        d = x - pi;
      }
      store(reg.step(d, pi), p + i, n);
    });
  });
}

// -- Adafactor (transforms/factored.py) ------------------------------------------------
//
// For a tensor of ndim >= 2, a stack of n x m matrices (the last two dims)
// with the row statistics R (n per matrix) and column statistics C (m per
// matrix); for ndim <= 1 the full second moment V. Per element:
//   U = u * rsqrt(max(R_i*C_j / max(mean_i(R), eps1), eps1^2))   (factored; see Factored)
//   U = u * rsqrt(max(V, eps1^2))                                 (full)
// adafactor_sums updates R and C (or V) and returns ||U||^2 and ||p||^2 per
// tensor; adafactor_step writes p = p + decays(U/denom*scale*(-rho)).

// One pass over an n x m matrix of the stack, rows in parallel, reading g (and p)
// once. Per row i, a sweep computes u^2 (kept in a row buffer, in cache), adds
// it to per-column sums, and sums it, from which the row statistic R_i is
// updated at once (it depends on that row only); u^2/R_i is added to other
// per-column sums during the next row's sweep. Returned: the column sums of u^2 (m), of
// u^2/R_i (m), and ||p||^2 (1), in double (columns summed in T over blocks of
// kRows rows first). With them, ||U||^2 = norm * sum_j (sum_i u_ij^2/R_i)/C_j
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
        std::vector<T> rows(2 * m), cols(m, T(0)), ys(m, T(0));
        T* cur = rows.data();
        T* prev = cur + m;
        // Row r's u^2/R_r is added to ys while row r + 1 streams in from memory.
        bool pending = false;
        V<T> inv_prev = splat<T>(0), p_sq = splat<T>(0);
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
          double sum = 0.0;
          V<T> part = splat<T>(0);
          for (int64_t j = 0, count = 0; j < m; j += W) {
            const int64_t w = std::min(W, m - j);
            const V<T> pj = load(pr + j, w);  // lanes past w are 0, so are u and sq
            const V<T> u = rg.grad(gr, pj, j, w);
            const V<T> sq = u * u;
            store(sq, cur + j, w);
            store(load(cols.data() + j, w) + sq, cols.data() + j, w);
            if (pending) store(muladd(load(prev + j, w), inv_prev, load(ys.data() + j, w)), ys.data() + j, w);
            part = part + sq;
            p_sq = muladd(pj, pj, p_sq);
            if (++count == 16) {
              sum += at::vec::vec_reduce_all<T>(add, part);
              part = splat<T>(0);
              count = 0;
            }
          }
          sum += at::vec::vec_reduce_all<T>(add, part);
          // the chain's vector_norm(u, dim=-1).square_().div_(m), then lerp_
          const T root = T(std::sqrt(sum));
          T updated[W];
          to_mean(V<T>(R[r]), V<T>(root * root / T(m))).store(updated);
          R[r] = updated[0];
          inv_prev = V<T>(updated[0] > T(0) ? T(1) / updated[0] : T(0));
          std::swap(cur, prev);
          pending = true;
          if ((r - begin + 1) % kRows == 0) fold();
        }
        if (pending) {
          for (int64_t j = 0; j < m; j += W) {
            const int64_t w = std::min(W, m - j);
            store(muladd(load(prev + j, w), inv_prev, load(ys.data() + j, w)), ys.data() + j, w);
          }
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

at::Tensor adafactor_sums(at::TensorList params, at::TensorList grads, at::TensorList row_vars,
                          at::TensorList col_vars, at::IntArrayRef factored, at::ArrayRef<double> weights,
                          at::ArrayRef<double> eps1s, double l1, double l2) {
  check_factored("adafactor_sums", params, grads, row_vars, col_vars, factored);
  DL_REQUIRE("adafactor_sums", weights.size() == params.size() && eps1s.size() == params.size());
  const int64_t count = static_cast<int64_t>(params.size());
  at::Tensor out = at::zeros({2, count}, at::kDouble);
  double* u_sq = out.data_ptr<double>();
  double* p_sq = u_sq + count;
  for_tensors("adafactor_sums", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    const T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* first = ptr<T>(row_vars[k]);
    const Reg<T> reg(l1, l2, 0.0, 0.0);
    const bool read_p = reg.has_l1 || reg.has_l2;
    const V<T> eps1_sq = splat<T>(eps1s[k] * eps1s[k]);
    std::pair<double, double> sums;
    if (factored[k] != 0) {
      T* C = ptr<T>(col_vars[k]);
      const auto shape = stack_shape(params[k]);
      const int64_t batches = shape[0], n = shape[1], m = shape[2];
      std::vector<std::vector<double>> ys(batches);
      sums = {0.0, 0.0};
      for (int64_t b = 0; b < batches; ++b) {
        auto acc = first_pass<T>(g + b * n * m, p + b * n * m, first + b * n, reg, n, m, weights[k]);
        update_means<T>(C + b * m, acc.data(), m, n, weights[k]);
        sums.second += acc[2 * m];
        ys[b].assign(acc.begin() + m, acc.begin() + 2 * m);
      }
      const Factored<T> factored_scale(first, C, batches, n, m, eps1s[k]);
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
      const Lerp<T> lerp(weights[k]);
      sums = sum_squares<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        const V<T> u = reg.grad(g, pi, i, n);
        const V<T> v = lerp(load(first + i, n), u * u);
        store(v, first + i, n);
        return std::make_pair(at::vec::maximum(v, eps1_sq).rsqrt() * u, pi);
      });
    }
    u_sq[k] = sums.first;
    p_sq[k] = sums.second;
  });
  return out;
}

void adafactor_step(at::TensorList params, at::TensorList grads, at::TensorList row_vars,
                    at::TensorList col_vars, at::IntArrayRef factored, at::ArrayRef<double> eps1s,
                    at::ArrayRef<double> denoms, at::ArrayRef<double> scales, at::ArrayRef<double> neg_rhos,
                    double own_decay, double l1, double l2, double decay) {
  check_factored("adafactor_step", params, grads, row_vars, col_vars, factored);
  DL_REQUIRE("adafactor_step", eps1s.size() == params.size() && denoms.size() == params.size());
  DL_REQUIRE("adafactor_step", scales.size() == params.size() && neg_rhos.size() == params.size());
  for_tensors("adafactor_step", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const T* first = ptr<T>(row_vars[k]);
    const Reg<T> reg(l1, l2, decay, 0.0);
    const V<T> eps1_sq = splat<T>(eps1s[k] * eps1s[k]);
    const V<T> denom = splat<T>(denoms[k]), scale = splat<T>(scales[k]), neg_rho = splat<T>(neg_rhos[k]);
    const V<T> own = splat<T>(own_decay);
    const bool clip = denoms[k] != 1.0, has_own = own_decay != 0;
    auto finish = [=](V<T> x, const V<T>& pi) {
      if (clip) x = x / denom;
      x = x * scale * neg_rho;
      if (has_own) x = muladd(pi, own, x);
      return reg.step(x, pi);
    };
    if (factored[k] != 0) {
      const T* C = ptr<T>(col_vars[k]);
      const auto shape = stack_shape(params[k]);
      const int64_t batches = shape[0], n = shape[1], m = shape[2];
      const Factored<T> factor(first, C, batches, n, m, eps1s[k]);
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
          for (int64_t j = 0; j < m; j += W) {
            const int64_t w = std::min(W, m - j);
            const V<T> pj = load(pr + j, w);
            const V<T> scaled = at::vec::minimum(ai * load(bj + j, w), top) * rg.grad(gr, pj, j, w);
            store(fin(scaled, pj), pr + j, w);
          }
        }
      });
    } else {
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        const V<T> u = reg.grad(g, pi, i, n);
        store(finish(at::vec::maximum(load(first + i, n), eps1_sq).rsqrt() * u, pi), p + i, n);
      });
    }
  });
}

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY_FRAGMENT(descentlab_fused, m) {
  using namespace descentlab;
  m.def("lamb(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
        "Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] max_exp_avg_sqs, float[] bias_corrections1, "
        "float[] sqrt_bias_corrections2, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, float trust_coefficient, bool amsgrad, float l1, float l2, "
        "float decay) -> ()", &lamb);
  m.def("lars(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] momentum_buffers, int[] scaled, "
        "float lr, float weight_decay, float momentum, float dampening, float trust_coefficient, "
        "bool nesterov, float l1, float l2, float decay) -> ()", &lars);
  m.def("prodigy_sums(Tensor[] params, Tensor[] grads, Tensor[] p0s, Tensor(a!)[] ss, float beta3, "
        "float s_scale, float weight_decay, float l1, float l2) -> Tensor", &prodigy_sums);
  m.def("prodigy_step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
        "Tensor(c!)[] exp_avg_sqs, float beta1, float m_scale, float beta2, float v_scale, bool move, "
        "float keep, float neg_step, float eps_d, bool atan2, float weight_decay, float l1, float l2, "
        "float decay) -> ()", &prodigy_step);
  m.def("adafactor_sums(Tensor[] params, Tensor[] grads, Tensor(a!)[] row_vars, Tensor(b!)[] col_vars, "
        "int[] factored, float[] weights, float[] eps1s, float l1, float l2) -> Tensor", &adafactor_sums);
  m.def("adafactor_step(Tensor(a!)[] params, Tensor[] grads, Tensor[] row_vars, Tensor[] col_vars, "
        "int[] factored, float[] eps1s, float[] denoms, float[] scales, float[] neg_rhos, "
        "float own_decay, float l1, float l2, float decay) -> ()", &adafactor_step);
}
