#pragma once
// Crash-safe file replacement: the bytes go to a temporary file beside the target, which is
// fsynced and then renamed over it (and the directory fsynced), so a reader sees either the old
// file or the complete new one, never a half-written mix, whatever fails along the way.
#include <cstddef>
#include <string>
#include <vector>

namespace nnr {

struct ByteSpan {
  const void* data;
  size_t size;
};

// Replaces `path` with the concatenation of `pieces`. On any failure the temporary file is
// removed, `path` is left as it was, and nnr::Error "[op] cannot write <path>: <errno text> ..."
// is thrown (full disk reads "No space left on device").
void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces, const char* op);

// write(2) until all `size` bytes are written, retrying on EINTR and short writes. Throws
// nnr::Error "<what>: <errno text>" on failure.
void write_all(int fd, const void* data, size_t size, const std::string& what);

}  // namespace nnr
