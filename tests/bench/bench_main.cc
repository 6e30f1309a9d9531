// gradserve_bench: forward+backward timings in-process (core::Compute) and
// over gRPC against an in-process server, next to an empty gRPC call
// (grpc.health.v1.Health/Check) on the same server. Prints medians and the
// ratios between them; every number comes from this one run.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "core/analysis/diagnostics.h"
#include "core/compile/graph_index.h"
#include "core/compile/program_cache.h"
#include "core/compute.h"
#include "core/dnnl_util.h"
#include "core/import/onnx/onnx_import.h"
#include "gradserve/v1/gradient_service.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "server/allocator.h"
#include "server/codec/call_codec.h"
#include "server/gradient_service.h"
#include "server/openmp_env.h"
#include "server/server.h"
#include "tests/bench/raw_onednn.h"

ABSL_FLAG(int32_t, reps, 30, "timed repetitions per measurement");
ABSL_FLAG(int32_t, warmup, 5, "untimed repetitions first");
ABSL_FLAG(int64_t, malloc_retain_mb, 512,
          "as gradserve's flag of the same name");
ABSL_FLAG(int32_t, threads, 0,
          "OpenMP threads per computation (server and in-process); 0 = the "
          "server's default");
ABSL_FLAG(std::string, in_process_only, "",
          "print only the in-process median (ms) of one case (linear, mlp, "
          "tiny or reshape), and the process's CPU ms per repetition, and "
          "exit: client_bench.py's baseline");
ABSL_FLAG(bool, served, false,
          "with --in_process_only: time the server's work for one Compute "
          "less gRPC's instead (the request's bytes parsed and decoded, the "
          "runtime's call with the program cache warm, the reply written), "
          "on the calling thread");
ABSL_FLAG(bool, onnx_resnet18, false,
          "time torchvision's resnet18 exported to ONNX (batch 2, 224x224, "
          "training mode): import, first and cached Computes, fwd+bwd against "
          "PyTorch; then exit");

namespace gradserve::bench {
namespace {

namespace pb = ::gradserve::v1;
using Clock = std::chrono::steady_clock;

struct Stats {
  double median_ms = 0;
  double p10_ms = 0;
  double p90_ms = 0;
};

Stats Measure(const std::function<void()>& f) {
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_reps); ++i) {
    auto start = Clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[static_cast<size_t>(q * (ms.size() - 1))];
  };
  return {at(0.5), at(0.1), at(0.9)};
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "gradserve_bench: %s: %s\n", what,
                 std::string(s.message()).c_str());
    std::exit(1);
  }
}

pb::Tensor Random(std::vector<int64_t> shape, std::mt19937* rng,
                  float scale = 0.1f) {
  std::normal_distribution<float> normal(0.f, scale);
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_FLOAT32);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(n);
  for (float& x : v) x = normal(*rng);
  t.set_data(v.data(), v.size() * sizeof(float));
  return t;
}

pb::Tensor Labels(int64_t n, int64_t classes, std::mt19937* rng) {
  std::uniform_int_distribution<int64_t> label(0, classes - 1);
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_INT64);
  t.add_shape(n);
  for (int64_t i = 0; i < n; ++i) t.add_int64_values(label(*rng));
  return t;
}

void AddNode(pb::Graph* g, const std::string& name, const std::string& op,
             std::vector<std::string> inputs, std::string output) {
  pb::Node* n = g->add_nodes();
  n->set_name(name);
  n->set_op(op);
  for (auto& in : inputs) n->add_inputs(in);
  n->add_outputs(output);
}

struct Case {
  std::string name;
  pb::ComputeRequest request;
};

// y = x·Wᵀ + b, x [256, 1024], W [1024, 1024]; backward from a seed dY.
Case LinearCase(std::mt19937* rng) {
  Case c{"Linear 256x1024->1024", {}};
  pb::Graph* g = c.request.mutable_graph();
  g->add_inputs("x");
  (*g->mutable_parameters())["W"] = Random({1024, 1024}, rng);
  (*g->mutable_parameters())["b"] = Random({1024}, rng);
  AddNode(g, "fc", "Linear", {"x", "W", "b"}, "y");
  (*c.request.mutable_feeds())["x"] = Random({256, 1024}, rng, 1.0f);
  (*c.request.mutable_output_gradients())["y"] = Random({256, 1024}, rng, 1.0f);
  c.request.add_wrt("W");
  c.request.add_wrt("b");
  c.request.add_wrt("x");
  return c;
}

// 6 MB in, the same 6 MB out, no arithmetic: what transport costs.
Case MoveCase(std::mt19937* rng) {
  Case c{"Reshape, 6 MB in and out", {}};
  pb::Graph* g = c.request.mutable_graph();
  g->add_inputs("x");
  AddNode(g, "r", "Reshape", {"x"}, "y");
  pb::Attribute a;
  a.mutable_ints()->add_values(-1);
  (*g->mutable_nodes(0)->mutable_attributes())["shape"] = a;
  (*c.request.mutable_feeds())["x"] = Random({1536, 1024}, rng, 1.0f);
  c.request.add_fetch("y");
  return c;
}

// Linear 784->256, ReLU, Linear 256->10, cross-entropy; batch 64.
Case MlpCase(std::mt19937* rng) {
  Case c{"MLP 784-256-10, batch 64", {}};
  pb::Graph* g = c.request.mutable_graph();
  g->add_inputs("x");
  g->add_inputs("labels");
  (*g->mutable_parameters())["W1"] = Random({256, 784}, rng);
  (*g->mutable_parameters())["b1"] = Random({256}, rng);
  (*g->mutable_parameters())["W2"] = Random({10, 256}, rng);
  (*g->mutable_parameters())["b2"] = Random({10}, rng);
  AddNode(g, "fc1", "Linear", {"x", "W1", "b1"}, "h");
  AddNode(g, "relu", "ReLU", {"h"}, "a");
  AddNode(g, "fc2", "Linear", {"a", "W2", "b2"}, "logits");
  AddNode(g, "loss", "CrossEntropyLoss", {"logits", "labels"}, "L");
  (*c.request.mutable_feeds())["x"] = Random({64, 784}, rng, 1.0f);
  (*c.request.mutable_feeds())["labels"] = Labels(64, 10, rng);
  c.request.set_loss("L");
  return c;
}

// Three tiny layers: 4 -> 8 -> 8 -> 2, tanh, relu, MSE; batch 4.
Case TinyCase(std::mt19937* rng) {
  Case c{"tiny 3-layer 4-8-8-2, batch 4", {}};
  pb::Graph* g = c.request.mutable_graph();
  g->add_inputs("x");
  g->add_inputs("t");
  (*g->mutable_parameters())["W1"] = Random({8, 4}, rng);
  (*g->mutable_parameters())["W2"] = Random({8, 8}, rng);
  (*g->mutable_parameters())["W3"] = Random({2, 8}, rng);
  AddNode(g, "fc1", "Linear", {"x", "W1"}, "h1");
  AddNode(g, "act1", "Tanh", {"h1"}, "a1");
  AddNode(g, "fc2", "Linear", {"a1", "W2"}, "h2");
  AddNode(g, "act2", "ReLU", {"h2"}, "a2");
  AddNode(g, "fc3", "Linear", {"a2", "W3"}, "y");
  AddNode(g, "loss", "MSELoss", {"y", "t"}, "L");
  (*c.request.mutable_feeds())["x"] = Random({4, 4}, rng, 1.0f);
  (*c.request.mutable_feeds())["t"] = Random({4, 2}, rng, 1.0f);
  c.request.set_loss("L");
  return c;
}

pb::Attribute Ints(std::vector<int64_t> v) {
  pb::Attribute a;
  for (int64_t x : v) a.mutable_ints()->add_values(x);
  return a;
}

// conv 3x3, 64 -> 64 channels on 56x56, batch 8, padding 1 (the same problem
// as RawOnednnConvStep and torch_baseline.py's "conv").
Case ConvCase(std::mt19937* rng) {
  Case c{"conv 3x3 64->64 56x56 batch 8", {}};
  pb::Graph* g = c.request.mutable_graph();
  g->add_inputs("x");
  (*g->mutable_parameters())["W"] = Random({64, 64, 3, 3}, rng);
  (*g->mutable_parameters())["b"] = Random({64}, rng);
  AddNode(g, "conv", "Conv2d", {"x", "W", "b"}, "y");
  (*g->mutable_nodes(0)->mutable_attributes())["padding"] = Ints({1, 1});
  (*c.request.mutable_feeds())["x"] = Random({8, 64, 56, 56}, rng, 1.0f);
  (*c.request.mutable_output_gradients())["y"] =
      Random({8, 64, 56, 56}, rng, 1.0f);
  for (const char* v : {"x", "W", "b"}) c.request.add_wrt(v);
  return c;
}

// conv-BN-ReLU-maxpool twice, flatten, linear, cross-entropy on
// [32, 3, 32, 32] (torch_baseline.py's "cnn").
Case CnnCase(std::mt19937* rng) {
  Case c{"small CNN step, batch 32 3x32x32", {}};
  pb::Graph* g = c.request.mutable_graph();
  g->add_inputs("x");
  g->add_inputs("labels");
  auto& p = *g->mutable_parameters();
  auto& b = *g->mutable_buffers();
  p["c1.w"] = Random({16, 3, 3, 3}, rng);
  p["c1.b"] = Random({16}, rng);
  p["c2.w"] = Random({32, 16, 3, 3}, rng);
  p["c2.b"] = Random({32}, rng);
  for (auto [bn, ch] :
       {std::pair<const char*, int64_t>{"bn1", 16}, {"bn2", 32}}) {
    p[std::string(bn) + ".w"] = Random({ch}, rng);
    p[std::string(bn) + ".b"] = Random({ch}, rng);
    b[std::string(bn) + ".rm"] = Random({ch}, rng);
    pb::Tensor ones = Random({ch}, rng, 0.0f);
    std::vector<float> v(ch, 1.0f);
    ones.set_data(v.data(), v.size() * sizeof(float));
    b[std::string(bn) + ".rv"] = ones;
  }
  p["fc.w"] = Random({10, 32 * 8 * 8}, rng);
  p["fc.b"] = Random({10}, rng);
  AddNode(g, "conv1", "Conv2d", {"x", "c1.w", "c1.b"}, "h1");
  AddNode(g, "bn1", "BatchNorm", {"h1", "bn1.w", "bn1.b", "bn1.rm", "bn1.rv"},
          "n1");
  AddNode(g, "relu1", "ReLU", {"n1"}, "a1");
  AddNode(g, "pool1", "MaxPool2d", {"a1"}, "p1");
  AddNode(g, "conv2", "Conv2d", {"p1", "c2.w", "c2.b"}, "h2");
  AddNode(g, "bn2", "BatchNorm", {"h2", "bn2.w", "bn2.b", "bn2.rm", "bn2.rv"},
          "n2");
  AddNode(g, "relu2", "ReLU", {"n2"}, "a2");
  AddNode(g, "pool2", "MaxPool2d", {"a2"}, "p2");
  AddNode(g, "flat", "Flatten", {"p2"}, "f");
  AddNode(g, "fc", "Linear", {"f", "fc.w", "fc.b"}, "logits");
  AddNode(g, "loss", "CrossEntropyLoss", {"logits", "labels"}, "L");
  for (int n : {0, 4}) {
    (*g->mutable_nodes(n)->mutable_attributes())["padding"] = Ints({1, 1});
  }
  for (int n : {3, 7}) {
    (*g->mutable_nodes(n)->mutable_attributes())["kernel"] = Ints({2, 2});
  }
  (*c.request.mutable_feeds())["x"] = Random({32, 3, 32, 32}, rng, 1.0f);
  (*c.request.mutable_feeds())["labels"] = Labels(32, 10, rng);
  c.request.set_loss("L");
  return c;
}

// torch_baseline.py's median for `name`, or a negative number when PyTorch
// cannot run here.
double TorchMedianMs(const std::string& name, int threads,
                     const std::string& extra_args = "") {
  // The same allocator settings as this process (RetainFreedMemory): with
  // glibc's defaults, PyTorch pays fresh page faults on every large tensor
  // and would look several times slower than it is.
  const int64_t retain = absl::GetFlag(FLAGS_malloc_retain_mb) << 20;
  const std::string malloc_env =
      retain > 0 ? absl::StrFormat(
                       "MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=%d "
                       "MALLOC_TRIM_THRESHOLD_=%d ",
                       std::min<int64_t>(retain, INT32_MAX),
                       std::min<int64_t>(retain, INT32_MAX))
                 : "";
  const std::string command =
      malloc_env +
      "OPENBLAS_NUM_THREADS=1 /usr/bin/python3 " GRADSERVE_SOURCE_DIR
      "/tests/bench/torch_baseline.py " +
      name + " --threads " + std::to_string(threads) + " --reps " +
      std::to_string(absl::GetFlag(FLAGS_reps)) + " --warmup " +
      std::to_string(absl::GetFlag(FLAGS_warmup)) + extra_args + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  // The printed number is the verdict: pclose's status is unreliable here
  // (gRPC's threads may reap or ignore children).
  double median = -1;
  if (std::fscanf(pipe, "%lf", &median) != 1) median = -1;
  pclose(pipe);
  return median;
}

// gradserve in-process on a proto request.
Stats MeasureInProcess(const Case& c) {
  Limits limits;
  pb::ComputeRequest request = c.request;  // the codec takes its tensors
  auto call = server::ComputeCallFromProto(request, limits);
  Check(call.status(), c.name.c_str());
  return Measure([&] {
    Check(gradserve::Compute(call->model.graph, call->args, limits).status(),
          c.name.c_str());
  });
}

// The server's work for one Compute less gRPC's: the request's bytes
// parsed, decoded and run by the runtime (its program cache warm after the
// warm-up), and the reply written as gRPC would send it.
Stats MeasureServed(const Case& c) {
  runtime::ComputePool pool({1, omp_get_max_threads()}, 0);
  runtime::Runtime rt(runtime::RuntimeOptions{}, &pool);
  server::GradientServiceImpl service(&rt, server::ServiceOptions{});
  const std::string bytes = c.request.SerializeAsString();
  grpc::Slice slice(bytes);
  const grpc::ByteBuffer request(&slice, 1);
  const runtime::CallContext ctx;
  return Measure([&] {
    server::WireMessage reply;
    Check(service.ComputeFromBytes(ctx, request, &reply), c.name.c_str());
    grpc::ByteBuffer response;
    reply.Finish(&response);
  });
}

// One compiled program run with and without a DiagnosticsRecorder: what
// asking for Diagnostics costs (statistics of every node output, the norm of
// every gradient, the warnings).
void DiagnosticsOverhead(const Case& c) {
  Limits limits;
  pb::ComputeRequest request = c.request;
  auto call = server::ComputeCallFromProto(request, limits);
  Check(call.status(), c.name.c_str());
  const ComputeArgs& args = call->args;
  auto index = GraphIndex::Build(call->model.graph, limits);
  Check(index.status(), c.name.c_str());
  auto program = Program::Compile(*index, ProgramRequestFor(args), limits);
  Check(program.status(), c.name.c_str());
  const ValueSet values = ValuesOf(call->model.graph);
  auto run = [&](RunObserver* observer) {
    auto r = Run(*program, args.feeds, values, args.output_gradients,
                 RunControl{args.seed, nullptr, observer});
    Check(r.status(), c.name.c_str());
    return *std::move(r);
  };
  // Interleaved, so that a busy machine slows both alike.
  std::vector<double> off, on;
  auto time = [](const std::function<void()>& f) {
    const auto start = Clock::now();
    f();
    return std::chrono::duration<double, std::milli>(Clock::now() - start)
        .count();
  };
  const int warmup = absl::GetFlag(FLAGS_warmup);
  for (int i = 0; i < warmup + absl::GetFlag(FLAGS_reps); ++i) {
    const double a = time([&] { run(nullptr); });
    const double b = time([&] {
      DiagnosticsRecorder recorder;
      recorder.Finish(run(&recorder).gradients);
    });
    if (i < warmup) continue;
    off.push_back(a);
    on.push_back(b);
  }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  std::printf("%-34s %12.3f %12.3f %9.2fx\n", c.name.c_str(), median(off),
              median(on), median(on) / median(off));
}

// One row: gradserve in-process, the raw-oneDNN step, PyTorch's `torch_case`.
void CompareRow(const Case& c, const std::function<void()>& raw_step,
                const std::string& torch_case, int threads) {
  const Stats ours = MeasureInProcess(c);
  const Stats raw = Measure(raw_step);
  const double torch = TorchMedianMs(torch_case, threads);
  std::printf(
      "%-34s %12.2f %12.2f %12s %9.2fx %10s\n", c.name.c_str(), ours.median_ms,
      raw.median_ms, torch > 0 ? absl::StrFormat("%.2f", torch).c_str() : "n/a",
      ours.median_ms / raw.median_ms,
      torch > 0 ? absl::StrFormat("%.2fx", ours.median_ms / torch).c_str()
                : "n/a");
}

void CompareWithBaselines(int threads) {
  std::printf("\n%-34s %12s %12s %12s %10s %10s\n",
              "fwd+bwd, in-process (median ms)", "gradserve", "raw oneDNN",
              "PyTorch", "/oneDNN", "/PyTorch");
  std::mt19937 rng(7);
  CompareRow(LinearCase(&rng), RawOnednnLinearStep(), "linear", threads);
  CompareRow(ConvCase(&rng), RawOnednnConvStep(), "conv", threads);
  const Case cnn = CnnCase(&rng);
  const Stats step = MeasureInProcess(cnn);
  const double torch_cnn = TorchMedianMs("cnn", threads);
  std::printf(
      "%-34s %12.2f %12s %12s %10s %10s\n", cnn.name.c_str(), step.median_ms,
      "-", torch_cnn > 0 ? absl::StrFormat("%.2f", torch_cnn).c_str() : "n/a",
      "-",
      torch_cnn > 0
          ? absl::StrFormat("%.2fx", step.median_ms / torch_cnn).c_str()
          : "n/a");
}

Tensor RandomTensor(Shape shape, std::mt19937* rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> v(ElementCount(shape));
  for (float& x : v) x = normal(*rng);
  return Tensor::FromValues<float>(std::move(shape), v);
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// --onnx_resnet18: torch_baseline.py exports resnet18 and times PyTorch's
// fwd+bwd; here each Compute of the ONNX bytes is what the server does per
// request: import, then the program cache (a compile the first time), then
// the run. Every parameter's gradient and dL/dx, in training mode.
int OnnxResnet18(int threads) {
  const std::string path = absl::StrFormat(
      "/tmp/gradserve_bench_resnet18_%d.onnx", static_cast<int>(getpid()));
  const double torch = TorchMedianMs("resnet18", threads, " --export " + path);
  std::ifstream file(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)),
                          std::istreambuf_iterator<char>());
  std::remove(path.c_str());
  if (torch < 0 || bytes.empty()) {
    std::fprintf(stderr,
                 "gradserve_bench: PyTorch could not export resnet18 "
                 "(python3-torchvision installed?)\n");
    return 1;
  }
  const Limits limits;
  std::mt19937 rng(3);
  ComputeArgs args;
  args.feeds["x"] = RandomTensor({2, 3, 224, 224}, &rng);
  args.output_gradients["y"] = RandomTensor({2, 1000}, &rng);
  args.mode = Mode::kTrain;
  ProgramCache cache(int64_t{1} << 32);
  std::shared_ptr<const Program> program;
  std::shared_ptr<const GraphDef> graph;
  auto import_and_run = [&] {
    auto imported = onnx_import::ImportModel(bytes, limits);
    Check(imported.status(), "importing resnet18");
    graph = std::make_shared<const GraphDef>(*std::move(imported));
    if (args.wrt.empty()) {
      for (const auto& [name, t] : graph->parameters) args.wrt.push_back(name);
      args.wrt.push_back("x");
    }
    auto compiled = cache.GetOrCompile(
        StructureKey(*graph), ProgramRequestFor(args),
        [&] { return GraphIndex::Build(*graph, limits); }, limits);
    Check(compiled.status(), "compiling resnet18");
    program = *std::move(compiled);
    Check(Run(program, args.feeds, ValuesOf(*graph), args.output_gradients,
              RunControl{})
              .status(),
          "running resnet18");
  };
  auto start = Clock::now();
  Check(onnx_import::ImportModel(bytes, limits).status(), "importing resnet18");
  const double import_ms = MsSince(start);
  start = Clock::now();
  import_and_run();
  const double first_ms = MsSince(start);
  const Stats cached = Measure(import_and_run);
  const ValueSet values = ValuesOf(*graph);
  const Stats run = Measure([&] {
    Check(Run(program, args.feeds, values, args.output_gradients, RunControl{})
              .status(),
          "running resnet18");
  });
  std::printf(
      "resnet18 (ONNX, %zu bytes), batch 2x3x224x224, training, %d "
      "thread(s), median of %d (p10-p90):\n"
      "  import alone                      %9.1f ms\n"
      "  first Compute (import, compile, fwd+bwd) %.1f ms\n"
      "  cached Compute (import, fwd+bwd)  %9.1f ms (%.1f-%.1f)\n"
      "  fwd+bwd: gradserve %.1f ms (%.1f-%.1f), PyTorch %.1f ms, %.2fx\n",
      bytes.size(), threads, absl::GetFlag(FLAGS_reps), import_ms, first_ms,
      cached.median_ms, cached.p10_ms, cached.p90_ms, run.median_ms, run.p10_ms,
      run.p90_ms, torch, run.median_ms / torch);
  return 0;
}

double ProcessCpuMs() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// --in_process_only: one case's in-process median and CPU time, with the
// team size the server would use.
int InProcessOnly(const std::string& name) {
  std::mt19937 rng(42);
  const std::vector<std::pair<std::string, Case (*)(std::mt19937*)>> cases = {
      {"reshape", MoveCase},
      {"linear", LinearCase},
      {"mlp", MlpCase},
      {"tiny", TinyCase},
      {"cnn", CnnCase}};
  for (const auto& [key, make] : cases) {
    if (key != name) continue;
    omp_set_num_threads(
        runtime::ChoosePoolShape({0, absl::GetFlag(FLAGS_threads)},
                                 runtime::AvailableCpus())
            .threads_per_worker);
    const Case c = make(&rng);
    const double cpu_before = ProcessCpuMs();
    const double median = absl::GetFlag(FLAGS_served)
                              ? MeasureServed(c).median_ms
                              : MeasureInProcess(c).median_ms;
    const int runs = absl::GetFlag(FLAGS_warmup) + absl::GetFlag(FLAGS_reps);
    std::printf("%.4f %.4f\n", median,
                (ProcessCpuMs() - cpu_before) / std::max(1, runs));
    return 0;
  }
  std::fprintf(stderr, "gradserve_bench: unknown case '%s'\n", name.c_str());
  return 1;
}

int Main() {
  server::RetainFreedMemory(absl::GetFlag(FLAGS_malloc_retain_mb));
  if (!absl::GetFlag(FLAGS_in_process_only).empty()) {
    return InProcessOnly(absl::GetFlag(FLAGS_in_process_only));
  }
  if (absl::GetFlag(FLAGS_onnx_resnet18)) {
    const int threads =
        runtime::ChoosePoolShape({0, absl::GetFlag(FLAGS_threads)},
                                 runtime::AvailableCpus())
            .threads_per_worker;
    omp_set_num_threads(threads);
    return OnnxResnet18(threads);
  }
  server::ServerOptions options;
  options.address = "127.0.0.1:0";
  options.pool.threads_per_worker = absl::GetFlag(FLAGS_threads);
  auto started = server::GradientServer::Start(options);
  Check(started.status(), "starting the server");
  std::unique_ptr<server::GradientServer> srv = std::move(*started);
  const int threads = srv->pool_shape().threads_per_worker;
  omp_set_num_threads(threads);  // in-process runs use the same team size

  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(1 << 30);
  channel_args.SetMaxSendMessageSize(1 << 30);
  auto channel = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(srv->port()),
      grpc::InsecureChannelCredentials(), channel_args);
  auto service = pb::GradientService::NewStub(channel);
  grpc::GenericStub generic(channel);

  auto empty_call = [&] {
    grpc::ClientContext ctx;
    grpc::Slice nothing;  // the serialized empty HealthCheckRequest
    grpc::ByteBuffer request(&nothing, 1), response;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", {}, &request,
                      &response, [&](grpc::Status s) { done.set_value(s); });
    grpc::Status s = done.get_future().get();
    if (!s.ok()) Check(absl::UnavailableError(s.error_message()), "empty call");
  };
  const Stats empty = Measure(empty_call);

  std::printf(
      "gradserve_bench: oneDNN %s on %s, %d OpenMP thread(s) per computation, "
      "%d reps (median, p10-p90)\n",
      DnnlVersion().c_str(), DnnlCpuIsa().c_str(), threads,
      absl::GetFlag(FLAGS_reps));
  std::printf("empty gRPC call (Health/Check): %.3f ms (%.3f-%.3f)\n\n",
              empty.median_ms, empty.p10_ms, empty.p90_ms);
  std::printf("%-32s %18s %18s %9s %16s\n", "fwd+bwd", "in-process ms",
              "gRPC ms", "gRPC/in", "(gRPC-in)/empty");

  std::mt19937 rng(42);
  for (Case c :
       {MoveCase(&rng), LinearCase(&rng), MlpCase(&rng), TinyCase(&rng)}) {
    const Stats local = MeasureInProcess(c);
    const Stats remote = Measure([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
      pb::ComputeResponse response;
      grpc::Status s = service->Compute(&ctx, c.request, &response);
      if (!s.ok())
        Check(absl::InternalError(s.error_message()), c.name.c_str());
    });
    std::printf("%-32s %7.3f (%.2f-%.2f) %7.3f (%.2f-%.2f) %8.2fx %15.1fx\n",
                c.name.c_str(), local.median_ms, local.p10_ms, local.p90_ms,
                remote.median_ms, remote.p10_ms, remote.p90_ms,
                remote.median_ms / local.median_ms,
                (remote.median_ms - local.median_ms) / empty.median_ms);
  }
  srv->Shutdown(absl::Seconds(5));
  std::printf("\n%-34s %12s %12s %10s\n", "diagnostics, fwd+bwd (median ms)",
              "off", "on", "on/off");
  for (Case c : {MlpCase(&rng), CnnCase(&rng), TinyCase(&rng)}) {
    DiagnosticsOverhead(c);
  }
  CompareWithBaselines(threads);
  return 0;
}

}  // namespace
}  // namespace gradserve::bench

int main(int argc, char** argv) {
  gradserve::server::UsePassiveOpenMpWaits(argv);  // as gradserve does
  absl::SetProgramUsageMessage(
      "Times fwd+bwd in-process and over gRPC, next to an empty gRPC call.\n"
      "Usage: gradserve_bench [--reps=N] [--warmup=N] [--threads=T]");
  absl::ParseCommandLine(argc, argv);
  return gradserve::bench::Main();
}
