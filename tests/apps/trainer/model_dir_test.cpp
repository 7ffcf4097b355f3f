// Versioned model directories (DIR/<n>/...): listing whole versions only, writing a version
// atomically, cleaning up after failed and killed writers, never overwriting a version, and the
// flock that keeps two writing processes apart.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/trainer/model_dir.h"
#include "engine/core/error.h"

namespace {

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/nnr_model_dir_XXXXXX";
    if (!::mkdtemp(&tmpl[0])) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void make_dir(const std::string& path) { REQUIRE(::mkdir(path.c_str(), 0755) == 0); }

// A whole version made by hand, as another writer would leave it.
void make_version(const std::string& dir, int64_t n, const std::string& model = "model") {
  const std::string folder = dir + "/" + std::to_string(n);
  make_dir(folder);
  write_text(folder + "/model.safetensors", model);
  write_text(folder + "/VERSION", std::to_string(n) + "\n");
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool has_temporary(const std::string& dir) {
  for (const std::string& name : names_in(dir))
    if (name.rfind(".tmp-", 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("list_versions: whole versions only, in numeric order", "[model_dir]") {
  TempDir tmp;
  const std::string dir = tmp.path + "/models";

  SECTION("a missing folder has no versions") {
    CHECK(nnr::list_versions(dir).empty());
    CHECK_FALSE(nnr::newest_version(dir).has_value());
    CHECK_FALSE(exists(dir));  // reading creates nothing
  }

  SECTION("numbers sort numerically and everything else is ignored") {
    make_dir(dir);
    make_version(dir, 10);
    make_version(dir, 2);
    make_version(dir, 9);
    make_dir(dir + "/11");                        // no marker: being written by hand, or broken
    write_text(dir + "/11/model.safetensors", "half");
    make_dir(dir + "/007");                       // leading zeros
    write_text(dir + "/007/VERSION", "7\n");
    make_dir(dir + "/0");                         // not positive
    write_text(dir + "/0/VERSION", "0\n");
    make_dir(dir + "/latest");
    write_text(dir + "/latest/VERSION", "1\n");
    make_dir(dir + "/99999999999999999999");      // does not fit int64
    write_text(dir + "/99999999999999999999/VERSION", "x\n");
    write_text(dir + "/12", "a file, not a folder");
    make_dir(dir + "/13");
    make_dir(dir + "/13/VERSION");                // the marker must be a file
    make_dir(dir + "/.tmp-14-123-abcdef");        // a writer's temporary, even with a marker
    write_text(dir + "/.tmp-14-123-abcdef/VERSION", "14\n");
    write_text(dir + "/README", "notes");

    CHECK(nnr::list_versions(dir) == std::vector<int64_t>{2, 9, 10});
    CHECK(nnr::list_versions(dir + "/") == std::vector<int64_t>{2, 9, 10});
    const auto newest = nnr::newest_version(dir);
    REQUIRE(newest.has_value());
    CHECK(newest->number == 10);
    CHECK(newest->path == dir + "/10");
  }

  SECTION("a folder with no versions") {
    make_dir(dir);
    CHECK(nnr::list_versions(dir).empty());
    CHECK_FALSE(nnr::newest_version(dir).has_value());
  }
}

TEST_CASE("temporary folder names", "[model_dir]") {
  CHECK(nnr::is_temporary_version_name(".tmp-3-1234-aZ09xy"));
  CHECK(nnr::is_temporary_version_name(".tmp-1-1-a"));
  CHECK_FALSE(nnr::is_temporary_version_name(".tmp-3-1234-"));
  CHECK_FALSE(nnr::is_temporary_version_name(".tmp-3-abc-xyz"));
  CHECK_FALSE(nnr::is_temporary_version_name(".tmp--1234-xyz"));
  CHECK_FALSE(nnr::is_temporary_version_name(".tmp-3-1234-xy.z"));
  CHECK_FALSE(nnr::is_temporary_version_name(".tmp-mine"));
  CHECK_FALSE(nnr::is_temporary_version_name("tmp-3-1234-xyz"));
  CHECK_FALSE(nnr::is_temporary_version_name("3"));
  CHECK_FALSE(nnr::is_temporary_version_name(".lock"));
}

TEST_CASE("VersionWriter creates the folder and writes version 1, then 2", "[model_dir]") {
  TempDir tmp;
  const std::string dir = tmp.path + "/a/b/models";  // parents missing too

  {
    nnr::VersionWriter writer(dir);
    CHECK(writer.number() == 1);
    CHECK(writer.dir() == dir);
    CHECK(exists(writer.temp_path()));
    CHECK(writer.temp_path().rfind(dir + "/.tmp-1-", 0) == 0);
    CHECK(nnr::list_versions(dir).empty());  // nothing visible before commit
    write_text(writer.file("model.safetensors"), "weights one");
    write_text(writer.file("state.safetensors"), "state one");
    const nnr::ModelVersion v = writer.commit();
    CHECK(v.number == 1);
    CHECK(v.path == dir + "/1");
    CHECK_THROWS_WITH(writer.commit(), Catch::Contains("already committed"));
  }
  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1});
  CHECK(read_text(dir + "/1/model.safetensors") == "weights one");
  CHECK(read_text(dir + "/1/state.safetensors") == "state one");
  CHECK(read_text(dir + "/1/VERSION") == "1\n");
  CHECK(names_in(dir + "/1") == std::vector<std::string>{"VERSION", "model.safetensors", "state.safetensors"});

  // The callback form, with a subfolder in the version.
  const nnr::ModelVersion v2 = nnr::write_version(dir + "/", [](const std::string& temp) {
    write_text(temp + "/model.safetensors", "weights two");
    REQUIRE(::mkdir((temp + "/extra").c_str(), 0755) == 0);
    write_text(temp + "/extra/notes.txt", "hi");
  });
  CHECK(v2.number == 2);
  CHECK(v2.path == dir + "/2");
  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1, 2});
  CHECK(read_text(dir + "/2/model.safetensors") == "weights two");
  CHECK(read_text(dir + "/2/extra/notes.txt") == "hi");
  CHECK(read_text(dir + "/1/model.safetensors") == "weights one");  // untouched
  CHECK(nnr::newest_version(dir)->number == 2);
  // Only the versions and the lock file remain.
  CHECK(names_in(dir) == std::vector<std::string>{".lock", "1", "2"});

  // Numbering follows the newest whole version, not the count.
  make_version(dir, 10);
  nnr::VersionWriter writer(dir);
  CHECK(writer.number() == 11);
}

TEST_CASE("VersionWriter: file names are checked", "[model_dir]") {
  TempDir tmp;
  nnr::VersionWriter writer(tmp.path);
  CHECK(writer.file("model.safetensors") == writer.temp_path() + "/model.safetensors");
  CHECK_THROWS_AS(writer.file(""), nnr::InvalidArgument);
  CHECK_THROWS_AS(writer.file("a/b"), nnr::InvalidArgument);
  CHECK_THROWS_AS(writer.file(".."), nnr::InvalidArgument);
  CHECK_THROWS_WITH(writer.file("VERSION"), Catch::Contains("reserved"));
}

TEST_CASE("VersionWriter: no commit leaves no trace", "[model_dir]") {
  TempDir tmp;
  const std::string dir = tmp.path + "/models";
  make_dir(dir);
  make_version(dir, 1, "old");

  SECTION("an exception before commit") {
    std::string temp;
    try {
      nnr::VersionWriter writer(dir);
      temp = writer.temp_path();
      write_text(writer.file("model.safetensors"), "half written");
      throw std::runtime_error("training diverged");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "training diverged");
    }
    CHECK_FALSE(temp.empty());
    CHECK_FALSE(exists(temp));
  }

  SECTION("the callback throws") {
    CHECK_THROWS_WITH(nnr::write_version(dir,
                                         [](const std::string& temp) {
                                           write_text(temp + "/model.safetensors", "half");
                                           throw nnr::Error("out of memory");
                                         }),
                      "out of memory");
  }

  SECTION("an early return") {
    nnr::VersionWriter writer(dir);
    write_text(writer.file("model.safetensors"), "half");
  }

  SECTION("the caller wrote the marker itself: commit fails and cleans up") {
    nnr::VersionWriter writer(dir);
    write_text(writer.temp_path() + "/VERSION", "2\n");
    CHECK_THROWS_WITH(writer.commit(), Catch::Contains("reserved for the completion marker"));
    CHECK_FALSE(exists(writer.temp_path()));
  }

  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1});
  CHECK(names_in(dir) == std::vector<std::string>{".lock", "1"});
  CHECK_FALSE(has_temporary(dir));
  CHECK(read_text(dir + "/1/model.safetensors") == "old");
  // The lock was released: the next writer gets version 2.
  nnr::VersionWriter next(dir);
  CHECK(next.number() == 2);
}

TEST_CASE("a killed writer's temporary folder is ignored, then removed by the next writer", "[model_dir]") {
  TempDir tmp;
  const std::string dir = tmp.path + "/models";
  make_dir(dir);
  make_version(dir, 1);
  // As left by a writer killed mid-write (no marker) and one killed just before the rename.
  const std::string stale1 = dir + "/.tmp-2-4242-Ab12cd";
  const std::string stale2 = dir + "/.tmp-2-4343-zzzzzz";
  make_dir(stale1);
  write_text(stale1 + "/model.safetensors", "partial");
  make_dir(stale2);
  make_dir(stale2 + "/sub");
  write_text(stale2 + "/sub/x", "x");
  write_text(stale2 + "/VERSION", "2\n");
  // Not ours: names outside the pattern, and a matching name that is a file, stay.
  make_dir(dir + "/.tmp-mine");
  write_text(dir + "/.tmp-3-1-notadir", "file");

  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1});
  CHECK(nnr::newest_version(dir)->number == 1);

  {
    nnr::VersionWriter writer(dir);
    CHECK_FALSE(exists(stale1));
    CHECK_FALSE(exists(stale2));
    CHECK(writer.number() == 2);
    write_text(writer.file("model.safetensors"), "two");
    writer.commit();
  }
  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1, 2});
  CHECK(names_in(dir) == std::vector<std::string>{".lock", ".tmp-3-1-notadir", ".tmp-mine", "1", "2"});

  // The standalone form does the same.
  make_dir(stale1);
  write_text(stale1 + "/model.safetensors", "partial");
  nnr::remove_stale_temporaries(dir);
  CHECK_FALSE(exists(stale1));
  CHECK(exists(dir + "/.tmp-mine"));
  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1, 2});
  nnr::remove_stale_temporaries(tmp.path + "/missing");  // nothing to do
  CHECK_FALSE(exists(tmp.path + "/missing"));
}

TEST_CASE("remove_stale_temporaries does not touch a live writer's folder", "[model_dir]") {
  TempDir tmp;
  nnr::VersionWriter writer(tmp.path);
  write_text(writer.file("model.safetensors"), "live");
  CHECK_THROWS_WITH(nnr::remove_stale_temporaries(tmp.path), Catch::Contains("is being written by another process"));
  CHECK(exists(writer.temp_path() + "/model.safetensors"));
  CHECK(writer.commit().number == 1);
}

TEST_CASE("commit refuses when the version appeared meanwhile", "[model_dir]") {
  TempDir tmp;
  const std::string dir = tmp.path + "/models";

  SECTION("a whole version") {
    nnr::VersionWriter writer(dir);
    REQUIRE(writer.number() == 1);
    write_text(writer.file("model.safetensors"), "mine");
    // Another writer that ignores the lock finishes version 1 first.
    make_version(dir, 1, "theirs");
    write_text(dir + "/1/state.safetensors", "their state");
    const std::string temp = writer.temp_path();
    CHECK_THROWS_AS(writer.commit(), nnr::Error);
    CHECK_FALSE(exists(temp));
    CHECK(read_text(dir + "/1/model.safetensors") == "theirs");
    CHECK(read_text(dir + "/1/state.safetensors") == "their state");
    CHECK(read_text(dir + "/1/VERSION") == "1\n");
    CHECK(names_in(dir + "/1") == std::vector<std::string>{"VERSION", "model.safetensors", "state.safetensors"});
  }

  SECTION("the message names the version's folder") {
    nnr::VersionWriter writer(dir);
    make_version(dir, 1, "theirs");
    CHECK_THROWS_WITH(writer.commit(), Catch::StartsWith("[model dir] ") && Catch::Contains(dir + "/1 already exists") &&
                                           Catch::Contains("not overwriting"));
  }

  SECTION("even an empty folder (plain rename(2) would replace it)") {
    nnr::VersionWriter writer(dir);
    write_text(writer.file("model.safetensors"), "mine");
    make_dir(dir + "/1");
    CHECK_THROWS_WITH(writer.commit(), Catch::Contains(dir + "/1 already exists"));
    CHECK(names_in(dir + "/1").empty());
  }

  CHECK_FALSE(has_temporary(dir));
}

TEST_CASE("the lock keeps a second writing process out", "[model_dir]") {
  TempDir tmp;
  const std::string dir = tmp.path + "/models";
  const std::string expected = "[model dir] " + dir + " is being written by another process (lock " + dir + "/.lock)";

  // Runs `body` in a forked child; its exit status is the result (0 = as expected).
  auto in_child = [](auto body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(body());
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
  };

  auto try_writer = [&dir, &expected]() -> int {
    try {
      nnr::VersionWriter second(dir);
      return 10;  // got the lock
    } catch (const nnr::Error& e) {
      return std::string(e.what()) == expected ? 0 : 11;
    } catch (...) {
      return 12;
    }
  };

  {
    nnr::VersionWriter writer(dir);
    write_text(writer.file("model.safetensors"), "one");
    CHECK(in_child(try_writer) == 0);
    CHECK(exists(writer.temp_path()));  // the child's failed attempt removed nothing
    writer.commit();
  }

  // Released after commit: a child writer now succeeds and writes version 2.
  CHECK(in_child([&dir]() -> int {
          try {
            nnr::VersionWriter second(dir);
            second.commit();
            return 0;
          } catch (...) {
            return 1;
          }
        }) == 0);
  CHECK(nnr::list_versions(dir) == std::vector<int64_t>{1, 2});

  // Released by the destructor too.
  {
    nnr::VersionWriter abandoned(dir);
    CHECK(in_child(try_writer) == 0);
  }
  CHECK(in_child([&dir]() -> int {
          try {
            nnr::VersionWriter second(dir);
            return second.number() == 3 ? 0 : 1;
          } catch (...) {
            return 2;
          }
        }) == 0);

  // And the message is exactly as documented, in this process too (a separate open of .lock).
  nnr::VersionWriter writer(dir);
  CHECK_THROWS_WITH(nnr::VersionWriter(dir), expected);
}

TEST_CASE("the model folder being a file is an error naming it", "[model_dir]") {
  TempDir tmp;
  const std::string file = tmp.path + "/models";
  write_text(file, "not a folder");

  CHECK_THROWS_AS(nnr::list_versions(file), nnr::InvalidArgument);
  CHECK_THROWS_WITH(nnr::list_versions(file), "[model dir] " + file + " is not a directory");
  CHECK_THROWS_AS(nnr::newest_version(file), nnr::InvalidArgument);
  CHECK_THROWS_AS(nnr::VersionWriter(file), nnr::InvalidArgument);
  CHECK_THROWS_WITH(nnr::VersionWriter(file), Catch::Contains(file));
  CHECK_THROWS_AS(nnr::remove_stale_temporaries(file), nnr::InvalidArgument);
  // Below a file: the parent is named.
  CHECK_THROWS_AS(nnr::list_versions(file + "/sub"), nnr::InvalidArgument);
  CHECK_THROWS_WITH(nnr::VersionWriter(file + "/sub"), Catch::Contains(file));
  CHECK(read_text(file) == "not a folder");
}

TEST_CASE("errors carry the OS reason", "[model_dir]") {
  {
    TempDir tmp;
    make_dir(tmp.path + "/.lock");  // the lock file cannot be opened for writing
    CHECK_THROWS_WITH(nnr::VersionWriter(tmp.path), Catch::StartsWith("[model dir] ") &&
                                                        Catch::Contains(tmp.path + "/.lock") &&
                                                        Catch::Contains("Is a directory"));
    CHECK(names_in(tmp.path) == std::vector<std::string>{".lock"});
  }
  if (::geteuid() == 0) {
    WARN("running as root: permissions are not enforced, skipped");
    return;
  }
  TempDir tmp;
  const std::string parent = tmp.path + "/ro";
  make_dir(parent);
  REQUIRE(::chmod(parent.c_str(), 0555) == 0);
  CHECK_THROWS_WITH(nnr::VersionWriter(parent + "/models"),
                    Catch::StartsWith("[model dir] ") && Catch::Contains(parent + "/models") &&
                        Catch::Contains("Permission denied"));
  CHECK_THROWS_WITH(nnr::VersionWriter(parent), Catch::Contains(parent + "/.lock") && Catch::Contains("Permission denied"));
  REQUIRE(::chmod(parent.c_str(), 0755) == 0);
}
