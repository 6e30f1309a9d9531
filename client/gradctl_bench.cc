// gradctl bench: N calls of one graph at concurrency C, or over one stream.
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/batch_jobs.h"
#include "client/gradctl_commands.h"
#include "client/graph_file.h"
#include "client/progress.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

class Bench : public Command {
 public:
  explicit Bench(CLI::App& app) {
    AddGraphOption(app, &graph_, true);
    app.add_option("--feed", feeds_,
                   "a graph input's value: NAME=FILE.npy; repeatable");
    app.add_option("--data", data_,
                   "take the feeds from a data set's batches instead (.npz), "
                   "cycling through them");
    app.add_option("--batch-size", batch_size_, "samples a call, with --data")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--map", map_,
                   "INPUT=ARRAY, with --data (default: same names); "
                   "repeatable");
    app.add_option("--fetch", fetch_, "a value to return; repeatable");
    app.add_option("--loss", loss_, "a scalar to differentiate (backward too)");
    app.add_option("--wrt", wrt_, "a value whose gradient to return");
    app.add_option("--mode", mode_, "train or eval")
        ->capture_default_str()
        ->check(CLI::IsMember({"train", "eval"}));
    app.add_option("-n,--calls", calls_, "calls to time")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("-c,--concurrency", concurrency_, "calls in flight")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    app.add_flag("--stream", stream_,
                 "send the calls over one ComputeStream (pipelined, replies "
                 "in order) instead of unary calls; --concurrency is not "
                 "used");
    app.add_option("--warmup", warmup_,
                   "untimed calls first (compiling, connecting)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
  }

  absl::Status Run(Context& context) override {
    ASSIGN_OR_RETURN(std::vector<pb::ComputeRequest> requests, Requests());
    ASSIGN_OR_RETURN(auto client, context.Connect());
    for (int i = 0; i < warmup_; ++i) {
      absl::Status status =
          client->Compute(requests[i % requests.size()]).status();
      if (!status.ok()) return Annotate(status, "warm-up call");
    }
    Tally tally;
    const absl::Time start = absl::Now();
    if (stream_) {
      RETURN_IF_ERROR(OverStream(*client, requests, &tally));
    } else {
      Unary(*client, requests, &tally);
    }
    Report(context.out, tally, absl::Now() - start);
    const int64_t failed = calls_ - tally.ok;
    if (failed > 0) {
      return ExitWith(kExitError,
                      absl::StrCat(failed, " of ", calls_, " calls failed"));
    }
    return absl::OkStatus();
  }

 private:
  // What the calls came to: latencies of the unary ones, errors by code.
  struct Tally {
    int64_t ok = 0;
    Latencies latencies;
    std::map<std::string, int64_t> errors;
  };

  void Unary(Client& client, const std::vector<pb::ComputeRequest>& requests,
             Tally* tally) const {
    std::atomic<int64_t> next{0};
    std::mutex mutex;
    std::vector<std::thread> threads;
    for (int t = 0; t < std::min<int64_t>(concurrency_, calls_); ++t) {
      threads.emplace_back([&] {
        for (int64_t i; (i = next++) < calls_;) {
          const absl::Time begin = absl::Now();
          absl::Status status =
              client.Compute(requests[i % requests.size()]).status();
          const double ms = absl::ToDoubleMilliseconds(absl::Now() - begin);
          std::lock_guard<std::mutex> lock(mutex);
          if (status.ok()) {
            ++tally->ok;
            tally->latencies.Add(ms);
          } else {
            ++tally->errors[absl::StatusCodeToString(status.code())];
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }

  absl::Status OverStream(Client& client,
                          const std::vector<pb::ComputeRequest>& requests,
                          Tally* tally) const {
    return client.ComputeStream(
        requests, calls_, [tally](const pb::ComputeStreamResponse& reply) {
          if (reply.code() == 0) {
            ++tally->ok;
          } else {
            ++tally->errors[absl::StatusCodeToString(
                static_cast<absl::StatusCode>(reply.code()))];
          }
        });
  }

  absl::StatusOr<std::vector<pb::ComputeRequest>> Requests() {
    pb::ComputeRequest base;
    RETURN_IF_ERROR(ReadModel(graph_, &base));
    RETURN_IF_ERROR(ReadTensors(feeds_, "--feed", base.mutable_feeds()));
    for (const std::string& f : fetch_) base.add_fetch(f);
    for (const std::string& w : wrt_) base.add_wrt(w);
    base.set_loss(loss_);
    base.set_mode(mode_ == "eval" ? pb::MODE_EVAL : pb::MODE_TRAIN);
    if (data_.empty()) {
      samples_ = 0;
      return std::vector<pb::ComputeRequest>{base};
    }
    auto mapped = ParseFeedMap(map_);
    if (!mapped.ok()) return UsageError(mapped.status().message());
    ASSIGN_OR_RETURN(Dataset data, ReadDataset(data_));
    ASSIGN_OR_RETURN(FeedMap feeds, ResolveFeeds(*mapped, &base.graph(), data));
    ASSIGN_OR_RETURN(auto jobs, DataJobs(std::move(data), feeds, batch_size_));
    std::vector<pb::ComputeRequest> requests;
    int64_t samples = 0;
    for (int64_t i = 0; i < std::min(jobs->size(), calls_); ++i) {
      int64_t n = 0;
      ASSIGN_OR_RETURN(requests.emplace_back(), jobs->Request(i, base, &n));
      samples += n;
    }
    samples_ = static_cast<double>(samples) / requests.size();
    return requests;
  }

  void Report(std::ostream& out, const Tally& tally,
              absl::Duration took) const {
    const double seconds = std::max(absl::ToDoubleSeconds(took), 1e-9);
    out << "bench: " << calls_ << " calls "
        << (stream_ ? std::string("over one stream")
                    : absl::StrCat("at concurrency ", concurrency_))
        << " in " << absl::StrFormat("%.2f", seconds)
        << " s: " << absl::StrFormat("%.1f", tally.ok / seconds) << " calls/s";
    if (samples_ > 0) {
      out << absl::StrFormat(" (%.0f samples/s)",
                             tally.ok * samples_ / seconds);
    }
    out << "\n";
    const Latencies& l = tally.latencies;
    if (l.count() > 0) {
      out << "latency: p50 " << FormatMs(l.Percentile(50)) << ", p90 "
          << FormatMs(l.Percentile(90)) << ", p99 "
          << FormatMs(l.Percentile(99)) << ", mean " << FormatMs(l.Mean())
          << ", max " << FormatMs(l.Percentile(100)) << "\n";
    }
    for (const auto& [code, n] : tally.errors) {
      out << "errors: " << n << " " << code << "\n";
    }
  }

  std::string graph_, data_, loss_, mode_ = "train";
  bool stream_ = false;
  std::vector<std::string> feeds_, map_, fetch_, wrt_;
  int64_t batch_size_ = 64, calls_ = 100;
  int concurrency_ = 1, warmup_ = 3;
  double samples_ = 0;  // a call's, on average
};

}  // namespace

std::unique_ptr<Command> DefineBench(CLI::App& app) {
  return std::make_unique<Bench>(app);
}

}  // namespace gradserve::client
