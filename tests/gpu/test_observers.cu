// GPU calibration observers (quant/observers.cuh) against the host reference
// (reference/quant.hpp, reference/model.hpp).
//
// Comparison policy:
//   absmax: bit-exact (a max of the same fp32 values, NaN skipped on both sides).
//   quantile: the two order statistics are selected exactly (bit patterns of |v|), then
//     a + frac·(b − a) is evaluated in double with uncontracted _rn intrinsics on the device,
//     the same operations in the same order as reference::abs_quantile. On x86-64 hosts (no FMA
//     contraction by default) that is bit-exact; a host compiler that contracts the reference's
//     expression into an FMA (aarch64 default) can move the double result by one ulp and the
//     float by at most one ulp. So: exact whenever frac == 0 or a == b (pure order statistic,
//     this checks the selection), within 1 float ulp otherwise.
//   EMA: each update is a float op chain on values within 1 ulp, and the EMA contracts old
//     errors by 0.99 per step: within 2 ulp (exact on x86-64).
// Validation tests (ObserversValidation.*) never touch the device and run without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/cuda_utils.cuh"
#include "common/random.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/quant/observers.cuh"
#include "quamba/reference/model.hpp"
#include "quamba/reference/quant.hpp"

namespace {

using quamba::Status;
using quamba::test::DeviceBuffer;
namespace q = quamba::quant;
namespace ref = quamba::reference;

using quamba::float_bits;

// Distance in ulps between two non-negative, non-NaN floats (their bit patterns are ordered).
int64_t ulp_diff(float a, float b) {
  return std::abs(static_cast<int64_t>(float_bits(a)) - static_cast<int64_t>(float_bits(b)));
}

std::string fstr(float f) {
  std::ostringstream s;
  s.precision(9);
  s << f << " (0x" << std::hex << float_bits(f) << ")";
  return s.str();
}

// ---- host matrices uploaded as strided device views ---------------------------------------------

// Values an observer should see: normal, with outliers (0.2%, ×10..×200), NaN (0.1%), +0 and −0,
// and exact duplicates; fp16 views round them to half first (what the device reads).
std::vector<float> make_values(size_t n, std::mt19937_64& rng, bool fp16, float outlier_rate = 0.002f) {
  std::vector<float> v = quamba::test::random_normal(n, rng);
  std::uniform_real_distribution<float> u01(0.f, 1.f), mag(10.f, 200.f);
  for (size_t i = 0; i < n; ++i) {
    const float r = u01(rng);
    if (r < outlier_rate) v[i] *= mag(rng);
    else if (r < outlier_rate + 0.001f) v[i] = std::numeric_limits<float>::quiet_NaN();
    else if (r < outlier_rate + 0.002f) v[i] = 0.0f;
    else if (r < outlier_rate + 0.003f) v[i] = -0.0f;
    else if (r < outlier_rate + 0.006f && i > 0) v[i] = -v[i - 1];  // |v| ties
  }
  if (fp16)
    for (auto& x : v) x = quamba::test::from_half(quamba::test::to_half(x));
  return v;
}

// A (rows, cols) view with row stride `stride` starting `offset` elements into a device buffer.
// Elements outside the view hold a huge poison value (1e30 in fp32, 6e4 in fp16), so any read
// outside the view changes the absmax and the top quantiles.
struct DeviceMatrix {
  q::ElemType type = q::ElemType::kF32;
  int64_t rows = 0, cols = 0, stride = 0, offset = 0;
  std::vector<float> dense;  // rows·cols values as the device sees them, row-major
  DeviceBuffer<float> f32;
  DeviceBuffer<__half> f16;

  q::DeviceMatrixView view() const {
    q::DeviceMatrixView v;
    v.type = type;
    v.rows = rows;
    v.cols = cols;
    v.row_stride = stride;
    v.data = type == q::ElemType::kF32 ? static_cast<const void*>(f32.get() + offset)
                                       : static_cast<const void*>(f16.get() + offset);
    return v;
  }
  std::string describe() const {
    std::ostringstream s;
    s << (type == q::ElemType::kF32 ? "fp32" : "fp16") << " rows=" << rows << " cols=" << cols
      << " stride=" << stride << " offset=" << offset;
    return s.str();
  }
};

std::unique_ptr<DeviceMatrix> make_matrix(q::ElemType type, int64_t rows, int64_t cols, int64_t stride,
                                          int64_t offset, std::vector<float> dense) {
  auto m = std::make_unique<DeviceMatrix>();
  m->type = type;
  m->rows = rows;
  m->cols = cols;
  m->stride = stride;
  m->offset = offset;
  const size_t total = static_cast<size_t>(offset + (rows > 0 ? (rows - 1) * stride + cols : 0) + 3);
  const bool h = type == q::ElemType::kF16;
  std::vector<float> host(total, h ? 60000.0f : 1e30f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) host[offset + r * stride + c] = dense[r * cols + c];
  if (h) {
    std::vector<__half> hh(total);
    for (size_t i = 0; i < total; ++i) hh[i] = quamba::test::to_half(host[i]);
    m->f16.upload(hh);
  } else {
    m->f32.upload(host);
  }
  m->dense = std::move(dense);
  return m;
}

std::unique_ptr<DeviceMatrix> random_matrix(q::ElemType type, int64_t rows, int64_t cols, int64_t stride,
                                            int64_t offset, std::mt19937_64& rng, float outlier_rate = 0.002f) {
  auto dense = make_values(static_cast<size_t>(rows * cols), rng, type == q::ElemType::kF16, outlier_rate);
  return make_matrix(type, rows, cols, stride, offset, std::move(dense));
}

struct Shape {
  int64_t rows, cols, stride, offset;
};

// Sizes 1, 2, 3, 1000, 1e6+3 as single rows, plus strided slices (x = xz[..., :E] style with
// stride 2E, the z half at an offset), column vectors, odd widths, and a misaligned start.
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      {1, 1, 1, 0},        {1, 2, 2, 0},        {1, 3, 3, 0},         {1, 1000, 1000, 0}, {1, 1000003, 1000003, 0},
      {3, 1000, 1000, 0},  {129, 151, 302, 0},  {129, 151, 302, 151}, {1000, 1, 3, 1},    {1000, 1, 1, 0},
      {1, 1000, 1000, 1},  {64, 24, 24, 3},     {37, 1000, 2000, 1000}, {2, 8, 16, 8},     {1000003, 1, 1, 0},
  };
  return s;
}

// ---- validation (host only) ---------------------------------------------------------------------

q::DeviceMatrixView fake_view(q::ElemType t, int64_t rows, int64_t cols, int64_t stride, uintptr_t addr = 256) {
  q::DeviceMatrixView v;
  v.type = t;
  v.rows = rows;
  v.cols = cols;
  v.row_stride = stride;
  v.data = reinterpret_cast<const void*>(addr);
  return v;
}

TEST(ObserversValidation, AbsmaxParams) {
  float* accum = reinterpret_cast<float*>(uintptr_t{512});
  q::AbsmaxParams p;
  p.src = fake_view(q::ElemType::kF16, 4, 8, 8);
  p.accum = accum;
  EXPECT_EQ(q::can_implement(p), Status::kSuccess);
  EXPECT_EQ(q::workspace_size(p), 0u);
  auto bad = p;
  bad.accum = nullptr;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "null accum";
  bad = p;
  bad.accum = reinterpret_cast<float*>(uintptr_t{514});
  EXPECT_EQ(q::can_implement(bad), Status::kErrorMisaligned) << "accum not 4-byte aligned";
  bad = p;
  bad.src.data = nullptr;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "null data";
  bad = p;
  bad.src.rows = -1;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "negative rows";
  bad = p;
  bad.src.cols = -3;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "negative cols";
  bad = p;
  bad.src.row_stride = 7;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "row_stride < cols";
  bad = p;
  bad.src.row_stride = -8;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "negative stride";
  bad = p;
  bad.src.data = reinterpret_cast<const void*>(uintptr_t{257});
  EXPECT_EQ(q::can_implement(bad), Status::kErrorMisaligned) << "fp16 data at an odd address";
  bad = p;
  bad.src.type = q::ElemType::kF32;
  bad.src.data = reinterpret_cast<const void*>(uintptr_t{258});
  EXPECT_EQ(q::can_implement(bad), Status::kErrorMisaligned) << "fp32 data not 4-byte aligned";
  bad = p;
  bad.src.type = static_cast<q::ElemType>(7);
  EXPECT_EQ(q::can_implement(bad), Status::kErrorNotSupported) << "unknown dtype";
  // Empty views are no-ops even with a null pointer; a single row ignores its stride.
  auto empty = p;
  empty.src.data = nullptr;
  empty.src.rows = 0;
  EXPECT_EQ(q::can_implement(empty), Status::kSuccess);
  auto one = p;
  one.src.rows = 1;
  one.src.row_stride = 0;
  EXPECT_EQ(q::can_implement(one), Status::kSuccess);
  // Named variants refuse what they cannot do (before touching the device).
  auto misaligned = p;
  misaligned.src.data = reinterpret_cast<const void*>(uintptr_t{258});
  EXPECT_EQ(q::run_absmax_with<q::AbsmaxTraitsF16>(misaligned, nullptr), Status::kErrorMisaligned);
  auto f32 = p;
  f32.src.type = q::ElemType::kF32;
  EXPECT_EQ(q::run_absmax_with<q::AbsmaxTraitsF16>(f32, nullptr), Status::kErrorNotSupported);
}

TEST(ObserversValidation, AbsQuantileParams) {
  q::AbsQuantileParams p;
  p.src = fake_view(q::ElemType::kF32, 3, 5, 5);
  p.out = reinterpret_cast<float*>(uintptr_t{512});
  p.alpha = 0.99999;
  EXPECT_EQ(q::can_implement(p), Status::kSuccess);
  for (double a : {-0.1, 1.0000001, std::nan("")}) {
    auto bad = p;
    bad.alpha = a;
    EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "alpha " << a;
  }
  for (double a : {0.0, 1.0}) {
    auto good = p;
    good.alpha = a;
    EXPECT_EQ(q::can_implement(good), Status::kSuccess) << "alpha " << a;
  }
  auto bad = p;
  bad.out = nullptr;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "null out";
  bad = p;
  bad.src.data = nullptr;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorInvalidArgument) << "null data";
  bad = p;
  bad.src.rows = 1 << 16;
  bad.src.cols = 1 << 16;
  bad.src.row_stride = 1 << 16;
  EXPECT_EQ(q::can_implement(bad), Status::kErrorNotSupported) << "2^32 elements exceed one 32-bit sort";
  bad = p;
  bad.src.rows = -2;
  EXPECT_EQ(q::run(bad, nullptr, 0, nullptr), Status::kErrorInvalidArgument) << "run validates first";
}

TEST(ObserversValidation, CalibratorConfig) {
  q::GpuCalibratorConfig c;
  c.n_layer = 4;
  c.d_inner = 1536;
  c.max_sample_tokens = 512;
  c.alpha = 0.99999;
  EXPECT_EQ(q::GpuCalibrator::can_implement(c), Status::kSuccess);
  auto bad = c;
  bad.n_layer = 0;
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorInvalidArgument) << "n_layer 0";
  bad = c;
  bad.d_inner = -1;
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorInvalidArgument) << "d_inner < 0";
  bad = c;
  bad.max_sample_tokens = 0;
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorInvalidArgument) << "max_sample_tokens 0";
  bad = c;
  bad.alpha = 1.5;
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorInvalidArgument) << "alpha > 1";
  bad = c;
  bad.alpha = std::nan("");
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorInvalidArgument) << "alpha NaN";
  bad = c;
  bad.keep_u_values = true;
  bad.max_total_tokens = 100;
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorInvalidArgument) << "total < one sample";
  bad = c;
  bad.d_inner = 1 << 20;
  bad.max_sample_tokens = 1 << 12;
  EXPECT_EQ(q::GpuCalibrator::can_implement(bad), Status::kErrorNotSupported) << "2^32 values in one sample";
  // An uninitialized calibrator refuses every call.
  q::GpuCalibrator cal(c);
  EXPECT_EQ(cal.observe(0, q::Site::kH, fake_view(q::ElemType::kF16, 1, 8, 8), nullptr),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(cal.end_sample(nullptr), Status::kErrorInvalidArgument);
  ref::CalibrationStats st;
  EXPECT_EQ(cal.finish(&st, nullptr), Status::kErrorInvalidArgument);
  q::GpuCalibrator bad_cal(bad);
  EXPECT_EQ(bad_cal.init(reinterpret_cast<void*>(uintptr_t{256}), size_t{1} << 40, nullptr),
            Status::kErrorNotSupported);
}

// ---- absmax -------------------------------------------------------------------------------------

float ref_absmax(const std::vector<float>& v, float prior) {
  ref::AbsmaxObserver o;
  o.value = prior;
  o.observe(v.data(), v.size());
  return o.value;
}

TEST(Observers, AbsmaxMatchesReference) {
  QUAMBA_REQUIRE_GPU();
  auto rng = quamba::test::make_rng(101);
  DeviceBuffer<float> accum(1);
  for (q::ElemType t : {q::ElemType::kF32, q::ElemType::kF16}) {
    for (const Shape& s : shapes()) {
      auto m = random_matrix(t, s.rows, s.cols, s.stride, s.offset, rng);
      const float base = ref_absmax(m->dense, 0.0f);
      // Prior values: +0 (fresh), below the max (replaced), above it (kept).
      for (float prior : {0.0f, 0.5f * base, 2.0f * base + 1.0f}) {
        accum.upload({prior});
        q::AbsmaxParams p;
        p.src = m->view();
        p.accum = accum.get();
        ASSERT_EQ(q::run(p, nullptr, nullptr), Status::kSuccess) << m->describe();
        const float want = ref_absmax(m->dense, prior);
        const float got = accum.download()[0];
        EXPECT_EQ(float_bits(got), float_bits(want)) << m->describe() << " prior " << prior << ": got " << fstr(got)
                                               << " want " << fstr(want)
                                               << (got >= 1e29f || got == 60000.f ? " (read outside the view)" : "");
        // The scalar variant (any alignment) must agree too.
        accum.upload({prior});
        ASSERT_EQ(q::run_absmax_with<q::AbsmaxTraitsScalar>(p, nullptr), Status::kSuccess);
        const float got_scalar = accum.download()[0];
        EXPECT_EQ(float_bits(got_scalar), float_bits(want)) << "scalar variant, " << m->describe() << " prior " << prior;
      }
    }
  }
}

TEST(Observers, AbsmaxSpecialValues) {
  QUAMBA_REQUIRE_GPU();
  DeviceBuffer<float> accum(1);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> cases = {
      {nan},                                  // only NaN: stays at the prior (+0)
      {nan, nan, nan, nan, nan, nan, nan, nan, nan},
      {-0.0f, 0.0f, -0.0f},                    // zeros: +0, never −0
      {-3.0f, nan, 2.0f},                      // negative max, NaN in the middle
      {1.0f, -inf, nan, 5.0f},                 // infinity counts (reference: |−inf| > everything)
      {-65504.0f, 1.0f},                       // fp16 max magnitude
  };
  for (q::ElemType t : {q::ElemType::kF32, q::ElemType::kF16}) {
    for (size_t i = 0; i < cases.size(); ++i) {
      auto m = make_matrix(t, 1, static_cast<int64_t>(cases[i].size()), static_cast<int64_t>(cases[i].size()), 0,
                           cases[i]);
      accum.upload({0.0f});
      q::AbsmaxParams p;
      p.src = m->view();
      p.accum = accum.get();
      ASSERT_EQ(q::run(p, nullptr, nullptr), Status::kSuccess);
      const float got = accum.download()[0], want = ref_absmax(cases[i], 0.0f);
      EXPECT_EQ(float_bits(got), float_bits(want)) << "case " << i << " " << m->describe() << ": got " << fstr(got)
                                             << " want " << fstr(want);
    }
  }
}

// ---- quantile -----------------------------------------------------------------------------------

// Checks the device quantile against reference::abs_quantile with the policy of the file header.
::testing::AssertionResult quantile_matches(float got, const std::vector<float>& dense, double alpha) {
  float want = 0.f;
  if (ref::abs_quantile(dense, alpha, &want) != Status::kSuccess) return ::testing::AssertionFailure() << "reference";
  if (dense.empty()) {
    if (float_bits(got) == float_bits(want)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "empty view: got " << fstr(got) << " want +0";
  }
  std::vector<float> a(dense);
  for (auto& x : a) x = (x != x) ? 0.0f : std::fabs(x);
  std::sort(a.begin(), a.end());
  const q::QuantileRank r = q::quantile_rank(a.size(), alpha);
  const bool pure = r.frac == 0.0 || float_bits(a[r.lo]) == float_bits(a[r.hi]);
  const int64_t d = (got != got) ? -1 : ulp_diff(got, want);
  if (d == 0 || (!pure && d == 1)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "n=" << a.size() << " alpha=" << alpha << ": got " << fstr(got) << " want "
                                       << fstr(want) << " (" << d << " ulp; ranks lo=" << r.lo << " a[lo]="
                                       << fstr(a[r.lo]) << " hi=" << r.hi << " a[hi]=" << fstr(a[r.hi])
                                       << " frac=" << r.frac << (pure ? ", an exact order statistic" : "") << ")";
}

float run_quantile(const q::DeviceMatrixView& v, double alpha, bool* ok_out) {
  *ok_out = false;
  q::AbsQuantileParams p;
  p.src = v;
  p.alpha = alpha;
  DeviceBuffer<float> out(1);
  out.poison(0xFF);
  p.out = out.get();
  const size_t bytes = q::workspace_size(p);
  DeviceBuffer<char> ws(std::max<size_t>(bytes, 1));
  ws.poison(0xA5);
  const Status s = q::run(p, ws.get(), bytes, nullptr);
  EXPECT_EQ(s, Status::kSuccess) << quamba::to_string(s);
  if (s != Status::kSuccess) return 0.f;
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  *ok_out = true;
  return out.download()[0];
}

TEST(Observers, QuantileMatchesReference) {
  QUAMBA_REQUIRE_GPU();
  auto rng = quamba::test::make_rng(202);
  for (q::ElemType t : {q::ElemType::kF32, q::ElemType::kF16}) {
    for (const Shape& s : shapes()) {
      auto m = random_matrix(t, s.rows, s.cols, s.stride, s.offset, rng);
      for (double alpha : {0.0, 0.5, 0.99999, 1.0, 0.9, 0.123456789}) {
        bool ran = false;
        const float got = run_quantile(m->view(), alpha, &ran);
        if (!ran) continue;
        EXPECT_TRUE(quantile_matches(got, m->dense, alpha)) << m->describe();
      }
    }
  }
}

TEST(Observers, QuantileTiesZerosNaN) {
  QUAMBA_REQUIRE_GPU();
  auto rng = quamba::test::make_rng(303);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::vector<float>> cases = {
      {nan},
      {nan, nan, nan},
      {-0.0f, 0.0f},
      {-0.0f, nan, 3.0f},
      {2.0f, -2.0f, 2.0f, -2.0f, 2.0f},
      {1e-40f, -1e-42f, 0.0f, 1e-45f},  // fp32 subnormals order like their bits
  };
  // Many ties: small integers, with sign and NaN.
  std::uniform_int_distribution<int> small(-5, 5);
  std::vector<float> ties(5003);
  for (auto& x : ties) x = small(rng) == 5 ? nan : static_cast<float>(small(rng));
  cases.push_back(ties);
  for (q::ElemType t : {q::ElemType::kF32, q::ElemType::kF16}) {
    for (const auto& c0 : cases) {
      std::vector<float> c = c0;
      if (t == q::ElemType::kF16)
        for (auto& x : c) x = quamba::test::from_half(quamba::test::to_half(x));
      const int64_t n = static_cast<int64_t>(c.size());
      auto m = make_matrix(t, n, 1, 2, 1, c);  // a strided column
      for (double alpha : {0.0, 0.25, 0.5, 0.99999, 1.0}) {
        bool ran = false;
        const float got = run_quantile(m->view(), alpha, &ran);
        if (ran) EXPECT_TRUE(quantile_matches(got, c, alpha)) << m->describe();
      }
    }
  }
}

TEST(Observers, QuantileEmptyAndWorkspace) {
  QUAMBA_REQUIRE_GPU();
  auto rng = quamba::test::make_rng(404);
  // Empty view: 0, like the reference.
  DeviceBuffer<float> out(1);
  out.poison(0xFF);
  q::AbsQuantileParams p;
  p.src = fake_view(q::ElemType::kF32, 0, 5, 5);
  p.src.data = nullptr;
  p.out = out.get();
  p.alpha = 0.5;
  EXPECT_EQ(q::workspace_size(p), 0u);
  ASSERT_EQ(q::run(p, nullptr, 0, nullptr), Status::kSuccess);
  EXPECT_EQ(float_bits(out.download()[0]), 0u) << "empty view must give +0";
  // One byte short → kErrorWorkspaceTooSmall, nothing written.
  auto m = random_matrix(q::ElemType::kF16, 17, 33, 40, 0, rng);
  p.src = m->view();
  const size_t bytes = q::workspace_size(p);
  ASSERT_GT(bytes, 0u) << "workspace_size must succeed on a device";
  DeviceBuffer<char> ws(bytes);
  ws.poison(0xA5);
  out.poison(0xFF);
  EXPECT_EQ(q::run(p, ws.get(), bytes - 1, nullptr), Status::kErrorWorkspaceTooSmall);
  EXPECT_EQ(q::run(p, nullptr, bytes, nullptr), Status::kErrorWorkspaceTooSmall);
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(float_bits(out.download()[0]), 0xFFFFFFFFu) << "a refused run must not write";
  // The 3-argument run sizes the workspace itself.
  ASSERT_EQ(q::run(p, ws.get(), nullptr), Status::kSuccess);
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(quantile_matches(out.download()[0], m->dense, 0.5));
}

// ---- GpuCalibrator vs reference LayerObservers ------------------------------------------------

struct CalibCase {
  double alpha;
  bool keep;
};

void PrintTo(const CalibCase& c, std::ostream* os) {
  *os << "alpha=" << c.alpha << (c.keep ? " keep_u_values" : " ema only");
}

class CalibratorTest : public ::testing::TestWithParam<CalibCase> {};

// Per layer and sample, every site gets fresh random activations (fp16 or fp32, strided or not),
// split into 1..3 chunks (some empty); the same values go through reference::LayerObservers the
// way reference::block_prefill_f32 records them (u: one sample = everything between end_sample
// calls). Shapes: D = 24, E = 37, X = R + 2N = 21; the rotated / plain y have E columns.
TEST_P(CalibratorTest, MatchesReferenceObservers) {
  QUAMBA_REQUIRE_GPU();
  const CalibCase cc = GetParam();
  const int64_t kLayers = 3, D = 24, E = 37, X = 21;
  const std::vector<int64_t> sample_tokens = {1, 7, 64, 3, 130, 45};
  int64_t total = 0;
  for (auto t : sample_tokens) total += t;
  q::GpuCalibratorConfig cfg;
  cfg.n_layer = kLayers;
  cfg.d_inner = E;
  cfg.max_sample_tokens = 130;
  cfg.alpha = cc.alpha;
  cfg.keep_u_values = cc.keep;
  cfg.max_total_tokens = cc.keep ? total + 5 : 0;
  ASSERT_EQ(q::GpuCalibrator::can_implement(cfg), Status::kSuccess);
  q::GpuCalibrator cal(cfg);
  const size_t ws_bytes = q::GpuCalibrator::workspace_size(cfg);
  ASSERT_GT(ws_bytes, 0u);
  DeviceBuffer<char> ws(ws_bytes);
  ws.poison(0xA5);
  // Two blocking streams (they wait for the legacy-stream uploads), picked at random per call:
  // the calibrator must order its shared scratch across them.
  cudaStream_t streams[2];
  QUAMBA_CUDA_CHECK(cudaStreamCreate(&streams[0]));
  QUAMBA_CUDA_CHECK(cudaStreamCreate(&streams[1]));
  const cudaStream_t stream = streams[0];
  ASSERT_EQ(cal.init(ws.get(), ws_bytes, stream), Status::kSuccess);

  std::vector<ref::LayerObservers> obs(kLayers);
  for (auto& o : obs) o.u_ema.alpha = cc.alpha;
  auto rng = quamba::test::make_rng(500 + static_cast<uint64_t>(cc.alpha * 1e6) + (cc.keep ? 7 : 0));
  std::vector<std::unique_ptr<DeviceMatrix>> keep_alive;  // the device reads them asynchronously
  int64_t tokens = 0;
  const q::Site sites[] = {q::Site::kH, q::Site::kXz, q::Site::kU, q::Site::kXd,
                           q::Site::kDt, q::Site::kOPlain, q::Site::kORotated};
  for (size_t si = 0; si < sample_tokens.size(); ++si) {
    const int64_t Ls = sample_tokens[si];
    // Chunk boundaries: 1..3 chunks, a zero-row chunk allowed.
    std::vector<int64_t> chunks;
    const int nch = 1 + static_cast<int>(rng() % 3);
    int64_t left = Ls;
    for (int c = 0; c + 1 < nch; ++c) {
      const int64_t take = static_cast<int64_t>(rng() % static_cast<uint64_t>(left + 1));
      chunks.push_back(take);
      left -= take;
    }
    chunks.push_back(left);
    std::vector<std::vector<float>> u_sample(kLayers);
    for (int64_t rows : chunks) {
      tokens += rows;
      for (int64_t l = 0; l < kLayers; ++l) {
        for (q::Site site : sites) {
          const int64_t cols = site == q::Site::kH ? D : site == q::Site::kXz ? 2 * E : site == q::Site::kXd ? X : E;
          const q::ElemType t = ((l + static_cast<int>(site) + static_cast<int64_t>(si)) % 2) ? q::ElemType::kF16
                                                                                                : q::ElemType::kF32;
          const bool strided = (rng() % 2) == 0;
          const int64_t stride = strided ? cols + 1 + static_cast<int64_t>(rng() % 9) : cols;
          const int64_t offset = strided ? static_cast<int64_t>(rng() % 5) : 0;
          // Layer 1 of sample 4 carries a burst of outliers in u: more than one sample tail of
          // the largest values, so the global tail must take several from one sample.
          const float rate = (site == q::Site::kU && l == 1 && si == 4) ? 0.02f : 0.002f;
          auto m = random_matrix(t, rows, cols, stride, offset, rng, rate);
          ASSERT_EQ(cal.observe(l, site, m->view(), streams[rng() % 2]), Status::kSuccess)
              << "layer " << l << " site " << static_cast<int>(site) << " " << m->describe();
          ref::LayerObservers& o = obs[static_cast<size_t>(l)];
          const float* d = m->dense.data();
          const size_t n = m->dense.size();
          switch (site) {
            case q::Site::kH: o.h.observe(d, n); break;
            case q::Site::kXz: o.xz.observe(d, n); break;
            case q::Site::kU:
              o.u.observe(d, n);
              for (size_t i = 0; i < n; ++i) u_sample[static_cast<size_t>(l)].push_back(std::fabs(d[i]));
              break;
            case q::Site::kXd: o.xd.observe(d, n); break;
            case q::Site::kDt: o.dt.observe(d, n); break;
            case q::Site::kOPlain: o.o_plain.observe(d, n); break;
            case q::Site::kORotated: o.o_rotated.observe(d, n); break;
          }
          keep_alive.push_back(std::move(m));
        }
      }
    }
    // A refused call in the middle must leave no trace: one token too many for layer 2's u.
    {
      auto big = random_matrix(q::ElemType::kF32, cfg.max_sample_tokens + 1 - Ls + 0, E, E, 0, rng);
      if (Ls + big->rows > cfg.max_sample_tokens)
        EXPECT_EQ(cal.observe(2, q::Site::kU, big->view(), stream), Status::kErrorWorkspaceTooSmall);
      keep_alive.push_back(std::move(big));
    }
    ASSERT_EQ(cal.end_sample(streams[si % 2]), Status::kSuccess) << "sample " << si;
    for (int64_t l = 0; l < kLayers; ++l) {
      auto& o = obs[static_cast<size_t>(l)];
      auto& smp = u_sample[static_cast<size_t>(l)];
      o.u_values.insert(o.u_values.end(), smp.begin(), smp.end());
      ASSERT_EQ(o.u_ema.observe_sample(smp), Status::kSuccess);
    }
  }

  ref::CalibrationStats got;
  std::vector<float> exact;
  ASSERT_EQ(cal.finish(&got, stream, &exact), Status::kSuccess);
  ASSERT_EQ(got.layers.size(), static_cast<size_t>(kLayers));
  EXPECT_EQ(got.samples, static_cast<int64_t>(sample_tokens.size()));
  EXPECT_EQ(got.tokens, tokens);
  EXPECT_EQ(got.percentile, cc.alpha);
  EXPECT_TRUE(got.rotated_observed);
  EXPECT_EQ(exact.size(), cc.keep ? static_cast<size_t>(kLayers) : 0u);
  for (int64_t l = 0; l < kLayers; ++l) {
    const auto& g = got.layers[static_cast<size_t>(l)];
    const auto& r = obs[static_cast<size_t>(l)];
    const std::string at = "layer " + std::to_string(l) + " alpha " + std::to_string(cc.alpha);
    EXPECT_EQ(float_bits(g.h.value), float_bits(r.h.value)) << at << " h: " << fstr(g.h.value) << " vs " << fstr(r.h.value);
    EXPECT_EQ(float_bits(g.xz.value), float_bits(r.xz.value)) << at << " xz: " << fstr(g.xz.value) << " vs " << fstr(r.xz.value);
    EXPECT_EQ(float_bits(g.u.value), float_bits(r.u.value)) << at << " u: " << fstr(g.u.value) << " vs " << fstr(r.u.value);
    EXPECT_EQ(float_bits(g.xd.value), float_bits(r.xd.value)) << at << " xd: " << fstr(g.xd.value) << " vs " << fstr(r.xd.value);
    EXPECT_EQ(float_bits(g.dt.value), float_bits(r.dt.value)) << at << " dt: " << fstr(g.dt.value) << " vs " << fstr(r.dt.value);
    EXPECT_EQ(float_bits(g.o_plain.value), float_bits(r.o_plain.value)) << at << " o_plain";
    EXPECT_EQ(float_bits(g.o_rotated.value), float_bits(r.o_rotated.value)) << at << " o_rotated";
    EXPECT_EQ(g.u_ema.samples, r.u_ema.samples) << at;
    EXPECT_EQ(g.u_ema.alpha, cc.alpha) << at;
    EXPECT_LE(ulp_diff(g.u_ema.value, r.u_ema.value), 2)
        << at << " u_ema: " << fstr(g.u_ema.value) << " vs " << fstr(r.u_ema.value);
    EXPECT_TRUE(g.u_values.empty()) << at;
    if (cc.keep) {
      EXPECT_TRUE(quantile_matches(exact[static_cast<size_t>(l)], r.u_values, cc.alpha)) << at << " exact global";
    }
  }

  // Scales: the GPU stats through scales_from_gpu_calibration equal the reference's.
  ref::CalibrationStats want;
  want.layers = obs;
  want.samples = static_cast<int64_t>(sample_tokens.size());
  want.tokens = tokens;
  want.percentile = cc.alpha;
  want.rotated_observed = true;
  std::vector<ref::QuantRecipe> recipes = {ref::recipe_naive(), ref::recipe_quamba()};
  if (cc.keep) recipes.push_back({true, ref::UScale::kPercentileExact});
  for (const auto& recipe : recipes) {
    ref::ModelScales sg, sr;
    ASSERT_EQ(ref::scales_from_calibration(want, recipe, &sr), Status::kSuccess);
    ASSERT_EQ(q::scales_from_gpu_calibration(got, exact, recipe, &sg), Status::kSuccess);
    for (int64_t l = 0; l < kLayers; ++l) {
      const auto& a = sg.layers[static_cast<size_t>(l)];
      const auto& b = sr.layers[static_cast<size_t>(l)];
      const std::string at = "recipe u_scale " + std::to_string(static_cast<int>(recipe.u_scale)) + " layer " +
                             std::to_string(l);
      EXPECT_EQ(float_bits(a.s_h), float_bits(b.s_h)) << at;
      EXPECT_EQ(float_bits(a.s_xz), float_bits(b.s_xz)) << at;
      EXPECT_EQ(float_bits(a.s_xd), float_bits(b.s_xd)) << at;
      EXPECT_EQ(float_bits(a.s_dt), float_bits(b.s_dt)) << at;
      EXPECT_EQ(float_bits(a.s_o), float_bits(b.s_o)) << at;
      EXPECT_LE(ulp_diff(a.s_u, b.s_u), 2) << at << " s_u " << fstr(a.s_u) << " vs " << fstr(b.s_u);
    }
  }
  if (!cc.keep) {
    ref::ModelScales s;
    EXPECT_EQ(q::scales_from_gpu_calibration(got, exact, {true, ref::UScale::kPercentileExact}, &s),
              Status::kErrorInvalidArgument)
        << "exact quantile requested without keep_u_values";
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  QUAMBA_CUDA_CHECK(cudaStreamDestroy(streams[0]));
  QUAMBA_CUDA_CHECK(cudaStreamDestroy(streams[1]));
}

INSTANTIATE_TEST_SUITE_P(Alphas, CalibratorTest,
                         ::testing::Values(CalibCase{0.99999, true}, CalibCase{0.99999, false}, CalibCase{0.5, true},
                                           CalibCase{0.0, true}, CalibCase{1.0, true}, CalibCase{0.9, true},
                                           CalibCase{0.999, false}),
                         [](const ::testing::TestParamInfo<CalibCase>& i) {
                           std::string a = std::to_string(i.param.alpha);
                           for (auto& ch : a)
                             if (ch == '.') ch = '_';
                           return "alpha_" + a + (i.param.keep ? "_keep" : "_ema");
                         });

// Several end_sample calls with u seen only in some layers: layers without u keep samples = 0,
// and the exact quantile path refuses them like the reference refuses empty u_values.
TEST(Observers, CalibratorLayersWithoutU) {
  QUAMBA_REQUIRE_GPU();
  q::GpuCalibratorConfig cfg;
  cfg.n_layer = 2;
  cfg.d_inner = 16;
  cfg.max_sample_tokens = 8;
  cfg.keep_u_values = true;
  cfg.max_total_tokens = 64;
  q::GpuCalibrator cal(cfg);
  const size_t bytes = q::GpuCalibrator::workspace_size(cfg);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer<char> ws(bytes);
  ws.poison(0xA5);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cal.init(ws.get(), bytes, stream), Status::kSuccess);
  auto rng = quamba::test::make_rng(606);
  auto m = random_matrix(q::ElemType::kF16, 8, 16, 16, 0, rng);
  ASSERT_EQ(cal.observe(0, q::Site::kU, m->view(), stream), Status::kSuccess);
  ASSERT_EQ(cal.end_sample(stream), Status::kSuccess);
  ASSERT_EQ(cal.end_sample(stream), Status::kSuccess);  // an empty sample is not counted
  ref::CalibrationStats st;
  std::vector<float> exact;
  ASSERT_EQ(cal.finish(&st, stream, &exact), Status::kSuccess);
  EXPECT_EQ(st.samples, 2);
  EXPECT_EQ(st.layers[0].u_ema.samples, 1);
  EXPECT_EQ(st.layers[1].u_ema.samples, 0);
  EXPECT_FALSE(st.rotated_observed);
  float want = 0.f;
  ASSERT_EQ(ref::abs_quantile(m->dense, cfg.alpha, &want), Status::kSuccess);
  EXPECT_LE(ulp_diff(st.layers[0].u_ema.value, want), 1) << fstr(st.layers[0].u_ema.value) << " vs " << fstr(want);
  EXPECT_TRUE(quantile_matches(exact[0], m->dense, cfg.alpha));
  EXPECT_EQ(exact[1], 0.0f);
  ref::ModelScales s;
  EXPECT_EQ(q::scales_from_gpu_calibration(st, exact, {false, ref::UScale::kPercentileExact}, &s),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(q::scales_from_gpu_calibration(st, exact, {false, ref::UScale::kPercentileEma}, &s),
            Status::kErrorInvalidArgument);  // the reference refuses an EMA with no samples
  EXPECT_EQ(q::scales_from_gpu_calibration(st, exact, {false, ref::UScale::kAbsmax}, &s), Status::kSuccess);
}

TEST(Observers, CalibratorBadInput) {
  QUAMBA_REQUIRE_GPU();
  q::GpuCalibratorConfig cfg;
  cfg.n_layer = 2;
  cfg.d_inner = 16;
  cfg.max_sample_tokens = 8;
  cfg.keep_u_values = true;
  cfg.max_total_tokens = 12;
  q::GpuCalibrator cal(cfg);
  const size_t bytes = q::GpuCalibrator::workspace_size(cfg);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer<char> ws(bytes);
  ws.poison(0xA5);
  cudaStream_t stream, other;
  QUAMBA_CUDA_CHECK(cudaStreamCreate(&stream));
  QUAMBA_CUDA_CHECK(cudaStreamCreate(&other));
  EXPECT_EQ(cal.init(nullptr, bytes, stream), Status::kErrorInvalidArgument);
  EXPECT_EQ(cal.init(ws.get(), bytes - 1, stream), Status::kErrorWorkspaceTooSmall);
  ASSERT_EQ(cal.init(ws.get(), bytes, stream), Status::kSuccess);
  auto rng = quamba::test::make_rng(707);
  auto u8 = random_matrix(q::ElemType::kF32, 8, 16, 16, 0, rng);
  auto u4 = random_matrix(q::ElemType::kF32, 4, 16, 16, 0, rng);
  auto u9 = random_matrix(q::ElemType::kF32, 9, 16, 16, 0, rng);
  auto x15 = random_matrix(q::ElemType::kF32, 4, 15, 15, 0, rng);
  const auto v = u8->view();
  EXPECT_EQ(cal.observe(-1, q::Site::kH, v, stream), Status::kErrorOutOfRange);
  EXPECT_EQ(cal.observe(2, q::Site::kH, v, stream), Status::kErrorOutOfRange);
  EXPECT_EQ(cal.observe(0, static_cast<q::Site>(7), v, stream), Status::kErrorInvalidArgument);
  auto bad = v;
  bad.data = nullptr;
  EXPECT_EQ(cal.observe(0, q::Site::kH, bad, stream), Status::kErrorInvalidArgument) << "null data";
  bad = v;
  bad.rows = -1;
  EXPECT_EQ(cal.observe(0, q::Site::kU, bad, stream), Status::kErrorInvalidArgument) << "negative rows";
  bad = v;
  bad.row_stride = 8;
  EXPECT_EQ(cal.observe(0, q::Site::kXz, bad, stream), Status::kErrorInvalidArgument) << "stride < cols";
  bad = v;
  bad.data = static_cast<const char*>(v.data) + 2;
  EXPECT_EQ(cal.observe(0, q::Site::kDt, bad, stream), Status::kErrorMisaligned);
  EXPECT_EQ(cal.observe(0, q::Site::kU, x15->view(), stream), Status::kErrorInvalidArgument) << "u needs E columns";
  EXPECT_EQ(cal.observe(0, q::Site::kU, u9->view(), stream), Status::kErrorWorkspaceTooSmall) << "9 > 8 tokens";
  ASSERT_EQ(cal.observe(0, q::Site::kU, u8->view(), stream), Status::kSuccess);
  EXPECT_EQ(cal.observe(0, q::Site::kU, u4->view(), stream), Status::kErrorWorkspaceTooSmall) << "8 + 4 > 8";
  ref::CalibrationStats st;
  EXPECT_EQ(cal.finish(nullptr, stream), Status::kErrorInvalidArgument);
  EXPECT_EQ(cal.finish(&st, stream), Status::kErrorInvalidArgument) << "sample still open";
  ASSERT_EQ(cal.end_sample(stream), Status::kSuccess);
  ASSERT_EQ(cal.observe(0, q::Site::kU, u4->view(), stream), Status::kSuccess);  // 12 of 12 total tokens
  // Another stream is accepted and ordered after the previous calls.
  ASSERT_EQ(cal.end_sample(other), Status::kSuccess);
  EXPECT_EQ(cal.observe(0, q::Site::kU, u4->view(), other), Status::kErrorWorkspaceTooSmall)
      << "over max_total_tokens with keep_u_values";
  ASSERT_EQ(cal.observe(1, q::Site::kU, u4->view(), other), Status::kSuccess) << "layer 1 has its own budget";
  ASSERT_EQ(cal.end_sample(stream), Status::kSuccess);
  std::vector<float> exact;
  ASSERT_EQ(cal.finish(&st, stream, &exact), Status::kSuccess);
  // Layer 0 saw u8 then u4 as two samples: the refused calls left no trace.
  std::vector<float> all(u8->dense);
  all.insert(all.end(), u4->dense.begin(), u4->dense.end());
  EXPECT_TRUE(quantile_matches(exact[0], all, cfg.alpha));
  EXPECT_TRUE(quantile_matches(exact[1], u4->dense, cfg.alpha));
  EXPECT_EQ(st.layers[0].u_ema.samples, 2);
  ref::AbsmaxObserver h;
  h.observe(all.data(), all.size());
  EXPECT_EQ(float_bits(st.layers[0].u.value), float_bits(h.value));
  EXPECT_EQ(st.layers[0].h.value, 0.0f) << "refused kH calls must not record";
  QUAMBA_CUDA_CHECK(cudaStreamSynchronize(stream));
  QUAMBA_CUDA_CHECK(cudaStreamDestroy(stream));
  QUAMBA_CUDA_CHECK(cudaStreamDestroy(other));
}

}  // namespace
