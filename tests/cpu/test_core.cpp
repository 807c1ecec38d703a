// Status, tensor views, static switches and workspace carving (quamba/core).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/core/workspace.hpp"

using namespace quamba;

TEST(Core, StatusNamesAreDistinct) {
  const Status all[] = {Status::kSuccess, Status::kErrorInvalidArgument, Status::kErrorNotSupported,
                        Status::kErrorMisaligned, Status::kErrorWorkspaceTooSmall, Status::kErrorArchNotSupported,
                        Status::kErrorCuda, Status::kErrorIo, Status::kErrorFormat, Status::kErrorOutOfRange,
                        Status::kErrorInternal};
  for (size_t i = 0; i < std::size(all); ++i)
    for (size_t j = i + 1; j < std::size(all); ++j) EXPECT_STRNE(to_string(all[i]), to_string(all[j]));
  EXPECT_STREQ(to_string(Status::kSuccess), "success");
  EXPECT_TRUE(ok(Status::kSuccess));
  EXPECT_FALSE(ok(Status::kErrorCuda));
}

static Status propagate(Status inner) {
  QUAMBA_RETURN_IF_ERROR(inner);
  return Status::kErrorInternal;  // reached only on success of `inner`
}

TEST(Core, ReturnIfError) {
  EXPECT_EQ(propagate(Status::kErrorIo), Status::kErrorIo);
  EXPECT_EQ(propagate(Status::kSuccess), Status::kErrorInternal);
}

TEST(Core, TensorViewStridedSlice) {
  // A (3, 8) buffer viewed as x = xz[:, :4] and z = xz[:, 4:]: token stride 8.
  std::vector<int> buf(24);
  for (int i = 0; i < 24; ++i) buf[i] = i;
  auto xz = make_view(buf.data(), 3, 8);
  auto x = xz.slice(1, 0, 4), z = xz.slice(1, 4, 4);
  EXPECT_EQ(x.stride[0], 8);
  EXPECT_EQ(x(2, 3), 19);
  EXPECT_EQ(z(1, 0), 12);
  EXPECT_TRUE(x.is_row_major_compatible());
  EXPECT_FALSE(x.is_contiguous());
  EXPECT_TRUE(xz.is_contiguous());
  EXPECT_EQ(x.numel(), 12);
  TensorView<const int, 2> cx = x;
  EXPECT_EQ(cx(0, 1), 1);
  auto t = make_view(buf.data(), 2, 3, 4);
  EXPECT_EQ(t(1, 2, 3), 23);
  const int64_t sh[2] = {4, 3}, st[2] = {1, 4};  // a transposed view is not row-major compatible
  EXPECT_FALSE(make_strided_view(buf.data(), sh, st).is_row_major_compatible());
}

TEST(Core, StaticSwitchEndsInNotSupported) {
  int seen = 0;
  auto body = [&](auto W) {
    seen = W.value;
    return Status::kSuccess;
  };
  EXPECT_EQ((dispatch_int<2, 3, 4>(3, body)), Status::kSuccess);
  EXPECT_EQ(seen, 3);
  seen = 0;
  EXPECT_EQ((dispatch_int<2, 3, 4>(5, body)), Status::kErrorNotSupported);
  EXPECT_EQ(seen, 0);
  EXPECT_EQ(dispatch_bool(true, [](auto B) { return B.value ? Status::kSuccess : Status::kErrorInternal; }),
            Status::kSuccess);
}

TEST(Core, WorkspacePlanAndCarve) {
  WorkspacePlan plan;
  plan.add<float>(10).add<int8_t>(1000).add<double>(3);
  const size_t bytes = plan.bytes();
  EXPECT_EQ(bytes % kWorkspaceAlignment, 0u);
  EXPECT_GE(bytes, 10 * 4 + 1000 + 24u);
  std::vector<char> mem(bytes + kWorkspaceAlignment);
  char* base = mem.data() + (kWorkspaceAlignment - reinterpret_cast<uintptr_t>(mem.data()) % kWorkspaceAlignment);
  WorkspaceCarver carve(base, bytes);
  float* a = carve.take<float>(10);
  int8_t* b = carve.take<int8_t>(1000);
  double* c = carve.take<double>(3);
  ASSERT_EQ(carve.status(), Status::kSuccess);
  EXPECT_TRUE(is_aligned(a, 256) && is_aligned(b, 256) && is_aligned(c, 256));
  EXPECT_LE(carve.used(), bytes);
  WorkspaceCarver small(base, 64);
  EXPECT_NE(small.take<float>(10), nullptr);
  EXPECT_EQ(small.take<float>(100), nullptr);
  EXPECT_EQ(small.status(), Status::kErrorWorkspaceTooSmall);
  WorkspaceCarver none(nullptr, 0);
  EXPECT_EQ(none.take<float>(0), nullptr);
  EXPECT_EQ(none.status(), Status::kSuccess);
}
