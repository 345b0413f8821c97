// Muon's two elementwise passes, around torch's Newton–Schulz matmuls
// (cpu_kernels.muon calls momentum -> transforms.orthogonal's iteration ->
// update, one matrix at a time).
//
//   muon_momentum: u = g [+ l1*sign(p) + l2*p]; buf = lerp(buf, u, 1 - mu);
//                  returns bfloat16(nesterov ? lerp(u, buf, mu) : buf)
//   muon_update:   s = float(X)*scale [+ own_decay*p] [+ decay*p]; p = p + s
//
// which is the chain ema_momentum -> orthogonalize (its bfloat16 copy made
// here, in the same pass) -> scale_by_adjusted_lr -> decay_weights ->
// decay_weights(decoupled_decay) operation for operation: the result is the
// chain's bit for bit. Reads and writes: g, buf, buf, u (2 bytes) in the first
// pass, X (2 bytes), p, p in the second: 24 bytes per float32 parameter,
// against 20 for a step with no bfloat16 round trip.

#include "common.h"

namespace descentlab {
namespace {

// Rounding to nearest even, as torch's float -> bfloat16 conversion (a double
// is rounded to float first, as torch does).
template <typename T>
inline void store_bfloat16(const V<T>& x, at::BFloat16* out, int64_t n) {
  T lanes[V<T>::size()];
  x.store(lanes);
  for (int64_t j = 0; j < n; ++j) out[j] = c10::BFloat16(static_cast<float>(lanes[j]));
}

template <typename T>
inline V<T> load_bfloat16(const at::BFloat16* x, int64_t n) {
  T lanes[V<T>::size()] = {};
  for (int64_t j = 0; j < n; ++j) lanes[j] = static_cast<T>(static_cast<float>(x[j]));
  return V<T>::loadu(lanes);
}

std::vector<at::Tensor> muon_momentum(at::TensorList params, at::TensorList grads,
                                      at::TensorList momentum_buffers, double momentum,
                                      bool nesterov, double l1, double l2) {
  check_tensors("muon_momentum", params, {{"grads", grads}, {"momentum_buffers", momentum_buffers}});
  std::vector<at::Tensor> out(params.size());
  for_tensors("muon_momentum", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    out[k] = at::empty(params[k].sizes(), params[k].options().dtype(at::kBFloat16));
    const T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    T* b = ptr<T>(momentum_buffers[k]);
    at::BFloat16* o = out[k].data_ptr<at::BFloat16>();
    const Reg<T> reg(l1, l2, 0.0, 0.0);
    const bool reads_p = reg.has_l1 || reg.has_l2;  // else p is not read at all
    const Lerp<T> to_grad(1.0 - momentum), to_buf(momentum);
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> u = reads_p ? reg.grad(g, load(p + i, n), i, n) : load(g + i, n);
      const V<T> bi = to_grad(load(b + i, n), u);
      store(bi, b + i, n);
      store_bfloat16(nesterov ? to_buf(u, bi) : bi, o + i, n);
    });
  });
  return out;
}

void muon_update(at::TensorList params, at::TensorList updates, at::ArrayRef<double> scales,
                 double own_decay, double decay) {
  check_tensors("muon_update", params, {});
  DL_REQUIRE("muon_update", scales.size() == params.size());
  TORCH_CHECK(updates.size() == params.size(), "descentlab fused muon_update: ", updates.size(),
              " updates for ", params.size(), " parameters");
  for (size_t k = 0; k < params.size(); ++k) {
    const auto& x = updates[k];
    TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.scalar_type() == at::kBFloat16 &&
                    x.numel() == params[k].numel(),
                "descentlab fused muon_update: updates[", k,
                "] is not a contiguous bfloat16 CPU tensor of its parameter's size");
  }
  for_tensors("muon_update", params, [&](auto zero, size_t k) {
    using T = decltype(zero);
    T* p = ptr<T>(params[k]);
    const at::BFloat16* x = updates[k].data_ptr<at::BFloat16>();
    const Reg<T> reg(0.0, 0.0, decay, 0.0);
    const V<T> scale = splat<T>(scales[k]), wd = splat<T>(own_decay);
    const bool has_wd = own_decay != 0;
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      const V<T> pi = load(p + i, n);
      V<T> s = load_bfloat16<T>(x + i, n) * scale;
      if (has_wd) s = muladd(pi, wd, s);
      store(reg.step(s, pi), p + i, n);
    });
  });
}

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY_FRAGMENT(descentlab_fused, m) {
  using namespace descentlab;
  m.def("muon_momentum(Tensor[] params, Tensor[] grads, Tensor(a!)[] momentum_buffers, "
        "float momentum, bool nesterov, float l1, float l2) -> Tensor[]", &muon_momentum);
  m.def("muon_update(Tensor(a!)[] params, Tensor[] updates, float[] scales, float own_decay, "
        "float decay) -> ()", &muon_update);
}
