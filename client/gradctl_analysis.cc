// gradctl gradcheck (a table per wrt tensor, exit 1 when a check fails) and
// gradctl hessian (extreme eigenvalues and the verdict on the point).
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/gradctl_commands.h"
#include "client/graph_file.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

// What both commands take: the model, its feeds, the loss and wrt.
class AnalysisCommand : public Command {
 protected:
  explicit AnalysisCommand(CLI::App& app) {
    CLI::Option_group* model =
        app.add_option_group("model", "the model: exactly one of");
    model->add_option("--graph", graph_,
                      "model file: a graph in protobuf JSON (.json) or text "
                      "(.pbtxt), or an ONNX model (.onnx)");
    model->add_option("--session", session_,
                      "a session's id: its graph and values");
    model->require_option(1);
    app.add_option("--feed", feeds_,
                   "a graph input's value (or a parameter's): NAME=FILE.npy; "
                   "repeatable");
    app.add_option("--wrt", wrt_,
                   "a graph input, parameter or buffer to differentiate with "
                   "respect to (default: every parameter); repeatable");
    app.add_option("--mode", mode_, "train or eval")
        ->capture_default_str()
        ->check(CLI::IsMember({"train", "eval"}));
    app.add_option("--seed", seed_,
                   "random seed (dropout masks, held fixed; the sampled "
                   "elements)")
        ->capture_default_str();
  }

  // Sets the model, feeds, wrt, loss, mode and seed of an analysis request.
  template <typename Request>
  absl::Status FillRequest(Request* r) const {
    if (!session_.empty()) {
      r->set_session_id(session_);
    } else {
      RETURN_IF_ERROR(ReadModel(graph_, r));
    }
    RETURN_IF_ERROR(ReadTensors(feeds_, "--feed", r->mutable_feeds()));
    for (const std::string& w : wrt_) r->add_wrt(w);
    r->set_loss(loss_);
    r->set_mode(mode_ == "eval" ? pb::MODE_EVAL : pb::MODE_TRAIN);
    r->set_seed(seed_);
    return absl::OkStatus();
  }

  std::string loss_;

 private:
  std::string graph_, session_, mode_ = "train";
  std::vector<std::string> feeds_, wrt_;
  uint64_t seed_ = 0;
};

std::string Index(const google::protobuf::RepeatedField<int64_t>& index) {
  return absl::StrCat("[", absl::StrJoin(index, ", "), "]");
}

void PrintChecks(const pb::CheckGradientsResponse& r, std::ostream& out) {
  out << std::left << std::setw(16) << "tensor" << std::right << std::setw(10)
      << "checked" << std::setw(13) << "max abs err" << std::setw(13)
      << "max rel err"
      << "  " << std::left << std::setw(14) << "worst at" << std::right
      << std::setw(15) << "analytic" << std::setw(15) << "numeric"
      << std::setw(10) << "float32"
      << "  result\n";
  for (const pb::TensorCheck& t : r.tensors()) {
    out << std::left << std::setw(16) << t.name() << std::right << std::setw(10)
        << t.elements_checked() << std::setprecision(3) << std::setw(13)
        << t.max_abs_error() << std::setw(13) << t.max_rel_error() << "  "
        << std::left << std::setw(14) << Index(t.worst_index()) << std::right
        << std::setprecision(8) << std::setw(15) << t.analytic()
        << std::setw(15) << t.numeric() << std::setw(10)
        << (t.float32_passed() ? "ok" : "MISMATCH") << "  "
        << (t.passed() ? "pass" : "FAIL") << "\n";
    if (!t.float32_passed()) {
      out << "  float32 path at " << Index(t.float32_worst_index()) << ": "
          << t.float32_value() << " (max abs err " << t.float32_max_abs_error()
          << ")\n";
    }
  }
}

class Gradcheck : public AnalysisCommand {
 public:
  explicit Gradcheck(CLI::App& app) : AnalysisCommand(app) {
    app.add_option("--loss", loss_, "the scalar to differentiate");
    app.add_option("--grad", grads_,
                   "a seed dLoss/dValue: NAME=FILE.npy; repeatable; adds "
                   "<seed, value> to --loss");
    app.add_option("--epsilon", epsilon_,
                   "finite-difference step (default 1e-6)");
    app.add_option("--rtol", rtol_, "relative tolerance (default 1e-3)");
    app.add_option("--atol", atol_, "absolute tolerance (default 1e-5)");
    app.add_option("--max-elements", max_elements_,
                   "elements checked per tensor, a seeded random subset "
                   "(default: all)");
  }

  absl::Status Run(Context& context) override {
    pb::CheckGradientsRequest request;
    RETURN_IF_ERROR(FillRequest(&request));
    RETURN_IF_ERROR(
        ReadTensors(grads_, "--grad", request.mutable_output_gradients()));
    request.set_epsilon(epsilon_);
    request.set_rtol(rtol_);
    request.set_atol(atol_);
    request.set_max_elements_per_tensor(max_elements_);
    ASSIGN_OR_RETURN(auto client, context.Connect());
    ASSIGN_OR_RETURN(pb::CheckGradientsResponse r,
                     client->CheckGradients(request));
    PrintChecks(r, context.out);
    std::vector<std::string> failed;
    for (const pb::TensorCheck& t : r.tensors()) {
      if (!t.passed()) failed.push_back(t.name());
    }
    if (!r.passed()) {
      context.out << "gradcheck FAILED for " << absl::StrJoin(failed, ", ")
                  << "\n";
      return ExitWith(kExitError);
    }
    context.out << "gradcheck passed: " << r.tensors_size() << " tensor(s)\n";
    return absl::OkStatus();
  }

 private:
  std::vector<std::string> grads_;
  double epsilon_ = 0, rtol_ = 0, atol_ = 0;
  int64_t max_elements_ = 0;
};

void PrintValues(std::ostream& out, const std::string& title,
                 const google::protobuf::RepeatedField<double>& values) {
  out << std::left << std::setw(10) << title << std::setprecision(8);
  for (double v : values) out << " " << v;
  out << "\n";
}

class Hessian : public AnalysisCommand {
 public:
  explicit Hessian(CLI::App& app) : AnalysisCommand(app) {
    app.add_option("--loss", loss_, "the scalar whose Hessian to study")
        ->required();
    app.add_option("--k", k_, "eigenvalues at each end")->capture_default_str();
  }

  absl::Status Run(Context& context) override {
    pb::HessianEigenvaluesRequest request;
    RETURN_IF_ERROR(FillRequest(&request));
    request.set_k(k_);
    ASSIGN_OR_RETURN(auto client, context.Connect());
    ASSIGN_OR_RETURN(pb::HessianEigenvaluesResponse r,
                     client->HessianEigenvalues(request));
    std::ostream& out = context.out;
    if (r.exact()) {
      out << "exact: every eigenvalue of the whole Hessian\n";
    } else {
      out << "Lanczos estimate: " << r.iterations() << " iterations, "
          << (r.converged() ? "converged" : "NOT converged") << "\n";
    }
    out << std::setprecision(6) << "loss " << r.loss() << ", gradient norm "
        << r.gradient_norm() << "\n";
    PrintValues(out, "largest", r.largest());
    PrintValues(out, "smallest", r.smallest());
    out << "critical point: " << r.critical_point() << "\n";
    return absl::OkStatus();
  }

 private:
  int k_ = 1;
};

}  // namespace

std::unique_ptr<Command> DefineGradcheck(CLI::App& app) {
  return std::make_unique<Gradcheck>(app);
}

std::unique_ptr<Command> DefineHessian(CLI::App& app) {
  return std::make_unique<Hessian>(app);
}

}  // namespace gradserve::client
