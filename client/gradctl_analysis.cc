#include "client/gradctl_analysis.h"

#include <iomanip>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/gradctl_args.h"
#include "client/graph_file.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

// What both commands take: the model, its feeds, the loss and wrt.
struct AnalysisOptions {
  std::string graph, session, loss, mode = "train";
  std::vector<std::string> feeds, grads, wrt;
  uint64_t seed = 0;
  // gradcheck
  double epsilon = 0, rtol = 0, atol = 0;
  int64_t max_elements = 0;
  // hessian
  int k = 1;
};

void AddModelOptions(CLI::App* c, AnalysisOptions* o) {
  CLI::Option_group* model =
      c->add_option_group("model", "the model: exactly one of");
  model->add_option("--graph", o->graph,
                    "graph file: protobuf JSON (.json) or text (.pbtxt)");
  model->add_option("--session", o->session,
                    "a session's id: its graph and values");
  model->require_option(1);
  c->add_option("--feed", o->feeds,
                "a graph input's value (or a parameter's): NAME=FILE.npy; "
                "repeatable");
  c->add_option("--wrt", o->wrt,
                "a graph input, parameter or buffer to differentiate with "
                "respect to (default: every parameter); repeatable");
  c->add_option("--mode", o->mode, "train or eval")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "eval"}));
  c->add_option("--seed", o->seed,
                "random seed (dropout masks, held fixed; the sampled "
                "elements)")
      ->capture_default_str();
}

// Sets the model, feeds, wrt, loss, mode and seed of an analysis request.
template <typename Request>
absl::Status FillRequest(const AnalysisOptions& o, Request* r) {
  if (!o.session.empty()) {
    r->set_session_id(o.session);
  } else {
    ASSIGN_OR_RETURN(*r->mutable_graph(), ReadGraph(o.graph));
  }
  RETURN_IF_ERROR(ReadTensors(o.feeds, "--feed", r->mutable_feeds()));
  for (const std::string& w : o.wrt) r->add_wrt(w);
  r->set_loss(o.loss);
  r->set_mode(o.mode == "eval" ? pb::MODE_EVAL : pb::MODE_TRAIN);
  r->set_seed(o.seed);
  return absl::OkStatus();
}

int Failed(const absl::Status& status, std::ostream& err) {
  err << "error: " << absl::StatusCodeToString(status.code()) << ": "
      << status.message() << "\n";
  return 1;
}

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

int GradCheck(Client& client, const AnalysisOptions& o, std::ostream& out,
              std::ostream& err) {
  pb::CheckGradientsRequest request;
  absl::Status filled = FillRequest(o, &request);
  if (filled.ok()) {
    filled = ReadTensors(o.grads, "--grad", request.mutable_output_gradients());
  }
  if (!filled.ok()) return Failed(filled, err);
  request.set_epsilon(o.epsilon);
  request.set_rtol(o.rtol);
  request.set_atol(o.atol);
  request.set_max_elements_per_tensor(o.max_elements);
  auto r = client.CheckGradients(request);
  if (!r.ok()) return Failed(r.status(), err);
  PrintChecks(*r, out);
  std::vector<std::string> failed;
  for (const pb::TensorCheck& t : r->tensors()) {
    if (!t.passed()) failed.push_back(t.name());
  }
  if (!r->passed()) {
    out << "gradcheck FAILED for " << absl::StrJoin(failed, ", ") << "\n";
    return 1;
  }
  out << "gradcheck passed: " << r->tensors_size() << " tensor(s)\n";
  return 0;
}

void PrintValues(std::ostream& out, const std::string& title,
                 const google::protobuf::RepeatedField<double>& values) {
  out << std::left << std::setw(10) << title << std::setprecision(8);
  for (double v : values) out << " " << v;
  out << "\n";
}

int Hessian(Client& client, const AnalysisOptions& o, std::ostream& out,
            std::ostream& err) {
  pb::HessianEigenvaluesRequest request;
  if (absl::Status filled = FillRequest(o, &request); !filled.ok()) {
    return Failed(filled, err);
  }
  request.set_k(o.k);
  auto r = client.HessianEigenvalues(request);
  if (!r.ok()) return Failed(r.status(), err);
  if (r->exact()) {
    out << "exact: every eigenvalue of the whole Hessian\n";
  } else {
    out << "Lanczos estimate: " << r->iterations() << " iterations, "
        << (r->converged() ? "converged" : "NOT converged") << "\n";
  }
  out << std::setprecision(6) << "loss " << r->loss() << ", gradient norm "
      << r->gradient_norm() << "\n";
  PrintValues(out, "largest", r->largest());
  PrintValues(out, "smallest", r->smallest());
  out << "critical point: " << r->critical_point() << "\n";
  return 0;
}

}  // namespace

std::vector<GradctlCommand> AddAnalysisCommands(CLI::App& app) {
  auto o = std::make_shared<AnalysisOptions>();
  CLI::App* gradcheck = app.add_subcommand(
      "gradcheck",
      "Checks a graph's gradients (float64 and float32 paths) against "
      "central finite differences in float64; prints a table per tensor and "
      "exits 1 when one fails.");
  AddModelOptions(gradcheck, o.get());
  gradcheck->add_option("--loss", o->loss, "the scalar to differentiate");
  gradcheck->add_option("--grad", o->grads,
                        "a seed dLoss/dValue: NAME=FILE.npy; repeatable; "
                        "adds <seed, value> to --loss");
  gradcheck->add_option("--epsilon", o->epsilon,
                        "finite-difference step (default 1e-6)");
  gradcheck->add_option("--rtol", o->rtol, "relative tolerance (default 1e-3)");
  gradcheck->add_option("--atol", o->atol, "absolute tolerance (default 1e-5)");
  gradcheck->add_option("--max-elements", o->max_elements,
                        "elements checked per tensor, a seeded random "
                        "subset (default: all)");
  CLI::App* hessian = app.add_subcommand(
      "hessian",
      "The k largest and k smallest eigenvalues of the loss's Hessian with "
      "respect to --wrt, the gradient norm, and whether the point is a "
      "minimum, maximum, saddle, degenerate or not critical.");
  AddModelOptions(hessian, o.get());
  hessian->add_option("--loss", o->loss, "the scalar whose Hessian to study")
      ->required();
  hessian->add_option("--k", o->k, "eigenvalues at each end")
      ->capture_default_str();
  return {
      {gradcheck,
       [o](Client& c, std::ostream& out, std::ostream& err) {
         return GradCheck(c, *o, out, err);
       }},
      {hessian, [o](Client& c, std::ostream& out,
                    std::ostream& err) { return Hessian(c, *o, out, err); }},
  };
}

}  // namespace gradserve::client
