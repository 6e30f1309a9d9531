// gradctl batch: one graph or session over many inputs, concurrently, with
// retries, a journal and --resume.
#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/atomic_file.h"
#include "client/batch_jobs.h"
#include "client/gradctl_commands.h"
#include "client/graph_file.h"
#include "client/journal.h"
#include "client/progress.h"
#include "client/reduction.h"
#include "client/retry.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

std::string JobFile(const std::string& dir, int64_t job) {
  return (std::filesystem::path(dir) / absl::StrFormat("job-%06d.npz", job))
      .string();
}

constexpr char kReducedFile[] = "reduced.npz";

struct BatchFlags {
  std::string graph, session, data, manifest, out, reduce;
  std::vector<std::string> map, fetch, wrt;
  std::string loss, mode = "train", progress = "auto";
  uint64_t seed = 0;
  int64_t batch_size = 64;
  int concurrency = 4;
  double deadline = 0, backoff = 0.1, max_backoff = 10, progress_every = 5;
  int retries = RetryPolicy().max_retries;
  bool fail_fast = false, resume = false;
};

// What the workers share while the jobs run.
struct RunState {
  const BatchJobs& jobs;
  const pb::ComputeRequest& base;
  Client& client;
  Journal& journal;
  const std::string& out;
  RetryPolicy policy;
  bool fail_fast;
  std::vector<int64_t> pending;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0}, retries{0}, retried_jobs{0},
      samples{0};
  std::mutex mutex;  // latencies, failures, err
  Latencies latencies;
  std::map<int64_t, std::string> failures;
};

class Batch : public Command {
 public:
  explicit Batch(CLI::App& app) { DefineFlags(app); }

  absl::Status Run(Context& context) override {
    RETURN_IF_ERROR(CheckFlags());
    ASSIGN_OR_RETURN(pb::ComputeRequest base, BaseRequest());
    ASSIGN_OR_RETURN(std::unique_ptr<BatchJobs> jobs, MakeJobs(base));
    RETURN_IF_ERROR(MakeDirectories(f_.out));
    ASSIGN_OR_RETURN(std::unique_ptr<Journal> journal,
                     Journal::Open(f_.out, RunFingerprint(base, *jobs),
                                   jobs->size(), f_.resume));
    if (journal->reduced()) {
      context.out << "batch: all " << jobs->size()
                  << " jobs were done and reduced already: "
                  << (std::filesystem::path(f_.out) / kReducedFile).string()
                  << "\n";
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(
        auto client,
        context.Connect(f_.deadline > 0
                            ? std::optional(absl::Seconds(f_.deadline))
                            : std::nullopt));
    RunState state{*jobs, base, *client, *journal, f_.out};
    state.policy.max_retries = f_.retries;
    state.policy.initial_backoff = absl::Seconds(f_.backoff);
    state.policy.max_backoff = absl::Seconds(f_.max_backoff);
    state.fail_fast = f_.fail_fast;
    for (int64_t i = 0; i < jobs->size(); ++i) {
      if (!journal->done().count(i) ||
          !std::filesystem::exists(JobFile(f_.out, i))) {
        state.pending.push_back(i);
      }
    }
    const int64_t done_before = jobs->size() - state.pending.size();
    if (done_before > 0) {
      context.out << "resumed: " << done_before << " of " << jobs->size()
                  << " jobs were done already; running the other "
                  << state.pending.size() << "\n";
    }
    InterruptGuard interrupt;
    const absl::Duration took = RunJobs(context, state, done_before);
    Summarize(context.out, state, took);
    return Finish(context, state, done_before);
  }

 private:
  void DefineFlags(CLI::App& app) {
    AddGraphOption(app, &f_.graph, false);
    app.add_option("--session", f_.session,
                   "run on a server-side session (its parameters) instead of "
                   "a --graph");
    app.add_option("--data", f_.data,
                   "a data set (.npz whose arrays share a leading sample axis) "
                   "cut into jobs of --batch-size samples");
    app.add_option("--batch-size", f_.batch_size, "samples a job, with --data")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--map", f_.map,
                   "INPUT=ARRAY: the data set's array that feeds a graph input "
                   "(default: the array of the input's name); repeatable");
    app.add_option("--manifest", f_.manifest,
                   "JSONL, one job a line: {\"feeds\": {\"x\": \"x0.npy\"}, "
                   "\"fetch\": [...], \"loss\": \"L\", \"wrt\": [...], "
                   "\"seeds\": {\"y\": \"dy.npy\"}, \"mode\": \"eval\", "
                   "\"seed\": 1, \"samples\": 64}; paths relative to the file");
    app.add_option("--fetch", f_.fetch,
                   "a value to return (default: the graph's outputs); "
                   "repeatable");
    app.add_option("--loss", f_.loss, "a scalar value to differentiate");
    app.add_option("--wrt", f_.wrt,
                   "a value whose gradient to return (default with --loss: "
                   "every parameter); repeatable");
    app.add_option("--mode", f_.mode, "train or eval")
        ->capture_default_str()
        ->check(CLI::IsMember({"train", "eval"}));
    app.add_option("--seed", f_.seed, "random seed (dropout masks)")
        ->capture_default_str();
    app.add_option("--out", f_.out,
                   "directory for the results (job-NNNNNN.npz: outputs/NAME, "
                   "gradients/NAME, buffers/NAME, samples; or reduced.npz) and "
                   "the journal")
        ->required();
    app.add_option("--reduce", f_.reduce,
                   "combine the jobs' gradients and scalar outputs into "
                   "reduced.npz: sum (losses with reduction \"sum\"), or mean "
                   "weighted by each job's samples (reduction \"mean\": the "
                   "full data set's gradient); other outputs are concatenated")
        ->check(CLI::IsMember({"sum", "mean"}));
    app.add_option("--concurrency", f_.concurrency,
                   "calls in flight, spread over every --server address")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    app.add_option("--deadline", f_.deadline,
                   "seconds each call may take (default: --timeout)")
        ->check(CLI::PositiveNumber);
    app.add_option("--retries", f_.retries,
                   "retries of a call refused with UNAVAILABLE, "
                   "RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED (never of "
                   "INVALID_ARGUMENT and other errors of the request)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1000));
    app.add_option("--backoff", f_.backoff,
                   "seconds before the first retry; doubled each retry, with "
                   "±50% jitter")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--max-backoff", f_.max_backoff,
                   "the longest wait between retries, in seconds")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_flag("--fail-fast", f_.fail_fast,
                 "stop at the first job that fails (default: report it and go "
                 "on)");
    app.add_flag("--resume", f_.resume,
                 "continue the run whose journal is in --out: only the jobs "
                 "without a result run");
    app.add_option("--progress", f_.progress,
                   "auto (a bar on a terminal, lines otherwise), bar, plain, "
                   "off")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "bar", "plain", "off"}));
    app.add_option("--progress-every", f_.progress_every,
                   "seconds between plain progress lines")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
  }

  absl::Status CheckFlags() const {
    if (f_.graph.empty() == f_.session.empty()) {
      return UsageError("batch needs exactly one of --graph and --session");
    }
    if (f_.data.empty() == f_.manifest.empty()) {
      return UsageError("batch needs exactly one of --data and --manifest");
    }
    if (!f_.manifest.empty() && !f_.map.empty()) {
      return UsageError("--map goes with --data (a manifest names its feeds)");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<pb::ComputeRequest> BaseRequest() {
    pb::ComputeRequest base;
    if (!f_.graph.empty()) {
      RETURN_IF_ERROR(ReadModel(f_.graph, &base));
    } else {
      base.set_session_id(f_.session);
    }
    for (const std::string& name : f_.fetch) base.add_fetch(name);
    for (const std::string& name : f_.wrt) base.add_wrt(name);
    base.set_loss(f_.loss);
    base.set_mode(f_.mode == "eval" ? pb::MODE_EVAL : pb::MODE_TRAIN);
    base.set_seed(f_.seed);
    return base;
  }

  absl::StatusOr<std::unique_ptr<BatchJobs>> MakeJobs(
      const pb::ComputeRequest& base) const {
    if (!f_.manifest.empty()) return ManifestJobs(f_.manifest);
    auto mapped = ParseFeedMap(f_.map);
    if (!mapped.ok()) return UsageError(mapped.status().message());
    ASSIGN_OR_RETURN(Dataset data, ReadDataset(f_.data));
    ASSIGN_OR_RETURN(
        FeedMap feeds,
        ResolveFeeds(*mapped, base.has_graph() ? &base.graph() : nullptr,
                     data));
    return DataJobs(std::move(data), std::move(feeds), f_.batch_size);
  }

  std::string RunFingerprint(const pb::ComputeRequest& base,
                             const BatchJobs& jobs) const {
    return Fingerprint(absl::StrCat(DeterministicBytes(base), "\n",
                                    jobs.Identity(), "\nreduce=", f_.reduce));
  }

  absl::Duration RunJobs(Context& context, RunState& state,
                         int64_t done_before) {
    Progress progress(context.out, ProgressStyle(f_.progress, context.tty),
                      "batch", "jobs", absl::Seconds(f_.progress_every));
    const absl::Time start = absl::Now();
    auto progress_state = [&] {
      ProgressState p;
      p.done = done_before + state.ok + state.failed;
      p.total = state.jobs.size();
      const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
      p.rate = seconds > 0 ? (state.ok + state.failed) / seconds : 0;
      p.retries = state.retries;
      p.failed = state.failed;
      return p;
    };
    std::vector<std::thread> workers;
    const size_t n = std::min<size_t>(f_.concurrency, state.pending.size());
    for (size_t w = 0; w < n; ++w) {
      workers.emplace_back([&] {
        Work(context, state, [&] { progress.Update(progress_state()); });
      });
    }
    for (std::thread& t : workers) t.join();
    progress.Finish(progress_state());
    return absl::Now() - start;
  }

  static void Work(Context& context, RunState& state,
                   const std::function<void()>& report) {
    std::mt19937_64 random(std::random_device{}());
    const std::atomic<bool>& interrupted = InterruptGuard::requested();
    for (;;) {
      if (state.stop || interrupted) return;
      const size_t at = state.next++;
      if (at >= state.pending.size()) return;
      RunJob(context, state, state.pending[at], random);
      report();
    }
  }

  static void RunJob(Context& context, RunState& state, int64_t job,
                     std::mt19937_64& random) {
    int64_t samples = 0;
    absl::StatusOr<pb::ComputeRequest> request =
        state.jobs.Request(job, state.base, &samples);
    absl::StatusOr<pb::ComputeResponse> response =
        absl::UnknownError("not called");
    int attempts = 0;
    double latency_ms = 0;
    absl::Status status = request.status();
    if (request.ok()) {
      status = CallWithRetries(
          state.policy, random,
          [&] {
            ++attempts;
            const absl::Time start = absl::Now();
            response = state.client.Compute(*request);
            latency_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
            return response.status();
          },
          [&](const absl::Status&) { ++state.retries; },
          [&] { return state.stop || InterruptGuard::requested(); });
    }
    if (attempts > 1) ++state.retried_jobs;
    if (status.ok()) status = Save(state, job, *response, samples);
    if (status.ok()) {
      status = state.journal.RecordOk(job, attempts, latency_ms);
    }
    std::lock_guard<std::mutex> lock(state.mutex);
    if (status.ok()) {
      ++state.ok;
      state.samples += samples;
      state.latencies.Add(latency_ms);
      return;
    }
    if (IsRetryable(status.code()) &&
        (state.stop || InterruptGuard::requested())) {
      return;  // cut short, not failed: --resume runs it
    }
    if (attempts > 1 && IsRetryable(status.code())) {
      status = Annotate(status,
                        absl::StrCat("gave up after ", attempts, " attempts"));
    }
    ++state.failed;
    state.failures[job] = std::string(status.message());
    // A journal that cannot be written fails the run whatever --fail-fast.
    (void)state.journal.RecordFailed(job, status);
    context.err << "job " << job << " failed: "
                << (FromServer(status)
                        ? absl::StrCat(absl::StatusCodeToString(status.code()),
                                       ": ")
                        : "")
                << status.message() << "\n";
    if (state.fail_fast) state.stop = true;
  }

  static absl::Status Save(RunState& state, int64_t job,
                           const pb::ComputeResponse& response,
                           int64_t samples) {
    Arrays arrays;
    AddArrays(response.outputs(), "outputs/", &arrays);
    AddArrays(response.gradients(), "gradients/", &arrays);
    AddArrays(response.buffers(), "buffers/", &arrays);
    arrays["samples"] = Int64Scalar(samples);
    return WriteNpz(JobFile(state.out, job), arrays);
  }

  void Summarize(std::ostream& out, const RunState& state,
                 absl::Duration took) const {
    const double seconds = std::max(absl::ToDoubleSeconds(took), 1e-9);
    const int64_t ran = state.ok + state.failed;
    out << "batch: ran " << ran << " of " << state.jobs.size() << " jobs in "
        << absl::StrFormat("%.2f", seconds) << " s: " << state.ok << " ok, "
        << state.failed << " failed, " << state.retried_jobs << " retried ("
        << state.retries << " retries)\n"
        << "throughput: " << absl::StrFormat("%.1f", state.ok / seconds)
        << " jobs/s, " << absl::StrFormat("%.0f", state.samples / seconds)
        << " samples/s; latency p50 "
        << FormatMs(state.latencies.Percentile(50)) << ", p99 "
        << FormatMs(state.latencies.Percentile(99)) << "\n";
    int listed = 0;
    for (const auto& [job, reason] : state.failures) {
      if (++listed > 20) {
        out << "  ... and " << state.failures.size() - 20 << " more\n";
        break;
      }
      out << "  job " << job << " failed: " << reason << "\n";
    }
  }

  absl::Status Finish(Context& context, const RunState& state,
                      int64_t done_before) {
    const int64_t total = state.jobs.size();
    const int64_t done = done_before + state.ok;
    if (state.failed > 0) {
      return ExitWith(
          kExitError,
          absl::StrCat(state.failed.load(), " of ", total,
                       " jobs failed; the others' results are in ", f_.out,
                       ". Run again with --resume to redo only the jobs "
                       "without a result"));
    }
    if (done < total) {
      return ExitWith(
          InterruptGuard::requested() ? kExitInterrupted : kExitError,
          absl::StrCat("stopped with ", done, " of ", total,
                       " jobs done; run the same command with --resume to "
                       "finish"));
    }
    if (f_.reduce.empty()) {
      context.out << "results: " << total << " files " << JobFile(f_.out, 0)
                  << " .. job-" << absl::StrFormat("%06d", total - 1)
                  << ".npz\n";
      return absl::OkStatus();
    }
    return Reduce(context, state.journal, total);
  }

  // Reads the jobs' files in job order, writes reduced.npz, notes it in the
  // journal and then removes the job files.
  absl::Status Reduce(Context& context, Journal& journal, int64_t total) {
    Reduction reduction(f_.reduce == "sum" ? Reduction::Kind::kSum
                                           : Reduction::Kind::kMean);
    for (int64_t job = 0; job < total; ++job) {
      const std::string file = JobFile(f_.out, job);
      ASSIGN_OR_RETURN(Arrays arrays, ReadNpz(file));
      auto samples = arrays.find("samples");
      if (samples == arrays.end()) {
        return absl::DataLossError(absl::StrCat(file, ": no 'samples'"));
      }
      ASSIGN_OR_RETURN(int64_t n, ScalarInt64(samples->second, file));
      RETURN_IF_ERROR(reduction.Add(arrays, n, file));
    }
    const std::string reduced =
        (std::filesystem::path(f_.out) / kReducedFile).string();
    const Arrays result = reduction.Result();
    RETURN_IF_ERROR(WriteNpz(reduced, result));
    RETURN_IF_ERROR(journal.RecordReduced());
    for (int64_t job = 0; job < total; ++job) {
      std::error_code ignored;
      std::filesystem::remove(JobFile(f_.out, job), ignored);
    }
    context.out << "reduced (" << f_.reduce << " over "
                << Values(result.at("samples"))[0] << " samples): " << reduced
                << "\n";
    return absl::OkStatus();
  }

  BatchFlags f_;
};

}  // namespace

std::unique_ptr<Command> DefineBatch(CLI::App& app) {
  return std::make_unique<Batch>(app);
}

}  // namespace gradserve::client
