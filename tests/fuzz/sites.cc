#include "tests/fuzz/sites.h"

#include <set>

namespace gradserve::fuzz {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

bool NamesValues(const FieldDescriptor* field) {
  static const std::set<std::string> names = {
      "fetch", "wrt", "loss", "frozen", "names", "inputs", "outputs", "name"};
  return field->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
         names.count(field->name());
}

class Collector {
 public:
  explicit Collector(Sites* sites) : s_(sites) {}

  void Walk(FuzzCase* c) {
    if (c->has_compute()) Walk(c->mutable_compute());
    if (c->has_describe()) Walk(c->mutable_describe());
    if (c->has_forward_backward()) Walk(c->mutable_forward_backward());
    if (c->has_session()) Walk(c->mutable_session());
  }

 private:
  // The message's own fields; maps and set sub-messages are walked typed.
  void Fields(Message* m) {
    const auto* reflection = m->GetReflection();
    const auto* descriptor = m->GetDescriptor();
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const FieldDescriptor* f = descriptor->field(i);
      if (f->is_map()) continue;
      if (f->real_containing_oneof() && !reflection->HasField(*m, f)) continue;
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        if (f->is_repeated()) s_->lists.push_back({m, f});
        continue;
      }
      if (NamesValues(f)) {
        s_->names.push_back({m, f});
        AddValues(m, f);
      } else if (!f->is_repeated()) {
        s_->scalars.push_back({m, f});
        // Bytes fields only: a string with invalid UTF-8 fails parsing.
        if (f->type() == FieldDescriptor::TYPE_BYTES) {
          s_->bytes.push_back({m, f});
        }
      }
    }
  }

  void AddValues(const Message* m, const FieldDescriptor* f) {
    const auto* reflection = m->GetReflection();
    if (!f->is_repeated()) {
      const std::string v = reflection->GetString(*m, f);
      if (!v.empty()) s_->values.push_back(v);
      return;
    }
    for (int i = 0; i < reflection->FieldSize(*m, f); ++i) {
      const std::string v = reflection->GetRepeatedString(*m, f, i);
      if (!v.empty()) s_->values.push_back(v);
    }
  }

  void Walk(TensorMap* map) {
    s_->tensor_maps.push_back(map);
    for (auto& [name, t] : *map) {
      s_->values.push_back(name);
      Walk(&t);
    }
  }

  void Walk(ShapeMap* map) {
    s_->shape_maps.push_back(map);
    for (auto& [name, shape] : *map) {
      s_->values.push_back(name);
      s_->shapes.push_back(&shape);
      Fields(&shape);
    }
  }

  void Walk(pb::Tensor* t) {
    s_->tensors.push_back(t);
    Fields(t);
  }

  void Walk(pb::Graph* g) {
    if (s_->main_graph == nullptr) s_->main_graph = g;
    s_->graphs.push_back(g);
    Fields(g);
    for (pb::Node& n : *g->mutable_nodes()) {
      s_->nodes.push_back({g, &n});
      Fields(&n);
      for (auto& [name, a] : *n.mutable_attributes()) Fields(&a);
    }
    Walk(g->mutable_parameters());
    Walk(g->mutable_buffers());
  }

  template <typename Request>
  void WalkModel(Request* r) {
    Fields(r);
    if (r->has_graph()) Walk(r->mutable_graph());
  }

  void Walk(pb::ComputeRequest* r) {
    WalkModel(r);
    Walk(r->mutable_feeds());
    Walk(r->mutable_output_gradients());
  }

  void Walk(pb::DescribeRequest* r) {
    WalkModel(r);
    Walk(r->mutable_input_shapes());
  }

  void Walk(pb::ForwardRequest* r) {
    WalkModel(r);
    Walk(r->mutable_feeds());
  }

  void Walk(pb::BackwardRequest* r) {
    Fields(r);
    Walk(r->mutable_output_gradients());
  }

  void Walk(ForwardBackward* fb) {
    Fields(fb);
    Walk(fb->mutable_forward());
    for (pb::BackwardRequest& b : *fb->mutable_backward()) Walk(&b);
  }

  void Walk(pb::CreateSessionRequest* r) {
    WalkModel(r);
    if (!r->has_optimizer()) return;
    pb::Optimizer* o = r->mutable_optimizer();
    Fields(o);
    if (o->has_sgd()) Fields(o->mutable_sgd());
    if (o->has_adam()) Fields(o->mutable_adam());
  }

  void Walk(SessionScenario* s) {
    Fields(s);
    Walk(s->mutable_create());
    for (SessionStep& step : *s->mutable_steps()) Walk(&step);
  }

  void Walk(SessionStep* step) {
    if (step->has_train_step()) {
      Fields(step->mutable_train_step());
      Walk(step->mutable_train_step()->mutable_feeds());
    }
    if (step->has_set_parameters()) {
      pb::SetParametersRequest* r = step->mutable_set_parameters();
      Fields(r);
      Walk(r->mutable_parameters());
      Walk(r->mutable_buffers());
      Walk(r->mutable_optimizer_state());
    }
    if (step->has_get_parameters()) Fields(step->mutable_get_parameters());
    if (step->has_compute()) Walk(step->mutable_compute());
    if (step->has_forward_backward()) Walk(step->mutable_forward_backward());
    if (step->has_describe()) Walk(step->mutable_describe());
    if (step->has_close()) Fields(step->mutable_close());
  }

  Sites* s_;
};

}  // namespace

Sites Collect(FuzzCase* c) {
  Sites sites;
  Collector(&sites).Walk(c);
  return sites;
}

}  // namespace gradserve::fuzz
