// One-pass CPU kernels (see fused/cpu_kernels.py, and common.h for the rules
// the arithmetic follows).
//
// Each kernel reads every element of the parameter, the gradient and the state
// once and writes the parameter and the state once: the memory traffic of a
// step is its minimum, as in torch's fused Adam. One deliberate exception to
// the chain's arithmetic: Adam's two divisions by its bias corrections are
// multiplications by reciprocals (see AdamMoments).

#include "lowprec.h"

namespace descentlab {
namespace {

// -- Lion ---------------------------------------------------------------------

at::Tensor lion(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, double lr,
                double beta1, double beta2, double weight_decay, double l1, double l2, double decay,
                at::ArrayRef<double> cautious, bool count, at::IntArrayRef seeds_m) {
  DL_REQUIRE("lion", cautious.empty() || cautious.size() == params.size());
  Cautious c{cautious};
  at::Tensor counts = count_buffer(count, params.size(), c);
  for_tensors_low("lion", params, grads, {{{"exp_avgs", exp_avgs}, seeds_m}}, [&](auto zero, auto low, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    const auto m = state<T>(low, exp_avgs[k], seeds_m, k);
    const Reg<T> reg(l1, l2, decay, lr);
    const V<T> b1 = splat<T>(beta1), c1 = splat<T>(1.0 - beta1);
    const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2);
    const V<T> wd = splat<T>(weight_decay), scale = splat<T>(c.on() ? c.scales[k] : 1.0);
    const bool has_wd = weight_decay != 0, masked = c.on();
    run_step<T>(params[k].numel(), c, k, [=](int64_t i, int64_t n, auto commit) {
      const V<T> pi = load(p + i, n), mi = m.get(i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      V<T> d = sgn(muladd(u, c1, mi * b1));
      if constexpr (decltype(commit)::value) {
        m.put(muladd(u, c2, mi * b2), i, n);
        const V<T> dir = d;
        if (masked) d = caution(d, u, scale);
        if (has_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
        return std::make_pair(dir, u);
      }
      return std::make_pair(d, u);
    });
  });
  return counts;
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
  for_tensors("rmsprop", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* sq = ptr<T>(square_avgs[k]);
    T* mean = centered ? ptr<T>(grad_avgs[k]) : nullptr;
    T* buf = has_momentum ? ptr<T>(momentum_buffers[k]) : nullptr;
    const bool first = has_momentum && fresh[k] != 0;
    const Reg<T> reg(l1, l2, decay, lr, weight_decay);
    const Lerp<T> to_grad(1.0 - alpha);
    const V<T> a = splat<T>(alpha), ca = splat<T>(1.0 - alpha), e = splat<T>(eps);
    const V<T> mu = splat<T>(momentum), damp = splat<T>(1.0 - dampening);
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
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

// -- Adadelta -------------------------------------------------------------------

void adadelta(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
              at::TensorList acc_deltas, double lr, double rho, double eps, double weight_decay,
              double l1, double l2, double decay) {
  check_tensors("adadelta", params, {{"grads", grads}, {"square_avgs", square_avgs}, {"acc_deltas", acc_deltas}});
  for_tensors("adadelta", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* sq = ptr<T>(square_avgs[k]);
    T* acc = ptr<T>(acc_deltas[k]);
    const Reg<T> reg(l1, l2, decay, lr, weight_decay);
    const V<T> r = splat<T>(rho), cr = splat<T>(1.0 - rho), e = splat<T>(eps);
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> v = muladd(cr * u, u, load(sq + i, n) * r);
      store(v, sq + i, n);
      const V<T> ai = load(acc + i, n);
      const V<T> delta = (ai + e).sqrt() / (v + e).sqrt() * u;
      store(muladd(cr * delta, delta, ai * r), acc + i, n);
      store(reg.post(delta, pi), p + i, n);
    });
  });
}

// -- Adamax ---------------------------------------------------------------------

void adamax(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
            at::TensorList exp_infs, at::ArrayRef<double> bias_corrections, double lr,
            double beta1, double beta2, double eps, double weight_decay, double l1, double l2,
            double decay) {
  check_tensors("adamax", params, {{"grads", grads}, {"exp_avgs", exp_avgs}, {"exp_infs", exp_infs}});
  DL_REQUIRE("adamax", bias_corrections.size() == params.size());
  for_tensors("adamax", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* m = ptr<T>(exp_avgs[k]);
    T* inf = ptr<T>(exp_infs[k]);
    const Reg<T> reg(l1, l2, decay, lr, weight_decay);
    const Lerp<T> to_grad(1.0 - beta1);
    const V<T> b2 = splat<T>(beta2), e = splat<T>(eps), bc1 = splat<T>(bias_corrections[k]);
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> mi = to_grad(load(m + i, n), u);
      store(mi, m + i, n);
      const V<T> ni = at::vec::maximum(load(inf + i, n) * b2, u.abs() + e);
      store(ni, inf + i, n);
      store(reg.post(mi / ni / bc1, pi), p + i, n);
    });
  });
}

// -- NAdam (coupled or decoupled weight decay) ----------------------------------

void nadam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
           at::TensorList exp_avg_sqs, at::ArrayRef<double> c_grads, at::ArrayRef<double> c_avgs,
           at::ArrayRef<double> bias_corrections2, double lr, double beta1, double beta2, double eps,
           double weight_decay, bool decoupled, double l1, double l2, double decay) {
  check_tensors("nadam", params, {{"grads", grads}, {"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  DL_REQUIRE("nadam", c_grads.size() == params.size());
  DL_REQUIRE("nadam", c_avgs.size() == params.size());
  DL_REQUIRE("nadam", bias_corrections2.size() == params.size());
  for_tensors("nadam", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* m = ptr<T>(exp_avgs[k]);
    T* sq = ptr<T>(exp_avg_sqs[k]);
    const Reg<T> reg(l1, l2, decay, lr, decoupled ? 0.0 : weight_decay);
    const Lerp<T> to_grad(1.0 - beta1);
    const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2), e = splat<T>(eps);
    const V<T> wd = splat<T>(weight_decay), cg = splat<T>(c_grads[k]), cm = splat<T>(c_avgs[k]);
    const V<T> bc2 = splat<T>(bias_corrections2[k]);
    const bool decoupled_wd = weight_decay != 0 && decoupled;
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
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

// -- RAdam (coupled or decoupled weight decay) ----------------------------------

void radam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
           at::TensorList exp_avg_sqs, at::ArrayRef<double> bias_corrections1,
           at::ArrayRef<double> rect_scales, at::IntArrayRef rectified, double lr, double beta1,
           double beta2, double eps, double weight_decay, bool decoupled, double l1, double l2,
           double decay) {
  check_tensors("radam", params, {{"grads", grads}, {"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  DL_REQUIRE("radam", bias_corrections1.size() == params.size());
  DL_REQUIRE("radam", rect_scales.size() == params.size());
  DL_REQUIRE("radam", rectified.size() == params.size());
  for_tensors("radam", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* m = ptr<T>(exp_avgs[k]);
    T* sq = ptr<T>(exp_avg_sqs[k]);
    const Reg<T> reg(l1, l2, decay, lr, decoupled ? 0.0 : weight_decay);
    const Lerp<T> to_grad(1.0 - beta1);
    const V<T> b2 = splat<T>(beta2), c2 = splat<T>(1.0 - beta2), e = splat<T>(eps);
    const V<T> wd = splat<T>(weight_decay);
    const V<T> bc1 = splat<T>(bias_corrections1[k]), scale = splat<T>(rect_scales[k]);
    const bool rect = rectified[k] != 0;
    const bool decoupled_wd = weight_decay != 0 && decoupled;
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
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

// -- Schedule-free AdamW (train mode: the parameters hold y) ---------------------

void adamw_schedulefree(at::TensorList params, at::TensorList grads, at::TensorList zs,
                        at::TensorList exp_avg_sqs, double lr, double beta2, double eps,
                        double weight_decay, double bias_correction2, double ckp1, double y_coef,
                        double l1, double l2, double decay) {
  check_tensors("adamw_schedulefree", params, {{"grads", grads}, {"zs", zs}, {"exp_avg_sqs", exp_avg_sqs}});
  for_tensors("adamw_schedulefree", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
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
      const V<T> u = reg.grad(g, yi, i, n);
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

// -- Adam, AMSGrad, AdamW ----------------------------------------------------------

at::Tensor adam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                at::ArrayRef<double> bias_corrections1, at::ArrayRef<double> sqrt_bias_corrections2,
                double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
                bool amsgrad, double l1, double l2, double decay, at::ArrayRef<double> cautious,
                bool count) {
  check_tensors("adam", params,
                {{"grads", grads}, {"exp_avgs", exp_avgs},
                 {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}});
  DL_REQUIRE("adam", !amsgrad || !max_exp_avg_sqs.empty());
  DL_REQUIRE("adam", bias_corrections1.size() == params.size());
  DL_REQUIRE("adam", sqrt_bias_corrections2.size() == params.size());
  DL_REQUIRE("adam", cautious.empty() || cautious.size() == params.size());
  Cautious c{cautious};
  at::Tensor counts = count_buffer(count, params.size(), c);
  for_tensors("adam", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* m = ptr<T>(exp_avgs[k]);
    T* v = ptr<T>(exp_avg_sqs[k]);
    T* vmax = amsgrad ? ptr<T>(max_exp_avg_sqs[k]) : nullptr;
    const Reg<T> reg(l1, l2, decay, lr, decoupled ? 0.0 : weight_decay);
    const AdamMoments<T> adam(beta1, beta2, eps, bias_corrections1[k], sqrt_bias_corrections2[k]);
    const V<T> wd = splat<T>(weight_decay), scale = splat<T>(c.on() ? c.scales[k] : 1.0);
    const bool decoupled_wd = weight_decay != 0 && decoupled, masked = c.on();
    run_step<T>(params[k].numel(), c, k, [=](int64_t i, int64_t n, auto commit) {
      constexpr bool kCommit = decltype(commit)::value;
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const auto mv = adam_moments<T, kCommit>(adam, u, m, v, vmax, i, n);
      const V<T> dir = adam.direction(mv.first, mv.second);
      if constexpr (kCommit) {
        V<T> d = masked ? caution(dir, u, scale) : dir;
        if (decoupled_wd) d = muladd(pi, wd, d);
        store(reg.post(d, pi), p + i, n);
      }
      return std::make_pair(dir, u);
    });
  });
  return counts;
}

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY(descentlab_fused, m) {
  using namespace descentlab;
  m.def("lion(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, float lr, float beta1, "
        "float beta2, float weight_decay, float l1, float l2, float decay, float[] cautious, "
        "bool count, int[] seeds_m=[]) -> Tensor", &lion);
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
        "float weight_decay, bool decoupled, bool amsgrad, float l1, float l2, float decay, "
        "float[] cautious, bool count) -> Tensor", &adam);
}
