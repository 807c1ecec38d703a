// Device presence, architecture query (quamba/core/arch.hpp, cuda_check.hpp), and the umbrella
// header: every public header compiles together in one CUDA translation unit.
#include <gtest/gtest.h>

#include "common/cuda_utils.cuh"
#include "quamba/quamba.cuh"

TEST(DeviceSmoke, ArchQuery) {
  QUAMBA_REQUIRE_GPU();
  quamba::DeviceInfo info;
  ASSERT_EQ(quamba::query_device(&info), quamba::Status::kSuccess);
  EXPECT_GE(info.arch, 50);
  EXPECT_GT(info.sm_count, 0);
  EXPECT_EQ(quamba::current_arch(), info.arch);
  EXPECT_EQ(quamba::query_device(nullptr), quamba::Status::kErrorInvalidArgument);
  EXPECT_EQ(quamba::check_min_arch(), info.arch >= 80 ? quamba::Status::kSuccess
                                                      : quamba::Status::kErrorArchNotSupported);
}

TEST(DeviceSmoke, LaunchErrorsBecomeStatus) {
  QUAMBA_REQUIRE_GPU();
  EXPECT_EQ(quamba::from_cuda(cudaSuccess), quamba::Status::kSuccess);
  EXPECT_EQ(quamba::from_cuda(cudaErrorInvalidValue), quamba::Status::kErrorCuda);
  EXPECT_EQ(quamba::last_launch_status(), quamba::Status::kSuccess);
}
