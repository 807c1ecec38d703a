// int8 GEMM family, sm90a path (wgmma + TMA): every kernel variant forced by name (one tile per
// CTA: 128x128 s5/s7, 128x256 s4; persistent: 128x256 s4 with and without the staged 16-byte
// int8 stores, 128x128 s6 staged, 128x160 s6, 256x160 s4 with setmaxnreg; two-CTA clusters with W
// multicast: 128x256 staged, 128x160), the split-K form of the one-tile kernel, the dispatcher's kSm90a
// and kAuto choices; every epilogue, tails in M, N and K,
// strided views, the Mamba shapes, non-finite epilogue values, bit-exact against the host reference.
// Skips unless the device is sm_90 and the build contains sm_90a code.
#include <limits>

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

std::vector<Runner> all_sm90a_runners() {
  std::vector<Runner> v{Runner::kAuto, Runner::kSm90a};
  v.insert(v.end(), std::begin(kSm90aVariants), std::end(kSm90aVariants));
  return v;
}

TEST(GemmSm90a, EpilogueVariants) {
  QUAMBA_REQUIRE_SM90A();
  for (auto s : {std::array<int64_t, 3>{1, 200, 96}, {130, 200, 96}, {151, 1000, 336}, {372, 136, 16},
                 {256, 256, 256}, {129, 129, 4096}}) {
    Weights w(s[1], s[2], s[2] + 16, 5000 + s[1] + s[2]);
    Problem p(w, s[0], s[2] + 32, 6000 + s[0]);
    for (Runner r : all_sm90a_runners()) {
      check<gemm::Identity>(p, r, {}, "identity");
      check<gemm::Requant>(p, r, {}, "requant");
      check<gemm::Requant>(p, r, {true, false, false}, "requant");
      check<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
      check<gemm::DequantF32>(p, r, {false, false, true}, "dequant_f32");
      check<gemm::DequantF16>(p, r, {true, true, true}, "dequant_f16");
      // ldc % 16 == 0: the staged variants take their 16-byte store path (N tails included).
      check<gemm::Requant>(p, r, {}, "requant ldc16", 16);
      check<gemm::Requant>(p, r, {true, false, false}, "requant ldc16", 16);
    }
  }
}

// The persistent kernels carry the ring position and barrier parity from tile to tile: many tiles
// per CTA, with K-slice counts below, at and above the ring depth (1, 4..7, 9 slices of 128 B) and
// partial M and N tiles in the raster's last band. M = 2100 is 17 row tiles: the last cluster of
// the W-multicast kernels has a second CTA wholly below M; N = 2600 leaves the last 128x256 cluster
// tile with a W half wholly past N; for the A-sharing 256x160 pairs M = 2100 leaves the last row
// of units with an A half wholly below M (2100 - 8·256 = 52 rows).
TEST(GemmSm90a, PersistentManyTilesPerCta) {
  QUAMBA_REQUIRE_SM90A();
  for (int64_t K : {16, 128, 512, 640, 768, 896, 1152}) {
    Weights w(2600, K, K, 9000 + K);
    Problem p(w, 2100, K, 9100 + K);
    const std::string label = "K=" + std::to_string(K);
    for (Runner r : {Runner::kSm90aP256, Runner::kSm90aP256St, Runner::kSm90aP128St, Runner::kSm90aP160,
                     Runner::kSm90aC256St, Runner::kSm90aC160, Runner::kSm90aP256x160, Runner::kSm90aC2A256x160,
                     Runner::kSm90aPP160, Runner::kSm90aPP128}) {
      check<gemm::Requant>(p, r, {true, false, false}, label, 16);
      check<gemm::Requant>(p, r, {}, label);
      check<gemm::DequantF32>(p, r, {false, true, true}, label);
    }
  }
}

// The int8 epilogue's float->int8 step without F2I (saturate_round_i8_device) against the host
// saturate_round_i8 on non-finite and out-of-range values: alpha = +inf turns acc > 0 into +inf
// (-> 127), acc < 0 into -inf (-> -128) and acc == 0 into NaN (-> 0); the zero rows of A give
// acc == 0 everywhere in them. Every runner that can run here, every element compared.
TEST(GemmSm90a, RequantNonFinite) {
  QUAMBA_REQUIRE_GPU();
  const int64_t M = 300, N = 520, K = 64;
  auto rng = test::make_rng(77);
  std::vector<int8_t> A = random_bytes(M * K, rng), W = random_bytes(N * K, rng);
  for (int64_t m = 0; m < M; m += 7) std::fill(A.begin() + m * K, A.begin() + (m + 1) * K, int8_t(0));
  std::vector<float> scale = test::random_floats(N, rng, 0.5f, 1.5f);
  scale[3] = std::numeric_limits<float>::quiet_NaN();
  scale[4] = 0.f;  // inf * 0 = NaN after the alpha product
  DeviceBuffer<int8_t> dA, dW;
  dA.upload(A);
  dW.upload(W);
  DeviceBuffer<float> dS;
  dS.upload(scale);
  std::vector<int32_t> acc(M * N);
  ASSERT_EQ(reference::gemm_i8_i32(make_view<const int8_t>(A.data(), M, K), make_view<const int8_t>(W.data(), N, K),
                                   make_view(acc.data(), M, N)),
            Status::kSuccess);
  std::vector<Runner> runners{Runner::kAuto, Runner::kSm80Tile128, Runner::kSm80Tile64};
  if (test::device_arch() == 90 && sm90a_runnable()) {
    runners.push_back(Runner::kSm90a);
    runners.insert(runners.end(), std::begin(kSm90aVariants), std::end(kSm90aVariants));
  }
  for (float alpha : {std::numeric_limits<float>::infinity(), 1e-3f, 1e30f})
    for (bool with_scale : {false, true})
      for (Runner r : runners) {
        const std::string what = std::string(runner_name(r)) + " alpha=" + std::to_string(alpha) +
                                 (with_scale ? " col_scale" : "");
        SCOPED_TRACE(what);
        gemm::GemmParams<gemm::Requant> prm;
        prm.M = M; prm.N = N; prm.K = K; prm.A = dA.get(); prm.lda = K; prm.W = dW.get(); prm.ldw = K;
        prm.ldc = N + 8;  // multiple of 16: the staged 16-byte stores too
        DeviceBuffer<int8_t> dC(M * prm.ldc);
        dC.poison(0x5A);
        prm.C = dC.get();
        prm.epilogue.alpha = alpha;
        prm.epilogue.col_scale = with_scale ? dS.get() : nullptr;
        ASSERT_EQ(run_with(r, prm), Status::kSuccess);
        QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
        const auto got = dC.download();
        reference::EpilogueRef ref;
        ref.alpha = alpha;
        ref.col_scale = with_scale ? scale.data() : nullptr;
        size_t bad = 0;
        std::string first;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            const int8_t want = saturate_round_i8(reference::epilogue_value(ref, acc[m * N + n], m, n));
            const int8_t g = got[m * prm.ldc + n];
            if (g != want && bad++ < 5)
              first += " (m=" + std::to_string(m) + ", n=" + std::to_string(n) + ") got " + std::to_string(+g) +
                       " want " + std::to_string(+want) + " acc " + std::to_string(acc[m * N + n]);
          }
        EXPECT_EQ(bad, 0u) << what << first;
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
        for (Runner r : kSm90aVariants) {
          check<gemm::Requant>(p, r, {}, label);
          if (std::string(L.name) == "in_proj") check<gemm::Requant>(p, r, {}, label, 16);
          if (std::string(L.name) == "out_proj") check<gemm::DequantF32>(p, r, {false, false, true}, label);
        }
      }
    }
  }
}

TEST(GemmSm90a, InProjM2048) {
  QUAMBA_REQUIRE_SM90A();
  Weights w(10240, 2560, 2560, 8);
  Problem p(w, 2048, 2560, 9);
  for (Runner r : all_sm90a_runners()) {
    check<gemm::Requant>(p, r, {}, "in_proj D=2560");
    check<gemm::Requant>(p, r, {}, "in_proj D=2560", 16);
    check<gemm::DequantF32>(p, r, {true, true, true}, "in_proj D=2560");
  }
}

// The Dequant epilogue's vectorized form (store_block: whole 64-row blocks inside C, pair stores,
// 8-byte aligned col_scale / bias / residual rows) against its element-wise form: even ldc and
// ldr, so every whole block of every runner takes it, with N tails (1000 = 6 x 160 + 40, 336)
// and M tails leaving the last blocks to the element-wise path in the same launch; then a
// residual one float off 8-byte alignment (element-wise throughout).
TEST(GemmSm90a, DequantVectorizedEpilogue) {
  QUAMBA_REQUIRE_SM90A();
  for (auto s : {std::array<int64_t, 3>{256, 2560, 256}, {200, 1000, 336}, {130, 480, 128}, {64, 160, 96}}) {
    Weights w(s[1], s[2], s[2], 7000 + s[1] + s[2]);
    const Problem even(w, s[0], s[2], 7100 + s[0], 8);
    const Problem skewed(w, s[0], s[2], 7200 + s[0], 8, 1);
    for (Runner r : all_sm90a_runners()) {
      check<gemm::DequantF32>(even, r, {true, true, true}, "vectorized", 16);
      check<gemm::DequantF32>(even, r, {false, false, true}, "vectorized", 16);
      check<gemm::DequantF32>(even, r, {true, false, false}, "vectorized", 16);
      check<gemm::DequantF16>(even, r, {true, true, true}, "vectorized", 16);
      check<gemm::DequantF32>(skewed, r, {true, true, true}, "residual off 8-byte alignment", 16);
    }
  }
}

// out_proj at M = 2048 adds into the fp32 residual stream in place (residual == C, ldr == ldc):
// an odd pitch (element-wise epilogue) and the model's even one (vectorized).
TEST(GemmSm90a, OutProjInPlaceResidual) {
  QUAMBA_REQUIRE_SM90A();
  const int64_t M = 2048, N = 2560, K = 5120;
  Weights w(N, K, K, 10);
  for (int64_t pad : {3, 0}) {
    const Problem p(w, M, K, 11, pad);
    for (Runner r : all_sm90a_runners()) {
      SCOPED_TRACE(std::string(runner_name(r)) + " ldr=" + std::to_string(p.ldr));
      DeviceBuffer<float> C(p.residual);  // starts as the residual (pitch ldr), ends as residual + h
      gemm::GemmParams<gemm::DequantF32> prm;
      prm.M = M; prm.N = N; prm.K = K; prm.A = p.dA.get(); prm.lda = K; prm.W = w.dev.get(); prm.ldw = K;
      prm.C = C.get(); prm.ldc = p.ldr;
      prm.epilogue.alpha = 3.f / p.acc_rms;
      prm.epilogue.residual = C.get();
      prm.epilogue.ldr = p.ldr;
      ASSERT_EQ(run_with(r, prm), Status::kSuccess);
      QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
      const auto got = C.download();
      reference::EpilogueRef ref;
      ref.alpha = prm.epilogue.alpha;
      const int64_t shape[2] = {M, N}, stride[2] = {p.ldr, 1};
      ref.residual = make_strided_view<const float, 2>(p.residual.data(), shape, stride);
      size_t bad = 0;
      for (size_t i = 0; i < p.rows.size(); ++i)
        for (size_t j = 0; j < p.cols.size(); ++j) {
          const int64_t m = p.rows[i], n = p.cols[j];
          bad += float_bits(got[m * p.ldr + n]) !=
                 float_bits(reference::epilogue_value(ref, p.acc[i * p.cols.size() + j], m, n));
        }
      EXPECT_EQ(bad, 0u);
    }
  }
}

// The 256x160 persistent tile (two m64 blocks per consumer warpgroup, setmaxnreg), alone and in
// A-sharing pairs on horizontally adjacent tiles (2570 and 2600 columns are 17 column tiles: the
// last pair's second tile lies wholly past N), on out_proj at
// d_model 2560 (K = 5120, N = 2560) and around it: odd M (1 and 3 rows of a 256-row tile, 17, 130
// = one 128-row block past the first m64 pair, 2049 = one row into a ninth row tile), M = 4100
// (17 row tiles x 16 column tiles = 272 tiles: every CTA runs two or three, so the ring position
// and barrier parity carry over between tiles), N tails (2570: the last 160-column tile 10 wide,
// odd; 2600: 40 wide), K tails (5136: one 16-byte K-slice past 40 full ones; 80: a single partial
// slice) and A as a strided view (lda = K + 48). The fp32 residual-add epilogue (with and without
// col_scale / bias, even and odd ldc) and the int8 requant epilogue (direct 2-byte and 1-byte
// stores) on every shape; sampled values bit-exact, every element written, padding untouched.
TEST(GemmSm90a, Persistent256x160OutProj) {
  QUAMBA_REQUIRE_SM90A();
  struct Case { int64_t M, N, K, lda; };
  const Case cases[] = {{1, 2560, 5120, 5120},    {3, 2560, 5120, 5120},    {17, 2560, 5120, 5120},
                        {130, 2560, 5120, 5120},  {2048, 2560, 5120, 5120}, {2049, 2560, 5120, 5168},
                        {4100, 2560, 5120, 5120}, {300, 2570, 5120, 5120},  {513, 2600, 5136, 5136},
                        {2049, 2570, 5136, 5184}, {257, 2560, 80, 80},      {255, 170, 208, 224}};
  for (const Case& c : cases) {
    Weights w(c.N, c.K, c.K, 11000 + c.N + c.K);
    Problem p(w, c.M, c.lda, 12000 + c.M + c.K);
    const std::string label = "256x160 lda=" + std::to_string(c.lda);
    for (const Runner r : {Runner::kSm90aP256x160, Runner::kSm90aC2A256x160}) {
      check<gemm::DequantF32>(p, r, {false, false, true}, label);
      check<gemm::DequantF32>(p, r, {true, true, true}, label);
      check<gemm::DequantF32>(p, r, {false, false, false}, label);
      check<gemm::DequantF16>(p, r, {true, false, true}, label);
      check<gemm::Requant>(p, r, {}, label);
      check<gemm::Requant>(p, r, {true, false, false}, label);
    }
  }
}

// The residual ring of the 256x160 kernel (residual_ring_tile: an fp32 or fp16 output with a
// residual and neither column scale nor bias, 16-byte aligned residual rows; the CTA's last tile
// reads its residual from shared memory after bulk copies into the drained stage ring). One tile
// per CTA (out_proj, M = 2048), tiles past M or N in the same launch (2049; N = 2572 = 16 tiles
// + 12 columns), two or three tiles per CTA (4100: only each CTA's last tile takes the ring, so
// ring positions and barrier parities carry across both forms), a single K-slice before the
// residual positions (K = 80), ldr a multiple of 4 (the ring) and not (the global-load form);
// forced and through kAuto; then as a programmatic dependent of a feeder that writes A and the
// residual late (the bulk copies come after the dependency wait). In place: OutProjInPlaceResidual.
static_assert(gemm::Sm90aPersistent256x160::kResidualRing, "the 256x160 kernel carries the residual ring");
TEST(GemmSm90a, ResidualRingEpilogue) {
  QUAMBA_REQUIRE_SM90A();
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{2048, 2560, 5120}, Case{2049, 2560, 5120}, Case{4100, 2560, 1024},
                       Case{300, 2572, 2048}, Case{512, 2560, 80}}) {
    Weights w(c.N, c.K, c.K, 13000 + c.N + c.K);
    for (int64_t pad : {0, 4, 1}) {
      const Problem p(w, c.M, c.K, 14000 + c.M + pad, pad);
      const std::string label = "ring ldr=" + std::to_string(p.ldr);
      for (Runner r : {Runner::kSm90aP256x160, Runner::kAuto}) {
        check<gemm::DequantF32>(p, r, {false, false, true}, label, 4);
        check<gemm::DequantF16>(p, r, {false, false, true}, label, 8);
      }
    }
  }
  Weights w(2560, 1024, 1024, 13100);
  const Problem p(w, 2048, 1024, 13101, 0);
  check_pdl<gemm::DequantF32>(p, Runner::kSm90aP256x160, {false, false, true}, "ring pdl", 4);
}

// A small residual-ring launch for the sanitizers (racecheck over the shared-memory reuse): 8 tiles
// of 256x160, two K-slices each, so the four residual positions wrap around the 4-stage ring onto
// the stages the K-slices just released; fp32 and fp16 outputs, ldr = 640.
TEST(GemmSm90a, ResidualRingSmall) {
  QUAMBA_REQUIRE_SM90A();
  Weights w(640, 256, 256, 13200);
  const Problem p(w, 512, 256, 13201, 0);
  check<gemm::DequantF32>(p, Runner::kSm90aP256x160, {false, false, true}, "ring small", 4);
  check<gemm::DequantF16>(p, Runner::kSm90aP256x160, {false, false, true}, "ring small", 8);
}

// Validation of the 256x160 variant is the family's (can_implement_sm90a): host-only, no device.
TEST(GemmSm90a, Persistent256x160Validation) {
  gemm::GemmParams<gemm::DequantF32> prm;
  alignas(16) static int8_t a[64], w[64];
  alignas(16) static float c[64];
  prm.M = 2; prm.N = 2; prm.K = 16; prm.A = a; prm.lda = 16; prm.W = w; prm.ldw = 16; prm.C = c; prm.ldc = 2;
  EXPECT_EQ(gemm::can_implement_sm90a(prm), Status::kSuccess);
  auto bad = prm;
  bad.K = 24;  // K % 16 != 0 (row strides still >= K)
  bad.lda = bad.ldw = 32;
  EXPECT_EQ(gemm::can_implement_sm90a(bad), Status::kErrorNotSupported);
  bad = prm;
  bad.lda = 24;
  bad.K = 16;
  EXPECT_EQ(gemm::can_implement_sm90a(bad), Status::kErrorMisaligned);
  bad = prm;
  bad.A = a + 1;
  EXPECT_EQ(gemm::can_implement_sm90a(bad), Status::kErrorMisaligned);
  bad = prm;
  bad.epilogue.residual = c;
  bad.epilogue.ldr = 1;  // ldr < N
  EXPECT_EQ(gemm::can_implement_sm90a(bad), Status::kErrorInvalidArgument);
  bad = prm;
  bad.W = nullptr;
  EXPECT_EQ(gemm::can_implement_sm90a(bad), Status::kErrorInvalidArgument);
}

// The wgmma split-K (run_sm90a_split_k: the one-tile kernel over K-slices into the workspace, then
// the split-K reduce), every epilogue, on shapes whose plan splits: x_proj at d_model 2560 (N = 192,
// one column of 128x192 tiles) with M tails, a 128x192 tile with a partial 8-column group (N = 150),
// 128x256 tiles past N (N = 200, 201), a 128x128-tile shape (N <= 128), a K that is
// no multiple of 128 (the last slice ends in TMA's zero fill) and a last slice shorter than the
// others, a wide N with one row block, odd N (the reduce's partial quads), 16 splits (through auto
// with a workspace: the workspace form); forced, and through auto with a workspace (the wgmma split-K
// from kSm90aSplitMinM rows, the mma.sync one below); the cluster form (no workspace) on every shape:
// capped at 8 splits, at 3, and lowered to one resident round.
TEST(GemmSm90a, SplitKAllEpilogues) {
  QUAMBA_REQUIRE_SM90A();
  for (auto s : {std::array<int64_t, 3>{2048, 192, 5120}, {130, 192, 5120}, {2049, 200, 1040}, {300, 80, 1536},
                 {129, 2560, 2000}, {640, 36, 4624}, {2048, 201, 2048}, {1100, 37, 3008}, {1024, 192, 16384},
                 {1000, 150, 3008}}) {
    const int64_t M = s[0], N = s[1], K = s[2];
    ASSERT_GT(gemm::plan_sm90a_split_k(M, N, K).splits, 1) << M << "x" << N << "x" << K;
    Weights w(N, K, K + 16, 7300 + N + K);
    Problem p(w, M, K + 32, 8300 + M);
    check<gemm::Identity>(p, Runner::kSm90aSplitK, {}, "identity");
    check<gemm::Requant>(p, Runner::kSm90aSplitK, {}, "requant");
    check<gemm::Requant>(p, Runner::kSm90aSplitK, {true, false, false}, "requant");
    check<gemm::DequantF32>(p, Runner::kSm90aSplitK, {true, true, true}, "dequant_f32");
    check<gemm::DequantF16>(p, Runner::kSm90aSplitK, {false, true, true}, "dequant_f16");
    check<gemm::Requant>(p, Runner::kAutoWorkspace, {}, "requant");
    check<gemm::DequantF32>(p, Runner::kAutoWorkspace, {true, true, true}, "dequant_f32");
    // The cluster form: the same plan, reduced through distributed shared memory, its splits capped
    // at kSm90aMaxClusterSplits (the 16-split shape regroups its slices into 8); capped at 3 (longer
    // splits, a last split shorter than the others); and lowered until every tile's cluster is
    // resident at once (one_wave, what run() takes), or refused where no split count fits.
    check<gemm::Identity>(p, Runner::kSm90aSplitKCluster, {}, "identity");
    check<gemm::Requant>(p, Runner::kSm90aSplitKCluster, {}, "requant");
    check<gemm::Requant>(p, Runner::kSm90aSplitKCluster, {true, false, false}, "requant");
    check<gemm::DequantF32>(p, Runner::kSm90aSplitKCluster, {true, true, true}, "dequant_f32");
    check<gemm::DequantF16>(p, Runner::kSm90aSplitKCluster, {false, true, true}, "dequant_f16");
    check<gemm::Requant>(p, Runner::kSm90aSplitKCluster3, {}, "requant");
    check<gemm::DequantF32>(p, Runner::kSm90aSplitKCluster3, {true, true, true}, "dequant_f32");
    gemm::GemmParams<gemm::Requant> prm;
    prm.M = M; prm.N = N; prm.K = K; prm.A = p.dA.get(); prm.lda = p.lda; prm.W = w.dev.get(); prm.ldw = w.ldw;
    DeviceBuffer<int8_t> c(M * N);
    prm.C = c.get(); prm.ldc = N;
    const Status fit = gemm::run_sm90a_split_k_cluster(prm, 0, /*one_wave=*/true);
    ASSERT_TRUE(fit == Status::kSuccess || fit == Status::kErrorNotSupported) << to_string(fit);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (fit == Status::kSuccess) check<gemm::Requant>(p, Runner::kSm90aSplitKClusterFit, {}, "requant");
    check<gemm::Requant>(p, Runner::kAuto, {}, "requant");
  }
}

// A shape whose plan splits (64 tiles of 128 x 192) while its 128 x 128 tiles would fill the SMs
// unsplit (sm90a_worthwhile): run() splits it first (x_proj at d_model 2560 from ~4200 rows has
// this form); kAuto and forced kSm90a, with and without a workspace, all bit-exact.
TEST(GemmSm90a, SplitBeforeUnsplitWideGrid) {
  QUAMBA_REQUIRE_SM90A();
  DeviceInfo info;
  ASSERT_EQ(query_device(&info), Status::kSuccess);
  const int64_t M = 8192, N = 192, K = 1024;
  ASSERT_GT(gemm::plan_sm90a_split_k(M, N, K).splits, 1);
  ASSERT_TRUE(gemm::sm90a_split_worthwhile(M, N, K));
  if (info.sm_count <= 256) EXPECT_TRUE(gemm::sm90a_worthwhile(M, N, info.sm_count));  // 128 tiles of 128 x 128
  Weights w(N, K, K, 9100);
  Problem p(w, M, K, 9200);
  check<gemm::Requant>(p, Runner::kAuto, {}, "requant");
  check<gemm::Requant>(p, Runner::kAutoWorkspace, {}, "requant");
  check<gemm::DequantF32>(p, Runner::kSm90a, {true, true, true}, "dequant_f32");
}

// cap_sm90a_split_k (host only): the plan's K-slices regrouped into at most the cap's splits, none
// empty, every slice covered; plans within the cap unchanged.
TEST(GemmSm90a, SplitKClusterCap) {
  for (int64_t K : {1040, 2048, 3008, 4624, 5120, 16384})
    for (int cap = 1; cap <= 9; ++cap) {
      const auto plan = gemm::plan_sm90a_split_k(1024, 192, K);
      ASSERT_GT(plan.splits, 1) << K;
      const auto s = gemm::cap_sm90a_split_k(plan, K, cap);
      const int64_t k_tiles = (K + 127) / 128;
      EXPECT_LE(s.splits, std::max(cap, 1)) << K << " cap " << cap;
      if (plan.splits <= cap) EXPECT_EQ(s.slice_tiles, plan.slice_tiles);
      EXPECT_GE(int64_t(s.slice_tiles) * s.splits, k_tiles);
      EXPECT_LT(int64_t(s.slice_tiles) * (s.splits - 1), k_tiles) << "no empty split";
      EXPECT_EQ(s.bn, plan.bn);
      EXPECT_EQ(s.n4, plan.n4);
    }
  const auto x = gemm::cap_sm90a_split_k(gemm::plan_sm90a_split_k(2048, 192, 5120), 5120, 6);
  EXPECT_EQ(x.splits, 6) << "40 slices as 6 splits of 7 (the last 5)";
  EXPECT_EQ(x.slice_tiles, 7);
}

// The wgmma split-K plan (host only): whole 128-byte K-slices, at least kSm90aSplitMinTiles each,
// slices covering K with none empty, only for grids below half of kSm90aSplitTargetCtas, and every
// workspace within kSplitKWorkspaceBound (which gemm::workspace_size, the block's allocation,
// covers).
TEST(GemmSm90a, SplitKPlanRules) {
  size_t worst = 0;
  for (int64_t M : {128, 130, 512, 2048, 4096, 8192, 16384})
    for (int64_t N : {8, 40, 128, 192, 200, 1000, 2560, 10240})
      for (int64_t K : {16, 256, 496, 1040, 2560, 5120, 8192, 16384}) {
        const auto s = gemm::plan_sm90a_split_k(M, N, K);
        if (s.splits == 1) continue;
        const int64_t k_tiles = (K + 127) / 128;
        const int64_t tiles = ((M + 127) / 128) * ((N + s.bn - 1) / s.bn);
        EXPECT_GE(s.slice_tiles, gemm::kSm90aSplitMinTiles);
        EXPECT_GE(int64_t(s.slice_tiles) * s.splits, k_tiles);
        EXPECT_LT(int64_t(s.slice_tiles) * (s.splits - 1), k_tiles) << "no empty slice";
        EXPECT_LT(2 * tiles, gemm::kSm90aSplitTargetCtas);
        EXPECT_EQ(s.bn, N <= 128 ? 128 : N <= 192 ? 192 : 256);
        const size_t ws = gemm::sm90a_split_k_workspace_size(M, N, K);
        worst = std::max(worst, ws);
        gemm::GemmParams<gemm::Requant> prm;
        prm.M = M; prm.N = N; prm.K = K;
        // The kSm90a path's workspace is this plan's from kSm90aSplitMinM rows (where run() splits
        // it), the kSm80 path's the mma.sync plan's, kAuto's the larger.
        EXPECT_EQ(gemm::workspace_size(prm, gemm::GemmPath::kSm90a), M >= gemm::kSm90aSplitMinM ? ws : 0u);
        EXPECT_EQ(gemm::workspace_size(prm, gemm::GemmPath::kSm80), gemm::split_k_workspace_size(M, N, K));
        EXPECT_EQ(gemm::workspace_size(prm), std::max(gemm::workspace_size(prm, gemm::GemmPath::kSm90a),
                                                      gemm::workspace_size(prm, gemm::GemmPath::kSm80)));
      }
  EXPECT_GT(worst, 0u);
  EXPECT_LE(worst, gemm::kSplitKWorkspaceBound);
  const auto x = gemm::plan_sm90a_split_k(2048, 192, 5120);
  EXPECT_EQ(x.splits, 8) << "x_proj at d_model 2560, M = 2048: 16 tiles x 8 slices of 5 x 128 B";
  EXPECT_EQ(x.slice_tiles, 5);
  EXPECT_EQ(gemm::plan_sm90a_split_k(2048, 2560, 5120).splits, 1) << "out_proj: 160 tiles, no split";
  EXPECT_EQ(gemm::plan_sm90a_split_k(2048, 5120, 160).splits, 1) << "short K: no split";
}

// The dispatcher picks the wgmma kernel where it should and the mma.sync kernel elsewhere: both are
// bit-exact, so this only checks that kAuto and the forced paths agree on a small and a large M.
TEST(GemmSm90a, AutoAgreesWithForcedPaths) {
  QUAMBA_REQUIRE_SM90A();
  DeviceInfo info;
  ASSERT_EQ(query_device(&info), Status::kSuccess);
  EXPECT_TRUE(gemm::sm90a_worthwhile(2048, 10240, info.sm_count));
  EXPECT_FALSE(gemm::sm90a_worthwhile(128, 3072, info.sm_count));
  EXPECT_FALSE(gemm::sm90a_worthwhile(100, 50280, info.sm_count));
  // (N, K) = (3072, 768): in_proj at d_model 768; (5120, 160): dt_proj at d_model 2560, whose
  // short K takes the 128x128 persistent tile in run_sm90a_auto (kSm90a forced; kAuto sends it to
  // the short-K kernel).
  for (auto nk : {std::array<int64_t, 2>{3072, 768}, std::array<int64_t, 2>{5120, 160}})
  for (int64_t M : {128, 2048}) {
    const int64_t N = nk[0], K = nk[1];
    Weights w(N, K, K, 12 + K);
    Problem p(w, M, K, 13 + M + K);
    DeviceBuffer<int8_t> c1(M * N), c2(M * N), c3(M * N);
    gemm::GemmParams<gemm::Requant> prm;
    prm.M = M; prm.N = N; prm.K = K; prm.A = p.dA.get(); prm.lda = K; prm.W = w.dev.get(); prm.ldw = K;
    prm.ldc = N; prm.epilogue.alpha = 60.f / p.acc_rms;
    prm.C = c1.get();
    ASSERT_EQ(gemm::run(prm, nullptr, 0), Status::kSuccess);
    prm.C = c2.get();
    ASSERT_EQ(gemm::run(prm, nullptr, 0, gemm::GemmPath::kSm80), Status::kSuccess);
    prm.C = c3.get();
    ASSERT_EQ(gemm::run(prm, nullptr, 0, gemm::GemmPath::kSm90a), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto a = c1.download(), b = c2.download(), c = c3.download();
    const std::string at = " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
    EXPECT_TRUE(test::all_equal(a.data(), b.data(), a.size(), "auto vs sm80" + at));
    EXPECT_TRUE(test::all_equal(c.data(), b.data(), c.size(), "sm90a vs sm80" + at));
  }
}

// The short-K wgmma kernel (gemm_sm90_short_k.cuh): every K class (one or two 128-byte pieces,
// k32 steps 1..8, K tails inside a piece), M and N tails, one tile and many tiles per CTA, every
// epilogue (the staged 16-byte int8 stores with ldc % 16 == 0, the direct stores otherwise).
TEST(GemmSm90aShortK, Sweep) {
  QUAMBA_REQUIRE_SM90A();
  const std::array<int64_t, 3> shapes[] = {{1, 136, 16},    {17, 8, 32},       {65, 200, 48},   {130, 1000, 96},
                                           {129, 1536, 128}, {300, 72, 144},   {1000, 5120, 160}, {257, 520, 176},
                                           {2100, 640, 256}, {4099, 1000, 240}, {64, 128, 224}};
  for (const auto& s : shapes) {
    Weights w(s[1], s[2], s[2] + 16, 9500 + s[1] + s[2]);
    Problem p(w, s[0], s[2] + 32, 9600 + s[0]);
    const Runner r = Runner::kSm90aShortK;
    check<gemm::Requant>(p, r, {}, "requant");
    check<gemm::Requant>(p, r, {true, false, false}, "requant");
    check<gemm::Requant>(p, r, {}, "requant", 16);
    check<gemm::Requant>(p, r, {true, false, false}, "requant", 16);
    check<gemm::Identity>(p, r, {}, "identity");
    check<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
    check<gemm::DequantF32>(p, r, {false, false, true}, "dequant_f32");
    check<gemm::DequantF16>(p, r, {}, "dequant_f16");
    check<gemm::DequantF16>(p, r, {true, true, false}, "dequant_f16", 16);
  }
}

// CTAs whose tile ranges cross column blocks: with one 64-row tile per block (M = 64, N = 40000)
// every tile of a CTA's range is a new W segment, so both W buffers turn over several times per
// CTA and consumers pass segments in which they have no tile; with four row tiles per block
// (M = 200) ranges of ~5 tiles cross one or two boundaries. Also the dt_proj shape of d_model 2560
// on a long prompt (M tail in every column block) and as a programmatic dependent.
TEST(GemmSm90aShortK, SegmentsPerCta) {
  QUAMBA_REQUIRE_SM90A();
  for (auto s : {std::array<int64_t, 3>{64, 40000, 160}, {200, 20000, 64}, {8257, 5120, 160}}) {
    Weights w(s[1], s[2], s[2], 9700 + s[1]);
    Problem p(w, s[0], s[2], 9701 + s[0]);
    check<gemm::Requant>(p, Runner::kSm90aShortK, {}, "requant", 16);
    check<gemm::Requant>(p, Runner::kSm90aShortK, {true, false, false}, "requant");
    check<gemm::DequantF32>(p, Runner::kSm90aShortK, {false, true, true}, "dequant_f32");
    check_pdl<gemm::Requant>(p, Runner::kSm90aShortK, {}, "requant pdl", 16);
  }
  // The dispatcher's choice for dt_proj of d_model 2560 (sm90a_short_k_worthwhile), as the block
  // calls it.
  Weights w(5120, 160, 160, 9710);
  Problem p(w, 2048, 192, 9711);
  check<gemm::Requant>(p, Runner::kAuto, {}, "dt_proj auto", 16);
  check_pdl<gemm::Requant>(p, Runner::kAuto, {}, "dt_proj auto pdl", 16);
}

// Small launches with a few tiles per CTA (the racecheck target of the kernel): 160 tiles of
// four row blocks over 40 column blocks (some CTAs two tiles); 157 one-tile segments.
TEST(GemmSm90aShortK, Small) {
  QUAMBA_REQUIRE_SM90A();
  for (auto s : {std::array<int64_t, 3>{256, 5120, 160}, {64, 20000, 96}}) {
    Weights w(s[1], s[2], s[2], 9750 + s[1]);
    Problem p(w, s[0], s[2], 9751 + s[0]);
    check<gemm::Requant>(p, Runner::kSm90aShortK, {}, "requant", 16);
  }
}

// The dispatch rule inside kShortK (host only): dt_proj of d_model 2560 from a few hundred rows,
// not the short K of d_model 768 nor grids under four tiles per SM.
TEST(GemmSm90aShortK, DispatchRule) {
  EXPECT_TRUE(gemm::sm90a_short_k_worthwhile(2048, 5120, 160, 132));
  EXPECT_TRUE(gemm::sm90a_short_k_worthwhile(8192, 5120, 160, 132));
  EXPECT_TRUE(gemm::sm90a_short_k_worthwhile(848, 5120, 160, 132)) << "14 x 40 = 560 tiles";
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(832, 5120, 160, 132)) << "13 x 40 = 520 tiles < 528";
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(128, 5120, 160, 132));
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(8192, 1536, 48, 132)) << "d_model 768: K = 48";
  EXPECT_TRUE(gemm::sm90a_short_k_worthwhile(8192, 4096, 128, 132)) << "d_model 2048: K = 128";
  EXPECT_TRUE(gemm::sm90a_short_k_worthwhile(2048, 3072, 96, 132)) << "d_model 1536: K = 96";
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(8192, 2048, 64, 132)) << "d_model 1024: K = 64";
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(8192, 4096, 95, 132)) << "K < 96";
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(8192, 5120, 272, 132)) << "K > 256";
  EXPECT_FALSE(gemm::sm90a_short_k_worthwhile(8192, 5120, 160, 0));
}

TEST(GemmSm90aShortK, Validation) {
  QUAMBA_REQUIRE_SM90A();
  Weights w(256, 272, 272, 9800);
  Problem p(w, 256, 272, 9801);
  gemm::GemmParams<gemm::Requant> prm;
  prm.M = 256; prm.N = 256; prm.K = 272; prm.A = p.dA.get(); prm.lda = p.lda; prm.W = w.dev.get(); prm.ldw = w.ldw;
  DeviceBuffer<int8_t> dC(256 * 256);
  prm.C = dC.get();
  prm.ldc = 256;
  EXPECT_EQ(gemm::can_implement_sm90a_short_k(prm), Status::kErrorNotSupported) << "K > 256";
  EXPECT_EQ(gemm::run_sm90a_short_k(prm, 0), Status::kErrorNotSupported);
  prm.K = 160;
  prm.lda = 168;  // not a multiple of 16
  EXPECT_EQ(gemm::run_sm90a_short_k(prm, 0), Status::kErrorMisaligned);
  prm.lda = p.lda;
  prm.M = 0;
  EXPECT_EQ(gemm::run_sm90a_short_k(prm, 0), Status::kSuccess) << "M = 0 is a no-op";
}

// Programmatic dependent launch: every sm90a kernel variant and the dispatcher's choices with
// pdl = true as a dependent of a kernel that writes A (and the residual) late, then back to back
// (check_pdl). The producer issues the W slices of its first ring round before the dependency
// wait and A after it. in_proj at d_model 768 (N = 2E = 3072, K = 768) with M = 256 (auto: the
// 128 x 256 one-tile kernel; the persistent, cluster and 256-row variants forced by name); M =
// 2048, where auto takes the persistent kernel; a short K (two slices, fewer than the ring's
// stages, several tiles per CTA) and a K tail.
TEST(GemmSm90aPdl, EveryVariant) {
  QUAMBA_REQUIRE_SM90A();
  {
    Weights w(3072, 768, 768, 71);
    Problem p(w, 256, 768, 72);
    for (Runner r : all_sm90a_runners()) {
      check_pdl<gemm::Requant>(p, r, {}, "in_proj", 16);
      check_pdl<gemm::DequantF32>(p, r, {true, true, true}, "dequant_f32");
    }
    Problem big(w, 2048, 768, 73);
    for (Runner r : {Runner::kAuto, Runner::kSm90a}) {
      check_pdl<gemm::Requant>(big, r, {}, "in_proj", 16);
      check_pdl<gemm::DequantF16>(big, r, {false, true, true}, "dequant_f16");
    }
  }
  {
    // The wgmma split-K: both of its kernels as programmatic dependents.
    Weights w(192, 5120, 5120, 76);
    Problem p(w, 2048, 5120, 77);
    for (Runner r : {Runner::kSm90aSplitK, Runner::kAutoWorkspace, Runner::kSm90aSplitKCluster, Runner::kAuto}) {
      check_pdl<gemm::Requant>(p, r, {}, "x_proj", 16);
      check_pdl<gemm::DequantF32>(p, r, {true, true, true}, "x_proj dequant_f32");
    }
  }
  for (int64_t K : {160, 1040}) {
    Weights w(1000, K, K + 16, 74 + K);
    Problem p(w, 1100, K + 32, 75 + K);
    for (Runner r : all_sm90a_runners()) check_pdl<gemm::Requant>(p, r, {true, false, false}, "K=" + std::to_string(K));
  }
}

}  // namespace
