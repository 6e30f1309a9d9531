#include "core/import/onnx/fusion.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace gradserve::onnx_import {
namespace {

// Who writes and who reads each value of a graph.
class Uses {
 public:
  explicit Uses(const onnx::GraphProto& graph) : graph_(graph) {
    for (int i = 0; i < graph.node_size(); ++i) {
      for (const auto& out : graph.node(i).output()) producer_[out] = i;
      for (const auto& in : graph.node(i).input()) readers_[in].push_back(i);
    }
    for (const auto& out : graph.output()) outputs_.insert(out.name());
    for (const auto& init : graph.initializer())
      initializers_[init.name()] = &init;
  }

  // The index of the node of type `op` that writes `value`, else -1.
  int Producer(const std::string& value, const char* op) const {
    auto it = producer_.find(value);
    if (it == producer_.end()) return -1;
    return graph_.node(it->second).op_type() == op ? it->second : -1;
  }

  // The only reader of `value` (not a graph output), when it is a node of
  // type `op`: its index, else -1.
  int SoleReader(const std::string& value, const char* op) const {
    auto it = readers_.find(value);
    if (outputs_.contains(value) || it == readers_.end() ||
        it->second.size() != 1) {
      return -1;
    }
    const int i = it->second[0];
    return graph_.node(i).op_type() == op ? i : -1;
  }

  // A float scalar (one element) from an initializer or a Constant node.
  std::optional<float> Scalar(const std::string& value) const {
    const onnx::TensorProto* t = nullptr;
    if (auto it = initializers_.find(value); it != initializers_.end()) {
      t = it->second;
    } else if (const int c = Producer(value, "Constant"); c >= 0) {
      for (const auto& a : graph_.node(c).attribute()) {
        if (a.name() == "value_float") return a.f();
        if (a.name() == "value") t = &a.t();
      }
    }
    if (t == nullptr || t->data_type() != onnx::TensorProto::FLOAT) {
      return std::nullopt;
    }
    int64_t n = 1;
    for (int64_t d : t->dims()) n *= d;
    if (n != 1) return std::nullopt;
    if (t->float_data_size() == 1) return t->float_data(0);
    if (t->raw_data().size() != sizeof(float)) return std::nullopt;
    float f;
    std::memcpy(&f, t->raw_data().data(), sizeof(float));
    return f;
  }

  const onnx::NodeProto& node(int i) const { return graph_.node(i); }

 private:
  const onnx::GraphProto& graph_;
  absl::flat_hash_map<std::string, int> producer_;
  absl::flat_hash_map<std::string, std::vector<int>> readers_;
  absl::flat_hash_set<std::string> outputs_;
  absl::flat_hash_map<std::string, const onnx::TensorProto*> initializers_;
};

bool Near(std::optional<float> v, double want) {
  return v && std::abs(*v - want) <= 1e-6 * std::abs(want);
}

// The operand of binary node `n` that is not `value` when `value` is one of
// its two inputs, else "".
std::string Other(const onnx::NodeProto& n, const std::string& value) {
  if (n.input_size() != 2) return "";
  if (n.input(0) == value) return n.input(1);
  if (n.input(1) == value) return n.input(0);
  return "";
}

// Erf node `erf` as the middle of GELU's Erf form: the indices of the
// nodes folded away and of the final Mul, and x; nullopt when it is not.
struct GeluMatch {
  std::vector<int> folded;  // Div, Erf, Add, first Mul
  int last = -1;
  std::string x;
};

std::optional<GeluMatch> MatchGelu(const Uses& uses, int erf) {
  const onnx::NodeProto& e = uses.node(erf);
  const int div = uses.Producer(e.input(0), "Div");
  if (div < 0 || !Near(uses.Scalar(uses.node(div).input(1)), std::sqrt(2.0)) ||
      uses.SoleReader(uses.node(div).output(0), "Erf") != erf) {
    return std::nullopt;
  }
  const std::string& x = uses.node(div).input(0);
  const int add = uses.SoleReader(e.output(0), "Add");
  if (add < 0 || !Near(uses.Scalar(Other(uses.node(add), e.output(0))), 1.0)) {
    return std::nullopt;
  }
  const std::string& a = uses.node(add).output(0);
  const int mul = uses.SoleReader(a, "Mul");
  if (mul < 0 || Other(uses.node(mul), a) != x) return std::nullopt;
  const std::string& m = uses.node(mul).output(0);
  const int last = uses.SoleReader(m, "Mul");
  if (last < 0 || !Near(uses.Scalar(Other(uses.node(last), m)), 0.5)) {
    return std::nullopt;
  }
  return GeluMatch{{div, erf, add, mul}, last, x};
}

}  // namespace

absl::flat_hash_map<int, Fused> FindFusions(const onnx::GraphProto& graph) {
  const Uses uses(graph);
  absl::flat_hash_map<int, Fused> fused;
  for (int i = 0; i < graph.node_size(); ++i) {
    if (graph.node(i).op_type() != "Erf" || graph.node(i).input_size() != 1) {
      continue;
    }
    std::optional<GeluMatch> m = MatchGelu(uses, i);
    if (!m) continue;
    for (int j : m->folded) fused[j] = Fused{};
    fused[m->last] = Fused{"GELU", m->x};
  }
  return fused;
}

}  // namespace gradserve::onnx_import
