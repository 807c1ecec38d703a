// int8 GEMM family (quamba/gemm): the GEMV and mma.sync paths and the dispatcher, every epilogue,
// against the host reference (reference/gemm.hpp: gemm_i8_i32 + epilogue_value), bit-exact;
// cuBLAS baselines; bad input. The sm90a path: test_gemm_sm90.cu.
#include "test_gemm_common.cuh"

namespace {

using namespace quamba;
using namespace gemm_test;
using quamba::test::DeviceBuffer;

// ---- epilogue variants on a tail-heavy shape --------------------------------------------------

struct VariantShape { int64_t M, N, K; };

class GemmEpilogue : public ::testing::TestWithParam<VariantShape> {};

TEST_P(GemmEpilogue, AllVariantsAllPaths) {
  QUAMBA_REQUIRE_GPU();
  const auto s = GetParam();
  // A cut from a wider buffer (lda = K + 32) and W with a padded pitch (ldw = K + 16).
  Weights w(s.N, s.K, s.K + 16, 1000 + s.N * 7 + s.K);
  Problem p(w, s.M, s.K + 32, 2000 + s.M);
  for (Runner r : runners_for(s.M, s.K)) {
    check<gemm::Identity>(p, r, {}, "identity");
    check<gemm::Requant>(p, r, {}, "requant");
    check<gemm::Requant>(p, r, {true, false, false}, "requant");
    check<gemm::DequantF32>(p, r, {}, "dequant_f32");
    check<gemm::DequantF32>(p, r, {true, false, false}, "dequant_f32");
    check<gemm::DequantF32>(p, r, {false, true, false}, "dequant_f32");
    check<gemm::DequantF32>(p, r, {false, false, true}, "dequant_f32");
    check<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
    check<gemm::DequantF16>(p, r, {}, "dequant_f16");
    check<gemm::DequantF16>(p, r, {true, true, true}, "dequant_f16");
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmEpilogue,
                         ::testing::Values(VariantShape{1, 200, 96}, VariantShape{3, 77, 48},
                                           VariantShape{16, 264, 1040}, VariantShape{5, 1100, 512},
                                           VariantShape{17, 200, 96},
                                           VariantShape{130, 200, 96}, VariantShape{151, 1000, 336},
                                           VariantShape{372, 136, 16}),
                         [](const auto& info) {
                           return "M" + std::to_string(info.param.M) + "_N" + std::to_string(info.param.N) + "_K" +
                                  std::to_string(info.param.K);
                         });

// ---- the Mamba layer shapes ----------------------------------------------------------------------

class GemmMamba : public ::testing::TestWithParam<int> {};

TEST_P(GemmMamba, AllLayers) {
  QUAMBA_REQUIRE_GPU();
  const int64_t D = GetParam(), E = 2 * D, R = (D + 15) / 16;
  struct Layer { const char* name; int64_t K, N; };
  const Layer layers[] = {{"in_proj", D, 2 * E}, {"x_proj", E, R + 32}, {"dt_proj", R, E}, {"out_proj", E, D},
                          {"lm_head", D, 50280}};
  for (const Layer& L : layers) {
    Weights w(L.N, L.K, L.K, 3000 + D * 13 + L.N);
    for (int64_t M : {1, 3, 8, 17, 32, 130}) {  // 8..32: the tensor-core small-M path
      // in_proj reads the normalized activations directly; the others read strided views
      // (x of xz has pitch 2E; dt of xdbl has pitch R + 32 rounded to 16).
      const int64_t lda = std::string(L.name) == "dt_proj" ? (R + 32 + 15) / 16 * 16 : L.K;
      Problem p(w, M, std::max(lda, L.K), 4000 + M + D);
      for (Runner r : runners_for(M, L.K)) {
        const std::string label = std::string(L.name) + " D=" + std::to_string(D);
        if (std::string(L.name) == "out_proj") check<gemm::DequantF32>(p, r, {false, false, true}, label);
        else if (std::string(L.name) == "lm_head") check<gemm::DequantF16>(p, r, {}, label);
        else check<gemm::Requant>(p, r, {}, label);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(D, GemmMamba, ::testing::Values(768, 1024, 1536, 2048, 2560),
                         [](const auto& info) { return "D" + std::to_string(info.param); });

TEST(GemmMambaOddM, InProjM2049) {
  QUAMBA_REQUIRE_GPU();
  Weights w(3072, 768, 768, 77);
  Problem p(w, 2049, 768, 78);
  for (Runner r : runners_for(p.M)) {
    check<gemm::Requant>(p, r, {}, "in_proj D=768");
    check<gemm::DequantF16>(p, r, {true, true, true}, "in_proj D=768");
  }
}

// The x = xz[..., :E] view: A is the left half of an (M, 2E) buffer.
TEST(GemmStrided, XzLeftHalf) {
  QUAMBA_REQUIRE_GPU();
  const int64_t E = 1536, R = 48;
  Weights w(R + 32, E, E, 91);
  Problem p(w, 130, 2 * E, 92);
  for (Runner r : runners_for(p.M)) check<gemm::Requant>(p, r, {true, false, false}, "x_proj on xz view");
  Problem p1(w, 1, 2 * E, 93);
  for (Runner r : runners_for(p1.M)) check<gemm::Requant>(p1, r, {}, "x_proj on xz view");
}

// out_proj adds into the fp32 residual stream in place: residual == C, ldr == ldc. The last shape
// is out_proj at batch 32, which auto with a workspace splits over K (the reduce kernel reads
// each residual element before it writes it).
TEST(GemmInPlace, ResidualIsOutput) {
  QUAMBA_REQUIRE_GPU();
  for (const VariantShape s : {VariantShape{1, 200, 96}, VariantShape{7, 200, 96}, VariantShape{130, 200, 96},
                               VariantShape{32, 2560, 5120}}) {
    const int64_t M = s.M, N = s.N, K = s.K;
    Weights w(N, K, K, 30 + N);
    Problem p(w, M, K, 31 + M);
    for (Runner r : runners_for(M, K)) {
      SCOPED_TRACE(std::string(runner_name(r)) + " M=" + std::to_string(M) + " N=" + std::to_string(N));
      const int64_t ldc = p.ldr;
      DeviceBuffer<float> C(p.residual);  // starts as the residual, ends as residual + h
      gemm::GemmParams<gemm::DequantF32> prm;
      prm.M = M; prm.N = N; prm.K = K; prm.A = p.dA.get(); prm.lda = K; prm.W = w.dev.get(); prm.ldw = K;
      prm.C = C.get(); prm.ldc = ldc;
      prm.epilogue.alpha = 3.f / p.acc_rms;
      prm.epilogue.bias = w.d_bias.get();
      prm.epilogue.residual = C.get();
      prm.epilogue.ldr = ldc;
      ASSERT_EQ(run_with(r, prm), Status::kSuccess);
      QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
      const auto got = C.download();
      reference::EpilogueRef ref;
      ref.alpha = prm.epilogue.alpha;
      ref.bias = w.bias.data();
      const int64_t shape[2] = {M, N}, stride[2] = {ldc, 1};
      ref.residual = make_strided_view<const float, 2>(p.residual.data(), shape, stride);
      size_t bad = 0;
      for (size_t i = 0; i < p.rows.size(); ++i)
        for (size_t j = 0; j < p.cols.size(); ++j) {
          const int64_t m = p.rows[i], n = p.cols[j];
          const float want = reference::epilogue_value(ref, p.acc[i * p.cols.size() + j], m, n);
          bad += float_bits(got[m * ldc + n]) != float_bits(want);
        }
      EXPECT_EQ(bad, 0u);
      // Padding columns of the residual buffer are left as they were.
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = N; n < ldc; ++n) ASSERT_EQ(float_bits(got[m * ldc + n]), float_bits(p.residual[m * ldc + n]));
    }
  }
}

// GEMV and GEMM agree bit for bit on M = 1..16 (decode vs prefill).
TEST(GemmConsistency, GemvEqualsTensorCore) {
  QUAMBA_REQUIRE_GPU();
  Weights w(520, 2560, 2560, 5);
  for (int64_t M : {1, 2, 5, 8, 9, 16}) {
    Problem p(w, M, 2560, 6 + M);
    DeviceBuffer<int8_t> c1(M * 520), c2(M * 520);
    gemm::GemmParams<gemm::Requant> prm;
    prm.M = M; prm.N = 520; prm.K = 2560; prm.A = p.dA.get(); prm.lda = 2560; prm.W = w.dev.get(); prm.ldw = 2560;
    prm.ldc = 520; prm.epilogue.alpha = 60.f / p.acc_rms;
    prm.C = c1.get();
    ASSERT_EQ(gemm::run(prm, nullptr, 0, gemm::GemmPath::kGemv), Status::kSuccess);
    prm.C = c2.get();
    ASSERT_EQ(gemm::run(prm, nullptr, 0, gemm::GemmPath::kSm80), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto a = c1.download(), b = c2.download();
    EXPECT_TRUE(test::all_equal(a.data(), b.data(), a.size(), "gemv vs sm80 M=" + std::to_string(M)));
  }
}

// The tensor-core small-M kernel (gemm/gemv_mma.cuh), every shape by name and through run(): every M
// from 1 to 32 (1..8, 9..16 and 17..32 take the three batch widths; rows past M are read but never
// stored), N tails inside a 16-row group and across blocks, K from one 16-byte piece up to past
// 5120 with 64-byte chunks cut short (K % 64 = 16, 32, 48), padded lda / ldw, every epilogue.
TEST(GemmGemvMma, Sweep) {
  QUAMBA_REQUIRE_GPU();
  struct NK { int64_t N, K; };
  for (const NK s : {NK{1, 16}, NK{15, 48}, NK{17, 80}, NK{72, 160}, NK{33, 1040}, NK{200, 5136}}) {
    Weights w(s.N, s.K, s.K + 32, 7000 + s.N + s.K);
    for (int64_t M = 1; M <= gemm::kGemvMmaMaxM; ++M) {
      Problem p(w, M, s.K + 16, 7100 + M + s.K);
      const std::string label = "N=" + std::to_string(s.N) + " K=" + std::to_string(s.K);
      for (Runner r : kGemvMmaRunners) {
        check<gemm::Requant>(p, r, {}, label);
        if (M % 5 == 1) {
          check<gemm::Requant>(p, r, {true, false, false}, label);
          check<gemm::DequantF32>(p, r, {true, true, true}, label);
          check<gemm::DequantF16>(p, r, {false, true, false}, label);
          check<gemm::Identity>(p, r, {}, label);
        }
      }
    }
  }
}

// ---- short K ---------------------------------------------------------------------------------------

// The short-K kernel (gemm_short_k.cuh), both tiles: K from one 16-byte chunk to the 256 bound
// (K % 32 == 16 zero-fills the last half step), M and N tails, grids with one tile per CTA and
// with many (ranges that cross column blocks, stages that keep or reload W), every epilogue, the
// 16-byte and the per-element store paths (check() uses an odd ldc with a column scale).
TEST(GemmShortK, Sweep) {
  QUAMBA_REQUIRE_GPU();
  const VariantShape shapes[] = {{17, 8, 16},     {64, 128, 32},    {65, 200, 48},     {129, 1536, 160},
                                 {300, 72, 176},  {2100, 640, 256}, {1000, 5120, 160}, {4099, 1000, 240},
                                 {8192, 136, 64}};
  for (const auto& s : shapes) {
    Weights w(s.N, s.K, s.K + 16, 9000 + s.N + s.K);
    Problem p(w, s.M, s.K + 32, 9100 + s.M);
    for (Runner r : {Runner::kShortK64, Runner::kShortK128, Runner::kShortK64x64, Runner::kShortKCol, Runner::kShortKCol32}) {
      check<gemm::Requant>(p, r, {}, "requant");
      check<gemm::Requant>(p, r, {true, false, false}, "requant");
      check<gemm::Requant>(p, r, {}, "requant", 16);
      check<gemm::Identity>(p, r, {}, "identity");
      check<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
      check<gemm::DequantF16>(p, r, {}, "dequant_f16");
      check<gemm::DequantF16>(p, r, {true, true, false}, "dequant_f16", 16);
    }
  }
}

// Grids with several tiles per CTA at a small K: the double-buffered stages, W kept across tiles
// of one column block and reloaded at the next, the empty commit groups of a range's last tiles
// (also the compute-sanitizer racecheck target of this kernel).
TEST(GemmShortK, SeveralTilesPerCta) {
  QUAMBA_REQUIRE_GPU();
  Weights w(1000, 32, 32, 9300);
  Problem p(w, 4100, 32, 9301);
  for (Runner r : {Runner::kShortK64, Runner::kShortK64x64, Runner::kShortK128, Runner::kShortKCol, Runner::kShortKCol32}) {
    check<gemm::Requant>(p, r, {}, "requant", 16);
    check<gemm::DequantF16>(p, r, {false, true, false}, "dequant_f16");
  }
}

// dt_proj at d_model 2560 on a long prompt (M = 8192 + 65, N = 5120, K = 160): ~20 tiles per CTA,
// so every stage keeps its W rows over many tiles and reloads them at column-block boundaries, with
// an M tail in every column block; plain and as a programmatic dependent (the first tile's W rows
// requested before the dependency wait).
TEST(GemmShortK, DtProjLongPrompt) {
  QUAMBA_REQUIRE_GPU();
  Weights w(5120, 160, 160, 9400);
  Problem p(w, 8192 + 65, 160, 9401);
  check<gemm::Requant>(p, Runner::kShortK64, {}, "requant", 16);
  check<gemm::Requant>(p, Runner::kShortKCol, {}, "requant", 16);
  check<gemm::Requant>(p, Runner::kShortKCol32, {}, "requant", 16);
  check<gemm::Requant>(p, Runner::kAuto, {}, "requant");
  check_pdl<gemm::Requant>(p, Runner::kShortK64, {}, "requant pdl", 16);
  check_pdl<gemm::Requant>(p, Runner::kShortKCol, {}, "requant pdl", 16);
}

// Accumulators at the edge of the exact int32 -> fp32 form of the Requant epilogue: K = 256 with
// every product (-128)·(-128) reaches its bound 2^22, mixed signs reach -(2^22 - 256·128); alphas
// that scale them into range, saturate them, or flush them to zero. Every output against the host
// epilogue on the full product.
TEST(GemmShortK, ExtremeAccumulatorsExact) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t K : {224, 240, 256}) {
    for (int pattern = 0; pattern < 3; ++pattern) {
      const int64_t M = 130, N = 136;
      std::vector<int8_t> A(M * K), W(N * K);
      for (int64_t i = 0; i < M * K; ++i) A[i] = pattern == 2 && (i / K) % 2 ? int8_t(127) : int8_t(-128);
      for (int64_t i = 0; i < N * K; ++i) W[i] = pattern == 1 && (i / K) % 3 == 1 ? int8_t(127) : int8_t(-128);
      std::vector<int32_t> acc(M * N);
      ASSERT_EQ(reference::gemm_i8_i32(make_view<const int8_t>(A.data(), M, K), make_view<const int8_t>(W.data(), N, K),
                                       make_view(acc.data(), M, N)),
                Status::kSuccess);
      DeviceBuffer<int8_t> dA(A), dW(W);
      DeviceBuffer<int8_t> dC(static_cast<size_t>(M * N));
      gemm::GemmParams<gemm::Requant> prm;
      prm.M = M; prm.N = N; prm.K = K;
      prm.A = dA.get(); prm.lda = K; prm.W = dW.get(); prm.ldw = K; prm.C = dC.get(); prm.ldc = N;
      for (float alpha : {100.f / static_cast<float>(K * 16384), 1.f / 3.f, 3e-7f}) {
        prm.epilogue.alpha = alpha;
        for (Runner r : {Runner::kShortK64, Runner::kShortK128, Runner::kShortK64x64, Runner::kShortKCol, Runner::kShortKCol32, Runner::kAuto}) {
          SCOPED_TRACE(std::string(runner_name(r)) + " K=" + std::to_string(K) + " pattern " + std::to_string(pattern) +
                       " alpha " + std::to_string(alpha));
          dC.poison(0x5A);
          if (!short_k_fits<int8_t>(r, K)) {
            EXPECT_EQ(run_with(r, prm), Status::kErrorNotSupported);
            continue;
          }
          ASSERT_EQ(run_with(r, prm), Status::kSuccess);
          QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
          const std::vector<int8_t> got = dC.download();
          size_t bad = 0;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n)
              if (got[m * N + n] != prm.epilogue.apply(acc[m * N + n], m, n) && bad++ == 0)
                ADD_FAILURE() << "m=" << m << " n=" << n << " acc=" << acc[m * N + n] << " got " << +got[m * N + n]
                              << " want " << +prm.epilogue.apply(acc[m * N + n], m, n);
          EXPECT_EQ(bad, 0u);
        }
      }
    }
  }
}

// ---- split-K ---------------------------------------------------------------------------------------

// The split-K form of the 64x64 tile, every epilogue, on shapes whose plan splits: a last slice
// shorter than the others (K = 1040), M and N tails, one M-tile (decode batches) and several.
TEST(GemmSplitK, AllEpilogues) {
  QUAMBA_REQUIRE_GPU();
  const VariantShape shapes[] = {{33, 200, 1040}, {130, 77, 2048}, {1, 264, 512}, {32, 192, 5120}, {200, 40, 4096}};
  for (const auto& s : shapes) {
    ASSERT_GT(gemm::plan_split_k(s.M, s.N, s.K).splits, 1) << s.M << "x" << s.N << "x" << s.K;
    Weights w(s.N, s.K, s.K + 16, 7000 + s.N + s.K);
    Problem p(w, s.M, s.K + 32, 8000 + s.M);
    check<gemm::Identity>(p, Runner::kSm80SplitK, {}, "identity");
    check<gemm::Requant>(p, Runner::kSm80SplitK, {true, false, false}, "requant");
    check<gemm::DequantF32>(p, Runner::kSm80SplitK, {true, true, true}, "dequant_f32");
    check<gemm::DequantF16>(p, Runner::kSm80SplitK, {}, "dequant_f16");
  }
}

// Small batches (8..16 rows) whose plan splits and whose M·N·K reaches kSplitKOverGemvMinMacs:
// run() with a workspace takes the split-K tile instead of the GEMV (gemm.cuh) for (12, 1000,
// 1040) and (9, 600, 2048); every epilogue against the reference. (8, 2560, 5120), a wide
// layer, and the x_proj shapes (N 192) take the tensor-core small-M kernel (gemv_mma_worthwhile).
TEST(GemmSplitK, SmallBatchesWithAWorkspace) {
  QUAMBA_REQUIRE_GPU();
  const VariantShape shapes[] = {{8, 2560, 5120}, {16, 192, 5120}, {12, 1000, 1040}, {9, 600, 2048}, {8, 192, 5120}};
  for (const auto& s : shapes) {
    ASSERT_GT(gemm::plan_split_k(s.M, s.N, s.K).splits, 1) << s.M << "x" << s.N << "x" << s.K;
    Weights w(s.N, s.K, s.K, 7100 + s.N + s.K);
    Problem p(w, s.M, s.K, 8100 + s.M);
    check<gemm::Requant>(p, Runner::kAutoWorkspace, {true, false, false}, "requant");
    check<gemm::DequantF32>(p, Runner::kAutoWorkspace, {true, true, true}, "dequant_f32");
    check<gemm::DequantF16>(p, Runner::kAutoWorkspace, {}, "dequant_f16");
  }
}

// The plan (host only): whole 64-byte K-tiles, slices covering K, and every shape's workspace
// within the documented bound.
TEST(GemmSplitK, PlanRules) {
  size_t worst = 0;
  for (int64_t M : {1, 7, 32, 64, 65, 130, 512, 2048, 4096})
    for (int64_t N : {8, 40, 192, 200, 1000, 2560, 10240})
      for (int64_t K : {16, 496, 512, 1040, 2560, 5120, 8192, 16384}) {
        const auto s = gemm::plan_split_k(M, N, K);
        const int64_t tiles = ((M + 63) / 64) * ((N + 63) / 64);
        if (s.splits == 1) continue;
        EXPECT_EQ(s.slice % 64, 0);
        EXPECT_GE(s.slice * s.splits, K);
        EXPECT_LT(s.slice * (s.splits - 1), K) << "no empty slice";
        EXPECT_LT(2 * tiles, gemm::kSplitKTargetCtas);
        worst = std::max(worst, gemm::split_k_workspace_size(M, N, K));
      }
  EXPECT_GT(worst, 0u);
  EXPECT_LE(worst, gemm::kSplitKWorkspaceBound);
  EXPECT_EQ(gemm::plan_split_k(2048, 10240, 2560).splits, 1) << "many tiles: no split";
  EXPECT_EQ(gemm::plan_split_k(32, 192, 160).splits, 1) << "short K: no split";
  EXPECT_EQ(gemm::plan_split_k(32, 192, 5120).splits, 20);
}

// ---- programmatic dependent launch ----------------------------------------------------------------

// Every kernel gemm::run can take outside sm90a (test_gemm_sm90.cu), launched with pdl = true as a
// dependent of a kernel that writes A (and the residual) late, then back to back (check_pdl):
// both mma.sync tiles (the W tiles of the prologue go out before the dependency wait), the split-K
// tile and reduce kernels (forced and through auto with a workspace), the short-K kernel (its
// first tile's W rows before the wait; several tiles per CTA), auto, and the GEMV.
TEST(GemmPdl, EveryPath) {
  QUAMBA_REQUIRE_GPU();
  {
    // Tails in M, N and K; K = 96 is two K-tiles, fewer than the three of the prologue.
    Weights w(200, 96, 112, 61);
    Problem p(w, 130, 128, 62);
    for (Runner r : {Runner::kSm80Tile128, Runner::kSm80Tile64, Runner::kAuto}) {
      check_pdl<gemm::Requant>(p, r, {}, "requant");
      check_pdl<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
    }
    Weights w2(520, 1040, 1040, 63);
    Problem p2(w2, 151, 1040, 64);
    for (Runner r : {Runner::kSm80Tile128, Runner::kSm80Tile64})
      check_pdl<gemm::DequantF16>(p2, r, {true, true, true}, "dequant_f16 K=1040");
  }
  {
    // out_proj at batch 32 (d_model 2560): split over K into several slices.
    Weights w(2560, 5120, 5120, 65);
    Problem p(w, 32, 5120, 66);
    ASSERT_GT(gemm::plan_split_k(32, 2560, 5120).splits, 1);
    for (Runner r : {Runner::kSm80SplitK, Runner::kAutoWorkspace}) {
      check_pdl<gemm::DequantF32>(p, r, {false, true, true}, "out_proj");
      check_pdl<gemm::Requant>(p, r, {true, false, false}, "requant");
    }
  }
  {
    // dt_proj-like K = 160 (auto takes the short-K kernel at M >= 128).
    Weights w(1536, 160, 176, 67);
    Problem p(w, 2100, 192, 68);
    for (Runner r : {Runner::kAuto, Runner::kShortK64, Runner::kShortK128, Runner::kShortK64x64, Runner::kShortKCol, Runner::kShortKCol32}) {
      check_pdl<gemm::Requant>(p, r, {}, "dt_proj", 16);
      check_pdl<gemm::DequantF16>(p, r, {true, true, false}, "dequant_f16");
    }
  }
  {
    Weights w(520, 2560, 2560, 69);
    Problem p(w, 8, 2560, 70);
    for (Runner r : {Runner::kGemv, Runner::kGemvWide, Runner::kGemvSplitK})
      check_pdl<gemm::Requant>(p, r, {}, "gemv");
    for (Runner r : kGemvMmaRunners) check_pdl<gemm::DequantF32>(p, r, {true, true, true}, "gemv_mma");
    Problem p32(w, 32, 2560, 71);
    for (Runner r : kGemvMmaRunners) check_pdl<gemm::Requant>(p32, r, {}, "gemv_mma M=32");
  }
}

// ---- dispatch rules (host only: runs without a GPU too) ------------------------------------------

// Every path gives the same bits, so output tests cannot see which one ran: the choice itself is
// checked here, at the d_model 2560 layers on an H100-sized device (132 SMs).
TEST(GemmDispatch, AutoPathRules) {
  using gemm::GemmPath;
  const int sms = 132;
  auto path = [&](int64_t M, int64_t N, int64_t K, bool ws, int arch = 90) {
    return gemm::auto_path(M, N, K, ws, arch, sms);
  };
  // Decode rows: the GEMV, except where a tile wins (see gemm.cuh).
  EXPECT_EQ(path(1, 10240, 2560, true), GemmPath::kGemv) << "in_proj, 1 row";
  EXPECT_EQ(path(2, 10240, 2560, true), GemmPath::kGemv) << "in_proj, 2 rows";
  EXPECT_EQ(path(3, 10240, 2560, false), GemmPath::kGemvMma) << "in_proj, 3 rows: tensor-core weight stream";
  EXPECT_EQ(path(8, 10240, 2560, false), GemmPath::kGemvMma) << "in_proj, 8 rows";
  EXPECT_EQ(path(32, 10240, 2560, true), GemmPath::kGemvMma) << "in_proj, 32 rows";
  EXPECT_EQ(path(33, 10240, 2560, true), GemmPath::kSm80) << "past the small-M kernel";
  EXPECT_EQ(path(8, 2560, 5120, true), GemmPath::kGemvMma) << "out_proj, 8 rows, workspace";
  EXPECT_EQ(path(8, 2560, 5120, false), GemmPath::kGemvMma) << "out_proj, 8 rows, no workspace";
  EXPECT_EQ(path(8, 2560, 5120, true, 80), GemmPath::kGemvMma) << "every architecture";
  EXPECT_EQ(path(32, 1024, 5120, true), GemmPath::kSm80) << "1024 rows of W: split-K tile";
  EXPECT_EQ(path(4, 192, 5120, true), GemmPath::kGemv) << "x_proj, 4 rows: GEMV";
  EXPECT_EQ(path(5, 192, 5120, true), GemmPath::kGemv) << "x_proj, 5 rows: GEMV";
  EXPECT_EQ(path(6, 192, 5120, true), GemmPath::kGemvMma) << "x_proj, 6 rows: tensor-core weight stream";
  EXPECT_EQ(path(16, 192, 5120, true), GemmPath::kGemvMma) << "x_proj, 16 rows";
  EXPECT_EQ(path(32, 192, 5120, false), GemmPath::kGemvMma) << "x_proj, 32 rows";
  EXPECT_EQ(path(16, 600, 2048, true), GemmPath::kSm80) << "257..1024 outputs: split-K tile";
  EXPECT_EQ(path(2, 5120, 160, false), GemmPath::kGemv) << "dt_proj, 2 rows";
  EXPECT_EQ(path(3, 5120, 160, false), GemmPath::kGemvMma) << "dt_proj, 3 rows: short-K weight stream";
  EXPECT_EQ(path(32, 5120, 160, true), GemmPath::kGemvMma) << "dt_proj, 32 rows";
  EXPECT_EQ(path(8, 1536, 48, false), GemmPath::kGemvMma) << "dt_proj at d_model 768";
  EXPECT_EQ(path(8, 192, 160, false), GemmPath::kGemv) << "narrow and short: GEMV";
  // Which shape of the small-M kernel (gemv_mma.cuh select_gemv_mma).
  using gemm::GemvMmaKind;
  EXPECT_EQ(gemm::select_gemv_mma(10240, 2560), GemvMmaKind::kWide4) << "in_proj: 640 row groups";
  EXPECT_EQ(gemm::select_gemv_mma(50280, 2560), GemvMmaKind::kWide4) << "lm_head";
  EXPECT_EQ(gemm::select_gemv_mma(2560, 5120), GemvMmaKind::kWide) << "out_proj: 160 row groups, long K";
  EXPECT_EQ(gemm::select_gemv_mma(3072, 768), GemvMmaKind::kWide4) << "in_proj at d_model 768: K too short for 8 warps";
  EXPECT_EQ(gemm::select_gemv_mma(192, 5120), GemvMmaKind::kDeep) << "x_proj";
  EXPECT_EQ(gemm::select_gemv_mma(5120, 160), GemvMmaKind::kShort) << "dt_proj";
  // Prefill rows: wgmma on sm_90 where the grid is big enough, else mma.sync.
  EXPECT_EQ(path(2048, 10240, 2560, false), GemmPath::kSm90a);
  EXPECT_EQ(path(2048, 10240, 2560, false, 80), GemmPath::kSm80);
  EXPECT_EQ(path(128, 3072, 768, false), GemmPath::kSm80) << "24 tiles of 128 x 128";
  EXPECT_EQ(path(2048, 192, 5120, true), GemmPath::kSm90a) << "x_proj prefill, workspace: wgmma split-K";
  EXPECT_EQ(path(2048, 192, 5120, false), GemmPath::kSm90a) << "x_proj prefill, no workspace: kSm90a (cluster split-K)";
  EXPECT_EQ(path(1024, 192, 16384, false), GemmPath::kSm80) << "16 splits: no cluster form, no workspace";
  EXPECT_EQ(path(1024, 192, 16384, true), GemmPath::kSm90a) << "16 splits, workspace: wgmma split-K";
  EXPECT_EQ(path(2048, 192, 5120, true, 80), GemmPath::kSm80) << "x_proj prefill on sm_80: mma.sync split-K";
  EXPECT_EQ(path(128, 192, 5120, true), GemmPath::kSm80) << "x_proj, 128 rows: mma.sync split-K";
  EXPECT_EQ(path(128, 3072, 768, true), GemmPath::kSm80) << "in_proj at d_model 768, 128 rows";
  EXPECT_EQ(path(2048, 5120, 160, false), GemmPath::kShortK) << "dt_proj prefill: K = 160";
  EXPECT_EQ(path(128, 1536, 48, true), GemmPath::kShortK) << "dt_proj at d_model 768, 128 rows";
  EXPECT_EQ(path(127, 5120, 160, true), GemmPath::kSm80) << "below kShortKMinM rows";
  EXPECT_EQ(path(2048, 5120, 160, false, 80), GemmPath::kShortK) << "every architecture";
  EXPECT_EQ(path(2048, 5120, 272, false), GemmPath::kSm90a) << "K above 256";
  // The short-K tile rule of run_sm90a_auto (its measured cases, bench/RESULTS.md run L).
  EXPECT_TRUE(gemm::short_k_prefers_128x128(2048, 5120, 160, sms));
  EXPECT_FALSE(gemm::short_k_prefers_128x128(8192, 5120, 160, sms));
  EXPECT_FALSE(gemm::short_k_prefers_128x128(2048, 1536, 48, sms));
  EXPECT_FALSE(gemm::short_k_prefers_128x128(8192, 1536, 48, sms));
  EXPECT_FALSE(gemm::short_k_prefers_128x128(2048, 5120, 2560, sms)) << "long K";
  // The Dequant tile rule (out_proj at d_model 2560 on 132 SMs, bench/RESULTS.md run Y): 256x160
  // only when its tiles fill one wave to 90%.
  EXPECT_TRUE(gemm::dequant_prefers_256x160(2048, 2560, 132)) << "128 tiles, one wave";
  EXPECT_FALSE(gemm::dequant_prefers_256x160(8192, 2560, 132)) << "512 tiles";
  EXPECT_FALSE(gemm::dequant_prefers_256x160(1024, 2560, 132)) << "64 tiles, half a wave";
  EXPECT_FALSE(gemm::dequant_prefers_256x160(2048, 2560, 114)) << "more tiles than SMs";
  EXPECT_FALSE(gemm::dequant_prefers_256x160(2048, 2560, 0)) << "unknown SM count";
}

// The short-K kernel's shared-memory carve-up (host only): rows of an odd number of 16-byte
// chunks (conflict-free ldmatrix phases), K zero-filled up to a multiple of 32, and the limits
// the header states for a 99 KiB device (sm_86/89): an int8 C fits the 64x128 tile up to
// K = 224 and the 128x128 tile up to K = 128; the 64x64 tile fits every K <= 256.
TEST(GemmShortK, LayoutRules) {
  constexpr int kSm86Limit = 99 * 1024;
  for (int64_t K = 16; K <= gemm::kShortKMaxK; K += 16) {
    const auto l = gemm::short_k_layout<gemm::ShortKTile64x128, int8_t>(K);
    EXPECT_EQ(l.k_chunks % 2, 0) << K;
    EXPECT_GE(l.k_chunks * 16, K);
    EXPECT_LT(l.k_chunks * 16, K + 32);
    EXPECT_EQ((l.pitch / 16) % 2, 1) << "odd chunk count per row, K = " << K;
    EXPECT_EQ(l.smem_bytes % 16, 0);
    EXPECT_EQ(l.smem_bytes <= kSm86Limit, K <= 224) << K;
    const int big = gemm::short_k_layout<gemm::ShortKTile128x128, int8_t>(K).smem_bytes;
    const int small = gemm::short_k_layout<gemm::ShortKTile64x64, int8_t>(K).smem_bytes;
    EXPECT_EQ(big <= kSm86Limit, K <= 128) << K;
    EXPECT_LE(small, kSm86Limit) << K;
  }
  const int at160 = gemm::short_k_layout<gemm::ShortKTile64x128, int8_t>(160).smem_bytes;
  EXPECT_EQ(at160, 76800) << "75 KiB at K = 160";
}

// ---- bad input (host-only validation: runs without a GPU too) ------------------------------------

TEST(GemmValidation, StatusCodes) {
  alignas(16) static int8_t buf[4096];
  static int8_t out8[4096];
  auto base = [&] {
    gemm::GemmParams<gemm::Requant> p;
    p.M = 4; p.N = 32; p.K = 64; p.A = buf; p.lda = 64; p.W = buf; p.ldw = 64; p.C = out8; p.ldc = 32;
    return p;
  };
  for (auto path : {gemm::GemmPath::kAuto, gemm::GemmPath::kGemv, gemm::GemmPath::kSm80, gemm::GemmPath::kShortK,
                    gemm::GemmPath::kGemvMma}) {
    SCOPED_TRACE(gemm::to_string(path));
    auto p = base();
    EXPECT_EQ(gemm::can_implement(p, path), Status::kSuccess);
    p = base(); p.K = 24; p.lda = 32; p.ldw = 32;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorNotSupported) << "K % 16 != 0";
    EXPECT_EQ(gemm::run(p, nullptr, 0, path), Status::kErrorNotSupported);
    p = base(); p.A = buf + 1;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorMisaligned);
    EXPECT_EQ(gemm::run(p, nullptr, 0, path), Status::kErrorMisaligned);
    p = base(); p.W = buf + 8;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorMisaligned);
    p = base(); p.lda = 72;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorMisaligned);
    p = base(); p.ldw = 72;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorMisaligned);
    p = base(); p.A = nullptr;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument);
    EXPECT_EQ(gemm::run(p, nullptr, 0, path), Status::kErrorInvalidArgument);
    p = base(); p.W = nullptr;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument);
    p = base(); p.C = nullptr;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument);
    p = base(); p.N = 0;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument);
    p = base(); p.M = -1;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument);
    p = base(); p.lda = 48;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument) << "lda < K";
    p = base(); p.ldc = 31;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorInvalidArgument) << "ldc < N";
    p = base(); p.K = 131072; p.lda = p.ldw = 131072;
    EXPECT_EQ(gemm::can_implement(p, path), Status::kErrorNotSupported) << "int32 overflow bound";
  }
  auto p = base();
  p.M = 17;
  EXPECT_EQ(gemm::can_implement(p, gemm::GemmPath::kGemv), Status::kErrorNotSupported) << "GEMV is M <= 16";
  EXPECT_EQ(gemm::can_implement(p, gemm::GemmPath::kGemvMma), Status::kSuccess);
  p.M = 33;
  EXPECT_EQ(gemm::can_implement(p, gemm::GemmPath::kGemvMma), Status::kErrorNotSupported) << "gemv_mma is M <= 32";
  EXPECT_EQ(gemm::run(p, nullptr, 0, gemm::GemmPath::kGemvMma), Status::kErrorNotSupported);
  p = base();
  p.K = 272; p.lda = p.ldw = 272;
  EXPECT_EQ(gemm::can_implement(p, gemm::GemmPath::kShortK), Status::kErrorNotSupported) << "short K is K <= 256";
  EXPECT_EQ(gemm::run(p, nullptr, 0, gemm::GemmPath::kShortK), Status::kErrorNotSupported);
  EXPECT_EQ(gemm::run_short_k<gemm::ShortKTile64x128>(p, 0), Status::kErrorNotSupported);
  gemm::GemmParams<gemm::DequantF32> d;
  d.M = 4; d.N = 32; d.K = 64; d.A = buf; d.lda = 64; d.W = buf; d.ldw = 64; d.ldc = 32;
  static float outf[256];
  d.C = outf;
  d.epilogue.residual = outf;
  d.epilogue.ldr = 16;
  EXPECT_EQ(gemm::can_implement(d), Status::kErrorInvalidArgument) << "residual pitch < N";
  d.epilogue.ldr = 32;
  EXPECT_EQ(gemm::can_implement(d), Status::kSuccess);
}

TEST(GemmValidation, EmptyM) {
  QUAMBA_REQUIRE_GPU();
  alignas(16) static int8_t buf[64];
  gemm::GemmParams<gemm::Requant> p;
  p.M = 0; p.N = 32; p.K = 16; p.A = buf; p.lda = 16; p.W = buf; p.ldw = 16; p.C = buf; p.ldc = 32;
  EXPECT_EQ(gemm::run(p, nullptr, 0), Status::kSuccess);
}

// ---- cuBLAS baselines -------------------------------------------------------------------------

TEST(GemmCublas, F16AgainstReference) {
  QUAMBA_REQUIRE_GPU();
  const int64_t M = 37, N = 200, K = 320;
  auto rng = test::make_rng(11);
  auto a = test::random_floats(M * K, rng), w = test::random_floats(N * K, rng);
  std::vector<__half> ah(M * K), wh(N * K);
  for (size_t i = 0; i < a.size(); ++i) { a[i] = round_to_half(a[i]); ah[i] = __float2half(a[i]); }
  for (size_t i = 0; i < w.size(); ++i) { w[i] = round_to_half(w[i]); wh[i] = __float2half(w[i]); }
  std::vector<float> ref(M * N);
  ASSERT_EQ(reference::gemm_f32(make_view<const float>(a.data(), M, K), make_view<const float>(w.data(), N, K),
                                make_view(ref.data(), M, N)),
            Status::kSuccess);
  DeviceBuffer<__half> dA(ah), dW(wh), dC(M * N);
  dC.poison();
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  gemm::GemmF16Params p;
  p.M = M; p.N = N; p.K = K; p.A = dA.get(); p.lda = K; p.W = dW.get(); p.ldw = K; p.C = dC.get(); p.ldc = N;
  ASSERT_EQ(gemm::gemm_f16_cublas(h, p, 0), Status::kSuccess);
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto c = dC.download();
  std::vector<float> got(c.size());
  for (size_t i = 0; i < c.size(); ++i) got[i] = __half2float(c[i]);
  // Sums of 320 products of |x| <= 1: fp16 output rounding dominates (relative 2^-11).
  EXPECT_TRUE(test::all_close(got, ref, test::Tolerance{1e-2, 2e-3}, "cublas f16"));
  p.A = nullptr;
  EXPECT_EQ(gemm::gemm_f16_cublas(h, p, 0), Status::kErrorInvalidArgument);
  cublasDestroy(h);
}

TEST(GemmCublas, LtInt8Exact) {
  QUAMBA_REQUIRE_GPU();
  Weights w(264, 1024, 1024, 12);
  Problem p(w, 130, 1024, 13);
  cublasLtHandle_t lt;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  gemm::CublasLtI8Gemm g;
  const size_t ws_limit = 32 << 20;
  ASSERT_EQ(g.init(lt, p.M, w.N, w.K, p.lda, w.ldw, w.N, ws_limit), Status::kSuccess);
  DeviceBuffer<char> ws(std::max<size_t>(g.workspace_bytes(), 1));
  DeviceBuffer<int32_t> dC(p.M * w.N);
  dC.poison();
  ASSERT_EQ(g.run(lt, p.dA.get(), w.dev.get(), dC.get(), ws.get(), ws.size(), 0), Status::kSuccess);
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto c = dC.download();
  size_t bad = 0;
  for (size_t i = 0; i < p.rows.size(); ++i)
    for (size_t j = 0; j < p.cols.size(); ++j)
      bad += c[p.rows[i] * w.N + p.cols[j]] != p.acc[i * p.cols.size() + j];
  EXPECT_EQ(bad, 0u);
  g.destroy();
  cublasLtDestroy(lt);
}

}  // namespace
