#include "server/connection_watch.h"

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace gradserve::server {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// channelz answers in JSON (the channelz proto's JSON mapping); null when
// the call returned nothing that parses.
std::optional<Struct> Parse(char* json) {
  if (json == nullptr) return std::nullopt;
  Struct out;
  const bool ok = google::protobuf::util::JsonStringToMessage(json, &out).ok();
  gpr_free(json);
  if (!ok) return std::nullopt;
  return out;
}

const Value* Field(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

std::string StringField(const Struct& s, const std::string& name) {
  const Value* v = Field(s, name);
  return v != nullptr && v->has_string_value() ? v->string_value() : "";
}

// channelz writes int64 ids as JSON strings.
int64_t IdField(const Struct& s, const std::string& name) {
  int64_t id = 0;
  if (!absl::SimpleAtoi(StringField(s, name), &id)) return 0;
  return id;
}

std::vector<const Struct*> ListField(const Struct& s, const std::string& name) {
  std::vector<const Struct*> out;
  const Value* v = Field(s, name);
  if (v == nullptr || !v->has_list_value()) return out;
  for (const Value& item : v->list_value().values()) {
    if (item.has_struct_value()) out.push_back(&item.struct_value());
  }
  return out;
}

bool AtEnd(const Struct& page) {
  const Value* end = Field(page, "end");
  return end == nullptr || !end->has_bool_value() || end->bool_value();
}

bool Listens(const Struct& server, const std::vector<std::string>& listening) {
  for (const Struct* socket : ListField(server, "listenSocket")) {
    const std::string name = StringField(*socket, "name");
    for (const std::string& address : listening) {
      if (absl::EndsWith(name, address)) return true;
    }
  }
  return false;
}

}  // namespace

std::optional<int64_t> FindChannelzServer(
    const std::vector<std::string>& listening) {
  int64_t start = 0;
  while (true) {
    std::optional<Struct> page = Parse(grpc_channelz_get_servers(start));
    if (!page) return std::nullopt;
    const int64_t before = start;
    for (const Struct* server : ListField(*page, "server")) {
      const Value* ref = Field(*server, "ref");
      if (ref == nullptr || !ref->has_struct_value()) continue;
      const int64_t id = IdField(ref->struct_value(), "serverId");
      if (Listens(*server, listening)) return id;
      start = std::max(start, id + 1);
    }
    if (AtEnd(*page) || start == before) return std::nullopt;
  }
}

std::optional<absl::flat_hash_set<std::string>> OpenConnections(
    int64_t server_id) {
  absl::flat_hash_set<std::string> peers;
  int64_t start = 0;
  while (true) {
    std::optional<Struct> page =
        Parse(grpc_channelz_get_server_sockets(server_id, start, 1000));
    if (!page) return std::nullopt;
    const int64_t before = start;
    for (const Struct* socket : ListField(*page, "socketRef")) {
      // "chttp2 ipv4:127.0.0.1:5012": the transport, then the peer.
      const std::string name = StringField(*socket, "name");
      const size_t space = name.find(' ');
      peers.insert(space == std::string::npos ? name : name.substr(space + 1));
      start = std::max(start, IdField(*socket, "socketId") + 1);
    }
    if (AtEnd(*page) || start == before) return peers;
  }
}

ConnectionWatch::ConnectionWatch(std::vector<std::string> listening,
                                 runtime::SharedMemoryRegistry* registry,
                                 absl::Duration interval)
    : listening_(std::move(listening)),
      registry_(registry),
      loop_(interval, [this] { Check(); }) {}

void ConnectionWatch::Check() {
  if (!server_id_) server_id_ = FindChannelzServer(listening_);
  const absl::Time listed_at = absl::Now();
  std::optional<absl::flat_hash_set<std::string>> open;
  if (server_id_) open = OpenConnections(*server_id_);
  if (!open) {
    if (!warned_) {
      std::fprintf(stderr,
                   "gradserve: channelz does not list this server's "
                   "connections; shared-memory regions are dropped only by "
                   "UnregisterSharedMemory and the idle TTL\n");
      warned_ = true;
    }
    server_id_.reset();
    return;
  }
  registry_->RetainConnections(*open, listed_at);
}

}  // namespace gradserve::server
