// tests/common/temp_dir.hpp: a per-test temporary directory, removed when the test ends, and a
// byte-exact file writer for tests that build their own input files.
#pragma once

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#if defined(__unix__)
#include <unistd.h>
#endif

namespace quamba::test {

class TempDir {
 public:
  // The directory name carries the prefix, the process id, a counter and the running test's
  // name, so parallel ctest processes never share one.
  explicit TempDir(const std::string& prefix = "quamba_test") {
    static std::atomic<int> counter{0};
    long long pid = 0;
#if defined(__unix__)
    pid = static_cast<long long>(::getpid());
#endif
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string tag = info ? std::string(info->test_suite_name()) + "_" + info->name() : "none";
    for (char& c : tag)
      if (c == '/') c = '_';
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(pid) + "_" + std::to_string(counter++) + "_" + tag);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Writes `bytes` to `path` exactly (binary, truncating).
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

}  // namespace quamba::test
