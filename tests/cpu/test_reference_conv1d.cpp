// Host reference causal depthwise conv1d (+ SiLU) (quamba/reference/conv1d.hpp): prefill against a
// formula written here, the conv-state semantics (last K inputs, zero left padding), chunked
// prefill == one prefill, prefill + decode steps == a longer prefill, the int8 variants, the
// state_idx mapping, strided views and bad-argument statuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/random.hpp"
#include "quamba/reference/conv1d.hpp"

using namespace quamba;
using namespace quamba::reference;

namespace quamba {
// Statuses print by name in assertion messages.
inline void PrintTo(Status s, std::ostream* os) { *os << to_string(s); }
}  // namespace quamba

namespace {

std::vector<float> poison(size_t n) { return std::vector<float>(n, std::nanf("")); }

// Input at position t' of sequence b, channel c, of the stream [initial state, x]: t' < 0 reads
// slot K + t' of the state (slot K-1 is the most recent input), or 0 without a state.
template <typename T>
double stream_at(const std::vector<T>& x, const std::vector<T>* state, int64_t L, int64_t C, int K, int64_t b,
                 int64_t t, int64_t c) {
  if (t >= 0) return double(x[size_t((b * L + t) * C + c)]);
  if (!state) return 0.0;
  return double((*state)[size_t((b * C + c) * K + (K + t))]);
}

// Expected final state: the last K entries of [state (or zeros), x].
template <typename T>
std::vector<T> expected_state(const std::vector<T>& x, const std::vector<T>* state, int64_t B, int64_t L, int64_t C,
                              int K) {
  std::vector<T> s(size_t(B * C * K));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int k = 0; k < K; ++k) s[size_t((b * C + c) * K + k)] = T(stream_at(x, state, L, C, K, b, L - K + k, c));
  return s;
}

struct ConvCase {
  int64_t B, L, C;
  int K;
  bool bias, silu, state;
  std::string name() const {
    return "B=" + std::to_string(B) + " L=" + std::to_string(L) + " C=" + std::to_string(C) + " K=" +
           std::to_string(K) + (bias ? " bias" : "") + (silu ? " silu" : "") + (state ? " state" : "");
  }
};

// int8 scales as a W8A8 layer would have them: x in ±4, w in ±0.5, bias in ±0.2, u in ±3.
Conv1dScalesI8 i8_scales() {
  Conv1dScalesI8 s;
  s.scale_wx = (4.0f / 127) * (0.5f / 127);
  s.s_b = 0.2f / 127;
  s.inv_s_out = 1.0f / (3.0f / 127);
  return s;
}

// The documented int8 expression, written out: v = float(Σ w·x)·scale_wx + float(b)·s_b,
// q = q8(silu(v)·inv_s_out) with silu(v) = v / (1 + exp(-v)) in fp32.
int8_t conv_i8_formula(const int8_t* w, const int8_t* win, int K, const int8_t* bias, const Conv1dScalesI8& s) {
  int32_t acc = 0;
  for (int k = 0; k < K; ++k) acc += int32_t(w[k]) * int32_t(win[k]);
  float v = float(acc) * s.scale_wx;
  if (bias) v += float(*bias) * s.s_b;
  const float u = v / (1.0f + std::exp(-v));
  return quantize_i8(u, s.inv_s_out);
}

}  // namespace

TEST(ReferenceConv1d, Fp32PrefillMatchesFormula) {
  auto rng = test::make_rng(0xc0f);
  double worst = 0;
  for (int K : {2, 3, 4})
    for (int64_t L : {1, 2, 3, 5, 129})
      for (int64_t B : {1, 3})
        for (int opt = 0; opt < 8; ++opt) {
          const ConvCase cc{B, L, 37, K, bool(opt & 1), bool(opt & 2), bool(opt & 4)};
          SCOPED_TRACE(cc.name());
          const int64_t C = cc.C;
          const auto x = test::random_normal(size_t(B * L * C), rng);
          const auto w = test::random_normal(size_t(C * K), rng, 0.f, 0.5f);
          const auto bias = test::random_normal(size_t(C), rng);
          const auto st = test::random_normal(size_t(B * C * K), rng);
          auto out = poison(x.size()), fin = poison(st.size());
          ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, L, C), w.data(), K, cc.bias ? bias.data() : nullptr, cc.silu,
                                   cc.state ? make_view(st.data(), B, C, K) : TensorView<const float, 3>{},
                                   make_view(fin.data(), B, C, K), make_view(out.data(), B, L, C)),
                    Status::kSuccess);
          std::vector<float> want(x.size());
          for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t < L; ++t)
              for (int64_t c = 0; c < C; ++c) {
                double acc = cc.bias ? bias[c] : 0.0;
                for (int k = 0; k < K; ++k)
                  acc += double(w[c * K + k]) * stream_at(x, cc.state ? &st : nullptr, L, C, K, b, t - (K - 1) + k, c);
                if (cc.silu) acc = acc / (1.0 + std::exp(-acc));
                want[size_t((b * L + t) * C + c)] = float(acc);
              }
          ASSERT_TRUE(test::all_close(out, want, test::kTolF32, "out"));
          for (size_t i = 0; i < out.size(); ++i)
            worst = std::max(worst, std::fabs(double(out[i]) - want[i]) / (1e-5 + 1e-5 * std::fabs(want[i])));
          const auto fin_want = expected_state(x, cc.state ? &st : nullptr, B, L, C, K);
          ASSERT_TRUE(test::all_equal(fin.data(), fin_want.data(), fin.size(), "final state"));
        }
  std::printf("[ measured ] fp32 conv vs double formula: max err/kTolF32 = %.3g\n", worst);
}

// The state after L < K tokens: zeros on the left without an initial state, the tail of the
// initial state otherwise; slot 0 is the oldest.
TEST(ReferenceConv1d, FinalStateIsLastKInputsLeftPadded) {
  const int64_t B = 1, C = 2;
  const int K = 4;
  const std::vector<float> x = {1, 10, 2, 20};  // two tokens, two channels
  const std::vector<float> w(size_t(C * K), 1.0f);
  std::vector<float> out(4), fin(size_t(C * K), -1.0f);
  ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, 2, C), w.data(), K, nullptr, false, {},
                           make_view(fin.data(), B, C, K), make_view(out.data(), B, 2, C)),
            Status::kSuccess);
  EXPECT_EQ(fin, (std::vector<float>{0, 0, 1, 2, 0, 0, 10, 20}));
  EXPECT_EQ(out, (std::vector<float>{1, 10, 3, 30}));
  const std::vector<float> st = {5, 6, 7, 8, 50, 60, 70, 80};
  ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, 2, C), w.data(), K, nullptr, false, make_view(st.data(), B, C, K),
                           make_view(fin.data(), B, C, K), make_view(out.data(), B, 2, C)),
            Status::kSuccess);
  EXPECT_EQ(fin, (std::vector<float>{7, 8, 1, 2, 70, 80, 10, 20}));
  EXPECT_EQ(out, (std::vector<float>{6 + 7 + 8 + 1, 60 + 70 + 80 + 10, 7 + 8 + 1 + 2, 70 + 80 + 10 + 20}));
}

TEST(ReferenceConv1d, UnsupportedWidthsAreNotSupported) {
  const int64_t B = 2, L = 3, C = 4;
  std::vector<float> x(size_t(B * L * C), 1.0f), out(x.size()), w(size_t(C * 8), 1.0f);
  std::vector<int8_t> xq(x.size(), 1), outq(x.size()), wq(w.size(), 1);
  for (int K : {1, 5, 0, -1, 8}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    const int64_t Ks = std::max(K, 1);
    std::vector<float> st(size_t(B * C * Ks), 0.0f);
    std::vector<int8_t> stq(st.size(), 0);
    EXPECT_EQ(conv1d_prefill(make_view(x.data(), B, L, C), w.data(), K, nullptr, true, {}, {},
                             make_view(out.data(), B, L, C)),
              Status::kErrorNotSupported);
    EXPECT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, L, C), wq.data(), K, nullptr, i8_scales(), {}, {},
                                make_view(outq.data(), B, L, C)),
              Status::kErrorNotSupported);
    EXPECT_EQ(conv1d_update(make_view(x.data(), B, C), make_view(st.data(), B, C, Ks), nullptr, w.data(), K, nullptr,
                            true, make_view(out.data(), B, C)),
              Status::kErrorNotSupported);
    EXPECT_EQ(conv1d_update_i8(make_view(xq.data(), B, C), make_view(stq.data(), B, C, Ks), nullptr, wq.data(), K,
                               nullptr, i8_scales(), make_view(outq.data(), B, C)),
              Status::kErrorNotSupported);
  }
}

// Chunks carrying state_out -> state_in give exactly one prefill (fp32 and int8): every output
// is the same expression of the same K inputs.
TEST(ReferenceConv1d, ChunkedPrefillEqualsOnePrefill) {
  auto rng = test::make_rng(0xc4c);
  for (int K : {2, 3, 4})
    for (int64_t L : {1, 2, 9, 100}) {
      const int64_t B = 3, C = 19;
      const auto x = test::random_normal(size_t(B * L * C), rng);
      const auto w = test::random_normal(size_t(C * K), rng, 0.f, 0.5f);
      const auto bias = test::random_normal(size_t(C), rng);
      const auto st0 = test::random_normal(size_t(B * C * K), rng);
      const auto xq = test::random_int8(x.size(), rng);
      const auto wq = test::random_int8(w.size(), rng);
      const auto bq = test::random_int8(size_t(C), rng);
      const auto stq0 = test::random_int8(st0.size(), rng);
      auto out_ref = poison(x.size()), fin_ref = poison(st0.size());
      ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, L, C), w.data(), K, bias.data(), true,
                               make_view(st0.data(), B, C, K), make_view(fin_ref.data(), B, C, K),
                               make_view(out_ref.data(), B, L, C)),
                Status::kSuccess);
      std::vector<int8_t> outq_ref(x.size()), finq_ref(st0.size());
      ASSERT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, L, C), wq.data(), K, bq.data(), i8_scales(),
                                  make_view(stq0.data(), B, C, K), make_view(finq_ref.data(), B, C, K),
                                  make_view(outq_ref.data(), B, L, C)),
                Status::kSuccess);
      for (int64_t chunk : {int64_t(1), int64_t(3), int64_t(7), L}) {
        SCOPED_TRACE("K=" + std::to_string(K) + " L=" + std::to_string(L) + " chunk=" + std::to_string(chunk));
        auto out = poison(x.size());
        auto state = st0;  // state_in and state_out alias
        std::vector<int8_t> outq(x.size(), 99), sa = stq0, sb(stq0.size());
        for (int64_t t0 = 0; t0 < L; t0 += chunk) {
          const int64_t n = std::min(chunk, L - t0);
          ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, L, C).slice(1, t0, n), w.data(), K, bias.data(), true,
                                   make_view(state.data(), B, C, K), make_view(state.data(), B, C, K),
                                   make_view(out.data(), B, L, C).slice(1, t0, n)),
                    Status::kSuccess);
          // int8: separate in/out state buffers, swapped per chunk.
          ASSERT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, L, C).slice(1, t0, n), wq.data(), K, bq.data(),
                                      i8_scales(), make_view(sa.data(), B, C, K), make_view(sb.data(), B, C, K),
                                      make_view(outq.data(), B, L, C).slice(1, t0, n)),
                    Status::kSuccess);
          sa.swap(sb);
        }
        ASSERT_TRUE(test::all_equal(out.data(), out_ref.data(), out.size(), "fp32 out"));
        ASSERT_TRUE(test::all_equal(state.data(), fin_ref.data(), state.size(), "fp32 state"));
        ASSERT_TRUE(test::all_equal(outq.data(), outq_ref.data(), outq.size(), "int8 out"));
        ASSERT_TRUE(test::all_equal(sa.data(), finq_ref.data(), sa.size(), "int8 state"));
      }
    }
}

// Prefill of L tokens then decode steps (with a state_idx permutation into S > B slots) ==
// one prefill of L + steps tokens, fp32 and int8, bit for bit.
TEST(ReferenceConv1d, PrefillThenUpdateEqualsLongerPrefill) {
  auto rng = test::make_rng(0xde0);
  for (int K : {2, 3, 4})
    for (int64_t L : {1, 2, 17}) {
      SCOPED_TRACE("K=" + std::to_string(K) + " L=" + std::to_string(L));
      const int64_t B = 3, C = 21, steps = 6, T = L + steps, S = 5;
      const int32_t idx[3] = {4, 1, 2};
      const auto x = test::random_normal(size_t(B * T * C), rng);
      const auto w = test::random_normal(size_t(C * K), rng, 0.f, 0.5f);
      const auto bias = test::random_normal(size_t(C), rng);
      const auto xq = test::random_int8(x.size(), rng);
      const auto wq = test::random_int8(w.size(), rng);
      const auto bq = test::random_int8(size_t(C), rng);
      auto out_ref = poison(x.size()), fin_ref = poison(size_t(B * C * K));
      ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, T, C), w.data(), K, bias.data(), true, {},
                               make_view(fin_ref.data(), B, C, K), make_view(out_ref.data(), B, T, C)),
                Status::kSuccess);
      std::vector<int8_t> outq_ref(x.size()), finq_ref(size_t(B * C * K));
      ASSERT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, T, C), wq.data(), K, bq.data(), i8_scales(), {},
                                  make_view(finq_ref.data(), B, C, K), make_view(outq_ref.data(), B, T, C)),
                Status::kSuccess);

      // Prefill the first L tokens into a (B, C, K) state, then scatter it into the slots.
      auto out = poison(x.size()), pre = poison(size_t(B * C * K));
      ASSERT_EQ(conv1d_prefill(make_view(x.data(), B, T, C).slice(1, 0, L), w.data(), K, bias.data(), true, {},
                               make_view(pre.data(), B, C, K), make_view(out.data(), B, T, C).slice(1, 0, L)),
                Status::kSuccess);
      std::vector<int8_t> outq(x.size(), 99), preq(size_t(B * C * K));
      ASSERT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, T, C).slice(1, 0, L), wq.data(), K, bq.data(), i8_scales(),
                                  {}, make_view(preq.data(), B, C, K), make_view(outq.data(), B, T, C).slice(1, 0, L)),
                Status::kSuccess);
      auto slots = test::random_normal(size_t(S * C * K), rng);
      auto slotsq = test::random_int8(slots.size(), rng);
      const auto slots_before = slots;
      const auto slotsq_before = slotsq;
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(&pre[b * C * K], C * K, &slots[idx[b] * C * K]);
        std::copy_n(&preq[b * C * K], C * K, &slotsq[idx[b] * C * K]);
      }
      for (int64_t t = L; t < T; ++t) {
        // x_t of every sequence is a (B, C) view with batch stride T·C.
        const int64_t sh[2] = {B, C}, stx[2] = {T * C, 1};
        ASSERT_EQ(conv1d_update(make_strided_view<const float, 2>(x.data() + t * C, sh, stx),
                                make_view(slots.data(), S, C, K), idx, w.data(), K, bias.data(), true,
                                make_strided_view<float, 2>(out.data() + t * C, sh, stx)),
                  Status::kSuccess);
        ASSERT_EQ(conv1d_update_i8(make_strided_view<const int8_t, 2>(xq.data() + t * C, sh, stx),
                                   make_view(slotsq.data(), S, C, K), idx, wq.data(), K, bq.data(), i8_scales(),
                                   make_strided_view<int8_t, 2>(outq.data() + t * C, sh, stx)),
                  Status::kSuccess);
      }
      ASSERT_TRUE(test::all_equal(out.data(), out_ref.data(), out.size(), "fp32 out"));
      ASSERT_TRUE(test::all_equal(outq.data(), outq_ref.data(), outq.size(), "int8 out"));
      for (int64_t b = 0; b < B; ++b) {
        ASSERT_TRUE(test::all_equal(&slots[idx[b] * C * K], &fin_ref[b * C * K], size_t(C * K), "fp32 slot"));
        ASSERT_TRUE(test::all_equal(&slotsq[idx[b] * C * K], &finq_ref[b * C * K], size_t(C * K), "int8 slot"));
      }
      for (int64_t s : {0, 3}) {  // slots no sequence maps to are untouched
        ASSERT_TRUE(test::all_equal(&slots[s * C * K], &slots_before[s * C * K], size_t(C * K), "unused slot"));
        ASSERT_TRUE(test::all_equal(&slotsq[s * C * K], &slotsq_before[s * C * K], size_t(C * K), "unused slot i8"));
      }
    }
}

// int8 prefill and update against the documented expression written out here, with x a strided
// slice of xz (token stride 2C) and an initial state.
TEST(ReferenceConv1d, Int8MatchesDocumentedExpression) {
  auto rng = test::make_rng(0x1c8);
  const auto s = i8_scales();
  int saturated = 0;
  for (int K : {2, 3, 4})
    for (bool has_bias : {false, true}) {
      SCOPED_TRACE("K=" + std::to_string(K) + (has_bias ? " bias" : ""));
      const int64_t B = 2, L = 40, C = 24;
      const auto xz = test::random_int8(size_t(B * L * 2 * C), rng);
      const auto w = test::random_int8(size_t(C * K), rng);
      const auto bias = test::random_int8(size_t(C), rng);
      const auto st = test::random_int8(size_t(B * C * K), rng);
      const auto xv = make_view(xz.data(), B, L, 2 * C).slice(2, 0, C);
      std::vector<int8_t> out(size_t(B * L * C), 99), fin(st.size(), 99);
      ASSERT_EQ(conv1d_prefill_i8(xv, w.data(), K, has_bias ? bias.data() : nullptr, s, make_view(st.data(), B, C, K),
                                  make_view(fin.data(), B, C, K), make_view(out.data(), B, L, C)),
                Status::kSuccess);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t)
          for (int64_t c = 0; c < C; ++c) {
            int8_t win[4];
            for (int k = 0; k < K; ++k) {
              const int64_t tt = t - (K - 1) + k;
              win[k] = tt >= 0 ? xv(b, tt, c) : st[size_t((b * C + c) * K + (K + tt))];
            }
            const int8_t want = conv_i8_formula(&w[c * K], win, K, has_bias ? &bias[c] : nullptr, s);
            ASSERT_EQ(int(out[size_t((b * L + t) * C + c)]), int(want)) << "b=" << b << " t=" << t << " c=" << c;
            saturated += want == 127;
          }
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c)
          for (int k = 0; k < K; ++k)
            ASSERT_EQ(fin[size_t((b * C + c) * K + k)], xv(b, L - K + k, c));
      // Decode from the same state, x_t a (B, C) view of xz with batch stride L·2C.
      std::vector<int8_t> state = st, outd(size_t(B * C), 99);
      const int64_t sh[2] = {B, C}, stx[2] = {L * 2 * C, 1};
      ASSERT_EQ(conv1d_update_i8(make_strided_view<const int8_t, 2>(xz.data(), sh, stx), make_view(state.data(), B, C, K),
                                 nullptr, w.data(), K, has_bias ? bias.data() : nullptr, s,
                                 make_view(outd.data(), B, C)),
                Status::kSuccess);
      ASSERT_TRUE(test::all_equal(outd.data(), out.data(), C, "update == prefill token 0 (b=0)"));
      ASSERT_TRUE(test::all_equal(outd.data() + C, out.data() + L * C, C, "update == prefill token 0 (b=1)"));
    }
  EXPECT_GT(saturated, 0) << "the scales should push some outputs to 127";
}

// fp32 with x a strided slice of xz (token stride 2C) and out written in place over x.
TEST(ReferenceConv1d, StridedAndInPlace) {
  auto rng = test::make_rng(0x5c1);
  const int64_t B = 2, L = 31, C = 13;
  const int K = 4;
  auto xz = test::random_normal(size_t(B * L * 2 * C), rng);
  const auto w = test::random_normal(size_t(C * K), rng);
  const auto bias = test::random_normal(size_t(C), rng);
  std::vector<float> xc(size_t(B * L * C));
  for (int64_t m = 0; m < B * L; ++m)
    for (int64_t c = 0; c < C; ++c) xc[size_t(m * C + c)] = xz[size_t(m * 2 * C + c)];
  auto want = poison(xc.size()), fin_want = poison(size_t(B * C * K)), fin = poison(fin_want.size());
  ASSERT_EQ(conv1d_prefill(make_view(xc.data(), B, L, C), w.data(), K, bias.data(), true, {},
                           make_view(fin_want.data(), B, C, K), make_view(want.data(), B, L, C)),
            Status::kSuccess);
  const auto xz_before = xz;
  auto xv = make_view(xz.data(), B, L, 2 * C).slice(2, 0, C);
  ASSERT_EQ(conv1d_prefill(xv, w.data(), K, bias.data(), true, {}, make_view(fin.data(), B, C, K), xv),
            Status::kSuccess);
  for (int64_t m = 0; m < B * L; ++m)
    for (int64_t c = 0; c < C; ++c) {
      ASSERT_EQ(xz[size_t(m * 2 * C + c)], want[size_t(m * C + c)]) << "token " << m << " c=" << c;
      ASSERT_EQ(xz[size_t(m * 2 * C + C + c)], xz_before[size_t(m * 2 * C + C + c)]) << "z half touched";
    }
  ASSERT_TRUE(test::all_equal(fin.data(), fin_want.data(), fin.size(), "final state"));
}

TEST(ReferenceConv1d, StateIndexOutOfRangeLeavesStateUntouched) {
  auto rng = test::make_rng(0x0c1);
  const int64_t B = 2, C = 8, S = 3;
  const int K = 4;
  const auto x = test::random_normal(size_t(B * C), rng);
  const auto w = test::random_normal(size_t(C * K), rng);
  const auto xq = test::random_int8(x.size(), rng);
  const auto wq = test::random_int8(w.size(), rng);
  const auto st0 = test::random_normal(size_t(S * C * K), rng);
  const auto stq0 = test::random_int8(st0.size(), rng);
  for (int32_t bad : {-1, 3, 100}) {
    SCOPED_TRACE("bad slot " + std::to_string(bad));
    const int32_t idx[2] = {0, bad};
    auto st = st0;
    auto stq = stq0;
    std::vector<float> out(x.size());
    std::vector<int8_t> outq(x.size());
    EXPECT_EQ(conv1d_update(make_view(x.data(), B, C), make_view(st.data(), S, C, K), idx, w.data(), K, nullptr, true,
                            make_view(out.data(), B, C)),
              Status::kErrorOutOfRange);
    EXPECT_EQ(conv1d_update_i8(make_view(xq.data(), B, C), make_view(stq.data(), S, C, K), idx, wq.data(), K, nullptr,
                               i8_scales(), make_view(outq.data(), B, C)),
              Status::kErrorOutOfRange);
    EXPECT_TRUE(test::all_equal(st.data(), st0.data(), st.size(), "fp32 state after a rejected call"));
    EXPECT_TRUE(test::all_equal(stq.data(), stq0.data(), stq.size(), "int8 state after a rejected call"));
  }
  // Without state_idx, B sequences need B slots.
  auto st = st0;
  std::vector<float> out(x.size());
  EXPECT_EQ(conv1d_update(make_view(x.data(), B, C), make_view(st.data(), 1, C, K), nullptr, w.data(), K, nullptr,
                          true, make_view(out.data(), B, C)),
            Status::kErrorOutOfRange);
}

TEST(ReferenceConv1d, BadShapesAreInvalidArgument) {
  const int64_t B = 2, L = 5, C = 6;
  const int K = 3;
  std::vector<float> x(size_t(B * (L + 1) * (C + 1)), 1.0f), out(x.size()), w(size_t((C + 1) * K), 1.0f);
  std::vector<float> st(size_t((B + 1) * (C + 1) * (K + 1)), 0.0f);
  auto xv = make_view(static_cast<const float*>(x.data()), B, L, C);
  auto ov = make_view(out.data(), B, L, C);
  auto prefill = [&](TensorView<const float, 3> xx, const float* ww, TensorView<const float, 3> si,
                     TensorView<float, 3> so, TensorView<float, 3> oo) {
    return conv1d_prefill(xx, ww, K, nullptr, true, si, so, oo);
  };
  ASSERT_EQ(prefill(xv, w.data(), {}, {}, ov), Status::kSuccess);
  EXPECT_EQ(prefill(xv, nullptr, {}, {}, ov), Status::kErrorInvalidArgument) << "weight null";
  EXPECT_EQ(prefill(make_view(static_cast<const float*>(nullptr), B, L, C), w.data(), {}, {}, ov),
            Status::kErrorInvalidArgument)
      << "x null";
  EXPECT_EQ(prefill(xv, w.data(), {}, {}, make_view(static_cast<float*>(nullptr), B, L, C)),
            Status::kErrorInvalidArgument)
      << "out null";
  EXPECT_EQ(prefill(xv, w.data(), {}, {}, make_view(out.data(), B, L + 1, C)), Status::kErrorInvalidArgument) << "out L";
  EXPECT_EQ(prefill(xv, w.data(), {}, {}, make_view(out.data(), B, L, C + 1)), Status::kErrorInvalidArgument) << "out C";
  EXPECT_EQ(prefill(xv, w.data(), make_view(static_cast<const float*>(st.data()), B, C + 1, K), {}, ov),
            Status::kErrorInvalidArgument)
      << "state_in C";
  EXPECT_EQ(prefill(xv, w.data(), make_view(static_cast<const float*>(st.data()), B, C, K + 1), {}, ov),
            Status::kErrorInvalidArgument)
      << "state_in K";
  EXPECT_EQ(prefill(xv, w.data(), {}, make_view(st.data(), B - 1, C, K), ov), Status::kErrorInvalidArgument)
      << "state_out has fewer slots than B";
  EXPECT_EQ(prefill(xv, w.data(), {}, make_view(st.data(), B, C, K), ov), Status::kSuccess);

  std::vector<int8_t> xq(x.size(), 1), outq(x.size()), wq(w.size(), 1);
  EXPECT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, L, C), nullptr, K, nullptr, i8_scales(), {}, {},
                              make_view(outq.data(), B, L, C)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(conv1d_prefill_i8(make_view(xq.data(), B, L, C), wq.data(), K, nullptr, i8_scales(), {}, {},
                              make_view(outq.data(), B + 1, L, C)),
            Status::kErrorInvalidArgument);

  // Decode.
  auto x2 = make_view(static_cast<const float*>(x.data()), B, C);
  auto s3 = make_view(st.data(), B, C, K);
  EXPECT_EQ(conv1d_update(x2, s3, nullptr, w.data(), K, nullptr, true, make_view(out.data(), B, C)), Status::kSuccess);
  EXPECT_EQ(conv1d_update(x2, s3, nullptr, nullptr, K, nullptr, true, make_view(out.data(), B, C)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(conv1d_update(x2, s3, nullptr, w.data(), K, nullptr, true, make_view(out.data(), B, C + 1)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(conv1d_update(x2, make_view(st.data(), B, C + 1, K), nullptr, w.data(), K, nullptr, true,
                          make_view(out.data(), B, C)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(conv1d_update(x2, make_view(static_cast<float*>(nullptr), B, C, K), nullptr, w.data(), K, nullptr, true,
                          make_view(out.data(), B, C)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(conv1d_update_i8(make_view(xq.data(), B, C), make_view(static_cast<int8_t*>(nullptr), B, C, K), nullptr,
                             wq.data(), K, nullptr, i8_scales(), make_view(outq.data(), B, C)),
            Status::kErrorInvalidArgument);
}
