// One-pass CPU kernels for descentlab's optimizers (see fused/cpu_kernels.py).
//
// Each kernel reads every element of the parameter, the gradient and the state
// once and writes the parameter and the state once: the memory traffic of a
// step is its minimum, as in torch's fused Adam. (LAMB and LARS need the norms
// of whole tensors before they can write, so they make a second pass.)
//
// The arithmetic is written with at::vec::Vectorized, torch's own SIMD type,
// compiled for the instruction set torch's kernels use here (build.py), and
// follows the readable chain of transforms operation for operation, including
// where torch's CPU ops fuse a multiply and an add: `add(x, alpha=a)` is
// muladd(x, a, self), `addcmul(a, b, value=v)` is muladd(v*a, b, self), `lerp`
// is ATen's fmadd form. So the fused step equals the chain bit for bit where
// the chain has no square root (lion, adamax), and within an ulp per step
// elsewhere: torch's float32 sqrt (MKL VML) is not correctly rounded,
// Vectorized::sqrt is. One deliberate exception: Adam's two divisions by its
// bias corrections are multiplications by reciprocals (see AdamMoments).
//
// The universal regularization of optim.create wraps every chain:
//   u = g + l1*sign(p) + l2*p          (each term only when non-zero)
//   s = -lr*d  [+ decay*p]             (decay = -lr*decoupled_decay)
//   p = p + s
// Scalars arrive as doubles and are rounded to the tensor's dtype before use,
// as torch does with a Python scalar.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>

namespace {

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

template <typename T>
struct Reg {
  V<T> l1, l2, decay, neg_lr;
  bool has_l1, has_l2, has_decay;
  Reg(double l1_, double l2_, double decay_, double lr)
      : l1(T(l1_)), l2(T(l2_)), decay(T(decay_)), neg_lr(T(-lr)),
        has_l1(l1_ != 0), has_l2(l2_ != 0), has_decay(decay_ != 0) {}
  // The gradient after add_l1 and add_l2(l2).
  inline V<T> pre(V<T> g, const V<T>& p) const {
    if (has_l1) g = muladd(sgn(p), l1, g);
    if (has_l2) g = muladd(p, l2, g);
    return g;
  }
  // scale_by_lr, decay_weights(decoupled_decay), p += step.
  inline V<T> post(const V<T>& d, const V<T>& p) const { return step(d * neg_lr, p); }
  // The same when the chain already produced the step (schedule-free).
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

// (Σ a², Σ b²) over [0, numel), where f(i, n) returns the vectors (a, b) of
// [i, i + n). Squares are summed in SIMD lanes of T over blocks of kBlock
// vectors, and the blocks' lanes in double: as accurate as torch's float
// vector_norm for these ratios, and as fast as a copy.
template <typename T, typename F>
inline std::pair<double, double> sum_squares(int64_t numel, const F& f) {
  using P = std::pair<double, double>;
  constexpr int64_t W = V<T>::size();
  constexpr int64_t kBlock = 64 * W;
  return at::parallel_reduce(
      0, numel, kGrain, P(0.0, 0.0),
      [&](int64_t begin, int64_t end, P acc) {
        const F fn = f;
        for (int64_t start = begin; start < end; start += kBlock) {
          const int64_t stop = std::min(end, start + kBlock);
          V<T> sa = splat<T>(0), sb = splat<T>(0);
          for (int64_t i = start; i < stop; i += W) {
            const int64_t n = std::min<int64_t>(W, stop - i);
            auto ab = fn(i, n);
            if (n < W) {
              ab.first = V<T>::set(splat<T>(0), ab.first, n);
              ab.second = V<T>::set(splat<T>(0), ab.second, n);
            }
            sa = muladd(ab.first, ab.first, sa);
            sb = muladd(ab.second, ab.second, sb);
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

template <typename T>
inline T* ptr(const at::Tensor& t) { return t.data_ptr<T>(); }

// The kernels index every tensor of a parameter as one contiguous array of
// its dtype: check that (cheaply, per call) rather than trust the caller. An
// empty list is a state the options do not use.
inline void check_tensors(const char* kernel, at::TensorList params,
                          std::initializer_list<std::pair<const char*, at::TensorList>> lists) {
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

// A precondition the Python side guarantees (cpu_kernels.py); checked anyway.
#define DL_REQUIRE(KERNEL, COND) \
  TORCH_CHECK(COND, "descentlab fused " KERNEL ": missing state or per-tensor values (" #COND ")")

#define DL_DISPATCH(tensor, NAME, ...) AT_DISPATCH_FLOATING_TYPES((tensor).scalar_type(), NAME, __VA_ARGS__)

// -- Lion ---------------------------------------------------------------------

void lion(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, double lr,
          double beta1, double beta2, double weight_decay, double l1, double l2, double decay) {
  check_tensors("lion", params, {{"grads", grads}, {"exp_avgs", exp_avgs}});
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "lion", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* m = ptr<T>(exp_avgs[k]);
      const Reg<T> reg(l1, l2, decay, lr);
      const V<T> b1 = splat<T>(beta1), c1 = splat<T>(1.0 - beta1);
      const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2);
      const V<T> wd = splat<T>(weight_decay);
      const bool has_wd = weight_decay != 0;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n), mi = load(m + i, n);
        const V<T> u = reg.pre(load(g + i, n), pi);
        V<T> d = sgn(muladd(u, c1, mi * b1));
        store(muladd(u, c2, mi * b2), m + i, n);
        if (has_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      });
    });
  }
}

// -- RMSprop (plain or centered, with heavy-ball or Nesterov momentum) ----------

void rmsprop(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
             at::TensorList grad_avgs, at::TensorList momentum_buffers, at::IntArrayRef fresh,
             double lr, double alpha, double eps, double weight_decay, double momentum,
             double dampening, bool nesterov, bool centered, double l1, double l2, double decay) {
  check_tensors("rmsprop", params,
                {{"grads", grads}, {"square_avgs", square_avgs},
                 {"grad_avgs", grad_avgs}, {"momentum_buffers", momentum_buffers}});
  DL_REQUIRE("rmsprop", !centered || !grad_avgs.empty());
  DL_REQUIRE("rmsprop", momentum == 0 || !momentum_buffers.empty());
  DL_REQUIRE("rmsprop", fresh.size() == params.size());
  const bool has_momentum = momentum != 0;
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "rmsprop", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* sq = ptr<T>(square_avgs[k]);
      T* mean = centered ? ptr<T>(grad_avgs[k]) : nullptr;
      T* buf = has_momentum ? ptr<T>(momentum_buffers[k]) : nullptr;
      const bool first = has_momentum && fresh[k] != 0;
      const Reg<T> reg(l1, l2, decay, lr);
      const Lerp<T> to_grad(1.0 - alpha);
      const V<T> a = splat<T>(alpha), ca = splat<T>(1.0 - alpha);
      const V<T> e = splat<T>(eps), wd = splat<T>(weight_decay);
      const V<T> mu = splat<T>(momentum), damp = splat<T>(1.0 - dampening);
      const bool has_wd = weight_decay != 0;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
        if (has_wd) u = muladd(pi, wd, u);
        const V<T> v = muladd(ca * u, u, load(sq + i, n) * a);
        store(v, sq + i, n);
        V<T> avg;
        if (centered) {
          const V<T> mi = to_grad(load(mean + i, n), u);
          store(mi, mean + i, n);
          avg = muladd(V<T>(T(-1)) * mi, mi, v).sqrt();
        } else {
          avg = v.sqrt();
        }
        const V<T> r = u / (avg + e);
        V<T> d = r;
        if (has_momentum) {
          const V<T> b = first ? r : muladd(r, damp, load(buf + i, n) * mu);
          store(b, buf + i, n);
          d = nesterov ? muladd(b, mu, r) : b;
        }
        store(reg.post(d, pi), p + i, n);
      });
    });
  }
}

// -- Adadelta -------------------------------------------------------------------

void adadelta(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
              at::TensorList acc_deltas, double lr, double rho, double eps, double weight_decay,
              double l1, double l2, double decay) {
  check_tensors("adadelta", params,
                {{"grads", grads}, {"square_avgs", square_avgs},
                 {"acc_deltas", acc_deltas}});
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "adadelta", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* sq = ptr<T>(square_avgs[k]);
      T* acc = ptr<T>(acc_deltas[k]);
      const Reg<T> reg(l1, l2, decay, lr);
      const V<T> r = splat<T>(rho), cr = splat<T>(1.0 - rho);
      const V<T> e = splat<T>(eps), wd = splat<T>(weight_decay);
      const bool has_wd = weight_decay != 0;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
        if (has_wd) u = muladd(pi, wd, u);
        const V<T> v = muladd(cr * u, u, load(sq + i, n) * r);
        store(v, sq + i, n);
        const V<T> ai = load(acc + i, n);
        const V<T> delta = (ai + e).sqrt() / (v + e).sqrt() * u;
        store(muladd(cr * delta, delta, ai * r), acc + i, n);
        store(reg.post(delta, pi), p + i, n);
      });
    });
  }
}

// -- Adamax ---------------------------------------------------------------------

void adamax(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
            at::TensorList exp_infs, at::ArrayRef<double> bias_corrections, double lr,
            double beta1, double beta2, double eps, double weight_decay, double l1, double l2,
            double decay) {
  check_tensors("adamax", params,
                {{"grads", grads}, {"exp_avgs", exp_avgs},
                 {"exp_infs", exp_infs}});
  DL_REQUIRE("adamax", bias_corrections.size() == params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "adamax", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* m = ptr<T>(exp_avgs[k]);
      T* inf = ptr<T>(exp_infs[k]);
      const Reg<T> reg(l1, l2, decay, lr);
      const Lerp<T> to_grad(1.0 - beta1);
      const V<T> b2 = splat<T>(beta2), e = splat<T>(eps);
      const V<T> wd = splat<T>(weight_decay), bc1 = splat<T>(bias_corrections[k]);
      const bool has_wd = weight_decay != 0;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
        if (has_wd) u = muladd(pi, wd, u);
        const V<T> mi = to_grad(load(m + i, n), u);
        store(mi, m + i, n);
        const V<T> ni = at::vec::maximum(load(inf + i, n) * b2, u.abs() + e);
        store(ni, inf + i, n);
        store(reg.post(mi / ni / bc1, pi), p + i, n);
      });
    });
  }
}

// -- NAdam (coupled or decoupled weight decay) ----------------------------------

void nadam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
           at::TensorList exp_avg_sqs, at::ArrayRef<double> c_grads, at::ArrayRef<double> c_avgs,
           at::ArrayRef<double> bias_corrections2, double lr, double beta1, double beta2, double eps,
           double weight_decay, bool decoupled, double l1, double l2, double decay) {
  check_tensors("nadam", params,
                {{"grads", grads}, {"exp_avgs", exp_avgs},
                 {"exp_avg_sqs", exp_avg_sqs}});
  DL_REQUIRE("nadam", c_grads.size() == params.size());
  DL_REQUIRE("nadam", c_avgs.size() == params.size());
  DL_REQUIRE("nadam", bias_corrections2.size() == params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "nadam", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* m = ptr<T>(exp_avgs[k]);
      T* sq = ptr<T>(exp_avg_sqs[k]);
      const Reg<T> reg(l1, l2, decay, lr);
      const Lerp<T> to_grad(1.0 - beta1);
      const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2);
      const V<T> e = splat<T>(eps), wd = splat<T>(weight_decay);
      const V<T> cg = splat<T>(c_grads[k]), cm = splat<T>(c_avgs[k]);
      const V<T> bc2 = splat<T>(bias_corrections2[k]);
      const bool coupled_wd = weight_decay != 0 && !decoupled;
      const bool decoupled_wd = weight_decay != 0 && decoupled;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
        if (coupled_wd) u = muladd(pi, wd, u);
        const V<T> mi = to_grad(load(m + i, n), u);
        store(mi, m + i, n);
        const V<T> v = muladd(c2 * u, u, load(sq + i, n) * b2);
        store(v, sq + i, n);
        const V<T> denom = (v / bc2).sqrt() + e;
        V<T> d = muladd(mi / denom, cm, (u / denom) * cg);
        if (decoupled_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      });
    });
  }
}

// -- RAdam (coupled or decoupled weight decay) ----------------------------------

void radam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
           at::TensorList exp_avg_sqs, at::ArrayRef<double> bias_corrections1,
           at::ArrayRef<double> rect_scales, at::IntArrayRef rectified, double lr, double beta1,
           double beta2, double eps, double weight_decay, bool decoupled, double l1, double l2,
           double decay) {
  check_tensors("radam", params,
                {{"grads", grads}, {"exp_avgs", exp_avgs},
                 {"exp_avg_sqs", exp_avg_sqs}});
  DL_REQUIRE("radam", bias_corrections1.size() == params.size());
  DL_REQUIRE("radam", rect_scales.size() == params.size());
  DL_REQUIRE("radam", rectified.size() == params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "radam", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* m = ptr<T>(exp_avgs[k]);
      T* sq = ptr<T>(exp_avg_sqs[k]);
      const Reg<T> reg(l1, l2, decay, lr);
      const Lerp<T> to_grad(1.0 - beta1);
      const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2);
      const V<T> e = splat<T>(eps), wd = splat<T>(weight_decay);
      const V<T> bc1 = splat<T>(bias_corrections1[k]), scale = splat<T>(rect_scales[k]);
      const bool rect = rectified[k] != 0;
      const bool coupled_wd = weight_decay != 0 && !decoupled;
      const bool decoupled_wd = weight_decay != 0 && decoupled;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
        if (coupled_wd) u = muladd(pi, wd, u);
        const V<T> mi = to_grad(load(m + i, n), u);
        store(mi, m + i, n);
        const V<T> v = muladd(c2 * u, u, load(sq + i, n) * b2);
        store(v, sq + i, n);
        V<T> d = mi / bc1;
        if (rect) d = d / (v.sqrt() + e) * scale;
        if (decoupled_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      });
    });
  }
}

// -- Schedule-free AdamW (train mode: the parameters hold y) ---------------------

void adamw_schedulefree(at::TensorList params, at::TensorList grads, at::TensorList zs,
                        at::TensorList exp_avg_sqs, double lr, double beta2, double eps,
                        double weight_decay, double bias_correction2, double ckp1, double y_coef,
                        double l1, double l2, double decay) {
  check_tensors("adamw_schedulefree", params,
                {{"grads", grads}, {"zs", zs},
                 {"exp_avg_sqs", exp_avg_sqs}});
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "adamw_schedulefree", [&] {
      using T = scalar_t;
      T* y = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* z = ptr<T>(zs[k]);
      T* sq = ptr<T>(exp_avg_sqs[k]);
      const Reg<T> reg(l1, l2, decay, lr);
      const Lerp<T> to_z(ckp1);
      const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2);
      const V<T> e = splat<T>(eps), wd = splat<T>(weight_decay);
      const V<T> bc2 = splat<T>(bias_correction2), yc = splat<T>(y_coef), neg_lr = splat<T>(-lr);
      const bool has_wd = weight_decay != 0;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> yi = load(y + i, n), zi = load(z + i, n);
        const V<T> u = reg.pre(load(g + i, n), yi);
        const V<T> v = muladd(c2 * u, u, load(sq + i, n) * b2);
        store(v, sq + i, n);
        V<T> normed = u / ((v / bc2).sqrt() + e);
        if (has_wd) normed = muladd(yi, wd, normed);
        const V<T> y_new = muladd(normed, yc, to_z(yi, zi));
        store(muladd(normed, neg_lr, zi), z + i, n);
        store(reg.step(y_new - yi, yi), y + i, n);
      });
    });
  }
}

// -- Adam, AMSGrad, AdamW ----------------------------------------------------------
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

// Updates m, v (and the running maximum of v when amsgrad) at [i, i + n);
// returns (m, the second moment to divide by).
template <typename T>
inline std::pair<V<T>, V<T>> adam_moments(const AdamMoments<T>& adam, const V<T>& u, T* m, T* v,
                                          T* vmax, int64_t i, int64_t n) {
  const V<T> mi = adam.first(load(m + i, n), u);
  store(mi, m + i, n);
  V<T> vi = adam.second(load(v + i, n), u);
  store(vi, v + i, n);
  if (vmax != nullptr) {
    vi = at::vec::maximum(load(vmax + i, n), vi);
    store(vi, vmax + i, n);
  }
  return {mi, vi};
}

void adam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
          at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
          at::ArrayRef<double> bias_corrections1, at::ArrayRef<double> sqrt_bias_corrections2,
          double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
          bool amsgrad, double l1, double l2, double decay) {
  check_tensors("adam", params,
                {{"grads", grads}, {"exp_avgs", exp_avgs},
                 {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}});
  DL_REQUIRE("adam", !amsgrad || !max_exp_avg_sqs.empty());
  DL_REQUIRE("adam", bias_corrections1.size() == params.size());
  DL_REQUIRE("adam", sqrt_bias_corrections2.size() == params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "adam", [&] {
      using T = scalar_t;
      T* p = ptr<T>(params[k]);
      const T* g = ptr<T>(grads[k]);
      T* m = ptr<T>(exp_avgs[k]);
      T* v = ptr<T>(exp_avg_sqs[k]);
      T* vmax = amsgrad ? ptr<T>(max_exp_avg_sqs[k]) : nullptr;
      const Reg<T> reg(l1, l2, decay, lr);
      const AdamMoments<T> adam(beta1, beta2, eps, bias_corrections1[k], sqrt_bias_corrections2[k]);
      const V<T> wd = splat<T>(weight_decay);
      const bool coupled_wd = weight_decay != 0 && !decoupled;
      const bool decoupled_wd = weight_decay != 0 && decoupled;
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
        if (coupled_wd) u = muladd(pi, wd, u);
        const auto mv = adam_moments(adam, u, m, v, vmax, i, n);
        V<T> d = adam.direction(mv.first, mv.second);
        if (decoupled_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      });
    });
  }
}

// -- LAMB: Adam direction + decoupled decay, scaled per tensor by ||p||/||r|| ------
//
// Two passes: the first updates the moments and sums ||p||^2 and ||r||^2, the
// second recomputes r from the updated moments and writes p.

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
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "lamb", [&] {
      using T = scalar_t;
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
        const auto mv = adam_moments(adam, reg.pre(load(g + i, n), pi), m, v, vmax, i, n);
        return std::make_pair(pi, direction(mv.first, mv.second, pi));
      });
      const T p_norm = T(std::sqrt(sums.first)), r_norm = T(std::sqrt(sums.second));
      const V<T> ratio =
          V<T>((p_norm > 0 && r_norm > 0) ? T(trust_coefficient) * p_norm / r_norm : T(1));
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        const V<T> vi = load(vmax ? vmax + i : v + i, n);
        store(reg.post(direction(load(m + i, n), vi, pi) * ratio, pi), p + i, n);
      });
    });
  }
}

// -- LARS: eta*||p||/(||g|| + wd*||p||) for matrices, momentum from a zero buffer ---

void lars(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers,
          at::IntArrayRef scaled, double lr, double weight_decay, double momentum, double dampening,
          double trust_coefficient, bool nesterov, double l1, double l2, double decay) {
  check_tensors("lars", params, {{"grads", grads}, {"momentum_buffers", momentum_buffers}});
  DL_REQUIRE("lars", momentum == 0 || !momentum_buffers.empty());
  DL_REQUIRE("lars", scaled.size() == params.size());
  const bool has_momentum = momentum != 0;
  for (size_t k = 0; k < params.size(); ++k) {
    DL_DISPATCH(params[k], "lars", [&] {
      using T = scalar_t;
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
          return std::make_pair(reg.pre(load(g + i, n), pi), pi);
        });
        const T g_norm = T(std::sqrt(sums.first)), p_norm = T(std::sqrt(sums.second));
        const T den = g_norm + T(weight_decay) * p_norm;
        if (p_norm > 0 && den > 0) ratio_value = T(trust_coefficient) * p_norm / den;
      }
      const V<T> ratio = V<T>(ratio_value);
      for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
        const V<T> pi = load(p + i, n);
        V<T> u = reg.pre(load(g + i, n), pi);
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
}

}  // namespace

TORCH_LIBRARY(descentlab_fused, m) {
  m.def("lion(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, float lr, float beta1, "
        "float beta2, float weight_decay, float l1, float l2, float decay) -> ()", &lion);
  m.def("rmsprop(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] square_avgs, "
        "Tensor(c!)[] grad_avgs, Tensor(d!)[] momentum_buffers, int[] fresh, float lr, float alpha, "
        "float eps, float weight_decay, float momentum, float dampening, bool nesterov, "
        "bool centered, float l1, float l2, float decay) -> ()", &rmsprop);
  m.def("adadelta(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] square_avgs, "
        "Tensor(c!)[] acc_deltas, float lr, float rho, float eps, float weight_decay, float l1, "
        "float l2, float decay) -> ()", &adadelta);
  m.def("adamax(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_infs, "
        "float[] bias_corrections, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, float l1, float l2, float decay) -> ()", &adamax);
  m.def("nadam(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
        "Tensor(c!)[] exp_avg_sqs, float[] c_grads, float[] c_avgs, float[] bias_corrections2, "
        "float lr, float beta1, float beta2, float eps, float weight_decay, bool decoupled, "
        "float l1, float l2, float decay) -> ()", &nadam);
  m.def("radam(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
        "Tensor(c!)[] exp_avg_sqs, float[] bias_corrections1, float[] rect_scales, int[] rectified, "
        "float lr, float beta1, float beta2, float eps, float weight_decay, bool decoupled, "
        "float l1, float l2, float decay) -> ()", &radam);
  m.def("adamw_schedulefree(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] zs, "
        "Tensor(c!)[] exp_avg_sqs, float lr, float beta2, float eps, float weight_decay, "
        "float bias_correction2, float ckp1, float y_coef, float l1, float l2, float decay) -> ()",
        &adamw_schedulefree);
  m.def("adam(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
        "Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] max_exp_avg_sqs, float[] bias_corrections1, "
        "float[] sqrt_bias_corrections2, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, bool decoupled, bool amsgrad, float l1, float l2, float decay) -> ()",
        &adam);
  m.def("lamb(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
        "Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] max_exp_avg_sqs, float[] bias_corrections1, "
        "float[] sqrt_bias_corrections2, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, float trust_coefficient, bool amsgrad, float l1, float l2, "
        "float decay) -> ()", &lamb);
  m.def("lars(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] momentum_buffers, int[] scaled, "
        "float lr, float weight_decay, float momentum, float dampening, float trust_coefficient, "
        "bool nesterov, float l1, float l2, float decay) -> ()", &lars);
}
