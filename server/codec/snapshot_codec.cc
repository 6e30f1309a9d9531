#include "server/codec/snapshot_codec.h"

#include <climits>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/codec/graph_codec.h"
#include "server/codec/session_codec.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {

void SnapshotToProto(const runtime::SessionSpec& spec,
                     pb::SessionSnapshot* out) {
  out->set_format_version(kSnapshotFormatVersion);
  out->set_session_id(spec.id);
  out->set_tenant(spec.tenant);
  out->set_label(spec.label);
  out->set_ttl_seconds(spec.ttl_seconds);
  GraphToProto(spec.graph, out->mutable_graph());
  if (spec.optimizer)
    OptimizerToProto(*spec.optimizer, out->mutable_optimizer());
  out->mutable_frozen()->Assign(spec.frozen.begin(), spec.frozen.end());
  TensorsToProto(spec.optimizer_state, out->mutable_optimizer_state());
  out->set_step(spec.step);
}

absl::StatusOr<runtime::SessionSpec> SnapshotFromProto(
    pb::SessionSnapshot& snapshot, const Limits& limits) {
  if (snapshot.format_version() != kSnapshotFormatVersion) {
    return absl::DataLossError(
        absl::StrCat("format_version ", snapshot.format_version(),
                     ": this server reads ", kSnapshotFormatVersion));
  }
  if (snapshot.session_id().empty()) {
    return absl::DataLossError("session_id is empty");
  }
  runtime::SessionSpec spec;
  spec.id = snapshot.session_id();
  spec.tenant = snapshot.tenant();
  spec.label = snapshot.label();
  spec.ttl_seconds = snapshot.ttl_seconds();
  ASSIGN_OR_RETURN(spec.graph,
                   GraphFromProto(*snapshot.mutable_graph(), limits));
  if (snapshot.has_optimizer()) {
    ASSIGN_OR_RETURN(spec.optimizer, OptimizerFromProto(snapshot.optimizer()));
  }
  spec.frozen.assign(snapshot.frozen().begin(), snapshot.frozen().end());
  using Ordered = std::map<std::string, Tensor>;
  ASSIGN_OR_RETURN(spec.optimizer_state, TakeTensorsFromProto<Ordered>(
                                             snapshot.mutable_optimizer_state(),
                                             "optimizer_state", limits));
  if (snapshot.step() < 0) {
    return absl::DataLossError(
        absl::StrCat("step must be >= 0, got ", snapshot.step()));
  }
  spec.step = snapshot.step();
  return spec;
}

absl::StatusOr<std::string> SnapshotCodec::Encode(
    const runtime::SessionSpec& spec) const {
  pb::SessionSnapshot snapshot;
  SnapshotToProto(spec, &snapshot);
  const size_t size = snapshot.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("session '", spec.id, "' encodes to ", size,
                     " bytes, over the 2 GiB a snapshot can hold"));
  }
  std::string bytes;
  if (!snapshot.SerializeToString(&bytes)) {
    return absl::InternalError(
        absl::StrCat("session '", spec.id, "': cannot serialize a snapshot"));
  }
  return bytes;
}

absl::StatusOr<runtime::SessionSpec> SnapshotCodec::Decode(
    absl::string_view bytes) const {
  pb::SessionSnapshot snapshot;
  if (bytes.size() > static_cast<size_t>(INT_MAX) ||
      !snapshot.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("not a gradserve.v1.SessionSnapshot");
  }
  return SnapshotFromProto(snapshot, limits_);
}

}  // namespace gradserve::server
