#pragma once
// Whole-file reading shared by the data loaders. Files go through zlib's gz reader, which
// passes plain files through unchanged, so every format also loads gzip-compressed
// (train-images-idx3-ubyte.gz, x.npy.gz, data.csv.gz) without a separate code path.
#include <cstdint>
#include <string>
#include <vector>

namespace nnr {

// The (decompressed) bytes of `path`. Throws nnr::Error starting with "[op] path:" when the
// file cannot be opened or its gzip stream is corrupt or truncated.
std::vector<uint8_t> read_file_bytes(const std::string& path, const char* op);

// Writes `bytes` to `path` (plain, not atomic: for tests and tools, not checkpoints). Throws
// nnr::Error "[op] path: cannot write: <errno text>".
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes, const char* op);

// True when `path` ends with `suffix` (case-sensitive), or with `suffix` + ".gz".
bool has_extension(const std::string& path, const std::string& suffix);

}  // namespace nnr
