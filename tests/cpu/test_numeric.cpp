// Rounding, saturation, non-finite policy and fp16/bf16 conversions of quamba/core/numeric.hpp.
#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "common/random.hpp"
#include "quamba/core/numeric.hpp"

using namespace quamba;

TEST(Numeric, RoundHalfToEvenTies) {
  EXPECT_EQ(round_half_even(0.5f), 0.0f);
  EXPECT_EQ(round_half_even(1.5f), 2.0f);
  EXPECT_EQ(round_half_even(2.5f), 2.0f);
  EXPECT_EQ(round_half_even(-0.5f), -0.0f);
  EXPECT_TRUE(std::signbit(round_half_even(-0.5f)));
  EXPECT_FALSE(std::signbit(round_half_even(0.5f)));
  EXPECT_EQ(round_half_even(-1.5f), -2.0f);
  EXPECT_EQ(round_half_even(-2.5f), -2.0f);
  EXPECT_EQ(round_half_even(2.4999998f), 2.0f);
  EXPECT_EQ(round_half_even(2.5000002f), 3.0f);
}

TEST(Numeric, SaturateRoundInt8Edges) {
  EXPECT_EQ(saturate_round_i8(126.5f), 126);   // tie to even
  EXPECT_EQ(saturate_round_i8(127.0f), 127);
  EXPECT_EQ(saturate_round_i8(127.5f), 127);   // would round to 128: saturates
  EXPECT_EQ(saturate_round_i8(128.5f), 127);
  EXPECT_EQ(saturate_round_i8(1e30f), 127);
  EXPECT_EQ(saturate_round_i8(-127.5f), -128); // tie to even is -128, in range
  EXPECT_EQ(saturate_round_i8(-128.0f), -128);
  EXPECT_EQ(saturate_round_i8(-128.5f), -128); // tie to even -128
  EXPECT_EQ(saturate_round_i8(-129.5f), -128);
  EXPECT_EQ(saturate_round_i8(-1e30f), -128);
  EXPECT_EQ(saturate_round_i8(-0.5f), 0);
  EXPECT_EQ(saturate_round_i8(-1.5f), -2);
}

TEST(Numeric, NonFinitePolicy) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(saturate_round_i8(std::numeric_limits<float>::quiet_NaN()), 0);
  EXPECT_EQ(saturate_round_i8(-std::numeric_limits<float>::quiet_NaN()), 0);
  EXPECT_EQ(saturate_round_i8(inf), 127);
  EXPECT_EQ(saturate_round_i8(-inf), -128);
  EXPECT_EQ(quantize_i8(1.0f, inf), 127);
  EXPECT_EQ(scale_from_absmax(0.0f), 1.0f);
  EXPECT_EQ(scale_from_absmax(std::numeric_limits<float>::quiet_NaN()), 1.0f);
  EXPECT_EQ(scale_from_absmax(inf), 1.0f);
}

TEST(Numeric, SaturateInt32) {
  EXPECT_EQ(saturate_i8(1000), 127);
  EXPECT_EQ(saturate_i8(-1000), -128);
  EXPECT_EQ(saturate_i8(-128), -128);
  EXPECT_EQ(saturate_i8(5), 5);
}

TEST(Numeric, QuantizeMultipliesByInverse) {
  // q(v / s) is evaluated as q(v * inv_s): the expression the kernels evaluate.
  const float s = 0.1f, inv = 1.0f / s;
  auto rng = test::make_rng(1);
  for (float v : test::random_floats(10000, rng, -20.f, 20.f)) {
    ASSERT_EQ(quantize_i8(v, inv), saturate_round_i8(v * inv));
    const int8_t q = quantize_i8(v, inv);
    if (std::fabs(v) < 12.6f) {
      ASSERT_LE(std::fabs(dequantize_i8(q, s) - v), 0.5f * s * 1.0001f) << v;
    }
  }
  EXPECT_FLOAT_EQ(scale_from_absmax(12.7f), 0.1f);
}

TEST(Numeric, HalfConversionRoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = half_bits_to_float(static_cast<uint16_t>(h));
    const uint16_t back = float_to_half_bits(f);
    if (std::isnan(f)) {
      ASSERT_TRUE((back & 0x7c00u) == 0x7c00u && (back & 0x3ffu) != 0) << h;
    } else {
      ASSERT_EQ(back, h) << h;
    }
  }
}

TEST(Numeric, HalfConversionRoundsHalfToEven) {
  // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even (1).
  EXPECT_EQ(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);
  // 1 + 3·2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even): rounds up.
  EXPECT_EQ(float_to_half_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);
  EXPECT_EQ(float_to_half_bits(65504.0f), 0x7bffu);
  EXPECT_EQ(float_to_half_bits(65519.0f), 0x7bffu);
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00u);  // rounds to Inf
  EXPECT_EQ(float_to_half_bits(-1e10f), 0xfc00u);
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -24)), 0x0001u);       // smallest subnormal
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -25)), 0x0000u);       // tie to even: 0
  EXPECT_EQ(float_to_half_bits(std::ldexp(3.0f, -25)), 0x0002u);       // tie to even: 2
  EXPECT_EQ(float_to_half_bits(-0.0f), 0x8000u);
}

TEST(Numeric, Bf16Conversion) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80u);
  EXPECT_EQ(bf16_bits_to_float(0x3f80u), 1.0f);
  // 1 + 2^-8 is the tie between 1 and 1 + 2^-7: to even (1).
  EXPECT_EQ(float_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80u);
  EXPECT_EQ(float_to_bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82u);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t b = 0; b < 0x10000u; b += 7) {
    const float f = bf16_bits_to_float(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      ASSERT_EQ(float_to_bf16_bits(f), b);
    }
  }
}

TEST(Numeric, PackedVectorsAre16Bytes) {
  static_assert(sizeof(Vec<int8_t, 16>) == 16 && alignof(Vec<int8_t, 16>) == 16);
  static_assert(sizeof(Vec<float, 4>) == 16 && alignof(Vec<float, 4>) == 16);
  static_assert(kVec16<int8_t> == 16 && kVec16<float> == 4 && kVec16<uint16_t> == 8);
  Vec<int8_t, 16> v{};
  v[3] = 7;
  EXPECT_EQ(v[3], 7);
}
