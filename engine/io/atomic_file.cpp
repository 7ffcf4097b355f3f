#include "engine/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/core/error.h"

namespace nnr {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

void write_all(int fd, const void* data, size_t size, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      const int e = errno;  // before the message's allocations can touch errno
      if (e == EINTR) continue;
      throw Error(what + ": " + errno_text(e));
    }
    if (n == 0) throw Error(what + ": write returned 0 bytes");
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces, const char* op) {
  const std::string fail = std::string("[") + op + "] cannot write " + path;
  if (path.empty() || path.back() == '/') throw InvalidArgument(fail + ": expected a file path");
  struct stat existing {};
  if (::stat(path.c_str(), &existing) == 0 && S_ISDIR(existing.st_mode)) throw Error(fail + ": it is a directory");

  const std::string dir = dir_of(path);
  // Same directory as the target, so rename(2) is atomic (one file system); hidden name so a
  // leftover from a killed process is not mistaken for a checkpoint.
  std::string tmp = dir + "/." + base_of(path) + ".tmp-XXXXXX";
  const int fd = ::mkstemp(&tmp[0]);
  if (fd < 0) {
    const int e = errno;
    throw Error(fail + ": cannot create a temporary file in " + dir + ": " + errno_text(e));
  }
  bool closed = false;
  try {
    const std::string while_writing = fail + " (temporary file " + tmp + ")";
    // mkstemp makes the file 0600; a replaced file keeps its mode, a new one gets rw-r--r--.
    const mode_t mode = existing.st_mode ? (existing.st_mode & 07777) : 0644;
    // Each errno is saved before the message is built: the concatenations allocate, and the
    // operands of + are evaluated in no fixed order.
    if (::fchmod(fd, mode) != 0) {
      const int e = errno;
      throw Error(while_writing + ": " + errno_text(e));
    }
    for (const ByteSpan& piece : pieces) write_all(fd, piece.data, piece.size, while_writing);
    // Without fsync a crash after the rename could leave the new name pointing at no data.
    if (::fsync(fd) != 0) {
      const int e = errno;
      throw Error(while_writing + ": fsync: " + errno_text(e));
    }
    closed = true;
    if (::close(fd) != 0) {
      const int e = errno;
      throw Error(while_writing + ": close: " + errno_text(e));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int e = errno;
      throw Error(fail + ": rename from " + tmp + ": " + errno_text(e));
    }
  } catch (...) {
    if (!closed) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable. The new file is complete and in place by now, so a failure
  // here is reported but cannot damage anything.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    const int rc = ::fsync(dfd);
    const int e = errno;
    ::close(dfd);
    if (rc != 0 && e != EINVAL) throw Error(fail + ": fsync of directory " + dir + ": " + errno_text(e));
  }
}

}  // namespace nnr
