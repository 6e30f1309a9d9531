// gradctl train: a training run on a server-side session.
#include "absl/strings/str_cat.h"
#include "client/gradctl_commands.h"
#include "client/trainer.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

void DefineFlags(CLI::App& app, TrainFlags& f) {
  AddGraphOption(app, &f.graph, true);
  app.add_option("--data", f.data,
                 "training data: an .npz whose arrays share a leading sample "
                 "axis")
      ->required();
  app.add_option("--map", f.map,
                 "INPUT=ARRAY: the array that feeds a graph input (default: "
                 "the array of the input's name); repeatable");
  app.add_option("--loss", f.loss, "the scalar value to minimise")->required();
  app.add_option("--epochs", f.epochs, "passes over the training data")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", f.batch_size, "samples a step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--shuffle", f.shuffle,
               "a new order each epoch, drawn from --seed (same seed, same "
               "order); default: the data set's order");
  app.add_option("--seed", f.seed,
                 "seeds the order, the --val-split and dropout masks")
      ->capture_default_str();
  app.add_option("--optimizer", f.optimizer,
                 "sgd, adam or adamw (torch.optim's semantics)")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  f.lr_option = app.add_option(
      "--lr", f.lr,
      "learning rate (required for sgd; adam and adamw default to 1e-3)");
  f.lr_option->check(CLI::PositiveNumber);
  app.add_option("--momentum", f.momentum, "sgd momentum")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--nesterov", f.nesterov, "sgd with Nesterov momentum");
  f.weight_decay_option = app.add_option(
      "--weight-decay", f.weight_decay,
      "L2 penalty (sgd, adam) or decoupled decay (adamw; default 1e-2)");
  f.weight_decay_option->check(CLI::NonNegativeNumber);
  app.add_option("--max-grad-norm", f.max_grad_norm,
                 "clip the gradients' total 2-norm to this (0 = no clipping)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr-schedule", f.schedule,
                 "constant; step (x --lr-gamma every --lr-step-epochs); "
                 "cosine (to --lr-min over the whole run, every step)")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "cosine"}));
  app.add_option("--lr-step-epochs", f.lr_step_epochs,
                 "epochs between the step schedule's decays")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr-gamma", f.lr_gamma, "the step schedule's factor")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr-min", f.lr_min, "the cosine schedule's last rate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--val", f.val,
                 "validation data (.npz with the same arrays), evaluated in "
                 "EVAL mode after each epoch");
  app.add_option("--val-split", f.val_split,
                 "hold out this fraction of --data (drawn with --seed) for "
                 "validation instead")
      ->check(CLI::Range(0.0, 0.9));
  app.add_option("--accuracy-of", f.accuracy_of,
                 "an output [N, classes] whose argmax is compared with the "
                 "labels: accuracy in training and validation");
  app.add_option("--labels", f.labels,
                 "the graph input holding the class labels (default: the one "
                 "fed an int64 array)");
  app.add_option("--eval-batch-size", f.eval_batch_size,
                 "samples a validation call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--out", f.out,
                 "run directory: steps.csv, epochs.csv, curves.svg and "
                 "checkpoint.npz");
  app.add_option("--checkpoint-every", f.checkpoint_every,
                 "also checkpoint every N steps (checkpoints are written at "
                 "each epoch's end with --out)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--resume", f.resume,
                 "continue from a checkpoint.npz exactly as the run would have "
                 "gone on");
  app.add_option("--save", f.save,
                 "write the final parameters and buffers to this .npz");
  app.add_option("--max-steps", f.max_steps,
                 "stop (with a checkpoint) once the session has taken this "
                 "many steps; the schedule still spans --epochs")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--divergence-factor", f.divergence_factor,
                 "stop when the loss (mean of the last 5 steps) exceeds this "
                 "many times its first value; 0 = only non-finite losses")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--diagnostics", f.diagnostics,
               "ask the server for Diagnostics of some steps: each warning "
               "is printed when it first appears and when it clears, and "
               "goes in the metrics CSVs' warnings column");
  f.diagnostics_every_option =
      app.add_option("--diagnostics-every", f.diagnostics_every,
                     "with --diagnostics: diagnose the first step and every "
                     "Nth after it (1 = every step)")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
  app.add_option("--progress", f.progress, "auto, bar, plain or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "plain", "off"}));
  app.add_option("--progress-every", f.progress_every,
                 "seconds between plain progress lines")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

absl::Status CheckFlags(const TrainFlags& f) {
  if (f.optimizer == "sgd" && f.lr_option->count() == 0) {
    return UsageError("--lr is required with --optimizer sgd");
  }
  if (!f.val.empty() && f.val_split > 0) {
    return UsageError("give --val or --val-split, not both");
  }
  if (f.checkpoint_every > 0 && f.out.empty()) {
    return UsageError("--checkpoint-every needs --out (the run directory)");
  }
  if (f.diagnostics_every_option->count() > 0 && !f.diagnostics) {
    return UsageError("--diagnostics-every goes with --diagnostics");
  }
  if (!f.labels.empty() && f.accuracy_of.empty()) {
    return UsageError("--labels goes with --accuracy-of");
  }
  return absl::OkStatus();
}

class Train : public Command {
 public:
  explicit Train(CLI::App& app) { DefineFlags(app, f_); }

  absl::Status Run(Context& context) override {
    RETURN_IF_ERROR(CheckFlags(f_));
    return Trainer(context, f_).Run();
  }

 private:
  TrainFlags f_;
};

}  // namespace

std::unique_ptr<Command> DefineTrain(CLI::App& app) {
  return std::make_unique<Train>(app);
}

}  // namespace gradserve::client
