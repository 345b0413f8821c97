// Stochastic rounding of float32 to bfloat16 (lowprec.h: the rounding, its bits, and the
// state accessors the other kernels step bfloat16 state with).
//
// adamw_bf16 is AdamW's one-pass kernel (one_pass.cpp) on bfloat16 moments: it
// widens them, updates them in float32 as that kernel does, and writes them back
// with these very bits, so it equals widen -> adam -> stochastic_round_bf16 bit
// for bit in one pass (20 bytes per parameter instead of 28 plus the copies).

#include "lowprec.h"

namespace descentlab {
namespace {

void stochastic_round_bf16(at::Tensor dst, const at::Tensor& src, int64_t seed) {
  TORCH_CHECK(src.scalar_type() == at::kFloat && dst.scalar_type() == at::kBFloat16,
              "stochastic_round_bf16: expected a float32 source and a bfloat16 destination");
  TORCH_CHECK(src.device().is_cpu() && dst.device().is_cpu() && src.is_contiguous() && dst.is_contiguous() &&
                  src.numel() == dst.numel(),
              "stochastic_round_bf16: expected contiguous CPU tensors of the same size");
  const float* s = src.data_ptr<float>();
  uint16_t* d = reinterpret_cast<uint16_t*>(dst.data_ptr<at::BFloat16>());
  const uint64_t base = seed_base(seed);
  const int64_t numel = src.numel();
  // over quads of elements, so that a thread's share starts at a multiple of 4
  at::parallel_for(0, (numel + 3) / 4, 1 << 13, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t i = 4 * q;
      // one 64-bit hash gives the 16 random bits of four elements
      const uint64_t r = mix64(base + static_cast<uint64_t>(q) * kGolden);
      const int64_t n = numel - i < 4 ? numel - i : 4;
      for (int64_t j = 0; j < n; ++j) {
        uint32_t bits;
        std::memcpy(&bits, s + i + j, sizeof bits);
        if ((bits & 0x7F800000u) == 0x7F800000u) {
          d[i + j] = c10::BFloat16(s[i + j]).x;  // inf, NaN: round to nearest
        } else {
          d[i + j] = static_cast<uint16_t>((bits + static_cast<uint32_t>((r >> (16 * j)) & 0xFFFFu)) >> 16);
        }
      }
    }
  });
}

void check_bf16(const char* name, at::TensorList params, at::TensorList list) {
  if (list.empty()) return;
  TORCH_CHECK(list.size() == params.size(), "descentlab fused adamw_bf16: ", list.size(), " ", name, " for ",
              params.size(), " parameters");
  for (size_t k = 0; k < params.size(); ++k) {
    const auto& t = list[k];
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == at::kBFloat16 &&
                    t.numel() == params[k].numel(),
                "descentlab fused adamw_bf16: ", name, "[", k, "] is not a contiguous bfloat16 CPU tensor of its "
                "parameter's size");
  }
}

// AdamW (decoupled weight decay; amsgrad optional) on float32 parameters and bfloat16
// moments; seeds: per tensor, those narrow_ gives stochastic_round_bf16 for each key.
void adamw_bf16(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                at::TensorList max_exp_avg_sqs, at::ArrayRef<double> bias_corrections1,
                at::ArrayRef<double> sqrt_bias_corrections2, at::IntArrayRef seeds_m, at::IntArrayRef seeds_v,
                at::IntArrayRef seeds_vmax, double lr, double beta1, double beta2, double eps, double weight_decay,
                bool amsgrad, double l1, double l2, double decay) {
  check_tensors("adamw_bf16", params, {{"grads", grads}});
  for (const auto& p : params) {
    TORCH_CHECK(p.scalar_type() == at::kFloat, "descentlab fused adamw_bf16: needs float32 parameters");
  }
  check_bf16("exp_avgs", params, exp_avgs);
  check_bf16("exp_avg_sqs", params, exp_avg_sqs);
  check_bf16("max_exp_avg_sqs", params, max_exp_avg_sqs);
  DL_REQUIRE("adamw_bf16", exp_avgs.size() == params.size() && exp_avg_sqs.size() == params.size());
  DL_REQUIRE("adamw_bf16", !amsgrad || max_exp_avg_sqs.size() == params.size());
  DL_REQUIRE("adamw_bf16", bias_corrections1.size() == params.size() && seeds_m.size() == params.size());
  DL_REQUIRE("adamw_bf16", seeds_v.size() == params.size() && (!amsgrad || seeds_vmax.size() == params.size()));
  using T = float;
  constexpr int64_t W = V<T>::size();
  for (size_t k = 0; k < params.size(); ++k) {
    T* p = ptr<T>(params[k]);
    const T* g = ptr<T>(grads[k]);
    uint16_t* m = bf16_ptr(exp_avgs[k]);
    uint16_t* v = bf16_ptr(exp_avg_sqs[k]);
    uint16_t* vmax = amsgrad ? bf16_ptr(max_exp_avg_sqs[k]) : nullptr;
    const uint64_t base_m = seed_base(seeds_m[k]), base_v = seed_base(seeds_v[k]);
    const uint64_t base_vmax = amsgrad ? seed_base(seeds_vmax[k]) : 0;
    const Reg<T> reg(l1, l2, decay, lr);
    const AdamMoments<T> adam(beta1, beta2, eps, bias_corrections1[k], sqrt_bias_corrections2[k]);
    const V<T> wd = splat<T>(weight_decay);
    const bool has_wd = weight_decay != 0;
    for_each<T>(params[k].numel(), [=](int64_t i, int64_t n) {
      T mb[W], vb[W];
      widen_bf16(m + i, mb, n);
      widen_bf16(v + i, vb, n);
      const V<T> pi = load(p + i, n);
      const V<T> u = reg.grad(g, pi, i, n);
      const V<T> mi = adam.first(load(mb, n), u);
      V<T> vi = adam.second(load(vb, n), u);
      store(mi, mb, n);
      store(vi, vb, n);
      round_bf16(mb, m + i, i, n, base_m);
      round_bf16(vb, v + i, i, n, base_v);
      if (vmax != nullptr) {
        T xb[W];
        widen_bf16(vmax + i, xb, n);
        vi = at::vec::maximum(load(xb, n), vi);
        store(vi, xb, n);
        round_bf16(xb, vmax + i, i, n, base_vmax);
      }
      V<T> d = adam.direction(mi, vi);
      if (has_wd) d = muladd(pi, wd, d);
      store(reg.post(d, pi), p + i, n);
    });
  }
}

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY_FRAGMENT(descentlab_fused, m) {
  m.def("stochastic_round_bf16(Tensor(a!) dst, Tensor src, int seed) -> ()", &descentlab::stochastic_round_bf16);
  m.def("adamw_bf16(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, float[] bias_corrections1, float[] sqrt_bias_corrections2, int[] seeds_m, "
        "int[] seeds_v, int[] seeds_vmax, float lr, float beta1, float beta2, float eps, float weight_decay, "
        "bool amsgrad, float l1, float l2, float decay) -> ()", &descentlab::adamw_bf16);
}
