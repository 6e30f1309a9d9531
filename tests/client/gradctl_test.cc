// gradctl's commands against an in-process server.
#include "client/gradctl.h"

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "client/npy.h"
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
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--feed takes NAME=VALUE"), std::string::npos) << r.err;
}

TEST_F(Gradctl, UsageErrorsExitTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"compute"},
           {"compute", "--graph", "g.json", "--mode", "test"},
           {"--timeout=-1", "info"}}) {
    Outcome r = Call(args, false);
    EXPECT_EQ(r.code, 2) << args.size() << ": " << r.err;
    EXPECT_FALSE(r.err.empty());
  }
}

TEST_F(Gradctl, HelpExitsZero) {
  for (std::string command : {"info", "health", "describe", "compute"}) {
    Outcome r = Call({command, "--help"}, false);
    EXPECT_EQ(r.code, 0) << command;
    EXPECT_NE(r.out.find("Usage: gradctl " + command), std::string::npos)
        << r.out;
  }
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
