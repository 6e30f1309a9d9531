// Tokens files and the checks on security options made before listening.
// (TLS handshakes, tokens on calls and tenant isolation are tested over
// gRPC in tests/python/test_security.py.)
#include "server/security.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve::server {
namespace {

using absl::StatusCode;
using ::gradserve::testing::ExpectStatus;

TEST(Sha256HexTest, KnownDigests) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokenTableTest, MapsTokensToTenants) {
  const std::string text =
      absl::StrCat("# tenant  sha256\n\n", "alice ", Sha256Hex("a-one"), "\n",
                   "  alice\t", Sha256Hex("a-two"), "  \n",
                   // Upper-case hex is the same hash.
                   "bob ", absl::AsciiStrToUpper(Sha256Hex("b-one")), "\n");
  auto table = TokenTable::Parse(text, "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);
  ASSERT_NE(table->TenantOf("a-one"), nullptr);
  EXPECT_EQ(*table->TenantOf("a-one"), "alice");
  EXPECT_EQ(*table->TenantOf("a-two"), "alice");
  EXPECT_EQ(*table->TenantOf("b-one"), "bob");
  EXPECT_EQ(table->TenantOf("b-two"), nullptr);
  EXPECT_EQ(table->TenantOf(""), nullptr);
  // The hash is not a token.
  EXPECT_EQ(table->TenantOf(Sha256Hex("a-one")), nullptr);
}

TEST(TokenTableTest, AuthenticatesBearerMetadata) {
  auto table =
      TokenTable::Parse(absl::StrCat("alice ", Sha256Hex("a-one")), "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  auto tenant = table->Authenticate("Bearer a-one");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  EXPECT_EQ(*tenant, "alice");
  EXPECT_EQ(table->Authenticate("bEARER a-one").value_or(""), "alice");
  ExpectStatus(table->Authenticate(std::nullopt).status(),
               StatusCode::kUnauthenticated, {"needs a token", "Bearer"});
  for (const char* bad : {"a-one", "Basic a-one", "Bearer", "Bearera-one"}) {
    ExpectStatus(table->Authenticate(bad).status(),
                 StatusCode::kUnauthenticated, {"not `Bearer <token>`"});
  }
  for (const char* unknown : {"Bearer a-two", "Bearer  a-one", "Bearer "}) {
    ExpectStatus(table->Authenticate(unknown).status(),
                 StatusCode::kUnauthenticated, {"unknown token"});
  }
}

TEST(TokenTableTest, RefusesMalformedLinesNamingThem) {
  const std::string hash = Sha256Hex("t");
  const std::string bad[] = {
      absl::StrCat("alice\n"),                              // no hash
      absl::StrCat("al/ice ", hash, "\n"),                  // tenant character
      absl::StrCat(std::string(65, 'a'), " ", hash, "\n"),  // tenant length
      absl::StrCat("alice ", hash.substr(1), "\n"),         // 63 digits
      absl::StrCat("alice ", "g", hash.substr(1), "\n"),    // not hex
      absl::StrCat("alice t\n"),  // a plain token, not its hash
  };
  for (const std::string& line : bad) {
    ExpectStatus(TokenTable::Parse("# first\n" + line, "f.txt").status(),
                 StatusCode::kInvalidArgument,
                 {"auth_tokens_file f.txt:2:", "TENANT SHA256"});
  }
}

TEST(TokenTableTest, RefusesDuplicatesAndEmptyFiles) {
  const std::string hash = Sha256Hex("t");
  ExpectStatus(
      TokenTable::Parse(absl::StrCat("a ", hash, "\nb ", hash, "\n"), "f")
          .status(),
      StatusCode::kInvalidArgument, {"f:2:", "same token hash as line 1"});
  ExpectStatus(TokenTable::Parse("# nothing\n\n", "f").status(),
               StatusCode::kInvalidArgument, {"f", "holds no token"});
}

TEST(TokenTableTest, ReadsEachTenantsOwnQuotas) {
  auto table = TokenTable::Parse(
      absl::StrCat("alice ", Sha256Hex("a1"), " max_sessions=2 max_bytes=0\n",
                   "alice ", Sha256Hex("a2"), " max_concurrent_calls=5\n",
                   "alice ", Sha256Hex("a3"), " max_sessions=2\n", "bob ",
                   Sha256Hex("b1"), "\n"),
      "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  const runtime::QuotaOverride& alice = table->quotas().at("alice");
  EXPECT_EQ(alice.sessions, 2);
  EXPECT_EQ(alice.bytes, 0);  // no limit, whatever the server's default
  EXPECT_EQ(alice.calls, 5);
  const runtime::QuotaOverride& bob = table->quotas().at("bob");
  EXPECT_FALSE(bob.sessions || bob.bytes || bob.calls);
}

TEST(TokenTableTest, RefusesMalformedOrDisagreeingQuotas) {
  const std::string hash = Sha256Hex("t");
  for (const char* bad :
       {"extra", "max_sessions", "max_sessions=", "max_sessions=-1",
        "max_bytes=1k", "max_calls=3", "max_sessions=1=2"}) {
    ExpectStatus(
        TokenTable::Parse(absl::StrCat("alice ", hash, " ", bad, "\n"), "f")
            .status(),
        StatusCode::kInvalidArgument,
        {"auth_tokens_file f:1:", bad, "max_concurrent_calls=N"});
  }
  ExpectStatus(
      TokenTable::Parse(absl::StrCat("a ", hash, " max_bytes=10\n", "a ",
                                     Sha256Hex("u"), " max_bytes=20\n"),
                        "f")
          .status(),
      StatusCode::kInvalidArgument, {"f:2:", "max_bytes of tenant 'a' is 10"});
}

TEST(TokenTableTest, LoadNamesAnUnreadableFile) {
  ExpectStatus(TokenTable::Load("/nonexistent/tokens").status(),
               StatusCode::kInvalidArgument,
               {"auth_tokens_file", "cannot read /nonexistent/tokens"});
}

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gradserve-security-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(CredentialsTest, PlaintextByDefault) {
  auto security = MakeServerSecurity(SecurityOptions{});
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_NE(security->credentials, nullptr);
  EXPECT_EQ(security->tokens, nullptr);
}

TEST_F(CredentialsTest, RefusesIncompleteOrPlaintextTokenSettings) {
  SecurityOptions cert_only;
  cert_only.tls_cert_file = Write("c.pem", "x");
  ExpectStatus(MakeServerSecurity(cert_only).status(),
               StatusCode::kInvalidArgument, {"tls_cert and tls_key"});
  SecurityOptions ca_only;
  ca_only.tls_client_ca_file = Write("ca.pem", "x");
  ExpectStatus(MakeServerSecurity(ca_only).status(),
               StatusCode::kInvalidArgument,
               {"tls_client_ca needs tls_cert and tls_key"});
  SecurityOptions tokens_only;
  tokens_only.auth_tokens_file =
      Write("tokens", absl::StrCat("a ", Sha256Hex("t"), "\n"));
  ExpectStatus(MakeServerSecurity(tokens_only).status(),
               StatusCode::kInvalidArgument,
               {"auth_tokens_file needs tls_cert and tls_key", "plaintext"});
}

TEST_F(CredentialsTest, NamesUnreadableAndNonPemFiles) {
  SecurityOptions missing;
  missing.tls_cert_file = (dir_ / "absent.pem").string();
  missing.tls_key_file = Write("k.pem", "x");
  ExpectStatus(MakeServerSecurity(missing).status(),
               StatusCode::kInvalidArgument,
               {"tls_cert: cannot read", "absent.pem"});
  SecurityOptions garbage;
  garbage.tls_cert_file = Write("c.pem", "not a certificate\n");
  garbage.tls_key_file = Write("k.pem", "x");
  ExpectStatus(MakeServerSecurity(garbage).status(),
               StatusCode::kInvalidArgument,
               {"tls_cert: ", "c.pem holds no PEM certificate"});
}

}  // namespace
}  // namespace gradserve::server
