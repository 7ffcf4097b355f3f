#include "apps/trainer/model_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>

#include "engine/core/error.h"
#include "engine/io/atomic_file.h"

namespace nnr {

namespace {

const std::string kTag = "[model dir] ";

std::string errno_text(int e) { return std::strerror(e); }

// "a/b///" -> "a/b"; "/" stays "/".
std::string clean(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d;
}

std::string join(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A positive decimal integer without leading zeros that fits int64_t.
bool parse_version(const std::string& name, int64_t* out) {
  if (name.empty() || name.size() > 19 || name[0] == '0') return false;
  int64_t value = 0;
  for (const char c : name) {
    if (c < '0' || c > '9') return false;
    const int digit = c - '0';
    if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int release() {
    const int f = fd;
    fd = -1;
    return f;
  }
};

struct Dir {
  DIR* d;
  explicit Dir(DIR* p) : d(p) {}
  ~Dir() {
    if (d) ::closedir(d);
  }
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
};

// The entry names of `path` (without "." and ".."). Throws nnr::Error.
std::vector<std::string> read_names(const std::string& path) {
  Dir dir(::opendir(path.c_str()));
  if (!dir.d) {
    const int e = errno;
    throw Error(kTag + "cannot read " + path + ": " + errno_text(e));
  }
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir.d);
    if (!entry) {
      const int e = errno;
      if (e != 0) throw Error(kTag + "cannot read " + path + ": " + errno_text(e));
      break;
    }
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  return names;
}

void fsync_path(const std::string& path, bool is_dir, const std::string& context) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (is_dir ? O_DIRECTORY : 0));
  if (fd < 0) {
    const int e = errno;
    throw Error(kTag + context + ": cannot open " + path + " to fsync it: " + errno_text(e));
  }
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  // Some file systems refuse fsync on a directory (EINVAL); there is nothing more to do there.
  if (rc != 0 && !(is_dir && e == EINVAL)) throw Error(kTag + context + ": fsync of " + path + ": " + errno_text(e));
}

// fsyncs every regular file and folder below `path` (not `path` itself); symlinks and other
// entries are left alone.
void sync_contents(const std::string& path, const std::string& context) {
  for (const std::string& name : read_names(path)) {
    const std::string child = join(path, name);
    struct stat st {};
    if (::lstat(child.c_str(), &st) != 0) {
      const int e = errno;
      throw Error(kTag + context + ": cannot stat " + child + ": " + errno_text(e));
    }
    if (S_ISDIR(st.st_mode)) {
      sync_contents(child, context);
      fsync_path(child, true, context);
    } else if (S_ISREG(st.st_mode)) {
      fsync_path(child, false, context);
    }
  }
}

// Removes `path` and, for a real folder (symlinks are not followed), everything below it.
// A path that is already gone is fine. Throws nnr::Error.
void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    const int e = errno;
    if (e == ENOENT) return;
    throw Error(kTag + "cannot remove " + path + ": " + errno_text(e));
  }
  if (S_ISDIR(st.st_mode)) {
    for (const std::string& name : read_names(path)) remove_tree(join(path, name));
    if (::rmdir(path.c_str()) != 0) {
      const int e = errno;
      if (e != ENOENT) throw Error(kTag + "cannot remove " + path + ": " + errno_text(e));
    }
  } else if (::unlink(path.c_str()) != 0) {
    const int e = errno;
    if (e != ENOENT) throw Error(kTag + "cannot remove " + path + ": " + errno_text(e));
  }
}

// Throws nnr::InvalidArgument if `dir` exists and is not a folder (or a parent is a file).
// Returns false if it does not exist.
bool existing_dir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    const int e = errno;
    if (e == ENOENT) return false;
    if (e == ENOTDIR) throw InvalidArgument(kTag + dir + " is not a directory: " + errno_text(e));
    throw Error(kTag + "cannot read " + dir + ": " + errno_text(e));
  }
  if (!S_ISDIR(st.st_mode)) throw InvalidArgument(kTag + dir + " is not a directory");
  return true;
}

// mkdir -p, fsyncing the parent of every folder it creates so the new folders survive a crash.
void make_dirs(const std::string& dir) {
  if (existing_dir(dir)) return;
  size_t pos = 0;
  for (;;) {
    pos = dir.find('/', pos + 1);
    const std::string prefix = dir.substr(0, pos);
    if (!prefix.empty()) {
      if (::mkdir(prefix.c_str(), 0777) == 0) {
        fsync_path(parent_of(prefix), true, "cannot create " + dir);
      } else {
        const int e = errno;
        if (e != EEXIST) throw Error(kTag + "cannot create " + dir + ": mkdir " + prefix + ": " + errno_text(e));
        struct stat st {};
        if (::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
          throw InvalidArgument(kTag + "cannot create " + dir + ": " + prefix + " exists and is not a directory");
      }
    }
    if (pos == std::string::npos) break;
  }
}

// An exclusive, non-blocking flock on DIR/.lock; returns its descriptor.
int take_lock(const std::string& dir) {
  const std::string lock = join(dir, kModelDirLock);
  Fd fd(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.fd < 0) {
    const int e = errno;
    throw Error(kTag + "cannot open the lock file " + lock + ": " + errno_text(e));
  }
  for (;;) {
    if (::flock(fd.fd, LOCK_EX | LOCK_NB) == 0) break;
    const int e = errno;
    if (e == EINTR) continue;
    if (e == EWOULDBLOCK) throw Error(kTag + dir + " is being written by another process (lock " + lock + ")");
    throw Error(kTag + "cannot lock " + lock + ": " + errno_text(e));
  }
  return fd.release();
}

// Caller holds the lock.
void remove_stale_locked(const std::string& dir) {
  for (const std::string& name : read_names(dir)) {
    if (!is_temporary_version_name(name)) continue;
    const std::string path = join(dir, name);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    remove_tree(path);
  }
}

std::string random_suffix() {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device device;
  std::mt19937_64 gen((static_cast<uint64_t>(device()) << 32) ^ device());
  std::uniform_int_distribution<size_t> pick(0, sizeof(kChars) - 2);
  std::string s(8, 'x');
  for (char& c : s) c = kChars[pick(gen)];
  return s;
}

}  // namespace

bool is_temporary_version_name(const std::string& name) {
  const std::string prefix = ".tmp-";
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  size_t i = prefix.size();
  for (int field = 0; field < 2; ++field) {
    const size_t start = i;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
    if (i == start || i >= name.size() || name[i] != '-') return false;
    ++i;
  }
  if (i >= name.size()) return false;
  for (; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum) return false;
  }
  return true;
}

std::vector<int64_t> list_versions(const std::string& dir_in) {
  const std::string dir = clean(dir_in);
  if (dir.empty()) throw InvalidArgument(kTag + "empty directory path");
  if (!existing_dir(dir)) return {};
  std::vector<int64_t> versions;
  for (const std::string& name : read_names(dir)) {
    int64_t number = 0;
    if (!parse_version(name, &number)) continue;
    const std::string folder = join(dir, name);
    struct stat st {};
    if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;  // gone, or a file
    const std::string marker = join(folder, kModelVersionMarker);
    if (::stat(marker.c_str(), &st) != 0) {
      const int e = errno;
      if (e == ENOENT || e == ENOTDIR) continue;  // not a whole version
      throw Error(kTag + "cannot read " + marker + ": " + errno_text(e));
    }
    if (S_ISREG(st.st_mode)) versions.push_back(number);
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

std::optional<ModelVersion> newest_version(const std::string& dir_in) {
  const std::vector<int64_t> versions = list_versions(dir_in);
  if (versions.empty()) return std::nullopt;
  return ModelVersion{versions.back(), join(clean(dir_in), std::to_string(versions.back()))};
}

void remove_stale_temporaries(const std::string& dir_in) {
  const std::string dir = clean(dir_in);
  if (dir.empty()) throw InvalidArgument(kTag + "empty directory path");
  if (!existing_dir(dir)) return;
  Fd lock(take_lock(dir));
  remove_stale_locked(dir);
}

VersionWriter::VersionWriter(const std::string& dir) : dir_(clean(dir)) {
  if (dir_.empty()) throw InvalidArgument(kTag + "empty directory path");
  make_dirs(dir_);
  lock_fd_ = take_lock(dir_);
  try {
    remove_stale_locked(dir_);
    const std::optional<ModelVersion> newest = newest_version(dir_);
    const int64_t n = newest ? newest->number : 0;
    if (n == std::numeric_limits<int64_t>::max())
      throw Error(kTag + "cannot write a new version in " + dir_ + ": version " + std::to_string(n) + " is the last");
    number_ = n + 1;
    // mkdir (not mkdtemp) so the folder gets the usual permissions (0777 less the umask), which
    // the renamed version keeps; a serving process under another user can then read it.
    const std::string stem = join(dir_, ".tmp-" + std::to_string(number_) + "-" + std::to_string(::getpid()) + "-");
    for (int attempt = 0;; ++attempt) {
      const std::string candidate = stem + random_suffix();
      if (::mkdir(candidate.c_str(), 0777) == 0) {
        temp_ = candidate;
        break;
      }
      const int e = errno;
      if (e != EEXIST || attempt >= 100)
        throw Error(kTag + "cannot create a temporary folder in " + dir_ + ": " + errno_text(e));
    }
  } catch (...) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    throw;
  }
}

VersionWriter::~VersionWriter() {
  if (!done_) abandon();
}

void VersionWriter::abandon() noexcept {
  if (!temp_.empty()) {
    try {
      remove_tree(temp_);
    } catch (...) {
      // Best effort; the next writer removes what is left (it is a temporary by name).
    }
    temp_.clear();
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
  done_ = true;
}

std::string VersionWriter::file(const std::string& name) const {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
    throw InvalidArgument(kTag + "bad file name \"" + name + "\" for a version of " + dir_ + ": expected a plain file name");
  if (name == kModelVersionMarker)
    throw InvalidArgument(kTag + "the file name " + name + " is reserved for the completion marker of a version");
  return join(temp_, name);
}

ModelVersion VersionWriter::commit() {
  if (done_) throw Error(kTag + "version writer for " + dir_ + " has already committed or failed");
  const std::string number = std::to_string(number_);
  const std::string context = "cannot commit version " + number + " of " + dir_;
  const std::string target = join(dir_, number);
  try {
    sync_contents(temp_, context);

    // The marker goes last: a folder holding it is complete.
    const std::string marker = join(temp_, kModelVersionMarker);
    {
      Fd fd(::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      if (fd.fd < 0) {
        const int e = errno;
        if (e == EEXIST)
          throw Error(kTag + context + ": " + marker + " was written by the caller; the name " + kModelVersionMarker +
                      " is reserved for the completion marker");
        throw Error(kTag + context + ": cannot create " + marker + ": " + errno_text(e));
      }
      const std::string text = number + "\n";
      write_all(fd.fd, text.data(), text.size(), kTag + context + ": cannot write " + marker);
      if (::fsync(fd.fd) != 0) {
        const int e = errno;
        throw Error(kTag + context + ": fsync of " + marker + ": " + errno_text(e));
      }
      const int f = fd.release();
      if (::close(f) != 0) {
        const int e = errno;
        throw Error(kTag + context + ": close of " + marker + ": " + errno_text(e));
      }
    }
    fsync_path(temp_, true, context);

    const std::string exists = kTag + context + ": " + target +
                               " already exists (written meanwhile by another writer?); not overwriting it";
    // RENAME_NOREPLACE: rename(2) alone would silently replace an empty folder at the target.
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
      const int e = errno;
      if (e == EEXIST) throw Error(exists);
      if (e != EINVAL && e != ENOSYS) throw Error(kTag + context + ": rename of " + temp_ + " to " + target + ": " + errno_text(e));
      // The file system cannot do RENAME_NOREPLACE: check, then rename (we hold the lock, so only
      // a writer that ignores it could slip in between).
      struct stat st {};
      if (::lstat(target.c_str(), &st) == 0) throw Error(exists);
      if (::rename(temp_.c_str(), target.c_str()) != 0) {
        const int e2 = errno;
        if (e2 == EEXIST || e2 == ENOTEMPTY) throw Error(exists);
        throw Error(kTag + context + ": rename of " + temp_ + " to " + target + ": " + errno_text(e2));
      }
    }
    temp_.clear();  // it is the version now
    // Make the rename durable. The version is whole and in place by now, so a failure here is
    // reported but has damaged nothing.
    fsync_path(dir_, true, "version " + number + " of " + dir_ + " is in place but may not survive a crash");
  } catch (...) {
    abandon();
    throw;
  }
  abandon();  // releases the lock (temp_ is empty)
  return ModelVersion{number_, target};
}

ModelVersion write_version(const std::string& dir, const std::function<void(const std::string& temp_path)>& write) {
  VersionWriter writer(dir);
  write(writer.temp_path());
  return writer.commit();
}

}  // namespace nnr
