#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/op_registry.h"
#include "tests/fuzz/mutations.h"

namespace gradserve::fuzz {
namespace {

const std::vector<const OpSchema*>& Ops() {
  static const auto* ops =
      new std::vector<const OpSchema*>(OpRegistry::Global().All());
  return *ops;
}

// Every attribute any op declares, for attributes a node's op does not.
const std::vector<AttrSpec>& AllAttrs() {
  static const auto* attrs = [] {
    auto* all = new std::vector<AttrSpec>;
    for (const OpSchema* op : Ops()) {
      all->insert(all->end(), op->attrs.begin(), op->attrs.end());
    }
    return all;
  }();
  return *attrs;
}

const std::vector<AttrSpec>& AttrsOf(const pb::Node& n) {
  static const std::vector<AttrSpec> none;
  const OpSchema* schema = OpRegistry::Global().Find(n.op());
  return schema != nullptr ? schema->attrs : none;
}

std::string RandomString(Random& r) {
  static const std::vector<std::string> words = {"mean", "sum", "none", "",
                                                 "MEAN"};
  return r.Chance(0.8) ? r.Pick(words) : r.Garbage();
}

void SetInput(pb::Node* n, int i, const Sites& s, Random& r) {
  n->set_inputs(i, r.Chance(0.1) ? "" : ValueName(s, r));
}

// Inputs as many as the op takes (a variadic one: one to four), each a
// value of the case; declared attributes drawn anew.
void FitToSchema(pb::Node* n, const OpSchema& op, const Sites& s, Random& r) {
  int count = static_cast<int>(op.inputs.size());
  if (!op.inputs.empty() && op.inputs.back().variadic) count += r.Below(4);
  while (n->inputs_size() > count) n->mutable_inputs()->RemoveLast();
  while (n->inputs_size() < count) {
    n->add_inputs(ValueName(s, r));
  }
  n->clear_attributes();
  for (const AttrSpec& spec : op.attrs) {
    if (r.Chance(0.5))
      (*n->mutable_attributes())[spec.name] = RandomAttribute(spec, r);
  }
}

void MutateOp(pb::Node* n, const Sites& s, Random& r) {
  if (r.Chance(0.05)) {
    n->set_op(r.Garbage());
    return;
  }
  const OpSchema* op = r.Pick(Ops());
  n->set_op(op->name);
  if (r.Chance(0.6)) FitToSchema(n, *op, s, r);
}

void MutateInputs(pb::Node* n, const Sites& s, Random& r) {
  const int size = n->inputs_size();
  const int kind = size == 0 ? 1 : r.Below(4);
  if (kind == 1) {
    n->add_inputs(ValueName(s, r));
  } else if (kind == 2) {
    n->mutable_inputs()->SwapElements(r.Below(size), size - 1);
    n->mutable_inputs()->RemoveLast();
  } else {
    SetInput(n, r.Below(size), s, r);
  }
}

void MutateOutputs(pb::Node* n, const Sites& s, Random& r) {
  const int size = n->outputs_size();
  const int kind = size == 0 ? 1 : r.Below(4);
  if (kind == 1) {
    n->add_outputs(FreshName(s, r));
  } else if (kind == 2) {
    n->mutable_outputs()->RemoveLast();
  } else {
    n->set_outputs(r.Below(size),
                   r.Chance(0.7) ? FreshName(s, r) : ValueName(s, r));
  }
}

void MutateAttribute(pb::Node* n, Random& r) {
  auto* attrs = n->mutable_attributes();
  if (!attrs->empty() && r.Chance(0.15)) {
    auto it = attrs->begin();
    std::advance(it, r.Below(static_cast<int>(attrs->size())));
    const std::string name = it->first;
    attrs->erase(name);
    return;
  }
  const auto& declared = AttrsOf(*n);
  const AttrSpec& spec = !declared.empty() && r.Chance(0.85)
                             ? r.Pick(declared)
                             : r.Pick(AllAttrs());
  (*attrs)[spec.name] = RandomAttribute(spec, r);
}

}  // namespace

std::string ValueName(const Sites& s, Random& r) {
  if (s.values.empty() || r.Chance(0.05)) {
    return r.Chance(0.5) ? FreshName(s, r) : r.Garbage();
  }
  return r.Pick(s.values);
}

std::string FreshName(const Sites& s, Random& r) {
  std::string name;
  do {
    name = absl::StrCat("v", r.Below(1 << 20));
  } while (std::find(s.values.begin(), s.values.end(), name) != s.values.end());
  return name;
}

pb::Attribute RandomAttribute(const AttrSpec& spec, Random& r) {
  pb::Attribute a;
  const AttrType type =
      r.Chance(0.85) ? spec.type : static_cast<AttrType>(r.Below(5));
  switch (type) {
    case AttrType::kInt:
      a.set_i(r.Int());
      break;
    case AttrType::kFloat:
      a.set_f(r.Float());
      break;
    case AttrType::kString:
      a.set_s(RandomString(r));
      break;
    case AttrType::kInts:
      for (int i = r.Pick(std::vector<int>{0, 1, 2, 2, 2, 3, 4}); i > 0; --i) {
        a.mutable_ints()->add_values(r.Int());
      }
      a.mutable_ints();
      break;
    case AttrType::kFloats:
      for (int i = r.Below(4); i > 0; --i) {
        a.mutable_floats()->add_values(r.Float());
      }
      a.mutable_floats();
      break;
  }
  return a;
}

pb::Node RandomNode(const Sites& s, Random& r) {
  pb::Node n;
  const OpSchema* op = r.Pick(Ops());
  n.set_name(FreshName(s, r));
  n.set_op(op->name);
  FitToSchema(&n, *op, s, r);
  for (int i = op->min_outputs; i > 0; --i) n.add_outputs(FreshName(s, r));
  return n;
}

void MutateNode(pb::Graph* g, pb::Node* n, const Sites& s, Random& r) {
  switch (r.Below(9)) {
    case 0:
    case 1:
      return MutateOp(n, s, r);
    case 2:
    case 3:
      return MutateInputs(n, s, r);
    case 4:
      return MutateOutputs(n, s, r);
    case 5:
    case 6:
    case 7:
      return MutateAttribute(n, r);
    default:
      // A new node fed by this one's output, and fetched.
      pb::Node added = RandomNode(s, r);
      if (n->outputs_size() > 0 && added.inputs_size() > 0) {
        added.set_inputs(0, n->outputs(0));
      }
      if (added.outputs_size() > 0 && r.Chance(0.5)) {
        g->add_outputs(added.outputs(0));
      }
      *g->add_nodes() = std::move(added);
  }
}

}  // namespace gradserve::fuzz
