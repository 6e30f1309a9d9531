// GroupNorm and InstanceNorm1d/2d: torch's values, running statistics in
// TRAIN (updated) and EVAL (normalising; NaN after an empty batch, as
// torch), and the checks made before anything runs.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

Tensor X() { return F32({2, 2, 3}, {1, 2, 4, 0, -1, 3, 2, 2, 5, 1, 0, -2}); }

OpCase Instance1d(Mode mode, AttrMap attrs = {}) {
  OpCase c("InstanceNorm1d",
           {{"x", {2, 2, 3}}, {""}, {""}, {"rm", {2}}, {"rv", {2}}},
           std::move(attrs));
  c.inputs[3].placement = c.inputs[4].placement = Placement::kBuffer;
  c.mode = mode;
  return c;
}

// Values from torch 1.13: F.instance_norm(x, rm, rv, momentum=0.25).
TEST(InstanceNorm1d, TrainUpdatesRunningStatsAsTorch) {
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    auto r = RunPlaced(
        Instance1d(Mode::kTrain, {{"momentum", 0.25}}),
        {X(), Tensor(), Tensor(), F32({2}, {0.5, -0.5}), F32({2}, {1, 2})},
        Tensor(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(
        r->outputs.at("out0"),
        F32({2, 2, 3},
            {-1.0690415314502977, -0.2672603828625746, 1.3363019143128716,
             -0.39223159141458575, -0.9805789785364644, 1.3728105699510502,
             -0.7071050134262238, -0.7071050134262238, 1.4142100268524471,
             1.0690415314502975, 0.26726038286257436, -1.3363019143128718}),
        1e-6, "y");
    ExpectClose(r->buffers.at("rm"),
                F32({2}, {1.0416666666666667, -0.3333333333333333}), 1e-6,
                "running_mean");
    ExpectClose(r->buffers.at("rv"),
                F32({2}, {1.4166666666666667, 2.333333333333333}), 1e-6,
                "running_var");
  }
}

// F.instance_norm(x, rm, rv, use_input_stats=False).
TEST(InstanceNorm1d, EvalNormalisesByRunningStats) {
  auto r = RunPlaced(
      Instance1d(Mode::kEval),
      {X(), Tensor(), Tensor(), F32({2}, {0.5, -0.5}), F32({2}, {1, 2})},
      Tensor(), DType::kFloat64);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(
      r->outputs.at("out0"),
      F32({2, 2, 3},
          {0.4999975000187499, 1.4999925000562495, 3.499982500131249,
           0.35355250671311184, -0.35355250671311184, 2.4748675469917827,
           1.4999925000562495, 1.4999925000562495, 4.4999775001687485,
           1.0606575201393356, 0.35355250671311184, -1.0606575201393356}),
      1e-7, "y");
}

TEST(InstanceNorm1d, EmptyBatchMakesRunningStatsNaNAsTorch) {
  for (Mode mode : {Mode::kTrain, Mode::kEval}) {
    OpCase c = Instance1d(mode);
    c.inputs[0].shape = {0, 2, 3};
    auto r = RunPlaced(c,
                       {F32({0, 2, 3}, {}), Tensor(), Tensor(),
                        F32({2}, {0.5, -0.5}), F32({2}, {1, 2})},
                       Tensor(), DType::kFloat32);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const char* name : {"rm", "rv"}) {
      for (float v : r->buffers.at(name).values<float>()) {
        EXPECT_TRUE(std::isnan(v)) << name << " " << v;
      }
    }
  }
}

// F.group_norm(x, 1).
TEST(GroupNorm, OneGroupMatchesTorch) {
  OpCase c("GroupNorm", {{"x", {2, 2, 3}}}, {{"num_groups", int64_t{1}}});
  auto r = RunOnValues(c, {X()});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(
      r->outputs.at("out0"),
      F32({2, 2, 3},
          {-0.29276951999438444, 0.29276951999438444, 1.4638475999719223,
           -0.8783085599831533, -1.4638475999719223, 0.8783085599831533,
           0.31234718095732367, 0.31234718095732367, 1.7179094952652803,
           -0.15617359047866178, -0.6246943619146472, -1.5617359047866182}),
      1e-6, "y");
}

TEST(GroupNorm, RejectsBadGroupsAndShapes) {
  ExpectError(
      OpCase("GroupNorm", {{"x", {2, 6, 3}}}, {{"num_groups", int64_t{4}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (GroupNorm)", "'num_groups'", "dividing the 6 channels",
       "4"});
  ExpectError(OpCase("GroupNorm", {{"x", {2, 6, 3}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (GroupNorm)", "'num_groups'", "required"});
  ExpectError(OpCase("GroupNorm", {{"x", {2, 6, 3}}, {"w", {3}}},
                     {{"num_groups", int64_t{2}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (GroupNorm)", "input 'weight'", "[6]", "[3]"});
  ExpectError(OpCase("GroupNorm", {{"x", {6}}}, {{"num_groups", int64_t{2}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (GroupNorm)", "input 'x'", "[N, C, ...]"});
}

TEST(InstanceNorm, RejectsWhatTorchRejects) {
  ExpectError(OpCase("InstanceNorm1d", {{"x", {2, 3, 1}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (InstanceNorm1d)", "more than 1 spatial element",
               "[2, 3, 1]"});
  ExpectError(OpCase("InstanceNorm2d", {{"x", {3, 4}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (InstanceNorm2d)", "input 'x'", "rank"});
  ExpectError(OpCase("InstanceNorm1d", {{"x", {2, 3, 4, 5}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (InstanceNorm1d)", "input 'x'", "rank"});
  OpCase one = Instance1d(Mode::kEval);
  one.inputs[4] = {""};
  ExpectError(
      one, absl::StatusCode::kInvalidArgument,
      {"node 'node' (InstanceNorm1d)", "input 'running_var'", "in EVAL"});
}

}  // namespace
}  // namespace gradserve::testing
