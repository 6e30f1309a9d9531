#include "tests/fuzz/requests.h"

namespace gradserve::fuzz {
namespace {

// The model oneof, copied between request types.
template <typename To, typename From>
void CopyModel(const From& from, To* to) {
  if (from.has_graph()) *to->mutable_graph() = from.graph();
  if (from.model_case() == From::kOnnxModel) {
    to->set_onnx_model(from.onnx_model());
  }
  if (from.model_case() == From::kSessionId) {
    to->set_session_id(from.session_id());
  }
}

}  // namespace

pb::ComputeRequest ComputeOf(const pb::ForwardRequest& f,
                             const pb::BackwardRequest& b) {
  pb::ComputeRequest r;
  CopyModel(f, &r);
  *r.mutable_feeds() = f.feeds();
  *r.mutable_fetch() = f.fetch();
  if (b.from_loss()) r.set_loss(f.loss());
  *r.mutable_output_gradients() = b.output_gradients();
  *r.mutable_wrt() = b.wrt_size() > 0 ? b.wrt() : f.wrt();
  r.set_mode(f.mode());
  r.set_seed(f.seed());
  return r;
}

pb::ForwardRequest ForwardOf(const pb::ComputeRequest& c) {
  pb::ForwardRequest f;
  CopyModel(c, &f);
  *f.mutable_feeds() = c.feeds();
  *f.mutable_fetch() = c.fetch();
  f.set_loss(c.loss());
  *f.mutable_wrt() = c.wrt();
  f.set_mode(c.mode());
  f.set_seed(c.seed());
  return f;
}

}  // namespace gradserve::fuzz
