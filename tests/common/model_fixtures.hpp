// tests/common/model_fixtures.hpp: small random models for the model-level tests (host
// reference); a failure while building one is a test failure.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "quamba/reference/model.hpp"

namespace quamba::test {

inline reference::ModelWeights random_model(const reference::ModelConfig& c, uint64_t seed) {
  reference::ModelWeights w;
  EXPECT_EQ(reference::init_random_model(c, seed, &w), Status::kSuccess);
  return w;
}

// Calibrates `w` on `calib` (one sample per sequence) and quantizes it with `recipe`.
inline reference::QuantizedModel calibrate_and_quantize(const reference::ModelWeights& w,
                                                        const std::vector<std::vector<int32_t>>& calib,
                                                        const reference::QuantRecipe& recipe) {
  reference::CalibrationStats st;
  EXPECT_EQ(reference::calibrate(w, calib, reference::CalibrationOptions{}, &st), Status::kSuccess);
  reference::ModelScales s;
  EXPECT_EQ(reference::scales_from_calibration(st, recipe, &s), Status::kSuccess);
  reference::QuantizedModel q;
  EXPECT_EQ(reference::quantize_model(w, s, recipe, &q), Status::kSuccess);
  return q;
}

}  // namespace quamba::test
