// gradctl's commands against an in-process server.
#include "client/gradctl.h"

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/gradctl_common.h"
#include "client/graph_file.h"
#include "client/npy.h"
#include "client/npz.h"
#include "gtest/gtest.h"
#include "server/server.h"

namespace gradserve::client {
namespace {

const std::string kExamples = GRADSERVE_SOURCE_DIR "/examples/";

struct Outcome {
  int code;
  std::string out, err;
};

class Gradctl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server::ServerOptions options;
    options.address = "127.0.0.1:0";
    server_ = std::move(*server::GradientServer::Start(options));
  }
  static void TearDownTestSuite() { server_.reset(); }

  Outcome Call(std::vector<std::string> args, bool connect = true) {
    std::vector<std::string> argv = {"gradctl"};
    if (connect) {
      argv.push_back("--server=127.0.0.1:" + std::to_string(server_->port()));
    }
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<const char*> ptrs;
    for (const std::string& a : argv) ptrs.push_back(a.c_str());
    std::ostringstream out, err;
    int code = RunGradctl(static_cast<int>(ptrs.size()), ptrs.data(), out, err);
    return {code, out.str(), err.str()};
  }

  static std::unique_ptr<server::GradientServer> server_;
};

std::unique_ptr<server::GradientServer> Gradctl::server_;

TEST_F(Gradctl, Health) {
  Outcome r = Call({"health"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
}

TEST_F(Gradctl, Info) {
  Outcome r = Call({"info"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("oneDNN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Linear(x, weight, bias?) -> y"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("reduction: string = \"mean\""), std::string::npos);
}

TEST_F(Gradctl, DescribeFromShapesAndFromFiles) {
  Outcome r = Call({"describe", "--graph", kExamples + "mlp.json", "--input",
                    "x=64,4", "--input", "labels=64:int64"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("[64, 8]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("total: 67 trainable parameters"), std::string::npos)
      << r.out;
  r = Call({"describe", "--graph", kExamples + "mlp.pbtxt", "--feed",
            "x=" + kExamples + "x.npy", "--feed",
            "labels=" + kExamples + "labels.npy"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("[5, 3]"), std::string::npos) << r.out;
}

TEST_F(Gradctl, ComputeWritesNpyFiles) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gradctl_out_" + std::to_string(::getpid()));
  Outcome r = Call({"compute", "--graph", kExamples + "mlp.json", "--feed",
                    "x=" + kExamples + "x.npy", "--feed",
                    "labels=" + kExamples + "labels.npy", "--loss", "L",
                    "--out", dir.string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("gradients:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote 6 .npy files"), std::string::npos) << r.out;
  auto dw = ReadNpy((dir / "grad_W1.npy").string());
  ASSERT_TRUE(dw.ok()) << dw.status();
  EXPECT_EQ(dw->shape(0), 8);
  EXPECT_EQ(dw->shape(1), 4);
  EXPECT_TRUE(ReadNpy((dir / "L.npy").string()).ok());
  std::filesystem::remove_all(dir);
}

TEST_F(Gradctl, ServerErrorsExitOneWithTheMessage) {
  Outcome r = Call({"compute", "--graph", kExamples + "mlp.json", "--feed",
                    "x=" + kExamples + "x.npy", "--loss", "L"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "error: INVALID_ARGUMENT: graph input 'labels' is needed but was "
            "not given (feeds)\n");
}

TEST_F(Gradctl, FileErrorsNameTheFile) {
  Outcome r = Call({"compute", "--graph", "/nonexistent/g.json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/g.json"), std::string::npos) << r.err;
  r = Call({"compute", "--graph", kExamples + "mlp.json", "--feed", "x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--feed takes NAME=VALUE"), std::string::npos) << r.err;
}

TEST_F(Gradctl, UsageErrorsExitTwo) {
  const std::string g = kExamples + "mlp.json";
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"compute"},
           {"compute", "--graph", "g.json", "--mode", "test"},
           {"--timeout=-1", "info"},
           {"compute", "--graph", g, "--feed", "x"},
           {"batch", "--graph", g, "--data", "d.npz"},  // no --out
           {"batch", "--graph", g, "--session", "s", "--data", "d.npz", "--out",
            "o"},
           {"batch", "--graph", g, "--out", "o"},  // no jobs
           {"batch", "--graph", g, "--manifest", "m.jsonl", "--map", "x=a",
            "--out", "o"},
           {"batch", "--graph", g, "--data", "d.npz", "--out", "o", "--reduce",
            "max"},
           {"batch", "--graph", g, "--data", "d.npz", "--out", "o",
            "--concurrency", "0"},
           {"train", "--graph", g, "--data", "d.npz", "--loss", "L"},  // no lr
           {"train", "--graph", g, "--data", "d.npz", "--loss", "L",
            "--optimizer", "rmsprop", "--lr", "1"},
           {"train", "--graph", g, "--data", "d.npz", "--loss", "L", "--lr",
            "1", "--val", "v.npz", "--val-split", "0.2"},
           {"train", "--graph", g, "--data", "d.npz", "--loss", "L", "--lr",
            "1", "--checkpoint-every", "5"},
           {"train", "--graph", g, "--data", "d.npz", "--loss", "L", "--lr",
            "1", "--lr-schedule", "linear"},
           {"bench", "--graph", g, "--calls", "0"},
           {"sessions"},
           {"sessions", "get", "id"},  // no --out
           {"sessions", "drop"}}) {
    Outcome r = Call(args, false);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << ": " << r.err;
    EXPECT_FALSE(r.err.empty()) << absl::StrJoin(args, " ");
  }
}

TEST_F(Gradctl, AnUnknownCommandIsNamedWithTheCommands) {
  Outcome r = Call({"frobnicate", "--x"}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "gradctl: unknown command 'frobnicate'; the commands are: info, "
            "health, describe, compute, batch, train, bench, sessions, "
            "gradcheck, hessian, import\n");
  r = Call({}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("a command is required; the commands are: info,"),
            std::string::npos)
      << r.err;
}

TEST_F(Gradctl, HelpExitsZero) {
  for (std::string command :
       {"info", "health", "describe", "compute", "batch", "train", "bench",
        "sessions", "gradcheck", "hessian"}) {
    Outcome r = Call({command, "--help"}, false);
    EXPECT_EQ(r.code, 0) << command;
    EXPECT_NE(r.out.find("Usage: gradctl " + command), std::string::npos)
        << r.out;
  }
  Outcome r = Call({"train", "--help"}, false);
  for (std::string flag : {"--graph",         "--data",
                           "--map",           "--loss",
                           "--epochs",        "--batch-size",
                           "--shuffle",       "--seed",
                           "--optimizer",     "--lr",
                           "--momentum",      "--weight-decay",
                           "--max-grad-norm", "--lr-schedule",
                           "--val",           "--val-split",
                           "--accuracy-of",   "--checkpoint-every",
                           "--resume",        "--save"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
  r = Call({"sessions", "get", "--help"}, false);
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--optimizer-state"), std::string::npos) << r.out;
}

TEST_F(Gradctl, LocalErrorsAreNotWordedAsStatusCodes) {
  Outcome r = Call({"batch", "--graph", "/nonexistent/g.json", "--data",
                    "d.npz", "--out", "/tmp/gradctl_never"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("error: /nonexistent/g.json: cannot open", 0), 0u)
      << r.err;
  r = Call({"train", "--graph", kExamples + "mlp.json", "--data",
            kExamples + "x.npy", "--loss", "L", "--lr", "0.1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("x.npy: not a readable .npz"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
}

TEST_F(Gradctl, BenchReportsPercentilesAndRate) {
  Outcome r = Call({"bench", "--graph", kExamples + "mlp.json", "--feed",
                    "x=" + kExamples + "x.npy", "--feed",
                    "labels=" + kExamples + "labels.npy", "--loss", "L", "-n",
                    "40", "-c", "4"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bench: 40 calls at concurrency 4"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("calls/s"), std::string::npos);
  EXPECT_NE(r.out.find("latency: p50 "), std::string::npos);
  EXPECT_NE(r.out.find(", p90 "), std::string::npos);
  EXPECT_NE(r.out.find(", p99 "), std::string::npos);
  r = Call({"bench", "--graph", kExamples + "mlp.json", "--loss", "L", "-n",
            "5", "--warmup", "0"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("errors: 5 INVALID_ARGUMENT"), std::string::npos)
      << r.out;
}

TEST_F(Gradctl, BenchOverOneStreamCountsRepliesAndInBandErrors) {
  Outcome r = Call({"bench", "--graph", kExamples + "mlp.json", "--feed",
                    "x=" + kExamples + "x.npy", "--feed",
                    "labels=" + kExamples + "labels.npy", "--loss", "L", "-n",
                    "50", "--stream"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bench: 50 calls over one stream"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("calls/s"), std::string::npos);
  // Every item fails in band (no feeds), the stream itself does not.
  r = Call({"bench", "--graph", kExamples + "mlp.json", "--loss", "L", "-n",
            "7", "--warmup", "0", "--stream"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("errors: 7 INVALID_ARGUMENT"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("7 of 7 calls failed"), std::string::npos) << r.err;
}

TEST_F(Gradctl, SessionsListGetSetClose) {
  ClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(server_->port());
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok());
  gradserve::v1::CreateSessionRequest create;
  auto graph = ReadGraph(kExamples + "mlp.json");
  ASSERT_TRUE(graph.ok());
  *create.mutable_graph() = *graph;
  create.mutable_optimizer()->mutable_sgd()->set_lr(0.1);
  create.set_label("from the test");
  auto created = (*client)->CreateSession(create);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string id = created->session().session_id();

  Outcome r = Call({"sessions", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("from the test"), std::string::npos) << r.out;

  const auto dir = std::filesystem::temp_directory_path() /
                   ("gradctl_sessions_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "s.npz").string();
  r = Call({"sessions", "get", id, "--out", file});
  EXPECT_EQ(r.code, 0) << r.err;
  auto arrays = ReadNpz(file);
  ASSERT_TRUE(arrays.ok()) << arrays.status();
  ASSERT_EQ(arrays->count("parameters/W1"), 1u);
  EXPECT_EQ(arrays->count("step"), 1u);

  // Zeros in, zeros out; the step is set too.
  Arrays zeros;
  gradserve::v1::Tensor w = arrays->at("parameters/W1");
  w.set_data(std::string(w.data().size(), '\0'));
  zeros["parameters/W1"] = w;
  zeros["step"] = Int64Scalar(7);
  ASSERT_TRUE(WriteNpz(file, zeros).ok());
  r = Call({"sessions", "set", id, "--from", file});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("step 7"), std::string::npos) << r.out;
  gradserve::v1::GetParametersRequest get;
  get.set_session_id(id);
  auto state = (*client)->GetParameters(get);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->parameters().at("W1").data(), w.data());
  EXPECT_EQ(state->step(), 7);

  r = Call({"sessions", "close", id});
  EXPECT_EQ(r.code, 0) << r.err;
  r = Call({"sessions", "close", id});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("error: NOT_FOUND: "), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

std::vector<std::string> ExampleMlp(std::string command) {
  return {std::move(command),
          "--graph",
          kExamples + "mlp.json",
          "--feed",
          "x=" + kExamples + "x.npy",
          "--feed",
          "labels=" + kExamples + "labels.npy",
          "--loss",
          "L"};
}

TEST_F(Gradctl, GradcheckPrintsATablePerTensor) {
  Outcome r = Call(ExampleMlp("gradcheck"));
  EXPECT_EQ(r.code, 0) << r.err << r.out;
  for (const char* part :
       {"tensor", "max abs err", "worst at", "W1", "b1", "W2", "b2", "pass",
        "gradcheck passed: 4 tensor(s)"}) {
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;
  }
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST_F(Gradctl, GradcheckExitsOneWhenACheckFails) {
  std::vector<std::string> args = ExampleMlp("gradcheck");
  args.insert(args.end(), {"--wrt", "W1", "--rtol", "1e-300", "--atol",
                           "1e-300", "--max-elements", "3"});
  Outcome r = Call(args);
  EXPECT_EQ(r.code, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("FAIL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gradcheck FAILED for W1"), std::string::npos) << r.out;
}

TEST_F(Gradctl, HessianPrintsEigenvaluesAndTheVerdict) {
  std::vector<std::string> args = ExampleMlp("hessian");
  args.insert(args.end(), {"--k", "3"});
  Outcome r = Call(args);
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* part : {"exact: every eigenvalue", "gradient norm",
                           "largest", "smallest", "critical point: "}) {
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;
  }
  args.back() = "1000";  // more than the 67 parameters
  r = Call(args);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("error: INVALID_ARGUMENT: k = 1000"), std::string::npos)
      << r.err;
}

TEST_F(Gradctl, AnalysisUsageErrorsExitTwoAndHelpZero) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"gradcheck", "--loss", "L"},
           {"gradcheck", "--graph", "g.json", "--session", "s"},
           {"hessian", "--graph", "g.json"},
           {"hessian", "--graph", "g.json", "--loss", "L", "--k", "two"}}) {
    Outcome r = Call(args, false);
    EXPECT_EQ(r.code, 2) << args.size() << ": " << r.err;
  }
  for (std::string command : {"gradcheck", "hessian"}) {
    Outcome r = Call({command, "--help"}, false);
    EXPECT_EQ(r.code, 0) << command;
    EXPECT_NE(r.out.find("Usage: gradctl " + command), std::string::npos)
        << r.out;
  }
}

TEST(GradctlUnreachable, HealthFailsWithUnavailable) {
  const char* argv[] = {"gradctl", "--server=127.0.0.1:1", "--timeout=5",
                        "health"};
  std::ostringstream out, err;
  EXPECT_EQ(RunGradctl(4, argv, out, err), 1);
  EXPECT_NE(err.str().find("error: UNAVAILABLE"), std::string::npos)
      << err.str();
}

}  // namespace
}  // namespace gradserve::client
