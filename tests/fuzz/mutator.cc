#include "tests/fuzz/mutator.h"

#include <memory>

#include "tests/fuzz/mutations.h"
#include "tests/fuzz/requests.h"

// libFuzzer's own byte mutator; absent (null) in the replay build.
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size)
    __attribute__((weak));

namespace gradserve::fuzz {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string NameOrNothing(const Sites& s, Random& r) {
  const int kind = r.Below(20);
  if (kind < 15) return ValueName(s, r);
  if (kind < 18) return "";
  return r.Garbage();
}

void MutateName(const FieldRef& f, const Sites& s, Random& r) {
  Message* m = f.message;
  const auto* refl = m->GetReflection();
  if (!f.field->is_repeated()) {
    return refl->SetString(m, f.field, NameOrNothing(s, r));
  }
  const int size = refl->FieldSize(*m, f.field);
  const int kind = size == 0 ? 0 : r.Below(6);
  if (kind <= 1) {
    refl->AddString(m, f.field, NameOrNothing(s, r));
  } else if (kind == 2) {
    refl->SwapElements(m, f.field, r.Below(size), size - 1);
    refl->RemoveLast(m, f.field);
  } else if (kind == 3) {
    refl->SetRepeatedString(m, f.field, r.Below(size), NameOrNothing(s, r));
  } else if (kind == 4) {
    // One of them alone (wrt = the bias only, say).
    const std::string kept =
        refl->GetRepeatedString(*m, f.field, r.Below(size));
    refl->ClearField(m, f.field);
    refl->AddString(m, f.field, kept);
  } else {
    refl->ClearField(m, f.field);
  }
}

void MutateScalar(const FieldRef& f, Random& r) {
  Message* m = f.message;
  const FieldDescriptor* fd = f.field;
  const auto* refl = m->GetReflection();
  switch (fd->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return refl->SetInt32(m, fd, static_cast<int32_t>(r.Int()));
    case FieldDescriptor::CPPTYPE_INT64:
      return refl->SetInt64(m, fd, r.Int());
    case FieldDescriptor::CPPTYPE_UINT32:
      return refl->SetUInt32(m, fd, static_cast<uint32_t>(r.Int()));
    case FieldDescriptor::CPPTYPE_UINT64:
      return refl->SetUInt64(m, fd, static_cast<uint64_t>(r.Int()));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return refl->SetDouble(m, fd, r.Float());
    case FieldDescriptor::CPPTYPE_FLOAT:
      return refl->SetFloat(m, fd, static_cast<float>(r.Float()));
    case FieldDescriptor::CPPTYPE_BOOL:
      return refl->SetBool(m, fd, !refl->GetBool(*m, fd));
    case FieldDescriptor::CPPTYPE_ENUM:
      return refl->SetEnumValue(m, fd, static_cast<int>(r.Between(-1, 4)));
    case FieldDescriptor::CPPTYPE_STRING:
      return refl->SetString(m, fd, r.Chance(0.5) ? "" : r.Garbage());
    default:
      return;
  }
}

void MutateFieldBytes(const FieldRef& f, Random& r) {
  const auto* refl = f.message->GetReflection();
  std::string v = refl->GetString(*f.message, f.field);
  if (v.empty()) v.push_back(static_cast<char>(r.Below(256)));
  const size_t size = v.size();
  v.resize(2 * size + 16);
  auto* bytes = reinterpret_cast<uint8_t*>(v.data());
  if (LLVMFuzzerMutate != nullptr) {
    v.resize(LLVMFuzzerMutate(bytes, size, v.size()));
  } else {
    v.resize(size);
    v[r.Below(static_cast<int>(size))] ^= static_cast<char>(1 << r.Below(8));
  }
  refl->SetString(f.message, f.field, v);
}

// A session step built from what the scenario already has.
SessionStep NewStep(const SessionScenario& s, const Sites& sites, Random& r) {
  SessionStep step;
  const pb::TrainStepRequest* train = nullptr;
  for (const SessionStep& other : s.steps()) {
    if (other.has_train_step()) train = &other.train_step();
  }
  switch (r.Below(7)) {
    case 0:
      if (train != nullptr) {
        *step.mutable_train_step() = *train;
      } else {
        step.mutable_train_step()->set_loss(ValueName(sites, r));
      }
      break;
    case 1: {
      pb::SetParametersRequest* set = step.mutable_set_parameters();
      for (const auto& [name, t] : s.create().graph().parameters()) {
        if (r.Chance(0.5)) (*set->mutable_parameters())[name] = t;
      }
      if (r.Chance(0.3)) set->set_step(r.Int());
      break;
    }
    case 2:
      step.mutable_get_parameters()->set_include_optimizer_state(r.Chance(0.5));
      break;
    case 3:
      if (train != nullptr) {
        *step.mutable_compute()->mutable_feeds() = train->feeds();
        step.mutable_compute()->set_loss(train->loss());
      }
      step.mutable_compute();
      break;
    case 4: {
      pb::ForwardRequest* f =
          step.mutable_forward_backward()->mutable_forward();
      if (train != nullptr) {
        *f->mutable_feeds() = train->feeds();
        f->set_loss(train->loss());
      }
      step.mutable_forward_backward()->add_backward()->set_from_loss(true);
      break;
    }
    case 5:
      step.mutable_describe();
      break;
    default:
      step.mutable_close();
  }
  return step;
}

void AddElement(FuzzCase* c, const FieldRef& f, const Sites& s, Random& r) {
  Message* m = f.message;
  const auto* refl = m->GetReflection();
  const std::string& type = f.field->message_type()->full_name();
  if (type == "gradserve.v1.Node") {
    *static_cast<pb::Node*>(refl->AddMessage(m, f.field)) = RandomNode(s, r);
  } else if (type == "gradserve.fuzz.SessionStep" && c->has_session()) {
    const SessionStep step = NewStep(c->session(), s, r);
    *static_cast<SessionStep*>(refl->AddMessage(m, f.field)) = step;
  } else if (type == "gradserve.v1.BackwardRequest") {
    auto* b = static_cast<pb::BackwardRequest*>(refl->AddMessage(m, f.field));
    b->set_from_loss(r.Chance(0.7));
    b->set_keep(r.Chance(0.5));
  }
}

void MutateList(FuzzCase* c, const FieldRef& f, const Sites& s, Random& r) {
  Message* m = f.message;
  const auto* refl = m->GetReflection();
  const int size = refl->FieldSize(*m, f.field);
  const int kind = size == 0 ? 0 : r.Below(5);
  if (kind <= 1) return AddElement(c, f, s, r);
  const int i = r.Below(size);
  if (kind == 2) {
    std::unique_ptr<Message> copy(
        refl->GetRepeatedMessage(*m, f.field, i).New());
    copy->CopyFrom(refl->GetRepeatedMessage(*m, f.field, i));
    refl->AddMessage(m, f.field)->CopyFrom(*copy);
  } else if (kind == 3) {
    refl->SwapElements(m, f.field, i, size - 1);
    refl->RemoveLast(m, f.field);
  } else {
    refl->SwapElements(m, f.field, i, r.Below(size));
  }
}

pb::DescribeRequest DescribeOf(const pb::ComputeRequest& c) {
  pb::DescribeRequest d;
  if (c.has_graph()) *d.mutable_graph() = c.graph();
  for (const auto& [name, t] : c.feeds()) {
    pb::TensorShape& shape = (*d.mutable_input_shapes())[name];
    *shape.mutable_dims() = t.shape();
    shape.set_dtype(t.dtype());
  }
  return d;
}

pb::ComputeRequest ComputeFromDescribe(const pb::DescribeRequest& d,
                                       Random& r) {
  pb::ComputeRequest c;
  if (d.has_graph()) *c.mutable_graph() = d.graph();
  for (const auto& [name, shape] : d.input_shapes()) {
    pb::Tensor& t = (*c.mutable_feeds())[name];
    t.set_dtype(shape.dtype());
    *t.mutable_shape() = shape.dims();
    ResizeValues(&t, r);
  }
  return c;
}

SessionScenario SessionOf(const pb::ComputeRequest& c, Random& r) {
  SessionScenario s;
  if (c.has_graph()) *s.mutable_create()->mutable_graph() = c.graph();
  pb::Optimizer* o = s.mutable_create()->mutable_optimizer();
  if (r.Chance(0.5)) {
    o->mutable_sgd()->set_lr(0.1);
    o->mutable_sgd()->set_momentum(r.Chance(0.5) ? 0.9 : 0);
  } else {
    o->mutable_adam()->set_amsgrad(r.Chance(0.3));
  }
  pb::TrainStepRequest* train = s.add_steps()->mutable_train_step();
  *train->mutable_feeds() = c.feeds();
  train->set_loss(c.loss());
  *train->mutable_fetch() = c.fetch();
  *s.add_steps()->mutable_train_step() = *train;
  s.add_steps()->mutable_get_parameters()->set_include_optimizer_state(true);
  return s;
}

pb::ComputeRequest ComputeFromSession(const SessionScenario& s) {
  pb::ComputeRequest c;
  *c.mutable_graph() = s.create().graph();
  for (const SessionStep& step : s.steps()) {
    if (!step.has_train_step()) continue;
    *c.mutable_feeds() = step.train_step().feeds();
    c.set_loss(step.train_step().loss());
    break;
  }
  return c;
}

// One scenario as another, keeping its model and tensors.
void Convert(FuzzCase* c, Random& r) {
  if (c->has_compute()) {
    const pb::ComputeRequest compute = c->compute();
    const int kind = r.Below(3);
    if (kind == 0) {
      ForwardBackward* fb = c->mutable_forward_backward();
      *fb->mutable_forward() = ForwardOf(compute);
      pb::BackwardRequest* b = fb->add_backward();
      b->set_from_loss(!compute.loss().empty());
      *b->mutable_output_gradients() = compute.output_gradients();
    } else if (kind == 1) {
      *c->mutable_describe() = DescribeOf(compute);
    } else {
      *c->mutable_session() = SessionOf(compute, r);
    }
  } else if (c->has_forward_backward()) {
    const ForwardBackward fb = c->forward_backward();
    *c->mutable_compute() =
        ComputeOf(fb.forward(), fb.backward_size() > 0
                                    ? fb.backward(0)
                                    : pb::BackwardRequest::default_instance());
  } else if (c->has_describe()) {
    const pb::DescribeRequest d = c->describe();
    *c->mutable_compute() = ComputeFromDescribe(d, r);
  } else if (c->has_session()) {
    const SessionScenario s = c->session();
    *c->mutable_compute() = ComputeFromSession(s);
  }
}

}  // namespace

FuzzCase CaseMutator::Fresh() {
  Random r(rng_);
  FuzzCase c;
  pb::ComputeRequest* compute = c.mutable_compute();
  pb::Graph* g = compute->mutable_graph();
  Sites sites;
  for (const char* name : {"x0", "x1", "x2"}) {
    g->add_inputs(name);
    (*compute->mutable_feeds())[name] = RandomTensor(r);
    sites.values.push_back(name);
  }
  for (int i = r.Between(1, 2); i > 0; --i) {
    pb::Node n = RandomNode(sites, r);
    for (const std::string& out : n.outputs()) sites.values.push_back(out);
    *g->add_nodes() = std::move(n);
  }
  const std::string& last = g->nodes(g->nodes_size() - 1).outputs(0);
  g->add_outputs(last);
  if (r.Chance(0.5)) compute->set_loss(last);
  return c;
}

void CaseMutator::MutateOnce(FuzzCase* c) {
  Random r(rng_);
  Sites s = Collect(c);
  const int roll = r.Below(100);
  if (roll < 25 && !s.nodes.empty()) {
    auto [graph, node] = r.Pick(s.nodes);
    return MutateNode(graph, node, s, r);
  }
  if (roll < 45 && !s.tensors.empty()) {
    return MutateTensor(r.Pick(s.tensors), s, r);
  }
  if (roll < 53 && !s.tensor_maps.empty()) {
    return MutateTensorMap(r.Pick(s.tensor_maps), s, r);
  }
  if (roll < 56 && !s.shape_maps.empty()) {
    if (!s.shapes.empty() && r.Chance(0.6)) {
      return MutateTensorShape(r.Pick(s.shapes), r);
    }
    return MutateShapeMap(r.Pick(s.shape_maps), s, r);
  }
  if (roll < 68 && !s.names.empty()) return MutateName(r.Pick(s.names), s, r);
  if (roll < 78 && !s.scalars.empty())
    return MutateScalar(r.Pick(s.scalars), r);
  if (roll < 88 && !s.lists.empty()) {
    return MutateList(c, r.Pick(s.lists), s, r);
  }
  if (roll < 93) return Convert(c, r);
  if (!s.bytes.empty()) MutateFieldBytes(r.Pick(s.bytes), r);
}

void CaseMutator::Mutate(FuzzCase* c) {
  if (c->scenario_case() == FuzzCase::SCENARIO_NOT_SET) *c = Fresh();
  const int count = 1 + Random(rng_).Below(3) / 2 + Random(rng_).Below(2);
  for (int i = 0; i < count; ++i) MutateOnce(c);
}

void CaseMutator::CrossOver(const FuzzCase& other, FuzzCase* c) {
  Random r(rng_);
  FuzzCase donor = other;
  Sites theirs = Collect(&donor);
  Sites ours = Collect(c);
  switch (r.Below(4)) {
    case 0:
      if (!theirs.nodes.empty() && ours.main_graph != nullptr) {
        *ours.main_graph->add_nodes() = *r.Pick(theirs.nodes).second;
      }
      return;
    case 1:
      if (!theirs.tensor_maps.empty() && !ours.tensor_maps.empty()) {
        for (const auto& [name, t] : *r.Pick(theirs.tensor_maps)) {
          (*r.Pick(ours.tensor_maps))[name] = t;
        }
      }
      return;
    case 2:
      if (theirs.main_graph != nullptr && ours.main_graph != nullptr) {
        *ours.main_graph = *theirs.main_graph;
      }
      return;
    default:
      if (c->has_session() && donor.has_session()) {
        for (const SessionStep& step : donor.session().steps()) {
          *c->mutable_session()->add_steps() = step;
        }
      }
  }
}

size_t MutateBytes(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  CaseMutator mutator(seed);
  FuzzCase c;
  if (!c.ParseFromArray(data, static_cast<int>(size))) {
    if (LLVMFuzzerMutate != nullptr && mutator.rng()() % 4 == 0) {
      return LLVMFuzzerMutate(data, size, max_size);
    }
    c = mutator.Fresh();
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    FuzzCase mutated = c;
    mutator.Mutate(&mutated);
    const size_t n = mutated.ByteSizeLong();
    if (n <= max_size && mutated.SerializeToArray(data, static_cast<int>(n))) {
      return n;
    }
  }
  return LLVMFuzzerMutate != nullptr ? LLVMFuzzerMutate(data, size, max_size)
                                     : size;
}

size_t CrossOverBytes(const uint8_t* data1, size_t size1, const uint8_t* data2,
                      size_t size2, uint8_t* out, size_t max_out_size,
                      unsigned seed) {
  FuzzCase a, b;
  if (!a.ParseFromArray(data1, static_cast<int>(size1)) ||
      !b.ParseFromArray(data2, static_cast<int>(size2))) {
    return 0;
  }
  CaseMutator(seed).CrossOver(b, &a);
  const size_t n = a.ByteSizeLong();
  if (n > max_out_size || !a.SerializeToArray(out, static_cast<int>(n))) {
    return 0;
  }
  return n;
}

}  // namespace gradserve::fuzz
