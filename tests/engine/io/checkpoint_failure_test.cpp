// Writes that fail part-way must leave the previous checkpoint intact and no temporary file
// behind. A full disk is simulated two ways without root: RLIMIT_FSIZE makes the kernel refuse
// writes past a size (EFBIG) in the middle of the real save path, and /dev/full returns ENOSPC
// for the low-level writer.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>

#include "engine/core/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "tests/engine/data/temp_dir.h"

using nnr::Shape;
using nnr::Tensor;
using nnr::test::TempDir;

namespace {

// Lowers the file-size limit for the current process and restores it on scope exit. SIGXFSZ
// would kill the process at the limit; ignored, the write fails with EFBIG instead.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lower = saved_;
    lower.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lower) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir); it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}

}  // namespace

TEST_CASE("a checkpoint write that fails half-way leaves the previous file intact", "[checkpoint]") {
  TempDir dir;
  const std::string p = dir.file("model.safetensors");
  Tensor small = Tensor::from_vector({2}, {1.0f, 2.0f});
  nnr::save_checkpoint(p, {{"0.bias", &small}}, {});
  const auto before = nnr::test::read_bytes(p);

  Tensor big(Shape{256, 256});  // 256 KiB of data: the limit below cuts it off mid-tensor
  big.fill(0.5f);
  {
    FileSizeLimit limit(64 * 1024);
    REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, {{"0.weight", &big}}, {}),
                        Catch::StartsWith("[checkpoint] cannot write " + p) && Catch::Contains("File too large"));
  }
  REQUIRE(nnr::test::read_bytes(p) == before);
  REQUIRE(files_in(dir.path()) == 1);  // the temporary file was removed
  nnr::Checkpoint ck = nnr::load_checkpoint(p);
  REQUIRE(ck.find("0.bias")->to_vector() == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("a full disk is reported as such, naming the file", "[checkpoint]") {
  const int fd = ::open("/dev/full", O_WRONLY);
  if (fd < 0) {
    WARN("/dev/full is not available here; the ENOSPC message is not checked");
    return;
  }
  const std::vector<uint8_t> bytes(4096, 1);
  REQUIRE_THROWS_WITH(nnr::write_all(fd, bytes.data(), bytes.size(), "[checkpoint] cannot write m.safetensors"),
                      Catch::Equals("[checkpoint] cannot write m.safetensors: No space left on device"));
  ::close(fd);
}

TEST_CASE("atomic write replaces the file and keeps its permissions", "[checkpoint]") {
  TempDir dir;
  const std::string p = dir.file("f.bin");
  const char first[] = "first", second[] = "second!";
  nnr::write_file_atomically(p, {{first, 5}}, "test");
  REQUIRE(::chmod(p.c_str(), 0640) == 0);
  nnr::write_file_atomically(p, {{second, 3}, {second + 3, 4}}, "test");
  const auto bytes = nnr::test::read_bytes(p);
  REQUIRE(std::string(bytes.begin(), bytes.end()) == "second!");
  REQUIRE(
      (std::filesystem::status(p).permissions() & std::filesystem::perms::all) ==
      (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write | std::filesystem::perms::group_read));
  REQUIRE(files_in(dir.path()) == 1);
}
