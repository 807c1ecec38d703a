// int8 GEMM family, sm90a path (wgmma + TMA), forced through GemmPath::kSm90a: every epilogue,
// tails in M, N and K, strided views and the Mamba shapes, bit-exact against the host reference.
// Skips unless the device is sm_90 and the build contains sm_90a code.
#include "test_gemm_common.cuh"

namespace {

using namespace quamba;
using namespace gemm_test;

#define QUAMBA_REQUIRE_SM90A()                                                                   \
  do {                                                                                          \
    QUAMBA_REQUIRE_GPU();                                                                       \
    if (test::device_arch() != 90) GTEST_SKIP() << "sm90a path needs an sm_90 device";          \
    if (!sm90a_runnable()) GTEST_SKIP() << "no sm_90a code in this build (configure with 90a)"; \
  } while (0)

TEST(GemmSm90a, EpilogueVariants) {
  QUAMBA_REQUIRE_SM90A();
  for (auto s : {std::array<int64_t, 3>{1, 200, 96}, {130, 200, 96}, {151, 1000, 336}, {372, 136, 16},
                 {256, 256, 256}, {129, 129, 4096}}) {
    Weights w(s[1], s[2], s[2] + 16, 5000 + s[1] + s[2]);
    Problem p(w, s[0], s[2] + 32, 6000 + s[0]);
    for (Runner r : {Runner::kSm90a, Runner::kSm90aTile128, Runner::kSm90aTile256}) {
      check<gemm::Identity>(p, r, {}, "identity");
      check<gemm::Requant>(p, r, {}, "requant");
      check<gemm::Requant>(p, r, {true, false, false}, "requant");
      check<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
      check<gemm::DequantF32>(p, r, {false, false, true}, "dequant_f32");
      check<gemm::DequantF16>(p, r, {true, true, true}, "dequant_f16");
    }
  }
}

TEST(GemmSm90a, MambaShapes) {
  QUAMBA_REQUIRE_SM90A();
  for (int64_t D : {768, 2560}) {
    const int64_t E = 2 * D, R = (D + 15) / 16;
    struct Layer { const char* name; int64_t K, N; };
    const Layer layers[] = {{"in_proj", D, 2 * E}, {"x_proj", E, R + 32}, {"dt_proj", R, E}, {"out_proj", E, D},
                            {"lm_head", D, 50280}};
    for (const Layer& L : layers) {
      Weights w(L.N, L.K, L.K, 7000 + D + L.N);
      for (int64_t M : {1, 17, 130, 2049}) {
        Problem p(w, M, L.K, 8000 + M + D);
        const std::string label = std::string(L.name) + " D=" + std::to_string(D);
        for (Runner r : {Runner::kSm90aTile128, Runner::kSm90aTile256}) check<gemm::Requant>(p, r, {}, label);
      }
    }
  }
}

TEST(GemmSm90a, InProjM2048) {
  QUAMBA_REQUIRE_SM90A();
  Weights w(10240, 2560, 2560, 8);
  Problem p(w, 2048, 2560, 9);
  for (Runner r : {Runner::kSm90a, Runner::kSm90aTile128, Runner::kSm90aTile256}) {
    check<gemm::Requant>(p, r, {}, "in_proj D=2560");
    check<gemm::DequantF32>(p, r, {true, true, true}, "in_proj D=2560");
  }
}

}  // namespace
