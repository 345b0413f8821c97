// bfloat16 optimizer state with stochastic rounding (optim/lowprec.py, state_dtype="bfloat16").
//
// A float32 x lies between two bfloat16 neighbours; adding 16 uniform random bits
// below the bfloat16 mantissa and truncating rounds up with probability
// (x - lower) / (upper - lower): unbiased. The random bits are a counter-based hash
// (SplitMix64's finalizer, Steele, Lea & Flood 2014) of (seed, element index), so
// the result does not depend on how the elements are split over threads, and a
// resumed run draws the same bits. Infinities and NaNs are rounded to nearest.
//
// A kernel reads and writes its state through an accessor: Plain<T> (the state in
// the parameter's dtype, in place) or Rounded (bfloat16 state of a float32
// parameter: widened exactly, written back with the bits stochastic_round_bf16
// gives each element). The float32 arithmetic between is the kernel's own, so a
// step on bfloat16 state equals widen -> the float32 kernel -> stochastic_round_bf16
// bit for bit, in one pass.

#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.h"

namespace descentlab {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The hash base of a tensor's seed.
inline uint64_t seed_base(int64_t seed) { return mix64(static_cast<uint64_t>(seed) + kGolden); }

// bfloat16 bits -> float32 (exact).
inline void widen_bf16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t bits = static_cast<uint32_t>(src[j]) << 16;
    std::memcpy(dst + j, &bits, sizeof bits);
  }
}

// x[0, n), elements i .. i + n of a tensor, rounded into dst with the bits that
// stochastic_round_bf16 gives element i + j (the hash of its quad); inf and NaN
// as c10::BFloat16 rounds them (NaN -> 0x7FC0). Written to vectorize: each element
// hashes its quad itself (measured: one hash per quad, with the loops that takes,
// made the bfloat16 steps 1.2-1.6x slower).
inline void round_bf16(const float* x, uint16_t* dst, int64_t i, int64_t n, uint64_t base) {
  for (int64_t j = 0; j < n; ++j) {
    const uint64_t idx = static_cast<uint64_t>(i + j);
    uint32_t bits;
    std::memcpy(&bits, x + j, sizeof bits);
    const uint64_t r = mix64(base + (idx >> 2) * kGolden);
    const uint32_t up = (bits + static_cast<uint32_t>((r >> (16 * (idx & 3))) & 0xFFFFu)) >> 16;
    const uint32_t special = (bits & 0x007FFFFFu) != 0 ? 0x7FC0u : bits >> 16;
    dst[j] = static_cast<uint16_t>((bits & 0x7F800000u) == 0x7F800000u ? special : up);
  }
}

inline uint16_t* bf16_ptr(const at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }

// State in the parameter's dtype, read and written in place.
template <typename T>
struct Plain {
  T* s;
  inline V<T> get(int64_t i, int64_t n) const { return load(s + i, n); }
  inline void put(const V<T>& x, int64_t i, int64_t n) const { store(x, s + i, n); }
};

// bfloat16 state of a float32 parameter.
struct Rounded {
  uint16_t* s;
  uint64_t base;
  inline V<float> get(int64_t i, int64_t n) const {
    float b[V<float>::size()];
    widen_bf16(s + i, b, n);
    return load(b, n);
  }
  inline void put(const V<float>& x, int64_t i, int64_t n) const {
    float b[V<float>::size()];
    store(x, b, n);
    round_bf16(b, s + i, i, n, base);
  }
};

// The accessor of state tensor t of parameter k: Rounded when the kernel was given
// seeds (bfloat16 state), else Plain<T>.
template <typename T, typename Low>
inline auto state(Low, const at::Tensor& t, at::IntArrayRef seeds, size_t k) {
  if constexpr (Low::value) {
    return Rounded{bf16_ptr(t), seed_base(seeds[k])};
  } else {
    return Plain<T>{t.data_ptr<T>()};
  }
}

// for_tensors with the state's kind: f(zero, low, k), low std::true_type when the
// kernel was given seeds (then the parameters must be float32 and every listed state
// tensor contiguous bfloat16 of its parameter's size, one seed per parameter each),
// std::false_type otherwise (the state as check_tensors requires it).
template <typename F>
inline void for_tensors_low(const char* kernel, at::TensorList params, at::TensorList grads,
                            std::initializer_list<std::pair<Sized, at::IntArrayRef>> states, const F& f) {
  bool low = false;
  for (const auto& [list, seeds] : states) low = low || !seeds.empty();
  if (!low) {
    std::vector<Sized> lists{{"grads", grads}};
    for (const auto& [list, seeds] : states) lists.push_back(list);
    for (const auto& sized : lists) check_tensors(kernel, params, {sized});
    for_tensors(kernel, params, [&](auto zero, size_t k) { f(zero, std::false_type{}, k); });
    return;
  }
  check_tensors(kernel, params, {{"grads", grads}});
  for (const auto& [list, seeds] : states) {
    const auto& [name, tensors] = list;
    if (tensors.empty()) continue;
    TORCH_CHECK(tensors.size() == params.size() && seeds.size() == params.size(), "descentlab fused ", kernel,
                ": ", tensors.size(), " ", name, " and ", seeds.size(), " seeds for ", params.size(), " parameters");
    for (size_t k = 0; k < params.size(); ++k) {
      TORCH_CHECK(params[k].scalar_type() == at::kFloat, "descentlab fused ", kernel,
                  ": bfloat16 state needs float32 parameters");
      const auto& t = tensors[k];
      TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == at::kBFloat16 &&
                      t.numel() == params[k].numel(),
                  "descentlab fused ", kernel, ": ", name, "[", k,
                  "] is not a contiguous bfloat16 CPU tensor of its parameter's size");
    }
  }
  for (size_t k = 0; k < params.size(); ++k) f(float(0), std::true_type{}, k);
}

}  // namespace descentlab
