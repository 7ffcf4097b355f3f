#pragma once
// Shared by the fuzz targets: hands libFuzzer's bytes to a parser through the same entry point
// the CLI uses (a path). The bytes go into one anonymous in-memory file (memfd_create) that the
// parser opens as /proc/self/fd/<n>, so nothing touches the disk and every run starts clean.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace nnr::fuzz {

inline std::string input_path(const uint8_t* data, size_t size) {
  static const int fd = [] {
    const int f = memfd_create("nnr-fuzz-input", 0);
    if (f < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    return f;
  }();
  if (ftruncate(fd, 0) != 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace nnr::fuzz
