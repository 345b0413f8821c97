// Stochastic rounding of float32 to bfloat16 (optim/lowprec.py, state_dtype="bfloat16").
//
// A float32 x lies between two bfloat16 neighbours; adding 16 uniform random bits
// below the bfloat16 mantissa and truncating rounds up with probability
// (x - lower) / (upper - lower): unbiased. The random bits are a counter-based hash
// (SplitMix64's finalizer, Steele, Lea & Flood 2014) of (seed, element index), so
// the result does not depend on how the elements are split over threads, and a
// resumed run draws the same bits. Infinities and NaNs are rounded to nearest.

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>

namespace descentlab {
namespace {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void stochastic_round_bf16(at::Tensor dst, const at::Tensor& src, int64_t seed) {
  TORCH_CHECK(src.scalar_type() == at::kFloat && dst.scalar_type() == at::kBFloat16,
              "stochastic_round_bf16: expected a float32 source and a bfloat16 destination");
  TORCH_CHECK(src.device().is_cpu() && dst.device().is_cpu() && src.is_contiguous() && dst.is_contiguous() &&
                  src.numel() == dst.numel(),
              "stochastic_round_bf16: expected contiguous CPU tensors of the same size");
  const float* s = src.data_ptr<float>();
  uint16_t* d = reinterpret_cast<uint16_t*>(dst.data_ptr<at::BFloat16>());
  const uint64_t base = mix64(static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ull);
  const int64_t numel = src.numel();
  // over quads of elements, so that a thread's share starts at a multiple of 4
  at::parallel_for(0, (numel + 3) / 4, 1 << 13, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t i = 4 * q;
      // one 64-bit hash gives the 16 random bits of four elements
      const uint64_t r = mix64(base + static_cast<uint64_t>(q) * 0x9E3779B97F4A7C15ull);
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

}  // namespace
}  // namespace descentlab

TORCH_LIBRARY_FRAGMENT(descentlab_fused, m) {
  m.def("stochastic_round_bf16(Tensor(a!) dst, Tensor src, int seed) -> ()", &descentlab::stochastic_round_bf16);
}
