#include "client/trainer.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/atomic_file.h"
#include "client/graph_file.h"
#include "client/retry.h"
#include "client/trainer.h"
#include "core/status_macros.h"

namespace gradserve::client {

namespace pb = ::gradserve::v1;

pb::Optimizer OptimizerOf(const TrainFlags& f) {
  pb::Optimizer o;
  o.set_max_grad_norm(f.max_grad_norm);
  if (f.optimizer == "sgd") {
    pb::SGD* sgd = o.mutable_sgd();
    sgd->set_lr(f.lr);
    sgd->set_momentum(f.momentum);
    sgd->set_nesterov(f.nesterov);
    sgd->set_weight_decay(f.weight_decay);
    return o;
  }
  pb::Adam* adam = o.mutable_adam();
  if (f.lr_option->count() > 0) adam->set_lr(f.lr);
  if (f.weight_decay_option->count() > 0) {
    adam->set_weight_decay(f.weight_decay);
  }
  adam->set_decoupled_weight_decay(f.optimizer == "adamw");
  return o;
}

namespace {

int64_t Argmax(const float* row, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (row[i] > row[best]) best = i;
  }
  return best;
}

// Rows of `scores` [N, C] whose argmax equals `labels` [N].
absl::StatusOr<int64_t> Correct(const pb::Tensor& scores,
                                const pb::Tensor& labels,
                                const std::string& output) {
  const int64_t n = labels.shape_size() > 0 ? labels.shape(0) : 0;
  if (scores.dtype() != pb::DATA_TYPE_FLOAT32 || scores.shape_size() != 2 ||
      scores.shape(0) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("--accuracy-of ", output, ": expected a float32 [", n,
                     ", classes] output, got ", TypeName(scores.dtype()), " ",
                     DimsToString(scores.shape())));
  }
  const int64_t classes = scores.shape(1);
  const float* s = reinterpret_cast<const float*>(scores.data().data());
  const int64_t* l = reinterpret_cast<const int64_t*>(labels.data().data());
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i)
    correct += Argmax(s + i * classes, classes) == l[i];
  return correct;
}

float ScalarFloat(const pb::Tensor& t) {
  const std::vector<double> v = Values(t);
  return v.size() == 1 ? static_cast<float>(v[0]) : NAN;
}

}  // namespace

absl::Status Trainer::Run() {
  RETURN_IF_ERROR(Load());
  ASSIGN_OR_RETURN(client_, c_.Connect());
  RETURN_IF_ERROR(CreateSession());
  absl::Status status = Train();
  if (!session_.empty()) {  // best effort: the server expires it anyway
    pb::CloseSessionRequest close;
    close.set_session_id(session_);
    (void)client_->CloseSession(close);
  }
  return status;
}

absl::Status Trainer::Load() {
  RETURN_IF_ERROR(ReadModel(f_.graph, &model_));
  ASSIGN_OR_RETURN(train_, ReadDataset(f_.data));
  if (!f_.val.empty()) {
    ASSIGN_OR_RETURN(Dataset val, ReadDataset(f_.val));
    val_ = std::move(val);
  } else if (f_.val_split > 0) {
    RETURN_IF_ERROR(Split());
  }
  auto mapped = ParseFeedMap(f_.map);
  if (!mapped.ok()) return UsageError(mapped.status().message());
  ASSIGN_OR_RETURN(feeds_, ResolveFeeds(*mapped, graph(), train_));
  if (val_.has_value()) {
    RETURN_IF_ERROR(ResolveFeeds(*mapped, graph(), *val_).status());
  }
  if (!f_.accuracy_of.empty()) RETURN_IF_ERROR(FindLabels());
  steps_per_epoch_ = BatchCount(train_.samples, f_.batch_size);
  ASSIGN_OR_RETURN(schedule_.kind, ParseScheduleKind(f_.schedule));
  schedule_.lr = f_.lr_option->count() > 0 ? f_.lr : 1e-3;
  schedule_.step_epochs = f_.lr_step_epochs;
  schedule_.gamma = f_.lr_gamma;
  schedule_.min_lr = f_.lr_min;
  schedule_.total_steps = steps_per_epoch_ * f_.epochs;
  return absl::OkStatus();
}

// The last val_split of a seeded permutation is held out.
absl::Status Trainer::Split() {
  Rng rng(f_.seed ^ 0x5eed5011177ull);
  std::vector<int64_t> order = Permutation(train_.samples, rng);
  const int64_t held = static_cast<int64_t>(
      std::llround(f_.val_split * static_cast<double>(train_.samples)));
  if (held <= 0 || held >= train_.samples) {
    return UsageError(absl::StrCat("--val-split ", f_.val_split, " of ",
                                   train_.samples,
                                   " samples leaves no validation or no "
                                   "training data"));
  }
  std::vector<int64_t> kept(order.begin(), order.end() - held);
  std::vector<int64_t> out(order.end() - held, order.end());
  val_ = Subset(train_, out);
  train_ = Subset(train_, kept);
  return absl::OkStatus();
}

absl::Status Trainer::FindLabels() {
  if (!f_.labels.empty()) {
    if (!feeds_.count(f_.labels)) {
      return UsageError(
          absl::StrCat("--labels ", f_.labels, ": no array feeds that input"));
    }
    labels_ = f_.labels;
    return absl::OkStatus();
  }
  for (const auto& [input, array] : feeds_) {
    if (train_.arrays.at(array).dtype() != pb::DATA_TYPE_INT64) continue;
    if (!labels_.empty()) {
      return UsageError(
          absl::StrCat("--accuracy-of: inputs '", labels_, "' and '", input,
                       "' are both int64; name the labels with --labels"));
    }
    labels_ = input;
  }
  if (labels_.empty()) {
    return UsageError(
        "--accuracy-of: no graph input is fed int64 class labels; name it "
        "with --labels");
  }
  return absl::OkStatus();
}

absl::Status Trainer::CreateSession() {
  pb::CreateSessionRequest request = model_;
  *request.mutable_optimizer() = OptimizerOf(f_);
  request.set_label(absl::StrCat(
      "gradctl train ", std::filesystem::path(f_.graph).filename().string()));
  ASSIGN_OR_RETURN(pb::CreateSessionResponse created,
                   client_->CreateSession(request));
  session_ = created.session().session_id();
  return absl::OkStatus();
}

absl::Status Trainer::Train() {
  position_.epoch_rng = f_.seed;
  if (!f_.resume.empty()) RETURN_IF_ERROR(Restore());
  RETURN_IF_ERROR(OpenLogs());
  InterruptGuard interrupt;
  const absl::Time start = absl::Now();
  const int64_t first_step = step_;
  while (position_.epoch < f_.epochs &&
         (f_.max_steps == 0 || step_ < f_.max_steps)) {
    ASSIGN_OR_RETURN(bool go_on, Epoch());
    if (!go_on) break;
  }
  RETURN_IF_ERROR(WritePlot());
  Summary(absl::Now() - start, step_ - first_step);
  if (InterruptGuard::requested()) {
    return ExitWith(kExitInterrupted,
                    absl::StrCat("interrupted at step ", step_, Resumable()));
  }
  return Save();
}

std::string Trainer::Resumable() const {
  return f_.out.empty() ? ""
                        : absl::StrCat("; continue with --resume ",
                                       OutPath("checkpoint.npz"));
}

// One epoch from position_; false when the run is to stop early.
absl::StatusOr<bool> Trainer::Epoch() {
  Rng rng(position_.epoch_rng);
  std::vector<int64_t> order;
  if (f_.shuffle) {
    order = Permutation(train_.samples, rng);
  } else {
    order.resize(train_.samples);
    for (int64_t i = 0; i < train_.samples; ++i) order[i] = i;
  }
  const absl::Time start = absl::Now();
  Progress progress(c_.out, ProgressStyle(f_.progress, c_.tty),
                    absl::StrCat("epoch ", position_.epoch + 1, "/", f_.epochs),
                    "steps", absl::Seconds(f_.progress_every));
  const int64_t first_batch = position_.batch;
  for (; position_.batch < steps_per_epoch_; ++position_.batch) {
    RETURN_IF_ERROR(Step(order, progress));
    progress.Update(EpochProgress(position_.batch + 1, first_batch, start));
    const bool stop = InterruptGuard::requested() ||
                      (f_.max_steps > 0 && step_ >= f_.max_steps);
    if (Checkpointing() && (stop || (f_.checkpoint_every > 0 &&
                                     step_ % f_.checkpoint_every == 0))) {
      RETURN_IF_ERROR(Checkpoint(position_.epoch, position_.batch + 1,
                                 position_.epoch_rng));
    }
    if (stop) {
      progress.Finish(EpochProgress(position_.batch + 1, first_batch, start));
      if (!InterruptGuard::requested()) {
        c_.out << "stopped at step " << step_ << " (--max-steps)" << Resumable()
               << "\n";
      }
      return false;
    }
  }
  progress.Finish(EpochProgress(position_.batch, first_batch, start));
  RETURN_IF_ERROR(EndEpoch(absl::Now() - start));
  position_ = {position_.epoch + 1, 0, rng.state()};
  if (Checkpointing()) {
    RETURN_IF_ERROR(Checkpoint(position_.epoch, 0, position_.epoch_rng));
  }
  RETURN_IF_ERROR(WritePlot());
  return true;
}

bool Trainer::Checkpointing() const { return !f_.out.empty(); }

ProgressState Trainer::EpochProgress(int64_t done, int64_t first_batch,
                                     absl::Time start) const {
  ProgressState p;
  p.done = done;
  p.total = steps_per_epoch_;
  const double s = absl::ToDoubleSeconds(absl::Now() - start);
  p.rate = s > 0 ? (p.done - first_batch) / s : 0;
  double sum = 0;
  int64_t n = 0;
  for (const StepRecord& r : history_.steps) {
    if (r.epoch == position_.epoch + 1 && std::isfinite(r.loss)) {
      sum += r.loss;
      ++n;
    }
  }
  p.extra =
      absl::StrFormat("loss %.4f lr %.3g", n ? sum / n : NAN,
                      history_.steps.empty() ? 0 : history_.steps.back().lr);
  return p;
}

bool Trainer::Diagnosed(int64_t step) const {
  return f_.diagnostics && (step - 1) % f_.diagnostics_every == 0;
}

void Trainer::FollowWarnings(const StepRecord& record, Progress& progress) {
  for (const WarningEvent& e :
       warnings_.Observe(record.step, record.warnings)) {
    progress.Note(FormatWarningEvent(e));
  }
}

absl::Status Trainer::Step(const std::vector<int64_t>& order,
                           Progress& progress) {
  const int64_t begin = position_.batch * f_.batch_size;
  const int64_t end = std::min(train_.samples, begin + f_.batch_size);
  std::vector<int64_t> rows(order.begin() + begin, order.begin() + end);
  pb::TrainStepRequest request;
  request.set_session_id(session_);
  FeedGathered(train_, feeds_, rows, request.mutable_feeds());
  request.set_loss(f_.loss);
  if (!f_.accuracy_of.empty()) request.add_fetch(f_.accuracy_of);
  request.set_seed(Rng(f_.seed ^ (0x9e3779b97f4a7c15ull * (step_ + 1))).Next());
  StepRecord record;
  record.epoch = position_.epoch + 1;
  record.batch = position_.batch;
  record.lr = LearningRate(schedule_, position_.epoch, step_);
  record.samples = end - begin;
  record.diagnosed = Diagnosed(step_ + 1);
  request.set_diagnostics(record.diagnosed);
  request.set_learning_rate(record.lr);
  ASSIGN_OR_RETURN(std::optional<pb::TrainStepResponse> reply,
                   CallStep(request));
  record.step = ++step_;
  record.loss = reply ? ScalarFloat(reply->loss()) : NAN;
  record.grad_norm = reply ? reply->grad_norm() : NAN;
  // A lost reply's step was diagnosed with nothing to show.
  record.diagnosed = record.diagnosed && reply;
  if (record.diagnosed) {
    const auto& warnings = reply->diagnostics().warnings();
    record.warnings.assign(warnings.begin(), warnings.end());
  }
  if (reply && !f_.accuracy_of.empty()) {
    auto out = reply->outputs().find(f_.accuracy_of);
    if (out == reply->outputs().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--accuracy-of ", f_.accuracy_of,
                       ": the step returned no such output"));
    }
    ASSIGN_OR_RETURN(
        record.correct,
        Correct(out->second, request.feeds().at(labels_), f_.accuracy_of));
  }
  history_.steps.push_back(record);
  if (record.diagnosed) FollowWarnings(record, progress);
  if (step_log_) RETURN_IF_ERROR(step_log_->Append(StepCsvRow(record)));
  if (reply) return CheckDivergence(record);
  return absl::OkStatus();
}

// The step's reply; nullopt when it was applied but its reply was lost.
// A refused step (RESOURCE_EXHAUSTED) is sent again; after a failure that
// leaves it unknown whether the step applied (UNAVAILABLE,
// DEADLINE_EXCEEDED), the session's step count tells, before anything is
// sent again, so that no step is applied twice.
absl::StatusOr<std::optional<pb::TrainStepResponse>> Trainer::CallStep(
    const pb::TrainStepRequest& request) {
  std::optional<pb::TrainStepResponse> reply;
  bool unknown = false, applied = false;
  RetryPolicy policy;
  absl::Status status = CallWithRetries(
      policy, random_,
      [&]() -> absl::Status {
        if (unknown) {
          pb::GetParametersRequest get;
          get.set_session_id(session_);
          // One parameter is enough (all of them for an ONNX model, whose
          // names the server imported).
          if (graph() != nullptr && !graph()->parameters().empty()) {
            get.add_names(graph()->parameters().begin()->first);
          }
          ASSIGN_OR_RETURN(pb::GetParametersResponse state,
                           client_->GetParameters(get));
          if (state.step() > step_) {
            applied = true;
            return absl::OkStatus();
          }
        }
        auto r = client_->TrainStep(request);
        if (r.ok()) {
          reply = *std::move(r);
          return absl::OkStatus();
        }
        unknown = r.status().code() != absl::StatusCode::kResourceExhausted;
        return r.status();
      },
      [&](const absl::Status& s) {
        c_.err << "step " << step_ + 1 << ": "
               << absl::StatusCodeToString(s.code())
               << ", retrying: " << s.message() << "\n";
      });
  if (status.code() == absl::StatusCode::kNotFound) {
    return Annotate(
        status, absl::StrCat("the session is gone (did the server restart?)",
                             Resumable()));
  }
  RETURN_IF_ERROR(status);
  if (applied) {
    c_.err << "step " << step_ + 1
           << " was applied but its reply was lost: its loss is not known\n";
  }
  return reply;
}

absl::Status Trainer::CheckDivergence(const StepRecord& record) const {
  const std::string hint = absl::StrFormat(
      "; the learning rate (%g) is likely too high: try --lr %g or lower",
      record.lr, record.lr / 10);
  if (!std::isfinite(record.loss)) {
    return absl::FailedPreconditionError(
        absl::StrCat("training diverged at step ", record.step, " (epoch ",
                     record.epoch, "): the loss is ", record.loss, hint));
  }
  if (f_.divergence_factor <= 0) return absl::OkStatus();
  const float start = history_.steps.front().loss;
  double sum = 0;
  int n = 0;
  for (auto it = history_.steps.rbegin(); it != history_.steps.rend() && n < 5;
       ++it) {
    if (std::isfinite(it->loss)) {
      sum += it->loss;
      ++n;
    }
  }
  const double recent = sum / std::max(n, 1);
  if (start > 0 && recent > f_.divergence_factor * start) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "training diverged at step %d (epoch %d): the loss (%g, the mean of "
        "the last %d steps) is over %g times its first value %g%s",
        record.step, record.epoch, recent, n, f_.divergence_factor, start,
        hint));
  }
  return absl::OkStatus();
}

// Loss and correct predictions over `data`, in EVAL mode.
absl::Status Trainer::Evaluate(const Dataset& data, double* loss,
                               double* accuracy) {
  pb::ComputeRequest base;
  base.set_session_id(session_);
  base.set_mode(pb::MODE_EVAL);
  base.add_fetch(f_.loss);
  if (!f_.accuracy_of.empty()) base.add_fetch(f_.accuracy_of);
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t begin = 0; begin < data.samples; begin += f_.eval_batch_size) {
    const int64_t end = std::min(data.samples, begin + f_.eval_batch_size);
    pb::ComputeRequest request = base;
    FeedRows(data, feeds_, begin, end, request.mutable_feeds());
    absl::StatusOr<pb::ComputeResponse> r;
    RETURN_IF_ERROR(CallWithRetries(
        RetryPolicy(), random_,
        [&] { return (r = client_->Compute(request)).status(); },
        [](const absl::Status&) {}));
    loss_sum += ScalarFloat(r->outputs().at(f_.loss)) * (end - begin);
    if (!f_.accuracy_of.empty()) {
      ASSIGN_OR_RETURN(int64_t c,
                       Correct(r->outputs().at(f_.accuracy_of),
                               request.feeds().at(labels_), f_.accuracy_of));
      correct += c;
    }
  }
  *loss = loss_sum / data.samples;
  *accuracy = f_.accuracy_of.empty()
                  ? NAN
                  : static_cast<double>(correct) / data.samples;
  return absl::OkStatus();
}

absl::Status Trainer::EndEpoch(absl::Duration took) {
  EpochRecord e;
  e.epoch = position_.epoch + 1;
  e.step = step_;
  double loss = 0, seen = 0, correct = 0;
  std::vector<std::vector<std::string>> warnings;
  for (const StepRecord& s : history_.steps) {
    if (s.epoch == e.epoch && s.diagnosed) warnings.push_back(s.warnings);
    if (s.epoch != e.epoch || !std::isfinite(s.loss)) continue;
    loss += s.loss * s.samples;
    seen += s.samples;
    correct += s.correct;
  }
  e.train_loss = seen > 0 ? loss / seen : NAN;
  e.train_accuracy = f_.accuracy_of.empty() || seen == 0 ? NAN : correct / seen;
  e.warnings = DistinctWarnings(warnings);
  e.val_loss = e.val_accuracy = NAN;
  if (val_.has_value()) {
    RETURN_IF_ERROR(Evaluate(*val_, &e.val_loss, &e.val_accuracy));
  }
  e.lr = history_.steps.empty() ? schedule_.lr : history_.steps.back().lr;
  e.seconds = absl::ToDoubleSeconds(took);
  history_.epochs.push_back(e);
  if (epoch_log_) RETURN_IF_ERROR(epoch_log_->Append(EpochCsvRow(e)));
  PrintEpoch(e);
  return absl::OkStatus();
}

void Trainer::PrintEpoch(const EpochRecord& e) const {
  std::string line = absl::StrFormat("epoch %d/%d: train loss %.4f", e.epoch,
                                     f_.epochs, e.train_loss);
  if (!std::isnan(e.train_accuracy)) {
    absl::StrAppendFormat(&line, " accuracy %.2f%%", 100 * e.train_accuracy);
  }
  if (!std::isnan(e.val_loss)) {
    absl::StrAppendFormat(&line, " | val loss %.4f", e.val_loss);
  }
  if (!std::isnan(e.val_accuracy)) {
    absl::StrAppendFormat(&line, " accuracy %.2f%%", 100 * e.val_accuracy);
  }
  absl::StrAppendFormat(&line, " | lr %.3g | %.2f s\n", e.lr, e.seconds);
  c_.out << line << std::flush;
}

}  // namespace gradserve::client
