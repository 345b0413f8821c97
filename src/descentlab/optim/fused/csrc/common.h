// Shared pieces of descentlab's CPU optimizer kernels (see fused/cpu_kernels.py).
//
// The arithmetic is written with at::vec::Vectorized, torch's own SIMD type,
// compiled for the instruction set torch's kernels use here (build.py), and
// follows the readable chain of transforms operation for operation, including
// where torch's CPU ops fuse a multiply and an add: `add(x, alpha=a)` is
// muladd(x, a, self), `addcmul(a, b, value=v)` is muladd(v*a, b, self), `lerp`
// is ATen's fmadd form, `addcdiv(a, b, value=v)` is self + v*a/b. So a fused
// step equals the chain bit for bit where the chain has no square root (lion,
// adamax), and within an ulp per step elsewhere: torch's float32 sqrt (MKL
// VML) is not correctly rounded, Vectorized::sqrt is.
//
// The universal regularization of optim.create wraps every chain:
//   u = g + l1*sign(p) + l2*p [+ wd*p]   (each term only when non-zero; wd: the
//                                         optimizer's own coupled weight decay)
//   s = -lr*d  [+ decay*p]               (decay = -lr*decoupled_decay)
//   p = p + s
// Scalars arrive as doubles and are rounded to the tensor's dtype before use,
// as torch does with a Python scalar.

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace descentlab {

template <typename T>
using V = at::vec::Vectorized<T>;

constexpr int64_t kGrain = 1 << 15;

// A vector of x rounded to T (as torch rounds a Python scalar).
template <typename T>
inline V<T> splat(double x) { return V<T>(static_cast<T>(x)); }

template <typename T>
inline V<T> muladd(const V<T>& a, const V<T>& b, const V<T>& c) {
  return at::vec::fmadd(a, b, c);
}

// torch.sign (0 at 0).
template <typename T>
inline V<T> sgn(const V<T>& x) {
  const V<T> zero = splat<T>(0), one = splat<T>(1);
  return V<T>::blendv(zero, one, zero < x) - V<T>::blendv(zero, one, x < zero);
}

// ATen's lerp with a scalar weight w: muladd(w, b - a, a) for |w| < 0.5, else
// muladd(w - 1, b - a, b).
template <typename T>
struct Lerp {
  V<T> coeff;
  bool small;
  explicit Lerp(double weight) {
    const T w = T(weight);
    small = std::abs(w) < T(0.5);
    coeff = V<T>(small ? w : w - T(1));
  }
  inline V<T> operator()(const V<T>& a, const V<T>& b) const {
    return muladd(coeff, b - a, small ? a : b);
  }
};

// `n` lanes from p (n < size(): the tail of a chunk; the other lanes are 0).
template <typename T>
inline V<T> load(const T* p, int64_t n) {
  return n == V<T>::size() ? V<T>::loadu(p) : V<T>::loadu(p, n);
}

template <typename T>
inline void store(const V<T>& v, T* p, int64_t n) {
  if (n == V<T>::size()) {
    v.store(p);
  } else {
    v.store(p, n);
  }
}

// The universal regularization, and the optimizer's own coupled weight decay.
template <typename T>
struct Reg {
  V<T> l1, l2, wd, decay, neg_lr;
  bool has_l1, has_l2, has_wd, has_decay;
  Reg(double l1_, double l2_, double decay_, double lr, double coupled_wd = 0.0)
      : l1(T(l1_)), l2(T(l2_)), wd(T(coupled_wd)), decay(T(decay_)), neg_lr(T(-lr)),
        has_l1(l1_ != 0), has_l2(l2_ != 0), has_wd(coupled_wd != 0), has_decay(decay_ != 0) {}
  // The gradient after add_l1, add_l2(l2) and add_l2(weight_decay).
  inline V<T> pre(V<T> g, const V<T>& p) const {
    if (has_l1) g = muladd(sgn(p), l1, g);
    if (has_l2) g = muladd(p, l2, g);
    if (has_wd) g = muladd(p, wd, g);
    return g;
  }
  // The same from memory: the gradient at [i, i + n) given p there.
  inline V<T> grad(const T* g, const V<T>& p, int64_t i, int64_t n) const { return pre(load(g + i, n), p); }
  // scale_by_lr, decay_weights(decoupled_decay), p += step.
  inline V<T> post(const V<T>& d, const V<T>& p) const { return step(d * neg_lr, p); }
  // The same when the chain already produced the step (schedule-free, Prodigy, Adafactor).
  inline V<T> step(V<T> s, const V<T>& p) const {
    if (has_decay) s = muladd(p, decay, s);
    return p + s;
  }
};

// f(i, n) for the vectors [i, i + n) covering [0, numel), in chunks on torch's
// intra-op threads (at::parallel_for; OpenMP, see build.py). `f` captures by
// value and each chunk calls its own copy, whose constants the compiler then
// keeps in registers (stores through the tensors' pointers cannot alias them).
template <typename T, typename F>
inline void for_each(int64_t numel, const F& f) {
  constexpr int64_t W = V<T>::size();
  at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
    const F fn = f;
    int64_t i = begin;
    for (; i + W <= end; i += W) fn(i, W);
    if (i < end) fn(i, end - i);
  });
}

// (Σ a, Σ b) over [0, numel) (Σ a², Σ b² when kSquare), where f(i, n)
// returns the vectors (a, b) of [i, i + n). Terms are summed in SIMD lanes of
// T over blocks of kBlock vectors, and the blocks' lanes in double.
template <typename T, int64_t kBlock, bool kSquare, typename F>
inline std::pair<double, double> sums(int64_t numel, const F& f) {
  using P = std::pair<double, double>;
  constexpr int64_t W = V<T>::size();
  return at::parallel_reduce(
      0, numel, kGrain, P(0.0, 0.0),
      [&](int64_t begin, int64_t end, P acc) {
        const F fn = f;
        for (int64_t start = begin; start < end; start += kBlock * W) {
          const int64_t stop = std::min(end, start + kBlock * W);
          V<T> sa = splat<T>(0), sb = splat<T>(0);
          auto add = [&](const std::pair<V<T>, V<T>>& ab) {
            if constexpr (kSquare) {
              sa = muladd(ab.first, ab.first, sa);
              sb = muladd(ab.second, ab.second, sb);
            } else {
              sa = sa + ab.first;
              sb = sb + ab.second;
            }
          };
          int64_t i = start;
          for (; i + W <= stop; i += W) add(fn(i, W));  // whole vectors: no tail handling
          if (i < stop) {
            const int64_t n = stop - i;
            auto ab = fn(i, n);
            ab.first = V<T>::set(splat<T>(0), ab.first, n);
            ab.second = V<T>::set(splat<T>(0), ab.second, n);
            add(ab);
          }
          T a[W], b[W];
          sa.store(a);
          sb.store(b);
          for (int64_t j = 0; j < W; ++j) {
            acc.first += double(a[j]);
            acc.second += double(b[j]);
          }
        }
        return acc;
      },
      [](P x, P y) { return P(x.first + y.first, x.second + y.second); });
}

// (Σ a², Σ b²): as accurate as torch's float vector_norm for the trust
// ratios of LAMB and LARS, and as fast as a copy.
template <typename T, typename F>
inline std::pair<double, double> sum_squares(int64_t numel, const F& f) {
  return sums<T, 64, true>(numel, f);
}

template <typename T>
inline T* ptr(const at::Tensor& t) { return t.data_ptr<T>(); }

// -- Cautious updates (transforms/cautious.py) ------------------------------------
//
// The mask of Liang et al. 2024 on a direction d, given the gradient u it is
// compared with: d ⊙ 1[d ⊙ u > 0] · scale, with scale = numel / (Σ1[d ⊙ u > 0] + 1)
// per tensor. The count needs the whole tensor before any element is written, so
// a cautious step is two passes over one element function `step(i, n, commit)`
// returning (d, u): a count pass with commit = false (nothing stored), then the
// step with commit = true, the scale known. A kernel without `cautious` runs the
// second pass alone, as before.

template <typename T>
inline V<T> caution(const V<T>& d, const V<T>& u, const V<T>& scale) {
  const V<T> zero = splat<T>(0);
  return d * V<T>::blendv(zero, scale, zero < d * u);  // the chain's d * (1[d*u > 0] * scale)
}

using Commit = std::true_type;
using Peek = std::false_type;

// The per-tensor cautious arguments of a kernel: `scales` (empty: not cautious)
// and `counts` (non-null: the count pass, into counts[k]).
struct Cautious {
  at::ArrayRef<double> scales;
  double* counts = nullptr;
  bool on() const { return !scales.empty(); }
};

// Runs the element function of tensor k over [0, numel) (see above).
template <typename T, typename F>
inline void run_step(int64_t numel, const Cautious& c, size_t k, const F& step) {
  if (c.counts != nullptr) {
    c.counts[k] = sums<T, 64, false>(numel, [=](int64_t i, int64_t n) {
      const auto du = step(i, n, Peek{});
      const V<T> zero = splat<T>(0);
      return std::make_pair(V<T>::blendv(zero, splat<T>(1), zero < du.first * du.second), zero);
    }).first;
  } else {
    for_each<T>(numel, [=](int64_t i, int64_t n) { step(i, n, Commit{}); });
  }
}

// The count pass's output (one double per tensor), or an empty tensor.
inline at::Tensor count_buffer(bool count, size_t size, Cautious& c) {
  if (!count) return at::empty({0}, at::kDouble);
  at::Tensor out = at::zeros({static_cast<int64_t>(size)}, at::kDouble);
  c.counts = out.data_ptr<double>();
  return out;
}

// The kernels index every tensor of a parameter as one contiguous array of
// its dtype: check that (cheaply, per call) rather than trust the caller. An
// empty list is a state the options do not use. `sizes` gives a list whose
// tensors are not the parameter's size (factored statistics) the size it
// must have for parameter k.
using Sized = std::pair<const char*, at::TensorList>;

inline void check_tensors(const char* kernel, at::TensorList params, std::initializer_list<Sized> lists) {
  for (const auto& p : params) {
    TORCH_CHECK(p.device().is_cpu() && p.is_contiguous() &&
                    (p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble),
                "descentlab fused ", kernel, ": needs contiguous float32/float64 CPU parameters");
  }
  for (const auto& [name, list] : lists) {
    if (list.empty() && std::string(name) != "grads") continue;
    TORCH_CHECK(list.size() == params.size(), "descentlab fused ", kernel, ": ", list.size(), " ",
                name, " for ", params.size(), " parameters");
    for (size_t k = 0; k < params.size(); ++k) {
      const auto& t = list[k];
      TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == params[k].scalar_type() &&
                      t.numel() == params[k].numel(),
                  "descentlab fused ", kernel, ": ", name, "[", k,
                  "] is not a contiguous CPU tensor of its parameter's dtype and size "
                  "(use fused=False for this state)");
    }
  }
}

// f(T(0), k) for every parameter k, T being its dtype (float or double).
template <typename F>
inline void for_tensors(const char* kernel, at::TensorList params, const F& f) {
  for (size_t k = 0; k < params.size(); ++k) {
    switch (params[k].scalar_type()) {
      case at::kFloat: f(float(0), k); break;
      case at::kDouble: f(double(0), k); break;
      default: TORCH_CHECK(false, "descentlab fused ", kernel, ": needs float32/float64 parameters");
    }
  }
}

// A precondition the Python side guarantees (cpu_kernels.py); checked anyway.
#define DL_REQUIRE(KERNEL, COND) \
  TORCH_CHECK(COND, "descentlab fused " KERNEL ": missing state or per-tensor values (" #COND ")")

// -- Adam's moments, shared by Adam and LAMB ------------------------------------------
//
// scale_by_adam's direction: (m / bc1) / (sqrt(v) / sqrt(bc2) + eps), with the
// two divisions by the bias corrections done as multiplications by their
// reciprocals (an ulp apart): with three divisions per element the divider
// was the bottleneck, AdamW at 1.08x torch's fused step; with one, 1.02x.
template <typename T>
struct AdamMoments {
  Lerp<T> to_grad;
  V<T> b2, c2, e, inv_bc1, inv_sbc2;
  AdamMoments(double beta1, double beta2, double eps, double bias_correction1,
              double sqrt_bias_correction2)
      : to_grad(1.0 - beta1), b2(splat<T>(beta2)), c2(splat<T>(1.0 - beta2)), e(splat<T>(eps)),
        inv_bc1(splat<T>(1.0 / bias_correction1)), inv_sbc2(splat<T>(1.0 / sqrt_bias_correction2)) {}
  inline V<T> first(const V<T>& m, const V<T>& u) const { return to_grad(m, u); }
  inline V<T> second(const V<T>& v, const V<T>& u) const { return muladd(c2 * u, u, v * b2); }
  inline V<T> direction(const V<T>& m, const V<T>& v) const {
    return (m * inv_bc1) / (v.sqrt() * inv_sbc2 + e);
  }
};

// Updates m, v (and the running maximum of v when vmax) at [i, i + n);
// returns (m, the second moment to divide by).
// (kCommit false: computes them, stores nothing.)
template <typename T, bool kCommit = true>
inline std::pair<V<T>, V<T>> adam_moments(const AdamMoments<T>& adam, const V<T>& u, T* m, T* v,
                                          T* vmax, int64_t i, int64_t n) {
  const V<T> mi = adam.first(load(m + i, n), u);
  V<T> vi = adam.second(load(v + i, n), u);
  if constexpr (kCommit) {
    store(mi, m + i, n);
    store(vi, v + i, n);
  }
  if (vmax != nullptr) {
    vi = at::vec::maximum(load(vmax + i, n), vi);
    if constexpr (kCommit) store(vi, vmax + i, n);
  }
  return {mi, vi};
}

}  // namespace descentlab
