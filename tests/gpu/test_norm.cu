// Fused residual-add + RMSNorm and the embedding gather (quamba/norm/*.cuh) against
// quamba/reference/norm.hpp and reference/embedding.hpp.
#include <gtest/gtest.h>

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "common/compare.hpp"
#include "common/cuda_utils.cuh"
#include "common/random.hpp"
#include "quamba/norm/add_rmsnorm.cuh"
#include "quamba/norm/embedding.cuh"
#include "quamba/reference/embedding.hpp"
#include "quamba/reference/norm.hpp"

namespace {

using quamba::Status;
using quamba::test::DeviceBuffer;

using quamba::test::from_half;
using quamba::test::to_half;

template <typename T>
float to_float(T v) {
  if constexpr (std::is_same_v<T, __half>) return from_half(v);
  else return static_cast<float>(v);
}

template <typename T, int R>
quamba::TensorView<T, R> view(T* p, const int64_t (&shape)[R], const int64_t (&stride)[R]) {
  return quamba::make_strided_view(p, shape, stride);
}

// ---- add + RMSNorm ----------------------------------------------------------------------------

struct NormCase {
  int64_t M;
  int D;
  bool has_h;
  int64_t pad;  // extra elements per row in residual, h and out (strided views)
};

template <typename TH, typename TOut>
using NormLaunch = Status (*)(const quamba::norm::AddRmsNormParams<TH, TOut>&);

// One named variant, for the explicit-variant tests (run() picks among them by shape).
template <typename Traits, typename TH, typename TOut>
Status launch_variant(const quamba::norm::AddRmsNormParams<TH, TOut>& p) {
  return quamba::norm::run_with<Traits>(p, 0);
}

// launch == nullptr: quamba::norm::run.
template <typename TH, typename TOut>
void check_add_rmsnorm(const NormCase& c, uint64_t salt, NormLaunch<TH, TOut> launch = nullptr,
                       const std::string& variant = "run") {
  SCOPED_TRACE(variant + " M=" + std::to_string(c.M) + " D=" + std::to_string(c.D) + " h=" + std::to_string(c.has_h) +
               " pad=" + std::to_string(c.pad) + " h_half=" + std::to_string(std::is_same_v<TH, __half>) +
               " out_i8=" + std::to_string(std::is_same_v<TOut, int8_t>));
  auto rng = quamba::test::make_rng(salt);
  const int64_t rs = c.D + c.pad, hs = c.D + 2 * c.pad, os = c.D + c.pad;
  std::vector<float> res = quamba::test::random_normal(size_t(c.M * rs), rng, 0.f, 2.f);
  std::vector<float> hf = quamba::test::random_normal(size_t(c.M * hs), rng, 0.f, 1.f);
  std::vector<TH> h(hf.size());
  for (size_t i = 0; i < hf.size(); ++i) {
    if constexpr (std::is_same_v<TH, __half>) h[i] = to_half(hf[i]);
    else h[i] = hf[i];
    hf[i] = to_float(h[i]);  // the reference sees exactly what the kernel reads
  }
  const std::vector<float> gamma = quamba::test::random_floats(size_t(c.D), rng, 0.25f, 1.75f);
  const float eps = 1e-5f, inv_scale = quamba::inverse_scale(4.0f / 127.0f);

  // Reference.
  std::vector<float> ref_res = res, ref_out(size_t(c.M * c.D));
  std::vector<int8_t> ref_q(ref_out.size());
  {
    const int64_t shp[2] = {c.M, c.D}, rst[2] = {rs, 1}, hst[2] = {hs, 1}, dst[2] = {c.D, 1};
    auto hv = view<const float, 2>(c.has_h ? hf.data() : nullptr, shp, hst);
    auto rv = view<float, 2>(ref_res.data(), shp, rst);
    if constexpr (std::is_same_v<TOut, int8_t>)
      ASSERT_EQ(quamba::reference::add_rmsnorm_i8(hv, rv, gamma.data(), eps, inv_scale, view<int8_t, 2>(ref_q.data(), shp, dst)),
                Status::kSuccess);
    else
      ASSERT_EQ(quamba::reference::add_rmsnorm(hv, rv, gamma.data(), eps, view<float, 2>(ref_out.data(), shp, dst)),
                Status::kSuccess);
  }

  DeviceBuffer<TH> dh(h);
  DeviceBuffer<float> dg(gamma), dres(res.size());
  DeviceBuffer<TOut> dout(size_t(c.M * os));
  for (int poison : {0x5A, 0xA5}) {
    dres.upload(res);  // residual is updated in place: fresh copy for each run
    dout.poison(poison);
    quamba::norm::AddRmsNormParams<TH, TOut> p;
    p.h = c.has_h ? dh.get() : nullptr;
    p.h_stride = hs;
    p.residual = dres.get();
    p.residual_stride = rs;
    p.gamma = dg.get();
    p.out = dout.get();
    p.out_stride = os;
    p.M = c.M;
    p.D = c.D;
    p.eps = eps;
    p.inv_scale = inv_scale;
    ASSERT_EQ(launch ? launch(p) : quamba::norm::run(p, nullptr, 0), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    // The residual, padding included, is exactly the reference's (one fp32 add per element).
    const std::vector<float> got_res = dres.download();
    EXPECT_TRUE(quamba::test::all_close(got_res, ref_res, {0.0, 0.0}, "residual"));
    const std::vector<TOut> o = dout.download();
    std::vector<TOut> dense(size_t(c.M * c.D));
    for (int64_t m = 0; m < c.M; ++m) {
      for (int d = 0; d < c.D; ++d) dense[size_t(m * c.D + d)] = o[size_t(m * os + d)];
      for (int64_t d = c.D; d < os; ++d) {
        uint8_t byte;
        std::memcpy(&byte, &o[size_t(m * os + d)], 1);
        ASSERT_EQ(byte, uint8_t(poison)) << "out padding written at row " << m << " col " << d;
      }
    }
    if constexpr (std::is_same_v<TOut, int8_t>) {
      EXPECT_TRUE(quamba::test::int8_close(dense.data(), ref_q.data(), dense.size(), "int8 out poison " + std::to_string(poison)));
    } else {
      std::vector<float> g(dense.size());
      for (size_t i = 0; i < g.size(); ++i) g[i] = from_half(dense[i]);
      EXPECT_TRUE(quamba::test::all_close(g, ref_out, quamba::test::kTolF16, "fp16 out"));
    }
  }
}

TEST(AddRmsNorm, Int8ShapeSweep) {
  QUAMBA_REQUIRE_GPU();
  uint64_t salt = 1;
  for (int D : {768, 1024, 1536, 2560, 3072, 5120, 776, 8192, 777, 1})  // 777, 1: scalar variant
    for (int64_t M : {1, 3, 67})
      for (bool has_h : {true, false}) {
        check_add_rmsnorm<__half, int8_t>({M, D, has_h, 0}, ++salt);
        check_add_rmsnorm<float, int8_t>({M, D, has_h, 8}, ++salt);
      }
}

TEST(AddRmsNorm, HalfOutShapeSweep) {
  QUAMBA_REQUIRE_GPU();
  uint64_t salt = 1000;
  for (int D : {768, 2560, 5120, 776, 777})
    for (int64_t M : {1, 5, 40}) {
      check_add_rmsnorm<__half, __half>({M, D, true, 4}, ++salt);
      check_add_rmsnorm<float, __half>({M, D, M % 2 == 1, 0}, ++salt);
    }
}

TEST(AddRmsNorm, UnalignedViewsTakeScalarPath) {
  QUAMBA_REQUIRE_GPU();
  // Row strides not a multiple of 4 elements: correct results through the scalar variant.
  check_add_rmsnorm<__half, int8_t>({7, 768, true, 1}, 2001);
  check_add_rmsnorm<float, __half>({7, 2560, true, 3}, 2002);
}

TEST(AddRmsNorm, ManyRows) {
  QUAMBA_REQUIRE_GPU();
  check_add_rmsnorm<__half, int8_t>({2049, 2560, true, 0}, 3001);
}

// Each hoisted-load variant by name, over its own D range: full rows (D = kMaxD), rows that leave
// the last lanes with one chunk fewer (D = kMaxD - 4), short rows, M tails (rows past M in the
// last CTA), row-stride views cut from wider buffers, and for the persistent variants enough
// rows that every row group walks several rows (M well above one wave of resident rows on any
// GPU of up to 132 SMs: 8 rows x 3 CTAs x 132 SMs = 3168 for Warp768P).
template <typename Traits>
void check_hoisted_variant(const std::string& name, uint64_t salt) {
  using namespace quamba::norm;
  constexpr int kMax = Traits::kMaxD;
  const std::vector<int> Ds = {kMax, kMax - 4, kMax / 2 + 4, 4};
  const std::vector<int64_t> Ms = {1, 2, 3, 8, 129, 151, 372};
  for (int D : Ds)
    for (int64_t M : Ms) {
      check_add_rmsnorm<__half, int8_t>({M, D, true, 0}, ++salt, launch_variant<Traits, __half, int8_t>, name);
      if (M == 151) {
        check_add_rmsnorm<__half, int8_t>({M, D, false, 4}, ++salt, launch_variant<Traits, __half, int8_t>, name);
        check_add_rmsnorm<float, __half>({M, D, true, 8}, ++salt, launch_variant<Traits, float, __half>, name);
        check_add_rmsnorm<float, int8_t>({M, D, true, 0}, ++salt, launch_variant<Traits, float, int8_t>, name);
      }
      if (::testing::Test::HasFatalFailure()) return;
    }
  // Many rows: batch x tokens flattened (B = 3, L = 1134, and B = 2, L = 4099 or 1025 by width),
  // the second through a token-stride view (row stride 2D as x = xz[..., :D]; h's is 3D). The
  // host buffers stay under ~100 MB.
  check_add_rmsnorm<__half, int8_t>({3 * 1134, kMax, true, 0}, ++salt, launch_variant<Traits, __half, int8_t>, name);
  const int64_t L = kMax <= 1024 ? 4099 : 1025;
  check_add_rmsnorm<__half, int8_t>({2 * L, kMax, true, kMax}, ++salt, launch_variant<Traits, __half, int8_t>, name);
  check_add_rmsnorm<__half, __half>({2049, kMax - 4, true, 4}, ++salt, launch_variant<Traits, __half, __half>, name);
}

TEST(AddRmsNormHoisted, Warp768) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsWarp768>("Warp768", 10000);
}
TEST(AddRmsNormHoisted, Warp768Persistent) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsWarp768P>("Warp768P", 11000);
}
TEST(AddRmsNormHoisted, Warp768StreamStores) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsWarp768S>("Warp768S", 12000);
}
TEST(AddRmsNormHoisted, Warp768x16) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsWarp768x16>("Warp768x16", 12500);
}
TEST(AddRmsNormHoisted, Row768) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsRow768H>("Row768H", 13000);
}
TEST(AddRmsNormHoisted, Row1024) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsRow1024H>("Row1024H", 14000);
}
TEST(AddRmsNormHoisted, Row2048) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsRow2048H>("Row2048H", 15000);
}
TEST(AddRmsNormHoisted, Row2560) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsRow2560H>("Row2560H", 16000);
}
TEST(AddRmsNormHoisted, Row2560Persistent) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsRow2560HP>("Row2560HP", 17000);
}
TEST(AddRmsNormHoisted, Row4096) {
  QUAMBA_REQUIRE_GPU();
  check_hoisted_variant<quamba::norm::AddRmsNormRowTraitsRow4096H>("Row4096H", 18000);
}

// Programmatic dependent launch: three launches in a row on one stream, each a dependent of the
// previous and each reading the residual the previous one wrote (residual += h three times).
// A launch whose loads passed its dependency wait would read a stale residual.
TEST(AddRmsNormHoisted, PdlChainSeesPreviousResidual) {
  QUAMBA_REQUIRE_GPU();
  int dev = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  if (!quamba::device_supports_pdl(dev)) GTEST_SKIP() << "programmatic dependent launch needs sm_90";
  for (int D : {768, 2560})
    for (int64_t M : {int64_t(1), int64_t(2049), int64_t(8192)}) {
      SCOPED_TRACE("D=" + std::to_string(D) + " M=" + std::to_string(M));
      auto rng = quamba::test::make_rng(uint64_t(M) * 31 + uint64_t(D));
      const size_t n = size_t(M) * size_t(D);
      std::vector<float> res = quamba::test::random_normal(n, rng, 0.f, 2.f);
      std::vector<float> hf = quamba::test::random_normal(n, rng, 0.f, 1.f);
      std::vector<__half> h(n);
      for (size_t i = 0; i < n; ++i) { h[i] = to_half(hf[i]); hf[i] = from_half(h[i]); }
      const std::vector<float> gamma = quamba::test::random_floats(size_t(D), rng, 0.25f, 1.75f);
      const float eps = 1e-5f, inv_scale = quamba::inverse_scale(4.0f / 127.0f);
      constexpr int kLaunches = 3;
      std::vector<float> ref_res = res;
      std::vector<int8_t> ref_q(n);
      const int64_t shp[2] = {M, D}, st[2] = {D, 1};
      for (int k = 0; k < kLaunches; ++k)
        ASSERT_EQ(quamba::reference::add_rmsnorm_i8(view<const float, 2>(hf.data(), shp, st),
                                                     view<float, 2>(ref_res.data(), shp, st), gamma.data(), eps,
                                                     inv_scale, view<int8_t, 2>(ref_q.data(), shp, st)),
                  Status::kSuccess);
      DeviceBuffer<__half> dh(h);
      DeviceBuffer<float> dg(gamma), dres(res);
      DeviceBuffer<int8_t> dout(n);
      dout.poison(0x5A);
      cudaStream_t stream;
      QUAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      quamba::norm::AddRmsNormParams<__half, int8_t> p;
      p.h = dh.get();
      p.h_stride = D;
      p.residual = dres.get();
      p.residual_stride = D;
      p.gamma = dg.get();
      p.out = dout.get();
      p.out_stride = D;
      p.M = M;
      p.D = D;
      p.eps = eps;
      p.inv_scale = inv_scale;
      p.pdl = true;
      // The uploads and the poison ran on the legacy stream, which a non-blocking stream does
      // not wait for.
      QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
      for (int k = 0; k < kLaunches; ++k) EXPECT_EQ(quamba::norm::run(p, nullptr, stream), Status::kSuccess);
      QUAMBA_CUDA_CHECK(cudaStreamSynchronize(stream));
      QUAMBA_CUDA_CHECK(cudaStreamDestroy(stream));
      EXPECT_TRUE(quamba::test::all_close(dres.download(), ref_res, {0.0, 0.0}, "residual after 3 launches"));
      const std::vector<int8_t> got = dout.download();
      EXPECT_TRUE(quamba::test::int8_close(got.data(), ref_q.data(), n, "int8 out of the third launch"));
    }
}

// run()'s picks at the model shapes, M = 1 (decode) and prefill sizes, both output types.
TEST(AddRmsNorm, DefaultAtModelShapes) {
  QUAMBA_REQUIRE_GPU();
  uint64_t salt = 19000;
  for (int D : {768, 2560})
    for (int64_t M : {1, 2, 64, 65, 2048, 2049}) {
      check_add_rmsnorm<__half, int8_t>({M, D, true, 0}, ++salt);
      check_add_rmsnorm<__half, __half>({M, D, true, 0}, ++salt);
    }
}

TEST(AddRmsNormBadInput, Status) {
  alignas(16) static float res[64 * 16], gamma[64];
  alignas(16) static int8_t out[64 * 16];
  alignas(16) static __half h[64 * 16];
  using quamba::norm::can_implement;
  quamba::norm::AddRmsNormParams<__half, int8_t> p;
  p.h = h;
  p.h_stride = 64;
  p.residual = res;
  p.residual_stride = 64;
  p.gamma = gamma;
  p.out = out;
  p.out_stride = 64;
  p.M = 16;
  p.D = 64;
  EXPECT_EQ(can_implement(p), Status::kSuccess);
  auto q = p;
  q.h = nullptr;
  EXPECT_EQ(can_implement(q), Status::kSuccess) << "h is optional";
  q = p;
  q.residual = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "null residual";
  q = p;
  q.gamma = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "null gamma";
  q = p;
  q.out = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "null out";
  q = p;
  q.D = 0;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "D = 0";
  q = p;
  q.M = -1;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "M < 0";
  q = p;
  q.D = quamba::norm::kMaxD + 4;
  q.residual_stride = q.h_stride = q.out_stride = q.D;
  EXPECT_EQ(can_implement(q), Status::kErrorNotSupported) << "D > kMaxD";
  q = p;
  q.out_stride = 32;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "out stride < D";
  q = p;
  q.residual = reinterpret_cast<float*>(reinterpret_cast<char*>(res) + 2);
  EXPECT_EQ(can_implement(q), Status::kErrorMisaligned) << "residual not float-aligned";
  q = p;
  q.eps = NAN;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "NaN eps";
  q = p;
  q.M = 0;
  EXPECT_EQ(quamba::norm::run(q, nullptr, 0), Status::kSuccess) << "M = 0 is a no-op";
  // The named 16-byte variant refuses what only the scalar variant can do (no launch happens).
  q = p;
  q.residual = res + 1;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormTraitsVec4>(q, 0), Status::kErrorMisaligned);
  q = p;
  q.D = 63;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormTraitsVec4>(q, 0), Status::kErrorMisaligned);
  // The hoisted-load variants: 16-byte accesses only, and D within the variant (no launch).
  q = p;
  q.h = h + 2;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormRowTraitsWarp768>(q, 0), Status::kErrorMisaligned);
  q = p;
  q.out_stride = 66;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormRowTraitsWarp768P>(q, 0), Status::kErrorMisaligned);
  q = p;
  q.M = 1;
  q.D = quamba::norm::AddRmsNormRowTraitsWarp768::kMaxD + 4;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormRowTraitsWarp768>(q, 0), Status::kErrorNotSupported);
  q.D = quamba::norm::AddRmsNormRowTraitsRow2560HP::kMaxD + 4;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormRowTraitsRow2560HP>(q, 0), Status::kErrorNotSupported);
  q = p;
  q.gamma = nullptr;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::AddRmsNormRowTraitsRow2560H>(q, 0), Status::kErrorInvalidArgument);
}

// ---- embedding ----------------------------------------------------------------------------------

// TTable = __half: fp16 table, every conversion exact. TTable = int8_t (the int8 head option):
// random int8 rows with positive per-row scales, output equal to reference::embedding_i8 bit for
// bit (one fp32 multiply per element; __half outputs round that value). Bad rows get ids outside
// [0, V) and must come out as zeros with the flag set.
template <typename TOut, typename TTable = __half>
void check_embedding(int64_t M, int64_t V, int D, int64_t pad, const std::vector<int64_t>& bad_rows, uint64_t salt) {
  constexpr bool kInt8 = std::is_same_v<TTable, int8_t>;
  SCOPED_TRACE(std::string(kInt8 ? "int8 table " : "") + "M=" + std::to_string(M) + " V=" + std::to_string(V) +
               " D=" + std::to_string(D) + " pad=" + std::to_string(pad) + " bad=" + std::to_string(bad_rows.size()));
  auto rng = quamba::test::make_rng(salt);
  const int64_t ts = D + pad, os = D + pad;
  std::vector<TTable> table(size_t(V * ts));
  std::vector<float> table_f(table.size()), scale;
  if constexpr (kInt8) {
    const std::vector<int8_t> q = quamba::test::random_int8(table.size(), rng);
    table.assign(q.begin(), q.end());
    scale = quamba::test::random_floats(size_t(V), rng, 1e-4f, 2e-2f);
  } else {
    const std::vector<float> tf = quamba::test::random_normal(table.size(), rng);
    for (size_t i = 0; i < tf.size(); ++i) { table[i] = to_half(tf[i]); table_f[i] = from_half(table[i]); }
  }
  std::vector<int32_t> ids(static_cast<size_t>(M));
  std::uniform_int_distribution<int32_t> pick(0, int32_t(V - 1));
  for (auto& id : ids) id = pick(rng);
  std::vector<int32_t> good_ids = ids;
  for (size_t i = 0; i < bad_rows.size(); ++i) ids[size_t(bad_rows[i])] = (i % 2) ? int32_t(V) : -1 - int32_t(i);

  std::vector<float> ref(size_t(M * D));
  {
    const int64_t tshp[2] = {V, D}, tst[2] = {ts, 1}, oshp[2] = {M, D}, ost[2] = {D, 1};
    const auto out = view<float, 2>(ref.data(), oshp, ost);
    if constexpr (kInt8) {
      ASSERT_EQ(quamba::reference::embedding_i8(view<const int8_t, 2>(table.data(), tshp, tst), scale.data(),
                                                good_ids.data(), M, out),
                Status::kSuccess);
    } else {
      ASSERT_EQ(quamba::reference::embedding(view<const float, 2>(table_f.data(), tshp, tst), good_ids.data(), M, out),
                Status::kSuccess);
    }
  }
  for (int64_t r : bad_rows)
    for (int d = 0; d < D; ++d) ref[size_t(r * D + d)] = 0.f;
  if constexpr (kInt8 && std::is_same_v<TOut, __half>)
    for (auto& x : ref) x = from_half(to_half(x));
  EXPECT_EQ(quamba::norm::validate_ids(ids.data(), M, V), bad_rows.empty() ? Status::kSuccess : Status::kErrorOutOfRange);

  DeviceBuffer<TTable> dt(table);
  DeviceBuffer<float> ds(kInt8 ? scale : std::vector<float>{0.f});
  DeviceBuffer<int32_t> did(ids), flag(std::vector<int32_t>{0});
  DeviceBuffer<TOut> dout(size_t(M * os));
  for (int poison : {0x5A, 0xA5}) {
    dout.poison(poison);
    flag.poison(0);  // each run must set the flag itself
    quamba::norm::EmbeddingParams<TOut, TTable> p;
    p.table = dt.get();
    p.table_stride = ts;
    if constexpr (kInt8) p.row_scale = ds.get();
    p.ids = did.get();
    p.out = dout.get();
    p.out_stride = os;
    p.M = M;
    p.V = V;
    p.D = D;
    p.error_flag = flag.get();
    ASSERT_EQ(quamba::norm::run(p, nullptr, 0), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(flag.download()[0], bad_rows.empty() ? 0 : 1) << "error flag";
    const auto o = dout.download();
    std::vector<float> g(ref.size());
    for (int64_t m = 0; m < M; ++m) {
      for (int d = 0; d < D; ++d) g[size_t(m * D + d)] = to_float(o[size_t(m * os + d)]);
      for (int64_t d = D; d < os; ++d) {
        uint8_t byte;
        std::memcpy(&byte, &o[size_t(m * os + d)], 1);
        ASSERT_EQ(byte, uint8_t(poison)) << "padding written at row " << m;
      }
    }
    EXPECT_TRUE(quamba::test::all_close(g, ref, {0.0, 0.0}, "embedding"));
  }
}

TEST(Embedding, ShapeSweep) {
  QUAMBA_REQUIRE_GPU();
  uint64_t salt = 5000;
  for (int D : {768, 2560, 776, 13})  // 13: scalar variant
    for (int64_t M : {1, 37, 300}) {
      check_embedding<float>(M, 1000, D, 0, {}, ++salt);
      check_embedding<__half>(M, 1000, D, 8, {}, ++salt);
    }
  check_embedding<float>(5, 50280, 2560, 0, {}, ++salt);
}

TEST(Embedding, BadIdsWriteZerosAndSetFlag) {
  QUAMBA_REQUIRE_GPU();
  check_embedding<float>(40, 1000, 768, 0, {0, 17, 39}, 6001);
  check_embedding<__half>(40, 1000, 13, 3, {5}, 6002);
}

// Valid host-side params of a 4-row gather from a (10, 64) table (can_implement only reads them).
template <typename TTable>
quamba::norm::EmbeddingParams<float, TTable> bad_input_base(const TTable* table, const int32_t* ids, float* out) {
  quamba::norm::EmbeddingParams<float, TTable> p;
  p.table = table;
  p.table_stride = 64;
  p.ids = ids;
  p.out = out;
  p.out_stride = 64;
  p.M = 4;
  p.V = 10;
  p.D = 64;
  return p;
}

TEST(EmbeddingBadInput, Status) {
  const int32_t ids[4] = {0, 3, 9, 2};
  EXPECT_EQ(quamba::norm::validate_ids(ids, 4, 10), Status::kSuccess);
  EXPECT_EQ(quamba::norm::validate_ids(ids, 4, 9), Status::kErrorOutOfRange);
  const int32_t neg[2] = {1, -1};
  EXPECT_EQ(quamba::norm::validate_ids(neg, 2, 10), Status::kErrorOutOfRange);
  EXPECT_EQ(quamba::norm::validate_ids(nullptr, 2, 10), Status::kErrorInvalidArgument);
  EXPECT_EQ(quamba::norm::validate_ids(nullptr, 0, 10), Status::kSuccess);
  EXPECT_EQ(quamba::norm::validate_ids(ids, 4, 0), Status::kErrorInvalidArgument);

  alignas(16) static __half table[64 * 10];
  alignas(16) static float out[64 * 4];
  alignas(16) static int32_t dids[4];
  using quamba::norm::can_implement;
  const auto p = bad_input_base(table, dids, out);
  EXPECT_EQ(can_implement(p), Status::kSuccess);
  auto q = p;
  q.table = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "null table";
  q = p;
  q.ids = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "null ids";
  q = p;
  q.out = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "null out";
  q = p;
  q.V = 0;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "V = 0";
  q = p;
  q.table_stride = 32;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "table stride < D";
  q = p;
  q.out = reinterpret_cast<float*>(reinterpret_cast<char*>(out) + 2);
  EXPECT_EQ(can_implement(q), Status::kErrorMisaligned) << "out not float-aligned";
  q = p;
  q.error_flag = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(dids) + 1);
  EXPECT_EQ(can_implement(q), Status::kErrorMisaligned) << "misaligned error flag";
  q = p;
  q.out = out + 2;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::EmbeddingTraitsVec8>(q, 0), Status::kErrorMisaligned);
  q = p;
  q.M = 0;
  q.ids = nullptr;
  EXPECT_EQ(quamba::norm::run(q, nullptr, 0), Status::kSuccess) << "M = 0 is a no-op";
}

// ---- int8 embedding table (the int8 head option) ------------------------------------------------

TEST(EmbeddingI8, ShapeSweep) {
  QUAMBA_REQUIRE_GPU();
  uint64_t salt = 7000;
  for (int D : {768, 2560, 784, 13})  // 784 = 49·16: the 16-byte path; 13: scalar variant
    for (int64_t M : {1, 37, 300}) {
      check_embedding<float, int8_t>(M, 1000, D, 0, {}, ++salt);
      check_embedding<__half, int8_t>(M, 1000, D, 16, {}, ++salt);
      check_embedding<float, int8_t>(M, 1000, D, 5, {}, ++salt);  // odd stride: scalar variant
    }
  check_embedding<float, int8_t>(5, 50280, 2560, 0, {}, ++salt);
}

TEST(EmbeddingI8, BadIdsWriteZerosAndSetFlag) {
  QUAMBA_REQUIRE_GPU();
  check_embedding<float, int8_t>(40, 1000, 768, 0, {0, 17, 39}, 7101);
  check_embedding<__half, int8_t>(40, 1000, 13, 3, {5}, 7102);
}

TEST(EmbeddingI8BadInput, Status) {
  alignas(16) static int8_t table[64 * 10];
  alignas(16) static float scale[10];
  alignas(16) static float out[64 * 4];
  alignas(16) static int32_t dids[4];
  using quamba::norm::can_implement;
  auto p = bad_input_base(table, dids, out);
  p.row_scale = scale;
  EXPECT_EQ(can_implement(p), Status::kSuccess);
  auto q = p;
  q.row_scale = nullptr;
  EXPECT_EQ(can_implement(q), Status::kErrorInvalidArgument) << "int8 table without row scales";
  q = p;
  q.row_scale = reinterpret_cast<const float*>(reinterpret_cast<const char*>(scale) + 2);
  EXPECT_EQ(can_implement(q), Status::kErrorMisaligned) << "misaligned row scales";
  q = p;
  q.table = table + 4;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::EmbeddingTraitsVec16>(q, 0), Status::kErrorMisaligned)
      << "16-byte variant on a table that is not 16-byte aligned";
  q = p;
  q.D = 60;
  EXPECT_EQ(quamba::norm::run_with<quamba::norm::EmbeddingTraitsVec16>(q, 0), Status::kErrorMisaligned)
      << "16-byte variant with D % 16 != 0";
}

}  // namespace
