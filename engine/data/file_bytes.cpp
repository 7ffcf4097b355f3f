#include "engine/data/file_bytes.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "engine/core/error.h"

namespace nnr {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* op) {
  const std::string where = std::string("[") + op + "] " + path + ": ";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int error = errno;  // before the message's allocations can change it
    throw Error(where + "cannot open: " + std::strerror(error));
  }
  if (S_ISDIR(st.st_mode)) throw Error(where + "cannot open: is a directory, expected a file");
  errno = 0;
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (!file) {
    const int error = errno;
    throw Error(where + "cannot open: " + (error ? std::strerror(error) : "out of memory"));
  }
  gzbuffer(file.get(), 1 << 17);

  // A plain file decompresses to its own size: read it straight into a buffer of exactly that
  // size plus one byte (the read that sees the end), so it is neither reallocated nor copied.
  // Only gzip data outgrows it, and then the buffer doubles.
  constexpr size_t kChunk = size_t(1) << 20;  // bytes per gzread call
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size) + 1);
  size_t filled = 0;
  for (;;) {
    if (filled == bytes.size()) bytes.resize(bytes.size() + std::max(bytes.size(), kChunk));
    const unsigned want = static_cast<unsigned>(std::min(bytes.size() - filled, kChunk));
    const int got = gzread(file.get(), bytes.data() + filled, want);
    if (got < 0) {
      const int error = errno;
      int code = 0;
      const char* msg = gzerror(file.get(), &code);
      throw Error(where + "corrupt or truncated gzip data: " +
                  (code == Z_ERRNO ? std::strerror(error) : std::string(msg ? msg : "unknown error")));
    }
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  bytes.resize(filled);
  // gzread reports a gzip stream cut short as end-of-file plus an error flag, not as -1.
  int code = 0;
  const char* msg = gzerror(file.get(), &code);
  if (code != Z_OK && code != Z_STREAM_END)
    throw Error(where + "corrupt or truncated gzip data: " + std::string(msg ? msg : "unknown error"));
  return bytes;
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes, const char* op) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    const int error = errno;
    throw Error(std::string("[") + op + "] " + path + ": cannot write: " + std::strerror(error));
  }
  // No fwrite for an empty file: its data() may be null, which fwrite must not be given.
  const bool ok = (bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size()) && std::fflush(f) == 0;
  const int write_error = errno;
  const bool closed = std::fclose(f) == 0;
  const int close_error = errno;
  if (!closed || !ok)
    throw Error(std::string("[") + op + "] " + path + ": cannot write: " + std::strerror(ok ? close_error : write_error));
}

bool has_extension(const std::string& path, const std::string& suffix) {
  auto ends_with = [&](const std::string& s) {
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with(suffix) || ends_with(suffix + ".gz");
}

}  // namespace nnr
