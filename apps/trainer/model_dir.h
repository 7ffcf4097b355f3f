#pragma once
// Versioned model directories, the layout TF Serving and Triton read:
//
//   DIR/.lock                    flock(2) target; held by the one process writing a version
//   DIR/1/model.safetensors      a whole version: its files ...
//   DIR/1/VERSION                ... and the completion marker ("1\n"), written and fsynced last
//   DIR/2/...
//   DIR/.tmp-3-<pid>-<random>/   a version being written (or left by a killed writer)
//
// A version is a folder named by a positive decimal integer without leading zeros that holds the
// marker file. A new version is written into a temporary folder inside DIR, every file fsynced,
// the marker written last, and the folder renamed to DIR/<n> (then DIR fsynced), so a reader
// sees a whole version or none, whatever fails or crashes along the way. Readers take no lock.
//
// Errors are nnr::Error (nnr::InvalidArgument for a bad path) with messages that start with
// "[model dir] " and name the path and the OS reason.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace nnr {

// The completion marker inside every whole version; its content is the version number and a
// newline. A caller may not write a file of this name itself.
inline constexpr const char* kModelVersionMarker = "VERSION";
// The lock file inside DIR.
inline constexpr const char* kModelDirLock = ".lock";

struct ModelVersion {
  int64_t number;
  std::string path;  // DIR/<number>
};

// The whole versions in `dir`, increasing (numeric order: 2 before 10). Entries that are not a
// version-named folder holding the marker are ignored (temporaries, "007", "latest", files).
// A missing `dir` gives an empty list; `dir` being something other than a folder throws
// nnr::InvalidArgument naming it.
std::vector<int64_t> list_versions(const std::string& dir);

// The highest whole version, or nullopt when there is none (or `dir` does not exist).
std::optional<ModelVersion> newest_version(const std::string& dir);

// True for names of the form ".tmp-<digits>-<digits>-<letters and digits>", the temporary
// folders VersionWriter creates.
bool is_temporary_version_name(const std::string& name);

// Removes the temporary folders (names as above; real folders only, symlinks are not followed)
// left in `dir` by a writer that was killed. Takes DIR/.lock for the duration, so it fails with
// the "being written by another process" error instead of deleting a live writer's folder.
// Does nothing when `dir` does not exist.
void remove_stale_temporaries(const std::string& dir);

// Writes the next version of `dir`:
//
//   nnr::VersionWriter writer(dir);                      // locks, picks n+1, makes the temp folder
//   save_model(writer.file("model.safetensors"), ...);   // any files, into writer.temp_path()
//   nnr::ModelVersion v = writer.commit();               // DIR/<n+1> appears, whole
//
// The constructor creates `dir` (and its parents) if missing, takes an exclusive non-blocking
// flock on DIR/.lock (another writer holding it: nnr::Error "[model dir] DIR is being written by
// another process (lock DIR/.lock)"), removes stale temporaries, and creates the temporary folder
// for version n+1 (n = newest whole version, 0 if none). The lock is held until commit() returns
// or throws, or the writer is destroyed. Without a successful commit() (an exception, an early
// return) the temporary folder is removed and nothing is left behind.
class VersionWriter {
 public:
  explicit VersionWriter(const std::string& dir);
  ~VersionWriter();
  VersionWriter(const VersionWriter&) = delete;
  VersionWriter& operator=(const VersionWriter&) = delete;
  VersionWriter(VersionWriter&&) = delete;
  VersionWriter& operator=(VersionWriter&&) = delete;

  const std::string& dir() const { return dir_; }
  int64_t number() const { return number_; }            // the version commit() will create
  const std::string& temp_path() const { return temp_; }  // write the version's files here
  // temp_path() + "/" + name, after checking `name` is a plain file name (not empty, no '/',
  // not "." or "..", not the marker); nnr::InvalidArgument otherwise.
  std::string file(const std::string& name) const;

  // fsyncs every file (and folder) under the temporary folder, writes and fsyncs the marker,
  // fsyncs the temporary folder, renames it to DIR/<number()> and fsyncs DIR. Never replaces an
  // existing DIR/<number()> (even an empty folder): if one appeared meanwhile, throws nnr::Error
  // naming it. On any failure the temporary folder is removed and the lock released; the writer
  // is then spent (a second commit() throws).
  ModelVersion commit();

 private:
  void abandon() noexcept;  // removes the temporary folder (if any) and releases the lock

  std::string dir_;
  std::string temp_;
  int64_t number_ = 0;
  int lock_fd_ = -1;
  bool done_ = false;
};

// The callback form: VersionWriter w(dir); write(w.temp_path()); return w.commit();
ModelVersion write_version(const std::string& dir, const std::function<void(const std::string& temp_path)>& write);

}  // namespace nnr
