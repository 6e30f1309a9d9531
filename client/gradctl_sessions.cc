// gradctl sessions list|close|get|set.
#include <iomanip>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/gradctl_commands.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

class Sessions : public Command {
 public:
  explicit Sessions(CLI::App& app) {
    app.require_subcommand(1);
    list_ = app.add_subcommand(
        "list", "The sessions the server holds (of every listed --server).");
    close_ = app.add_subcommand("close", "Closes sessions.");
    close_->add_option("ids", close_ids_, "session ids")->required();
    get_ = app.add_subcommand(
        "get",
        "Writes a session's parameters, buffers and step (and with "
        "--optimizer-state its optimizer state) to an .npz.");
    get_->add_option("id", id_, "session id")->required();
    get_->add_option("--out", file_,
                     "the .npz to write: parameters/NAME, buffers/NAME, "
                     "optimizer_state/NAME/STATE, step")
        ->required();
    get_->add_flag("--optimizer-state", optimizer_state_,
                   "also the optimizer's state");
    set_ = app.add_subcommand(
        "set",
        "Replaces a session's tensors (and step) with those of an .npz that "
        "`sessions get` or `train --save` wrote; a subset is fine.");
    set_->add_option("id", id_, "session id")->required();
    set_->add_option("--from", file_, "the .npz to read")->required();
  }

  absl::Status Run(Context& context) override {
    ASSIGN_OR_RETURN(auto client, context.Connect());
    if (*list_) return List(*client, context.out);
    if (*close_) {
      for (const std::string& id : close_ids_) {
        pb::CloseSessionRequest request;
        request.set_session_id(id);
        RETURN_IF_ERROR(client->CloseSession(request).status());
        context.out << "closed " << id << "\n";
      }
      return absl::OkStatus();
    }
    if (*get_) return Get(*client, context.out);
    return Set(*client, context.out);
  }

 private:
  static absl::Status List(Client& client, std::ostream& out) {
    ASSIGN_OR_RETURN(pb::ListSessionsResponse listed, client.ListSessions());
    out << std::left << std::setw(44) << "session" << std::setw(20) << "label"
        << std::right << std::setw(10) << "step" << std::setw(12) << "params"
        << std::setw(12) << "bytes"
        << "  expires\n";
    for (const pb::SessionInfo& s : listed.sessions()) {
      out << std::left << std::setw(44) << s.session_id() << std::setw(20)
          << s.label() << std::right << std::setw(10) << s.step()
          << std::setw(12) << s.parameter_count() << std::setw(12) << s.bytes()
          << "  "
          << absl::FormatTime("%Y-%m-%d %H:%M:%S",
                              absl::FromUnixMillis(s.expires_unix_ms()),
                              absl::LocalTimeZone())
          << "\n";
    }
    out << listed.sessions_size() << " session(s)\n";
    return absl::OkStatus();
  }

  absl::Status Get(Client& client, std::ostream& out) {
    pb::GetParametersRequest request;
    request.set_session_id(id_);
    request.set_include_optimizer_state(optimizer_state_);
    ASSIGN_OR_RETURN(pb::GetParametersResponse state,
                     client.GetParameters(request));
    const Arrays arrays = SessionArrays(state);
    RETURN_IF_ERROR(WriteNpz(file_, arrays));
    out << "wrote " << arrays.size() << " arrays of " << id_ << " (step "
        << state.step() << ") to " << file_ << "\n";
    return absl::OkStatus();
  }

  absl::Status Set(Client& client, std::ostream& out) {
    ASSIGN_OR_RETURN(Arrays arrays, ReadNpz(file_));
    ASSIGN_OR_RETURN(pb::SetParametersRequest request,
                     RestoreRequest(arrays, id_, true, file_));
    ASSIGN_OR_RETURN(pb::SetParametersResponse set,
                     client.SetParameters(request));
    out << "set " << arrays.size() << " arrays of " << id_ << " from " << file_
        << "; step " << set.session().step() << "\n";
    return absl::OkStatus();
  }

  CLI::App *list_, *close_, *get_, *set_;
  std::vector<std::string> close_ids_;
  std::string id_, file_;
  bool optimizer_state_ = false;
};

}  // namespace

std::unique_ptr<Command> DefineSessions(CLI::App& app) {
  return std::make_unique<Sessions>(app);
}

}  // namespace gradserve::client
