// CPU kernels of the optimizers added in issue 33: AdEMAMix and ADOPT (one
// pass), MARS (two: the norm of the corrected gradient, then the step).
// Arithmetic as the chains in transforms/ademamix.py, adopt.py and mars.py,
// operation for operation (see common.h).

#include "lowprec.h"

namespace descentlab {
namespace {

// -- AdEMAMix -------------------------------------------------------------------
//   m1 = lerp(m1, u, 1-b1); v = b2*v + (1-b2)*u*u; m2 = lerp(m2, u, 1-b3t)
//   d  = (m1/bc1 + alpha_t*m2) / (sqrt(v)/sbc2 + eps)   [+ wd*p when decoupled]

at::Tensor ademamix(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
              at::TensorList exp_avg_sqs, at::TensorList exp_avg_slows, at::ArrayRef<double> bias_corrections1,
              at::ArrayRef<double> sqrt_bias_corrections2, at::ArrayRef<double> alphas,
              at::ArrayRef<double> beta3s, double lr, double beta1, double beta2, double eps,
              double weight_decay, bool decoupled, double l1, double l2, double decay,
              at::ArrayRef<double> cautious, bool count, at::IntArrayRef seeds_m, at::IntArrayRef seeds_v,
              at::IntArrayRef seeds_slow) {
  DL_REQUIRE("ademamix", bias_corrections1.size() == params.size() && beta3s.size() == params.size());
  DL_REQUIRE("ademamix", cautious.empty() || cautious.size() == params.size());
  Cautious c{cautious};
  at::Tensor counts = count_buffer(count, params.size(), c);
  for_tensors_low("ademamix", params, grads,
                  {{{"exp_avgs", exp_avgs}, seeds_m}, {{"exp_avg_sqs", exp_avg_sqs}, seeds_v},
                   {{"exp_avg_slows", exp_avg_slows}, seeds_slow}},
                  [&](auto zero, auto low, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const auto m1 = state<T>(low, exp_avgs[k], seeds_m, k);
    const auto v = state<T>(low, exp_avg_sqs[k], seeds_v, k);
    const auto m2 = state<T>(low, exp_avg_slows[k], seeds_slow, k);
    const Reg<T> reg(l1, l2, decay, lr, decoupled ? 0.0 : weight_decay);
    const Lerp<T> fast(1.0 - beta1), slow(1.0 - beta3s[k]);
    const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2), e = splat<T>(eps);
    const V<T> bc1 = splat<T>(bias_corrections1[k]), sbc2 = splat<T>(sqrt_bias_corrections2[k]);
    const V<T> alpha = splat<T>(alphas[k]), wd = splat<T>(weight_decay);
    const V<T> scale = splat<T>(c.on() ? c.scales[k] : 1.0);
    const bool decay_p = decoupled && weight_decay != 0, masked = c.on();
    run_step<T>(params[k].numel(), c, k, [=](int64_t i, int64_t n, auto commit) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> a = fast(m1.get(i, n), u);
      const V<T> s = muladd(c2 * u, u, v.get(i, n) * b2);
      const V<T> b = slow(m2.get(i, n), u);
      const V<T> dir = muladd(b, alpha, a / bc1) / (s.sqrt() / sbc2 + e);
      if constexpr (decltype(commit)::value) {
        m1.put(a, i, n);
        v.put(s, i, n);
        m2.put(b, i, n);
        V<T> d = masked ? caution(dir, u, scale) : dir;
        if (decay_p) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      }
      return std::make_pair(dir, u);
    });
  });
  return counts;
}

// -- ADOPT ----------------------------------------------------------------------
//   first step: v = v + u*u, d = 0
//   later:      x = clamp(u / max(sqrt(v), eps), -c, c); m = lerp(m, x, 1-b1);
//               v = b2*v + (1-b2)*u*u; d = m                 [+ wd*p when decoupled]

at::Tensor adopt(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
           at::IntArrayRef first, double clip, bool clipped, double lr, double beta1, double beta2,
           double eps, double weight_decay, bool decoupled, double l1, double l2, double decay,
           at::ArrayRef<double> cautious, bool count, at::IntArrayRef seeds_m, at::IntArrayRef seeds_v) {
  DL_REQUIRE("adopt", first.size() == params.size());
  DL_REQUIRE("adopt", cautious.empty() || cautious.size() == params.size());
  Cautious c{cautious};
  at::Tensor counts = count_buffer(count, params.size(), c);
  for_tensors_low("adopt", params, grads, {{{"exp_avgs", exp_avgs}, seeds_m}, {{"exp_avg_sqs", exp_avg_sqs}, seeds_v}},
                  [&](auto zero, auto low, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const auto m = state<T>(low, exp_avgs[k], seeds_m, k);
    const auto v = state<T>(low, exp_avg_sqs[k], seeds_v, k);
    const Reg<T> reg(l1, l2, decay, lr, decoupled ? 0.0 : weight_decay);
    const Lerp<T> to_x(1.0 - beta1);
    const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2), e = splat<T>(eps);
    const V<T> hi = splat<T>(clip), lo = splat<T>(-clip), wd = splat<T>(weight_decay);
    const V<T> scale = splat<T>(c.on() ? c.scales[k] : 1.0);
    const bool decay_p = decoupled && weight_decay != 0, is_first = first[k] != 0, masked = c.on();
    run_step<T>(params[k].numel(), c, k, [=](int64_t i, int64_t n, auto commit) {
      constexpr bool kCommit = decltype(commit)::value;
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> vi = v.get(i, n);
      V<T> dir;
      if (is_first) {
        if constexpr (kCommit) v.put(muladd(u, u, vi), i, n);
        dir = splat<T>(0);
      } else {
        V<T> x = u / at::vec::maximum(vi.sqrt(), e);
        if (clipped) x = at::vec::clamp(x, lo, hi);
        dir = to_x(m.get(i, n), x);
        if constexpr (kCommit) {
          m.put(dir, i, n);
          v.put(muladd(c2 * u, u, vi * b2), i, n);
        }
      }
      if constexpr (kCommit) {
        V<T> d = masked ? caution(dir, u, scale) : dir;
        if (decay_p) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      }
      return std::make_pair(dir, u);
    });
  });
  return counts;
}

// -- MARS -----------------------------------------------------------------------
//   c = (u - last)*factor + u  (use_mars), else c = u
//   pass 1 (mars_sums): sum of c*c per tensor, in double
//   pass 2 (mars):      c = c/norm where norm > 1 (scale = 1/norm given, or 0: none);
//                       m = lerp(m, c, 1-b1); "adamw": v = b2*v + (1-b2)*c*c,
//                       d = m / ((sqrt(vmax or v + 1e-15) + eps)/sbc2*bc1); "lion": d = sign(m)
//                       last = u; d += wd*p; p = p - lr*d

template <typename T, typename S>
inline V<T> mars_c(const V<T>& u, const S& last, const V<T>& factor, bool use_mars, int64_t i, int64_t n) {
  return use_mars ? muladd(u - last.get(i, n), factor, u) : u;
}

at::Tensor mars_sums(at::TensorList params, at::TensorList grads, at::TensorList last_grads, double factor,
                     double l1, double l2, at::IntArrayRef seeds_last) {
  const int64_t count = static_cast<int64_t>(params.size());
  at::Tensor out = at::zeros({count}, at::kDouble);
  double* sq = out.data_ptr<double>();
  for_tensors_low("mars_sums", params, grads, {{{"last_grads", last_grads}, seeds_last}},
                  [&](auto zero, auto low, size_t k) {
    using T = decltype(zero);
    const T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const auto last = state<T>(low, last_grads[k], seeds_last, k);
    const Reg<T> reg(l1, l2, 0.0, 0.0);
    const V<T> f = splat<T>(factor);
    sq[k] = sum_squares<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> c = mars_c(reg.grad(g, load(p + i, n), i, n), last, f, true, i, n);
      return std::make_pair(c, splat<T>(0));
    }).first;
  });
  return out;
}

at::Tensor mars(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
          at::TensorList max_exp_avg_sqs, at::TensorList last_grads, at::ArrayRef<double> norms,
          at::ArrayRef<double> bias_corrections1, at::ArrayRef<double> sqrt_bias_corrections2, double lr,
          double beta1, double beta2, double factor, double eps, double weight_decay, bool use_mars,
          bool lion, bool ams_bound, double l1, double l2, double decay, at::ArrayRef<double> cautious,
          bool count, at::IntArrayRef seeds_m, at::IntArrayRef seeds_v, at::IntArrayRef seeds_vmax,
          at::IntArrayRef seeds_last) {
  DL_REQUIRE("mars", norms.size() == params.size() && bias_corrections1.size() == params.size());
  DL_REQUIRE("mars", !ams_bound || !max_exp_avg_sqs.empty());
  DL_REQUIRE("mars", cautious.empty() || cautious.size() == params.size());
  Cautious cau{cautious};
  at::Tensor counts = count_buffer(count, params.size(), cau);
  for_tensors_low("mars", params, grads,
                  {{{"exp_avgs", exp_avgs}, seeds_m}, {{"exp_avg_sqs", exp_avg_sqs}, seeds_v},
                   {{"max_exp_avg_sqs", max_exp_avg_sqs}, seeds_vmax}, {{"last_grads", last_grads}, seeds_last}},
                  [&](auto zero, auto low, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const auto m = state<T>(low, exp_avgs[k], seeds_m, k);
    const auto v = state<T>(low, exp_avg_sqs[k], seeds_v, k);
    // without the AMS bound: v's tensor and seeds, never read or written as vmax
    const auto vmax = state<T>(low, ams_bound ? max_exp_avg_sqs[k] : exp_avg_sqs[k], ams_bound ? seeds_vmax : seeds_v, k);
    const auto last = state<T>(low, last_grads[k], seeds_last, k);
    const Reg<T> reg(l1, l2, decay, lr);
    const Lerp<T> to_c(1.0 - beta1);
    const V<T> f = splat<T>(factor), b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2);
    const V<T> e = splat<T>(eps), tiny = splat<T>(1e-15), wd = splat<T>(weight_decay);
    const V<T> norm = splat<T>(norms[k]);
    const V<T> bc1 = splat<T>(bias_corrections1[k]), sbc2 = splat<T>(sqrt_bias_corrections2[k]);
    const V<T> scale = splat<T>(cau.on() ? cau.scales[k] : 1.0);
    const bool scaled = use_mars && norms[k] > 1.0, has_wd = weight_decay != 0, masked = cau.on();
    run_step<T>(params[k].numel(), cau, k, [=](int64_t i, int64_t n, auto commit) {
      constexpr bool kCommit = decltype(commit)::value;
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      V<T> c = mars_c(u, last, f, use_mars, i, n);
      if (scaled) c = c / norm;
      const V<T> mi = to_c(m.get(i, n), c);
      if constexpr (kCommit) m.put(mi, i, n);
      V<T> dir;
      if (lion) {
        dir = sgn(mi);
      } else {
        V<T> s = muladd(c2 * c, c, v.get(i, n) * b2);
        if constexpr (kCommit) v.put(s, i, n);
        if (ams_bound) {
          s = at::vec::maximum(vmax.get(i, n), s);
          if constexpr (kCommit) vmax.put(s, i, n);
        }
        dir = mi / (((s + tiny).sqrt() + e) / sbc2 * bc1);
      }
      if constexpr (kCommit) {
        last.put(u, i, n);
        V<T> d = masked ? caution(dir, u, scale) : dir;
        if (has_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      }
      return std::make_pair(dir, u);
    });
  });
  return counts;
}

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY_FRAGMENT(descentlab_fused, m) {
  using namespace descentlab;
  m.def("ademamix(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] exp_avg_slows, float[] bias_corrections1, float[] sqrt_bias_corrections2, "
        "float[] alphas, float[] beta3s, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, bool decoupled, float l1, float l2, float decay, float[] cautious, "
        "bool count, int[] seeds_m=[], int[] seeds_v=[], int[] seeds_slow=[]) -> Tensor", &ademamix);
  m.def("adopt(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "int[] first, float clip, bool clipped, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, bool decoupled, float l1, float l2, float decay, float[] cautious, "
        "bool count, int[] seeds_m=[], int[] seeds_v=[]) -> Tensor", &adopt);
  m.def("mars_sums(Tensor[] params, Tensor[] grads, Tensor[] last_grads, float factor, float l1, "
        "float l2, int[] seeds_last=[]) -> Tensor", &mars_sums);
  m.def("mars(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] last_grads, float[] norms, float[] bias_corrections1, "
        "float[] sqrt_bias_corrections2, float lr, float beta1, float beta2, float factor, float eps, "
        "float weight_decay, bool use_mars, bool lion, bool ams_bound, float l1, float l2, "
        "float decay, float[] cautious, bool count, int[] seeds_m=[], int[] seeds_v=[], int[] seeds_vmax=[], "
        "int[] seeds_last=[]) -> Tensor", &mars);
}
