// The guest acquisition scripts: build-initramfs.sh produces an archive the kernel can unpack
// (newc, /dev/console, /init, busybox and its applets). Runs only when busybox is already cached
// by an earlier run of the script, so the unit tests never touch the network.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "loader_test_util.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;

struct CpioEntry {
  uint32_t mode = 0;
  uint32_t rdev_major = 0, rdev_minor = 0;
  std::string data;
};

// Parses concatenated newc archives (as the kernel does: zero padding between them is skipped).
std::map<std::string, CpioEntry> ParseNewc(const std::string& d) {
  std::map<std::string, CpioEntry> entries;
  size_t i = 0;
  auto hex = [&](size_t at) {
    return static_cast<uint32_t>(std::stoul(d.substr(at, 8), nullptr, 16));
  };
  while (i < d.size()) {
    if (d[i] == 0) {
      ++i;
      continue;
    }
    EXPECT_EQ(d.compare(i, 6, "070701"), 0) << "bad magic at " << i;
    if (d.compare(i, 6, "070701") != 0 || i + 110 > d.size()) break;
    CpioEntry e;
    e.mode = hex(i + 6 + 8 * 1);
    const uint32_t filesize = hex(i + 6 + 8 * 6);
    e.rdev_major = hex(i + 6 + 8 * 9);
    e.rdev_minor = hex(i + 6 + 8 * 10);
    const uint32_t namesize = hex(i + 6 + 8 * 11);
    std::string name = d.substr(i + 110, namesize - 1);
    i = (i + 110 + namesize + 3) & ~size_t{3};
    e.data = d.substr(i, filesize);
    i = (i + filesize + 3) & ~size_t{3};
    if (name != "TRAILER!!!") entries[name] = e;
  }
  return entries;
}

std::string Gunzip(const std::string& path) {
  if (RunCommand("gzip -dc " + path + " > " + path + ".raw") != 0) return {};
  Bytes raw = ReadFile(path + ".raw");
  return std::string(raw.begin(), raw.end());
}

TEST(GuestScripts, BuildInitramfsWithCustomInit) {
  const std::string repo = ROVE_SOURCE_DIR;
  const char* guest_env = std::getenv("ROVE_GUEST_DIR");
  const std::string guest_dir = guest_env ? guest_env : repo + "/build/guest";
  if (!std::filesystem::exists(guest_dir + "/busybox")) {
    GTEST_SKIP() << "busybox not cached; run scripts/build-initramfs.sh once";
  }
  if (!HaveTool("gzip")) GTEST_SKIP() << "gzip not installed";
  TempDir dir;
  const std::string init = dir.WriteText("my-init", "#!/bin/sh\necho custom init\npoweroff -f\n");
  const std::string out = dir.File("initramfs.cpio.gz");
  std::string log;
  const int rc = RunCommand("ROVE_GUEST_DIR=" + guest_dir + " ROVE_SHA_MIB=1 bash " + repo +
                                "/scripts/build-initramfs.sh --init " + init + " --out " + out,
                            &log);
  ASSERT_EQ(rc, 0) << log;
  auto entries = ParseNewc(Gunzip(out));
  ASSERT_TRUE(entries.count("init")) << log;
  EXPECT_EQ(entries["init"].data, "#!/bin/sh\necho custom init\npoweroff -f\n");
  EXPECT_EQ(entries["init"].mode & 0777, 0755u);
  ASSERT_TRUE(entries.count("dev/console"));
  EXPECT_EQ(entries["dev/console"].mode & 0170000, 0020000u) << "character device";
  EXPECT_EQ(entries["dev/console"].rdev_major, 5u);
  EXPECT_EQ(entries["dev/console"].rdev_minor, 1u);
  ASSERT_TRUE(entries.count("bin/busybox"));
  EXPECT_EQ(entries["bin/busybox"].data.compare(0, 4,
                                                "\x7F"
                                                "ELF"),
            0);
  for (const char* applet : {"bin/sh", "bin/mount", "sbin/poweroff", "bin/date"}) {
    ASSERT_TRUE(entries.count(applet)) << applet;
    EXPECT_EQ(entries[applet].mode & 0170000, 0120000u) << applet << " is a symlink";
    EXPECT_EQ(entries[applet].data, "/bin/busybox");
  }
  // sha256 of 1 MiB of zeros, as the default init checks it.
  EXPECT_EQ(entries["etc/rove/sha256-expected"].data,
            "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58\n");
  EXPECT_EQ(entries["etc/rove/sha256-mib"].data, "1\n");

  // Reproducible: the same inputs give the same bytes.
  const std::string out2 = dir.File("again.cpio.gz");
  ASSERT_EQ(RunCommand("ROVE_GUEST_DIR=" + guest_dir + " ROVE_SHA_MIB=1 bash " + repo +
                       "/scripts/build-initramfs.sh --init " + init + " --out " + out2),
            0);
  EXPECT_EQ(ReadFile(out), ReadFile(out2));
}

TEST(GuestScripts, BuildInitramfsRejectsBadArguments) {
  const std::string script = std::string(ROVE_SOURCE_DIR) + "/scripts/build-initramfs.sh";
  std::string log;
  EXPECT_NE(RunCommand("bash " + script + " --bogus", &log), 0);
  EXPECT_NE(log.find("unknown argument"), std::string::npos) << log;
  log.clear();
  EXPECT_NE(RunCommand("bash " + script + " --init /nonexistent/init", &log), 0);
  EXPECT_NE(log.find("not found"), std::string::npos) << log;
}

}  // namespace
}  // namespace rove::loader
