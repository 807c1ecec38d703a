// Device presence and architecture query (quamba/core/arch.hpp, cuda_check.hpp).
#include <gtest/gtest.h>

#include "common/cuda_utils.cuh"
#include "quamba/core/arch.hpp"
#include "quamba/core/cuda_check.hpp"

TEST(DeviceSmoke, ArchQuery) {
  QUAMBA_REQUIRE_GPU();
  quamba::DeviceInfo info;
  ASSERT_EQ(quamba::query_device(&info), quamba::Status::kSuccess);
  EXPECT_GE(info.arch, 50);
  EXPECT_GT(info.sm_count, 0);
  EXPECT_EQ(quamba::current_arch(), info.arch);
  EXPECT_EQ(quamba::query_device(nullptr), quamba::Status::kErrorInvalidArgument);
}
