// A session as the server saves it in --state_dir: the runtime's
// SessionSpec as a gradserve.v1.SessionSnapshot (proto/gradserve/v1/
// snapshot.proto), and back. The runtime decides when and where snapshots
// are written (runtime/persistence.h); this is only their encoding.
#ifndef GRADSERVE_SERVER_CODEC_SNAPSHOT_CODEC_H_
#define GRADSERVE_SERVER_CODEC_SNAPSHOT_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "gradserve/v1/snapshot.pb.h"
#include "runtime/persistence.h"
#include "runtime/sessions.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

// The format_version this server writes and reads.
inline constexpr uint32_t kSnapshotFormatVersion = 1;

void SnapshotToProto(const runtime::SessionSpec& spec,
                     pb::SessionSnapshot* out);
// Tensors are checked against `limits`; errors name the field.
absl::StatusOr<runtime::SessionSpec> SnapshotFromProto(
    pb::SessionSnapshot& snapshot, const Limits& limits);

class SnapshotCodec final : public runtime::SessionCodec {
 public:
  explicit SnapshotCodec(const Limits& limits) : limits_(limits) {}
  // RESOURCE_EXHAUSTED for a session over protobuf's 2 GiB.
  absl::StatusOr<std::string> Encode(
      const runtime::SessionSpec& spec) const override;
  // DATA_LOSS for bytes that are no SessionSnapshot, or of another version.
  absl::StatusOr<runtime::SessionSpec> Decode(
      absl::string_view bytes) const override;

 private:
  const Limits limits_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_SNAPSHOT_CODEC_H_
