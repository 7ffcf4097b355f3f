// An LD_PRELOAD shim that makes one kind of file-system call fail on nnr's temporary files, for
// tests/apps/io_fault_test.cpp. NNR_IO_FAULT names the call:
//   fsync   fsync/fdatasync of a file whose path contains ".tmp-" fails with EIO
//   write   write(2) to such a file fails with ENOSPC
//   rename  rename(2) from such a path fails with EROFS
// Every other call, and every call while NNR_IO_FAULT is unset, goes to the C library. Each
// injected failure is counted on stderr ("io_fault_shim: failing fsync ...") so that a test can
// tell a fault that was injected from one that never happened.
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace {

bool fault_is(const char* call) {
  const char* want = getenv("NNR_IO_FAULT");
  return want && strcmp(want, call) == 0;
}

bool is_temporary(const char* path) { return path && strstr(path, ".tmp-") != nullptr; }

bool fd_is_temporary(int fd) {
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  return is_temporary(target);
}

void announce(const char* call, const char* what) {
  char line[512];
  const int n = snprintf(line, sizeof line, "io_fault_shim: failing %s of %s\n", call, what);
  using WriteFn = ssize_t (*)(int, const void*, size_t);
  static WriteFn real_write = reinterpret_cast<WriteFn>(dlsym(RTLD_NEXT, "write"));
  if (n > 0 && real_write) (void)real_write(2, line, static_cast<size_t>(n) < sizeof line ? n : sizeof line - 1);
}

template <class Fn>
Fn next(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" {

int fsync(int fd) {
  if (fault_is("fsync") && fd_is_temporary(fd)) {
    announce("fsync", "a temporary file");
    errno = EIO;
    return -1;
  }
  static auto real = next<int (*)(int)>("fsync");
  return real(fd);
}

int fdatasync(int fd) {
  if (fault_is("fsync") && fd_is_temporary(fd)) {
    announce("fdatasync", "a temporary file");
    errno = EIO;
    return -1;
  }
  static auto real = next<int (*)(int)>("fdatasync");
  return real(fd);
}

ssize_t write(int fd, const void* data, size_t size) {
  if (fd > 2 && fault_is("write") && fd_is_temporary(fd)) {
    announce("write", "a temporary file");
    errno = ENOSPC;
    return -1;
  }
  static auto real = next<ssize_t (*)(int, const void*, size_t)>("write");
  return real(fd, data, size);
}

int rename(const char* from, const char* to) {
  if (fault_is("rename") && is_temporary(from)) {
    announce("rename", from);
    errno = EROFS;
    return -1;
  }
  static auto real = next<int (*)(const char*, const char*)>("rename");
  return real(from, to);
}

}  // extern "C"
