// CPU kernels for optimizers whose step needs sums over whole tensors (or the
// whole param group) before it can write: a first pass computes the sums, the
// Python side turns them into the per-tensor scalars the chain would compute
// (cpu_kernels.py), and a last pass writes. Each pass reads only what it
// needs; see the byte counts in benchmarks/optimizer_step.py.
//
//   LAMB       ||p||, ||r|| per tensor, then the step          (one op, two passes)
//   LARS       ||g||, ||p|| per tensor, then the step          (one op, two passes)
//   Prodigy    <g, p0 - p> and ||s||_1 per tensor (s updated), then the moments and the step
//
// Adafactor is in adafactor.cpp.

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
}
