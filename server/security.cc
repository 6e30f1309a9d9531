#include "server/security.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace gradserve::server {
namespace {

// `flag`'s file, whole; INVALID_ARGUMENT naming both when it cannot be read.
absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag,
                                         const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  if (in) bytes << in.rdbuf();
  if (!in || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": cannot read ", path, " (", std::strerror(errno), ")"));
  }
  return bytes.str();
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
using Cert = std::unique_ptr<X509, X509Deleter>;
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Refuses to ask for a passphrase (OpenSSL would prompt on the terminal).
int NoPassphrase(char*, int, int, void*) { return -1; }

// The first certificate of a PEM text.
absl::StatusOr<Cert> FirstCertificate(const std::string& pem,
                                      absl::string_view flag,
                                      const std::string& path) {
  Bio bio = MemoryBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM certificate"));
  }
  return cert;
}

absl::StatusOr<Key> PrivateKey(const std::string& pem,
                               const std::string& path) {
  Bio bio = MemoryBio(pem);
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls_key: ", path,
                     " holds no PEM private key (or an encrypted one: give "
                     "the key without a passphrase)"));
  }
  return key;
}

absl::Status CheckOptions(const SecurityOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert and tls_key: give both (the server's certificate chain and "
        "its private key) or neither");
  }
  if (options.mutual_tls() && !options.tls()) {
    return absl::InvalidArgumentError(
        "tls_client_ca needs tls_cert and tls_key: clients are verified "
        "only over TLS");
  }
  if (options.tokens() && !options.tls()) {
    return absl::InvalidArgumentError(
        "auth_tokens_file needs tls_cert and tls_key: bearer tokens must not "
        "cross the network in plaintext");
  }
  return absl::OkStatus();
}

absl::StatusOr<grpc::SslServerCredentialsOptions> SslOptions(
    const SecurityOptions& options) {
  ASSIGN_OR_RETURN(std::string cert_pem,
                   ReadFlagFile("tls_cert", options.tls_cert_file));
  ASSIGN_OR_RETURN(std::string key_pem,
                   ReadFlagFile("tls_key", options.tls_key_file));
  ASSIGN_OR_RETURN(
      Cert cert, FirstCertificate(cert_pem, "tls_cert", options.tls_cert_file));
  ASSIGN_OR_RETURN(Key key, PrivateKey(key_pem, options.tls_key_file));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls_key: ", options.tls_key_file,
                     " is not the private key of the certificate in tls_cert (",
                     options.tls_cert_file, ")"));
  }
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  if (options.mutual_tls()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadFlagFile("tls_client_ca", options.tls_client_ca_file));
    RETURN_IF_ERROR(FirstCertificate(ssl.pem_root_certs, "tls_client_ca",
                                     options.tls_client_ca_file)
                        .status());
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return ssl;
}

bool IsTenantName(absl::string_view tenant) {
  if (tenant.empty() || tenant.size() > 64) return false;
  for (char c : tenant) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool IsSha256Hex(absl::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

}  // namespace

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
  }
  return hex;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFlagFile("auth_tokens_file", path));
  return Parse(text, path);
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text,
                                             absl::string_view name) {
  TokenTable table;
  absl::flat_hash_map<std::string, int> line_of;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where =
        absl::StrCat("auth_tokens_file ", name, ":", number, ": ");
    if (fields.size() < 2 || !IsTenantName(fields[0]) ||
        !IsSha256Hex(fields[1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          "expected `TENANT SHA256 [QUOTA=N ...]` (a tenant of 1 to 64 of "
          "[A-Za-z0-9_.-], the token's SHA-256 as 64 hex digits)"));
    }
    RETURN_IF_ERROR(table.AddQuotas(std::string(fields[0]), fields, where));
    std::string hash = absl::AsciiStrToLower(fields[1]);
    if (auto [it, added] = line_of.emplace(hash, number); !added) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "the same token hash as line ", it->second));
    }
    table.tenants_.emplace(std::move(hash), std::string(fields[0]));
  }
  if (table.tenants_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth_tokens_file ", name, ": holds no token"));
  }
  return table;
}

absl::Status TokenTable::AddQuotas(const std::string& tenant,
                                   const std::vector<absl::string_view>& fields,
                                   const std::string& where) {
  runtime::QuotaOverride& own = quotas_[tenant];
  for (size_t i = 2; i < fields.size(); ++i) {
    const std::vector<absl::string_view> kv =
        absl::StrSplit(fields[i], absl::MaxSplits('=', 1));
    std::optional<int64_t>* slot = nullptr;
    if (kv[0] == "max_sessions") slot = &own.sessions;
    if (kv[0] == "max_bytes") slot = &own.bytes;
    if (kv[0] == "max_concurrent_calls") slot = &own.calls;
    int64_t value = -1;
    if (slot == nullptr || kv.size() != 2 || !absl::SimpleAtoi(kv[1], &value) ||
        value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "'", fields[i],
          "': expected max_sessions=N, max_bytes=N or max_concurrent_calls=N "
          "with N >= 0 (0 = no limit)"));
    }
    if (slot->has_value() && **slot != value) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, kv[0], " of tenant '", tenant, "' is ", **slot,
                       " on an earlier line"));
    }
    *slot = value;
  }
  return absl::OkStatus();
}

const std::string* TokenTable::TenantOf(absl::string_view token) const {
  auto it = tenants_.find(Sha256Hex(token));
  return it == tenants_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::string> TokenTable::Authenticate(
    std::optional<absl::string_view> authorization) const {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "this server needs a token: send `authorization: Bearer <token>` "
        "metadata");
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (!absl::StartsWithIgnoreCase(*authorization, kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization metadata is not `Bearer <token>`");
  }
  const std::string* tenant = TenantOf(authorization->substr(kScheme.size()));
  if (tenant == nullptr) return absl::UnauthenticatedError("unknown token");
  return *tenant;
}

grpc::Status TokenAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext*, OutputMetadata*,
                                         OutputMetadata*) {
  auto text = [](const grpc::string_ref& s) {
    return absl::string_view(s.data(), s.size());
  };
  if (auto path = auth_metadata.find(":path");
      path != auth_metadata.end() &&
      absl::StartsWith(text(path->second), "/grpc.health.v1.Health/")) {
    return grpc::Status::OK;
  }
  std::optional<absl::string_view> authorization;
  if (auto header = auth_metadata.find("authorization");
      header != auth_metadata.end()) {
    authorization = text(header->second);
  }
  // Not consumed: CallContextOf reads it again for the tenant.
  const absl::StatusOr<std::string> tenant =
      tokens_->Authenticate(authorization);
  if (tenant.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      std::string(tenant.status().message()));
}

absl::StatusOr<ServerSecurity> MakeServerSecurity(
    const SecurityOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  ServerSecurity security;
  if (!options.tls()) {
    security.credentials = grpc::InsecureServerCredentials();
    return security;
  }
  ASSIGN_OR_RETURN(grpc::SslServerCredentialsOptions ssl, SslOptions(options));
  security.credentials = grpc::SslServerCredentials(ssl);
  if (options.tokens()) {
    ASSIGN_OR_RETURN(TokenTable tokens,
                     TokenTable::Load(options.auth_tokens_file));
    security.tokens = std::make_shared<const TokenTable>(std::move(tokens));
    security.credentials->SetAuthMetadataProcessor(
        std::make_shared<TokenAuthProcessor>(security.tokens));
  }
  return security;
}

}  // namespace gradserve::server
