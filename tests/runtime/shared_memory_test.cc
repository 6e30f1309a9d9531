// The shared-memory registry: names, bounds (overflow included), files
// replaced or truncated after registration, tenants and connections,
// limits, the idle TTL and dropping the regions of closed connections.
#include "runtime/shared_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve::runtime {
namespace {

using absl::StatusCode;
using ::gradserve::testing::ExpectStatus;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

CallContext Caller(std::string tenant, std::string connection = "conn-1") {
  CallContext ctx;
  ctx.tenant = std::move(tenant);
  ctx.connection = std::move(connection);
  return ctx;
}

class SharedMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gradserve_shm_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.directory = dir_;
    ASSERT_TRUE(registry_.Enable(options_).ok());
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  std::string Path(const std::string& key) const { return dir_ + "/" + key; }

  // A file of `size` bytes, byte i = i % 251.
  void MakeFile(const std::string& key, size_t size) {
    std::vector<char> bytes(size);
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i % 251);
    const int fd = open(Path(key).c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, bytes.data(), size), static_cast<ssize_t>(size));
    close(fd);
  }

  absl::Status Register(const std::string& region, const std::string& key,
                        uint64_t offset, uint64_t size,
                        const CallContext& ctx = Caller("")) {
    return registry_.Register(ctx, region, key, offset, size);
  }

  absl::StatusOr<SharedMemorySpan> Find(const std::string& region,
                                        uint64_t offset, uint64_t size,
                                        const CallContext& ctx = Caller("")) {
    return registry_.Find(ctx, {region, offset, size}, "feeds['x']");
  }

  static QuotaOptions Quotas() {
    QuotaOptions quotas;
    quotas.tenants["capped"].bytes = 3000;  // the others: unlimited
    return quotas;
  }

  std::string dir_;
  SharedMemoryOptions options_;
  TenantQuotas quotas_{Quotas()};
  SharedMemoryRegistry registry_{&quotas_};
};

TEST(SharedMemoryOff, EveryCallNamesTheFlag) {
  SharedMemoryRegistry off;
  EXPECT_FALSE(off.enabled());
  ExpectStatus(off.Register(Caller(""), "r", "k", 0, 8),
               StatusCode::kFailedPrecondition, {"--allow_shared_memory"});
  ExpectStatus(off.Find(Caller(""), {"r", 0, 8}, "feeds['x']").status(),
               StatusCode::kFailedPrecondition,
               {"feeds['x']", "--allow_shared_memory"});
  ExpectStatus(off.Unregister(Caller(""), "r"), StatusCode::kFailedPrecondition,
               {"--allow_shared_memory"});
}

TEST(SharedMemoryOff, ADirectoryThatCannotBeOpenedIsAnError) {
  SharedMemoryRegistry registry;
  SharedMemoryOptions options;
  options.directory = "/nonexistent/gradserve";
  ExpectStatus(registry.Enable(options), StatusCode::kInvalidArgument,
               {"--shared_memory_dir", "/nonexistent/gradserve"});
  EXPECT_FALSE(registry.enabled());
}

TEST_F(SharedMemoryTest, ReadsAndWritesTheRegisteredWindow) {
  MakeFile("f", 4096);
  ASSERT_TRUE(Register("r", "f", 1000, 2000).ok());
  EXPECT_EQ(registry_.count(), 1);
  EXPECT_EQ(registry_.bytes(), 2000);
  auto span = Find("r", 10, 100);
  ASSERT_TRUE(span.ok()) << span.status();
  std::vector<char> got(100);
  ASSERT_TRUE(span->Read(got.data(), "feeds['x']").ok());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], static_cast<char>((1010 + i) % 251)) << i;
  }
  std::vector<char> put(100, 'z');
  ASSERT_TRUE(span->Write(put.data(), "outputs['y']").ok());
  const int fd = open(Path("f").c_str(), O_RDONLY);
  std::vector<char> file(4096);
  ASSERT_EQ(read(fd, file.data(), file.size()), 4096);
  close(fd);
  EXPECT_EQ(file[1009], static_cast<char>(1009 % 251));
  EXPECT_EQ(file[1010], 'z');
  EXPECT_EQ(file[1109], 'z');
  EXPECT_EQ(file[1110], static_cast<char>(1110 % 251));
}

TEST_F(SharedMemoryTest, KeysMustBePlainFileNames) {
  MakeFile("f", 64);
  for (const std::string& key :
       {std::string(""), std::string("."), std::string(".."),
        std::string("../f"), std::string("a/b"), std::string("/tmp/f"),
        std::string("f\0x", 3), std::string(256, 'a')}) {
    ExpectStatus(Register("r", key, 0, 8), StatusCode::kInvalidArgument,
                 {"plain file name", dir_});
  }
  ExpectStatus(Register("", "f", 0, 8), StatusCode::kInvalidArgument,
               {"region"});
  ExpectStatus(Register("a\nb", "f", 0, 8), StatusCode::kInvalidArgument,
               {"region"});
  EXPECT_EQ(registry_.count(), 0);
}

TEST_F(SharedMemoryTest, OnlyRegularFilesOfTheServersUserAreOpened) {
  MakeFile("f", 64);
  ASSERT_EQ(symlink(Path("f").c_str(), Path("link").c_str()), 0);
  ExpectStatus(Register("r", "link", 0, 8), StatusCode::kInvalidArgument,
               {"key 'link'", "symbolic link"});
  ASSERT_EQ(mkdir(Path("d").c_str(), 0700), 0);
  ExpectStatus(Register("r", "d", 0, 8), StatusCode::kInvalidArgument,
               {"key 'd'", "directory"});
  ASSERT_EQ(mkfifo(Path("fifo").c_str(), 0600), 0);
  ExpectStatus(Register("r", "fifo", 0, 8), StatusCode::kInvalidArgument,
               {"key 'fifo'", "not a regular file"});
  ExpectStatus(Register("r", "missing", 0, 8), StatusCode::kNotFound,
               {"key 'missing'", "no such file"});
  MakeFile("theirs", 64);
  if (chown(Path("theirs").c_str(), getuid() + 4242, getgid()) == 0) {
    ExpectStatus(Register("r", "theirs", 0, 8), StatusCode::kPermissionDenied,
                 {"key 'theirs'", "belongs to uid", "its own user"});
  }
  EXPECT_EQ(registry_.count(), 0);
}

TEST_F(SharedMemoryTest, RegisteredWindowsMustLieInTheFile) {
  MakeFile("f", 100);
  ExpectStatus(Register("r", "f", 0, 101), StatusCode::kInvalidArgument,
               {"key 'f'", "100 bytes", "ends past it"});
  ExpectStatus(Register("r", "f", 100, 1), StatusCode::kInvalidArgument,
               {"ends past it"});
  ExpectStatus(Register("r", "f", 0, 0), StatusCode::kInvalidArgument,
               {"byte_size must be > 0"});
  // offset + byte_size would wrap around.
  ExpectStatus(Register("r", "f", 50, kMax - 10), StatusCode::kInvalidArgument,
               {"offset + byte_size"});
  ExpectStatus(Register("r", "f", kMax, 1), StatusCode::kInvalidArgument,
               {"offset + byte_size"});
  EXPECT_TRUE(Register("r", "f", 40, 60).ok());
}

TEST_F(SharedMemoryTest, ReferencesAreBoundsCheckedWithoutOverflow) {
  MakeFile("f", 256);
  ASSERT_TRUE(Register("r", "f", 0, 256).ok());
  EXPECT_TRUE(Find("r", 0, 256).ok());
  EXPECT_TRUE(Find("r", 256, 0).ok());  // an empty tensor at the end
  ExpectStatus(Find("r", 257, 0).status(), StatusCode::kInvalidArgument,
               {"feeds['x']", "past the end", "region 'r'", "256 bytes"});
  ExpectStatus(Find("r", 200, 57).status(), StatusCode::kInvalidArgument,
               {"offset 200 + byte_size 57", "past the end"});
  ExpectStatus(Find("r", 8, kMax - 4).status(), StatusCode::kInvalidArgument,
               {"past the end"});
  ExpectStatus(Find("r", kMax, 2).status(), StatusCode::kInvalidArgument,
               {"past the end"});
  ExpectStatus(Find("nope", 0, 1).status(), StatusCode::kNotFound,
               {"feeds['x']", "region 'nope'"});
}

TEST_F(SharedMemoryTest, AFileReplacedOrRemovedAfterRegistrationIsRefused) {
  MakeFile("f", 64);
  ASSERT_TRUE(Register("r", "f", 0, 64).ok());
  auto span = Find("r", 0, 64);
  ASSERT_TRUE(span.ok());
  MakeFile("other", 64);
  ASSERT_EQ(rename(Path("other").c_str(), Path("f").c_str()), 0);
  std::vector<char> buffer(64);
  ExpectStatus(span->Read(buffer.data(), "feeds['x']"),
               StatusCode::kFailedPrecondition,
               {"feeds['x']", "region 'r'", "file 'f'", "replaced"});
  ExpectStatus(span->Write(buffer.data(), "outputs['y']"),
               StatusCode::kFailedPrecondition, {"outputs['y']", "replaced"});
  ASSERT_EQ(unlink(Path("f").c_str()), 0);
  ExpectStatus(Find("r", 0, 8)->Read(buffer.data(), "feeds['x']"),
               StatusCode::kFailedPrecondition, {"removed"});
}

TEST_F(SharedMemoryTest, ATruncatedFileIsAnErrorNotACrash) {
  MakeFile("f", 4096);
  ASSERT_TRUE(Register("r", "f", 1024, 2048).ok());
  ASSERT_EQ(truncate(Path("f").c_str(), 2000), 0);
  std::vector<char> buffer(100);
  for (uint64_t offset : {0, 1000}) {
    auto span = Find("r", offset, 100);
    ASSERT_TRUE(span.ok());
    ExpectStatus(span->Read(buffer.data(), "feeds['x']"),
                 StatusCode::kFailedPrecondition,
                 {"feeds['x']", "region 'r'", "truncated to 2000 bytes",
                  "ends at byte 3072"});
    ExpectStatus(span->Write(buffer.data(), "outputs['y']"),
                 StatusCode::kFailedPrecondition, {"truncated"});
  }
  struct stat st;
  ASSERT_EQ(stat(Path("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 2000);  // a refused write does not grow the file
}

TEST_F(SharedMemoryTest, RegionsBelongToTheirTenantAndConnection) {
  MakeFile("f", 64);
  const CallContext a = Caller("tenant-a");
  const CallContext b = Caller("tenant-b");
  ASSERT_TRUE(Register("r", "f", 0, 64, a).ok());
  EXPECT_TRUE(Find("r", 0, 8, a).ok());
  ExpectStatus(Find("r", 0, 8, b).status(), StatusCode::kNotFound,
               {"region 'r'", "not registered by this caller"});
  ExpectStatus(Find("r", 0, 8, Caller("tenant-a", "conn-2")).status(),
               StatusCode::kNotFound, {"region 'r'"});
  ExpectStatus(registry_.Unregister(b, "r"), StatusCode::kNotFound,
               {"region 'r'"});
  // Each caller has its own names.
  EXPECT_TRUE(Register("r", "f", 0, 32, b).ok());
  ExpectStatus(Register("r", "f", 0, 64, a), StatusCode::kAlreadyExists,
               {"region 'r'", "already registered"});
  EXPECT_TRUE(registry_.Unregister(a, "r").ok());
  ExpectStatus(Find("r", 0, 8, a).status(), StatusCode::kNotFound, {});
  EXPECT_TRUE(Find("r", 0, 32, b).ok());
}

TEST_F(SharedMemoryTest, UnregisteringFailsSpansStillHeld) {
  MakeFile("f", 64);
  ASSERT_TRUE(Register("r", "f", 0, 64).ok());
  auto span = Find("r", 0, 8);
  ASSERT_TRUE(registry_.Unregister(Caller(""), "r").ok());
  char buffer[8];
  ExpectStatus(span->Read(buffer, "feeds['x']"), StatusCode::kNotFound,
               {"feeds['x']", "region 'r'", "unregistered"});
  EXPECT_EQ(registry_.count(), 0);
  EXPECT_EQ(registry_.bytes(), 0);
}

TEST(SharedMemoryLimits, RegionsPerTenantAndBytesInAll) {
  char tmpl[] = "/tmp/gradserve_shm_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const int fd = open((dir + "/f").c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_EQ(ftruncate(fd, 1000), 0);
  close(fd);
  SharedMemoryRegistry registry;
  SharedMemoryOptions options;
  options.directory = dir;
  options.max_regions = 2;
  options.max_bytes = 1500;
  ASSERT_TRUE(registry.Enable(options).ok());
  EXPECT_TRUE(registry.Register(Caller("a"), "1", "f", 0, 500).ok());
  EXPECT_TRUE(registry.Register(Caller("a"), "2", "f", 0, 500).ok());
  ExpectStatus(registry.Register(Caller("a"), "3", "f", 0, 1),
               StatusCode::kResourceExhausted,
               {"holds 2 regions", "--shared_memory_max_regions"});
  ExpectStatus(registry.Register(Caller("b"), "1", "f", 0, 501),
               StatusCode::kResourceExhausted,
               {"501 bytes", "spanning 1000", "--shared_memory_max_bytes"});
  EXPECT_TRUE(registry.Register(Caller("b"), "1", "f", 0, 500).ok());
  EXPECT_TRUE(registry.Unregister(Caller("a"), "1").ok());
  EXPECT_TRUE(registry.Register(Caller("a"), "3", "f", 0, 500).ok());
  EXPECT_EQ(registry.bytes(), 1500);
  ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
}

TEST_F(SharedMemoryTest, IdleRegionsExpire) {
  MakeFile("f", 64);
  ASSERT_TRUE(Register("r", "f", 0, 64).ok());
  const absl::Time now = absl::Now();
  registry_.Expire(now + absl::Seconds(options_.ttl_seconds - 5));
  EXPECT_EQ(registry_.count(), 1);
  registry_.Expire(now + absl::Seconds(options_.ttl_seconds + 5));
  EXPECT_EQ(registry_.count(), 0);
  ExpectStatus(Find("r", 0, 8).status(), StatusCode::kNotFound, {});
}

TEST_F(SharedMemoryTest, UseKeepsARegionAlive) {
  MakeFile("f", 64);
  ASSERT_TRUE(Register("r", "f", 0, 64).ok());
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time after_register = absl::Now();
  ASSERT_TRUE(Find("r", 0, 8).ok());
  // Idle for the TTL counted from registration, not from the last use.
  registry_.Expire(after_register + absl::Seconds(options_.ttl_seconds) -
                   absl::Milliseconds(10));
  EXPECT_EQ(registry_.count(), 1);
}

TEST_F(SharedMemoryTest, RegionsOfClosedConnectionsAreDropped) {
  MakeFile("f", 64);
  const absl::Time before = absl::Now();
  ASSERT_TRUE(Register("a", "f", 0, 64, Caller("", "conn-1")).ok());
  ASSERT_TRUE(Register("b", "f", 0, 64, Caller("", "conn-2")).ok());
  ASSERT_TRUE(Register("c", "f", 0, 64, Caller("", "")).ok());
  // A list taken before the registrations cannot know their connections.
  EXPECT_EQ(registry_.RetainConnections({}, before), 0);
  EXPECT_EQ(registry_.count(), 3);
  EXPECT_EQ(registry_.RetainConnections({"conn-2"}, absl::Now()), 1);
  EXPECT_FALSE(Find("a", 0, 8, Caller("", "conn-1")).ok());
  EXPECT_TRUE(Find("b", 0, 8, Caller("", "conn-2")).ok());
  EXPECT_TRUE(Find("c", 0, 8, Caller("", "")).ok());  // no connection: kept
  EXPECT_EQ(registry_.RetainConnections({}, absl::Now()), 1);
  EXPECT_EQ(registry_.count(), 1);
}

TEST_F(SharedMemoryTest, SpansOverlapWhenTheyShareBytesOfOneFile) {
  MakeFile("f", 1000);
  MakeFile("g", 1000);
  ASSERT_TRUE(Register("low", "f", 0, 600).ok());
  ASSERT_TRUE(Register("high", "f", 400, 600).ok());  // overlaps "low"
  ASSERT_TRUE(Register("other", "g", 0, 1000).ok());
  auto a = *Find("low", 450, 100);   // file bytes [450, 550)
  auto b = *Find("high", 100, 100);  // file bytes [500, 600)
  auto c = *Find("high", 150, 100);  // file bytes [550, 650)
  auto d = *Find("other", 450, 100);
  EXPECT_TRUE(a.Overlaps(b));
  EXPECT_TRUE(b.Overlaps(a));
  EXPECT_FALSE(a.Overlaps(c));                     // adjacent
  EXPECT_FALSE(a.Overlaps(d));                     // another file
  EXPECT_FALSE(Find("low", 500, 0)->Overlaps(b));  // empty
}

TEST_F(SharedMemoryTest, RegionsCountAgainstTheirTenantsBytesQuota) {
  MakeFile("f", 8192);
  const CallContext capped = Caller("capped");
  ASSERT_TRUE(Register("a", "f", 0, 2000, capped).ok());
  ExpectStatus(Register("b", "f", 0, 1001, capped),
               StatusCode::kResourceExhausted,
               {"RegisterSharedMemory 'b'", "tenant_max_bytes", "'capped'",
                "holds 2000 bytes", "limit 3000", "1001 more"});
  EXPECT_EQ(quotas_.UseOf("capped").bytes, 2000);
  // Another tenant is not held back, and its regions are not counted.
  ASSERT_TRUE(Register("b", "f", 0, 8000, Caller("other")).ok());
  EXPECT_EQ(quotas_.UseOf("capped").bytes, 2000);
  ASSERT_TRUE(Register("b", "f", 0, 1000, capped).ok());
  // A refused registration (a name taken) holds nothing.
  ExpectStatus(Register("b", "f", 0, 10, capped), StatusCode::kAlreadyExists,
               {"'b'"});
  EXPECT_EQ(quotas_.UseOf("capped").bytes, 3000);
  // Every way a region goes gives its bytes back.
  ASSERT_TRUE(registry_.Unregister(capped, "a").ok());
  EXPECT_EQ(quotas_.UseOf("capped").bytes, 1000);
  EXPECT_EQ(registry_.RetainConnections({}, absl::Now()), 2);
  EXPECT_EQ(quotas_.UseOf("capped").bytes, 0);
  EXPECT_EQ(quotas_.UseOf("other").bytes, 0);
  ASSERT_TRUE(Register("c", "f", 0, 3000, capped).ok());
  registry_.Expire(absl::Now() + absl::Seconds(options_.ttl_seconds + 5));
  EXPECT_EQ(quotas_.tenants_holding(), 0);
}

}  // namespace
}  // namespace gradserve::runtime
