// Who may call: TLS and mutual TLS on every listening address, and bearer
// tokens that name the caller's tenant. A token is checked by a gRPC auth
// metadata processor before the call reaches any service; health checks
// need no token, so that probes work, every other service (gradserve's,
// reflection) does. The tenant is not handed over in the auth context: the
// processor is given the connection's, which all its calls share (calls of
// several tenants may share a connection), so CallContextOf (server/rpc.h)
// finds the tenant again from the call's own metadata.
#ifndef GRADSERVE_SERVER_SECURITY_H_
#define GRADSERVE_SERVER_SECURITY_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/server_credentials.h"
#include "runtime/quotas.h"

namespace gradserve::server {

struct SecurityOptions {
  // PEM files. TLS is on when cert and key are given; a client CA also
  // makes clients present a certificate that it signed (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Tokens and their tenants (TokenTable::Load's format); empty = no
  // tokens, every caller is the tenant "".
  std::string auth_tokens_file;

  bool tls() const { return !tls_cert_file.empty(); }
  bool mutual_tls() const { return !tls_client_ca_file.empty(); }
  bool tokens() const { return !auth_tokens_file.empty(); }
};

// Bearer tokens by their SHA-256, each belonging to a tenant.
class TokenTable {
 public:
  // One token a line: `TENANT SHA256 [QUOTA=N ...]`, the tenant 1 to 64 of
  // [A-Za-z0-9_.-] and the token's SHA-256 as 64 hex digits (what
  // `printf %s "$TOKEN" | sha256sum` prints); a tenant may have several.
  // QUOTA is max_sessions, max_bytes or max_concurrent_calls: the tenant's
  // own limit (0 = none) in place of the server's --tenant_max_* default;
  // the lines of one tenant must not disagree. Blank lines and lines
  // starting with '#' are skipped. Errors name the file and line.
  static absl::StatusOr<TokenTable> Load(const std::string& path);
  // Same, of the file's text; `name` is what errors call it.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text,
                                          absl::string_view name);

  // The tenant of `token`; nullptr for an unknown one.
  const std::string* TenantOf(absl::string_view token) const;
  // The tenant of a call's `authorization` metadata (nullopt: the call has
  // none): UNAUTHENTICATED unless it is `Bearer <a known token>` (the scheme
  // in any case).
  absl::StatusOr<std::string> Authenticate(
      std::optional<absl::string_view> authorization) const;
  size_t size() const { return tenants_.size(); }
  // The tenants' own quotas, by tenant.
  const absl::flat_hash_map<std::string, runtime::QuotaOverride>& quotas()
      const {
    return quotas_;
  }

 private:
  // A line's QUOTA=N fields into the tenant's quotas; `where` starts errors.
  absl::Status AddQuotas(const std::string& tenant,
                         const std::vector<absl::string_view>& fields,
                         const std::string& where);

  absl::flat_hash_map<std::string, std::string> tenants_;  // hex SHA-256
  absl::flat_hash_map<std::string, runtime::QuotaOverride> quotas_;
};

// The lowercase hex SHA-256 of `bytes`.
std::string Sha256Hex(absl::string_view bytes);

// Checks `authorization: Bearer <token>` on every call but health checks:
// UNAUTHENTICATED when it is missing, malformed or unknown.
class TokenAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthProcessor(std::shared_ptr<const TokenTable> tokens)
      : tokens_(std::move(tokens)) {}
  bool IsBlocking() const override { return false; }  // a hash lookup
  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  std::shared_ptr<const TokenTable> tokens_;
};

struct ServerSecurity {
  // What every listening address gets: TLS (mutual with a client CA) or
  // plaintext, with the token processor when tokens are on.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<const TokenTable> tokens;  // null when tokens are off
};

// Files that cannot be read, hold no PEM, or a key that is not the
// certificate's are INVALID_ARGUMENT naming the flag and file; tokens need
// TLS (bearer tokens must not cross a network in plaintext).
absl::StatusOr<ServerSecurity> MakeServerSecurity(
    const SecurityOptions& options);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_SECURITY_H_
