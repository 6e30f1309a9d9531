#include "tests/core/op_sweep_cases.h"

#include <utility>

#include "core/op_registry.h"
#include "gtest/gtest.h"

namespace gradserve::testing {
namespace {

using Ints = std::vector<int64_t>;

TestInput In(std::string name, Shape shape, double lo = -1, double hi = 1) {
  return {std::move(name), std::move(shape), Init::kUniform, lo, hi};
}
TestInput Away(std::string name, Shape shape) {
  return {std::move(name), std::move(shape), Init::kAwayFromZero, 0.1, 1};
}
TestInput Labels(std::string name, Shape shape, int64_t classes) {
  TestInput t{std::move(name), std::move(shape), Init::kLabels};
  t.classes = classes;
  return t;
}
TestInput Labels(std::string name, int64_t n, int64_t classes) {
  return Labels(std::move(name), Shape{n}, classes);
}
TestInput Mask(std::string name, Shape shape) {
  return {std::move(name), std::move(shape), Init::kBernoulli};
}
const TestInput kAbsent{""};

OpCase WithOutputs(OpCase c, int outputs) {
  c.num_outputs = outputs;
  return c;
}
OpCase InMode(OpCase c, Mode mode) {
  c.mode = mode;
  return c;
}

std::vector<OpCase> Binary(const std::string& op, double lo = -1) {
  return {OpCase(op, {In("a", {2, 3}), In("b", {2, 3}, lo, 2)}),
          OpCase(op, {In("a", {2, 1}), In("b", {1, 3}, lo, 2)}),
          OpCase(op, {In("a", {2, 3}), In("b", {3}, lo, 2)})};
}

std::vector<OpCase> Unary(const std::string& op, TestInput x,
                          AttrMap attrs = {}) {
  return {OpCase(op, {std::move(x)}, std::move(attrs))};
}

std::vector<OpCase> Softmax(const std::string& op) {
  return {OpCase(op, {In("x", {2, 4}, -3, 3)}),
          OpCase(op, {In("x", {2, 3, 2}, -3, 3)}, {{"axis", int64_t{1}}})};
}

std::vector<OpCase> Clamps() {
  using F = std::vector<double>;
  return {
      OpCase("Clamp", {In("x", {2, 3}, -2, 2)},
             {{"min", -1.05}, {"max", 1.05}}),
      OpCase("Clamp", {In("x", {2, 3}, -2, 2)}, {{"min", F{0.05}}}),
      OpCase("Clamp", {In("x", {2, 3}, -2, 2)}, {{"max", 0.05}}),
      // Tensor bounds broadcasting, x below, between and above them.
      OpCase("Clamp",
             {In("x", {2, 3}), In("lo", {3}, -1, 0), In("hi", {2, 1}, 0, 1)}),
      OpCase("Clamp", {In("x", {2, 3}), In("lo", {2, 3}), kAbsent}),
      OpCase("Clamp", {In("x", {3}), kAbsent, In("hi", {2, 3})}),
      // min > max: y = max, dL/dmax = dY.
      OpCase("Clamp", {In("x", {2, 3}), In("lo", {3}, 2, 3), In("hi", {3})}),
  };
}

// Both with one output (amax) and with indices; distinct random values.
std::vector<OpCase> Extrema(const std::string& op) {
  return {OpCase(op, {In("x", {2, 3, 4})}),
          OpCase(op, {In("x", {2, 3, 4})},
                 {{"axes", Ints{0, -1}}, {"keepdims", int64_t{1}}}),
          WithOutputs(OpCase(op, {In("x", {3, 4})}, {{"axes", Ints{1}}}), 2),
          WithOutputs(OpCase(op, {In("x", {3, 4})},
                             {{"axes", Ints{0}}, {"keepdims", int64_t{1}}}),
                      2)};
}

std::vector<OpCase> Pads() {
  std::vector<OpCase> cases = {
      OpCase("Pad", {In("x", {2, 3, 4})},
             {{"pads", Ints{1, 2, -1, 1}}, {"value", 0.5}}),
      OpCase("Pad", {In("x", {2, 3})}, {{"pads", Ints{1, 0, 2, 1}}})};
  for (const char* mode : {"reflect", "replicate", "circular"}) {
    cases.push_back(OpCase("Pad", {In("x", {1, 2, 3, 4})},
                           {{"pads", Ints{2, -1, 1, 2}}, {"mode", mode}}));
    cases.push_back(OpCase("Pad", {In("x", {2, 5})},
                           {{"pads", Ints{-1, 3}}, {"mode", mode}}));
  }
  return cases;
}

std::vector<OpCase> Conv(const std::string& op, int spatial) {
  const Shape k(spatial, 2);
  auto shape = [&](Shape lead, int64_t extent) {
    lead.insert(lead.end(), spatial, extent);
    return lead;
  };
  const AttrValue grouped_stride =
      spatial == 1 ? AttrValue(int64_t{2}) : AttrValue(Ints{2, 1});
  const AttrValue padding =
      spatial == 1 ? AttrValue(int64_t{1}) : AttrValue(Ints{1, 0});
  return {
      OpCase(op, {In("x", shape({2, 2}, 4)), In("w", shape({3, 2}, 2)),
                  In("b", {3})}),
      OpCase(op,
             {In("x", shape({1, 4}, 5)), In("w", shape({4, 2}, 3)), kAbsent},
             {{"groups", int64_t{2}},
              {"stride", grouped_stride},
              {"padding", padding}}),
      // Enough channels for oneDNN's blocked layouts.
      OpCase(op, {In("x", shape({1, 16}, 3)), In("w", shape({16, 16}, 1)),
                  In("b", {16})}),
      // Each dim's padding before, then after (ONNX's asymmetric pads).
      OpCase(op,
             {In("x", shape({1, 2}, 4)), In("w", shape({2, 2}, 3)), kAbsent},
             {{"padding", spatial == 1 ? Ints{0, 1} : Ints{1, 0, 0, 2}}}),
  };
}

// Plain; strided, padded, output-padded, dilated and grouped; enough
// channels for oneDNN's blocked weights; unbatched.
std::vector<OpCase> ConvTransposes(const std::string& op, int spatial) {
  auto shape = [&](Shape lead, int64_t extent) {
    lead.insert(lead.end(), spatial, extent);
    return lead;
  };
  auto ints = [&](int64_t v) { return AttrValue(Ints(spatial, v)); };
  return {
      OpCase(op, {In("x", shape({2, 2}, 3)), In("w", shape({2, 3}, 2)),
                  In("b", {3})}),
      OpCase(op,
             {In("x", shape({1, 4}, 3)), In("w", shape({4, 1}, 3)), kAbsent},
             {{"groups", int64_t{2}},
              {"stride", ints(2)},
              {"padding", ints(1)},
              {"output_padding", ints(1)},
              {"dilation", ints(2)}}),
      OpCase(op,
             {In("x", shape({1, 16}, 2)), In("w", shape({16, 16}, 2)),
              In("b", {16})},
             {{"stride", ints(2)}}),
      OpCase(op, {In("x", shape({2}, 3)), In("w", shape({2, 2}, 2)), kAbsent},
             {{"stride", ints(3)}, {"output_padding", ints(2)}}),
  };
}

std::vector<OpCase> Pool(const std::string& op) {
  return {OpCase(op, {In("x", {1, 2, 4, 4})}, {{"kernel", Ints{2, 2}}}),
          OpCase(op, {In("x", {1, 1, 5, 5})},
                 {{"kernel", Ints{3, 3}},
                  {"stride", Ints{2, 2}},
                  {"padding", Ints{1, 1}}}),
          OpCase(op, {In("x", {1, 2, 5, 4})},
                 {{"kernel", Ints{3, 3}},
                  {"stride", Ints{2, 1}},
                  {"padding", Ints{0, 1, 1, 0}}})};
}

// x, weight and bias (each present or not), running mean and variance.
OpCase BatchNorm(Shape x, Mode mode, bool weight, bool bias) {
  const Shape c = {x[1]};
  return InMode(
      OpCase("BatchNorm", {In("x", std::move(x), -2, 2),
                           weight ? In("w", c, 0.5, 1.5) : kAbsent,
                           bias ? In("b", c) : kAbsent, In("rm", c, -0.5, 0.5),
                           In("rv", c, 0.5, 2)}),
      mode);
}

std::vector<OpCase> BatchNorms() {
  std::vector<OpCase> cases;
  for (Mode mode : {Mode::kTrain, Mode::kEval}) {
    for (int affine = 0; affine < 4; ++affine) {
      cases.push_back(BatchNorm({4, 3}, mode, affine & 1, affine & 2));
    }
  }
  cases.push_back(BatchNorm({2, 3, 3}, Mode::kTrain, true, true));
  cases.push_back(BatchNorm({2, 2, 2, 3}, Mode::kEval, true, true));
  return cases;
}

std::vector<OpCase> LayerNorms() {
  return {
      OpCase("LayerNorm",
             {In("x", {3, 4}, -2, 2), In("w", {4}, 0.5, 1.5), In("b", {4})}),
      OpCase("LayerNorm", {In("x", {3, 4}, -2, 2), In("w", {4}), kAbsent}),
      OpCase("LayerNorm", {In("x", {3, 4}, -2, 2), kAbsent, In("b", {4})}),
      OpCase("LayerNorm", {In("x", {2, 2, 3}, -2, 2), kAbsent, kAbsent},
             {{"axes", int64_t{2}}}),
  };
}

std::vector<OpCase> Dropouts() {
  const AttrMap p = {{"p", 0.3}};
  const OpCase drawn("Dropout", {In("x", {3, 4})}, p);
  const OpCase given("Dropout", {In("x", {3, 4}), Mask("m", {3, 4})}, p);
  return {drawn,
          WithOutputs(drawn, 2),
          given,
          WithOutputs(given, 2),
          InMode(drawn, Mode::kEval),
          InMode(WithOutputs(given, 2), Mode::kEval)};
}

std::vector<OpCase> Dropout2ds() {
  const AttrMap p = {{"p", 0.4}};
  const OpCase drawn("Dropout2d", {In("x", {2, 3, 2, 2})}, p);
  const OpCase given("Dropout2d", {In("x", {2, 3, 4}), Mask("m", {2, 3, 1})},
                     p);
  return {drawn,
          WithOutputs(drawn, 2),
          given,
          WithOutputs(given, 2),
          InMode(WithOutputs(given, 2), Mode::kEval),
          OpCase("Dropout2d", {In("x", {3, 2}), Mask("m", {3, 2})}, p)};
}

// Affine or not, with running statistics in TRAIN (updated) and EVAL
// (normalising) or without them.
std::vector<OpCase> InstanceNorms(const std::string& op, const Shape& x) {
  const Shape c = {x[1]};
  const TestInput in = In("x", x, -2, 2);
  const TestInput rm = In("rm", c, -0.5, 0.5), rv = In("rv", c, 0.5, 2);
  return {OpCase(op, {in, In("w", c, 0.5, 1.5), In("b", c)}),
          OpCase(op, {in}, {{"epsilon", 0.01}}),
          OpCase(op, {in, kAbsent, In("b", c), rm, rv}, {{"momentum", 0.3}}),
          InMode(OpCase(op, {in, In("w", c, 0.5, 1.5), In("b", c), rm, rv}),
                 Mode::kEval)};
}

std::vector<OpCase> Losses(const std::string& op, TestInput first,
                           TestInput target) {
  std::vector<OpCase> cases;
  for (const char* reduction : {"mean", "sum"}) {
    cases.push_back(OpCase(op, {first, target}, {{"reduction", reduction}}));
  }
  return cases;
}

// Indices of shapes [2, 3] and [] into 5 rows (repeats likely). (torch's
// padding_idx and scale_grad_by_freq are not derivatives: embedding_test
// checks them against torch's values.)
std::vector<OpCase> Embeddings() {
  TestInput indices = Labels("i", 0, 5);
  indices.shape = {2, 3};
  TestInput scalar = indices;
  scalar.shape = {};
  const TestInput weight = In("w", {5, 3});
  return {OpCase("Embedding", {indices, weight}),
          OpCase("Embedding", {scalar, weight})};
}

std::map<std::string, std::vector<OpCase>> MakeSweepCases() {
  std::map<std::string, std::vector<OpCase>> t;
  t["Linear"] = {
      OpCase("Linear", {In("x", {3, 4}), In("w", {2, 4}), In("b", {2})}),
      OpCase("Linear", {In("x", {2, 2, 3}), In("w", {2, 3}), kAbsent})};
  t["MatMul"] = {OpCase("MatMul", {In("a", {3, 4}), In("b", {4, 2})}),
                 OpCase("MatMul", {In("a", {2, 3, 2}), In("b", {2, 2, 3})}),
                 OpCase("MatMul", {In("a", {2, 3, 2}), In("b", {2, 3})}),
                 OpCase("MatMul", {In("a", {3}), In("b", {2, 3, 2})}),
                 OpCase("MatMul", {In("a", {2, 1, 2, 3}), In("b", {3, 3, 1})})};
  t["Add"] = Binary("Add");
  t["Sub"] = Binary("Sub");
  t["Mul"] = Binary("Mul");
  t["Div"] = Binary("Div", 0.5);
  t["Scale"] = Unary("Scale", In("x", {2, 3}), {{"factor", 2.5}});
  t["Sum"] = {OpCase("Sum", {In("x", {2, 3, 2})}),
              OpCase("Sum", {In("x", {2, 3, 2})},
                     {{"axes", Ints{1}}, {"keepdims", int64_t{1}}})};
  t["Mean"] = {OpCase("Mean", {In("x", {2, 3, 2})}),
               OpCase("Mean", {In("x", {2, 3, 2})}, {{"axes", Ints{0, -1}}})};
  t["ReLU"] = Unary("ReLU", Away("x", {2, 3}));
  t["LeakyReLU"] = Unary("LeakyReLU", Away("x", {2, 3}), {{"alpha", 0.2}});
  t["ELU"] = Unary("ELU", Away("x", {2, 3}), {{"alpha", 0.7}});
  t["GELU"] = Unary("GELU", In("x", {2, 3}, -3, 3));
  t["Tanh"] = Unary("Tanh", In("x", {2, 3}, -2, 2));
  t["Sigmoid"] = Unary("Sigmoid", In("x", {2, 3}, -3, 3));
  t["Exp"] = Unary("Exp", In("x", {2, 3}));
  t["Log"] = Unary("Log", In("x", {2, 3}, 0.2, 3));
  t["SiLU"] = Unary("SiLU", In("x", {2, 3}, -3, 3));
  t["Mish"] = Unary("Mish", In("x", {2, 3}, -3, 3));
  t["Sqrt"] = Unary("Sqrt", In("x", {2, 3}, 0.2, 3));
  t["Abs"] = Unary("Abs", Away("x", {2, 3}));
  // Random draws meet a kink (x at a bound) with probability ~0.
  t["Hardtanh"] = Unary("Hardtanh", In("x", {2, 3}, -2, 2),
                        {{"min_val", -1.05}, {"max_val", 1.05}});
  t["ReLU6"] = Unary("ReLU6", In("x", {2, 3}, -3, 8));
  t["Softplus"] = {OpCase("Softplus", {In("x", {2, 3}, -3, 3)}),
                   OpCase("Softplus", {In("x", {2, 4}, -2, 2)},
                          {{"beta", 2.0}, {"threshold", 1.5}})};
  t["Clamp"] = Clamps();
  t["Pow"] = {OpCase("Pow", {In("x", {2, 3}, 0.2, 2)}, {{"exponent", 2.5}}),
              OpCase("Pow", {In("x", {2, 3}, -2, 2)}, {{"exponent", 3.0}}),
              OpCase("Pow", {In("x", {2, 3}, 0.2, 2), In("e", {2, 3}, -2, 2)}),
              OpCase("Pow", {In("x", {2, 1}, 0.2, 2), In("e", {3}, -2, 2)})};
  t["Max"] = Extrema("Max");
  t["Min"] = Extrema("Min");
  t["Softmax"] = Softmax("Softmax");
  t["LogSoftmax"] = Softmax("LogSoftmax");
  t["Flatten"] = Unary("Flatten", In("x", {2, 3, 2}));
  t["Reshape"] = Unary("Reshape", In("x", {2, 3, 2}), {{"shape", Ints{3, -1}}});
  t["Transpose"] = Unary("Transpose", In("x", {2, 3, 2}),
                         {{"dim0", int64_t{0}}, {"dim1", int64_t{-1}}});
  t["Permute"] =
      Unary("Permute", In("x", {2, 3, 4}), {{"dims", Ints{2, 0, 1}}});
  t["Squeeze"] = {
      OpCase("Squeeze", {In("x", {2, 1, 3, 1})}),
      OpCase("Squeeze", {In("x", {2, 1, 3, 1})}, {{"dims", Ints{1, 0}}})};
  t["Unsqueeze"] = Unary("Unsqueeze", In("x", {2, 3}), {{"dims", Ints{0, -1}}});
  t["Pad"] = Pads();
  t["Split"] = {WithOutputs(OpCase("Split", {In("x", {5, 2})},
                                   {{"split_size_or_sections", int64_t{2}}}),
                            3),
                WithOutputs(OpCase("Split", {In("x", {2, 5})},
                                   {{"split_size_or_sections", Ints{1, 4}},
                                    {"dim", int64_t{-1}}}),
                            2)};
  t["Gather"] = {OpCase("Gather", {In("x", {3, 4}), Labels("i", {3, 5}, 4)},
                        {{"dim", int64_t{1}}}),
                 OpCase("Gather", {In("x", {3, 4}), Labels("i", {2, 2}, 3)},
                        {{"dim", int64_t{0}}})};
  t["IndexSelect"] = {OpCase("IndexSelect",
                             {In("x", {3, 4}), Labels("i", {6}, 4)},
                             {{"dim", int64_t{-1}}})};
  t["Where"] = {
      OpCase("Where", {Labels("c", {2, 3}, 2), In("x", {2, 3}), In("y", {3})}),
      OpCase("Where", {Labels("c", {2, 1}, 2), In("x", {1, 3}), In("y", {})})};
  t["Concat"] = {
      OpCase("Concat", {In("a", {2, 3}), In("b", {2, 1}), In("c", {2, 2})}),
      OpCase("Concat", {In("a", {1, 2}), In("b", {2, 2})},
             {{"axis", int64_t{0}}})};
  t["Conv1d"] = Conv("Conv1d", 1);
  t["Conv2d"] = Conv("Conv2d", 2);
  t["MaxPool2d"] = Pool("MaxPool2d");
  t["AvgPool2d"] = Pool("AvgPool2d");
  for (const char* op : {"AdaptiveAvgPool2d", "AdaptiveMaxPool2d"}) {
    t[op] = {OpCase(op, {In("x", {2, 2, 5, 4})}, {{"output_size", Ints{2, 3}}}),
             OpCase(op, {In("x", {2, 3, 3})}, {{"output_size", Ints{4, 1}}})};
  }
  t["BatchNorm"] = BatchNorms();
  t["LayerNorm"] = LayerNorms();
  t["Dropout"] = Dropouts();
  t["MSELoss"] = Losses("MSELoss", In("p", {2, 3}), In("t", {2, 3}));
  t["CrossEntropyLoss"] =
      Losses("CrossEntropyLoss", In("z", {3, 4}, -2, 2), Labels("t", 3, 4));
  t["CrossEntropyLoss"].push_back(
      OpCase("CrossEntropyLoss",
             {In("z", {3, 4}, -2, 2), {"t", {3, 4}, Init::kProbabilities}}));
  t["NLLLoss"] =
      Losses("NLLLoss", In("lp", {3, 4}, -3, -0.1), Labels("t", 3, 4));
  t["BCELoss"] =
      Losses("BCELoss", In("p", {2, 3}, 0.05, 0.95), In("t", {2, 3}, 0, 1));
  t["BCEWithLogitsLoss"] = Losses("BCEWithLogitsLoss", In("z", {2, 3}, -3, 3),
                                  In("t", {2, 3}, 0, 1));
  t["ConvTranspose1d"] = ConvTransposes("ConvTranspose1d", 1);
  t["ConvTranspose2d"] = ConvTransposes("ConvTranspose2d", 2);
  t["Dropout2d"] = Dropout2ds();
  t["GroupNorm"] = {
      OpCase("GroupNorm",
             {In("x", {2, 4, 3}, -2, 2), In("w", {4}, 0.5, 1.5), In("b", {4})},
             {{"num_groups", int64_t{2}}}),
      OpCase("GroupNorm", {In("x", {3, 6}, -2, 2), kAbsent, In("b", {6})},
             {{"num_groups", int64_t{3}}, {"epsilon", 0.1}}),
      OpCase("GroupNorm", {In("x", {1, 2, 2, 2}, -2, 2), In("w", {2})},
             {{"num_groups", int64_t{1}}})};
  t["InstanceNorm1d"] = InstanceNorms("InstanceNorm1d", {2, 3, 4});
  t["InstanceNorm1d"].push_back(
      OpCase("InstanceNorm1d", {In("x", {3, 5}, -2, 2), In("w", {3})}));
  t["InstanceNorm2d"] = InstanceNorms("InstanceNorm2d", {2, 2, 2, 3});
  t["Embedding"] = Embeddings();
  t["L1Loss"] = Losses("L1Loss", In("p", {2, 3}), In("t", {2, 3}));
  t["L1Loss"].push_back(
      OpCase("L1Loss", {In("p", {3}), In("t", {3})}, {{"reduction", "none"}}));
  // Half the differences in the quadratic part, half in the linear.
  t["SmoothL1Loss"] = {
      OpCase("SmoothL1Loss", {In("p", {2, 3}), In("t", {2, 3})},
             {{"beta", 0.7}}),
      OpCase("SmoothL1Loss", {In("p", {4}), In("t", {4})},
             {{"beta", 0.0}, {"reduction", "sum"}}),
      OpCase("SmoothL1Loss", {In("p", {2, 2}), In("t", {2, 2})},
             {{"reduction", "none"}})};
  t["HuberLoss"] = {
      OpCase("HuberLoss", {In("p", {2, 3}), In("t", {2, 3})}, {{"delta", 0.7}}),
      OpCase("HuberLoss", {In("p", {4}), In("t", {4})},
             {{"delta", 1.5}, {"reduction", "sum"}}),
      OpCase("HuberLoss", {In("p", {2, 2}), In("t", {2, 2})},
             {{"delta", 0.3}, {"reduction", "none"}})};
  const TestInput log_probs = In("lp", {2, 3}, -3, -0.1);
  const TestInput probs = In("t", {2, 3}, 0.1, 1);
  t["KLDivLoss"] = Losses("KLDivLoss", log_probs, probs);
  t["KLDivLoss"].push_back(
      OpCase("KLDivLoss", {log_probs, probs}, {{"reduction", "batchmean"}}));
  t["KLDivLoss"].push_back(
      OpCase("KLDivLoss", {log_probs, In("t", {2, 3}, -2, 0)},
             {{"reduction", "none"}, {"log_target", int64_t{1}}}));
  return t;
}

// A zero batch; the other dims large where an op might allocate per dim.
std::map<std::string, std::vector<OpCase>> MakeEmptyCases() {
  constexpr int64_t kWide = int64_t{1} << 20;
  constexpr int64_t kChannels = int64_t{1} << 14;
  std::map<std::string, std::vector<OpCase>> t;
  t["Linear"] = {
      OpCase("Linear", {In("x", {0, 5}), In("w", {3, 5}), In("b", {3})})};
  t["MatMul"] = {OpCase("MatMul", {In("a", {0, 4}), In("b", {4, 3})})};
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) {
    t[op] = {OpCase(op, {In("a", {0, 4096}), In("b", {1, 4096}, 0.5, 2)})};
  }
  for (const char* op : {"Scale", "ReLU", "LeakyReLU", "ELU", "GELU", "Tanh",
                         "Sigmoid", "Exp", "Log", "SiLU", "Mish", "Sqrt", "Abs",
                         "Flatten", "Softmax", "LogSoftmax"}) {
    t[op] = Unary(op, In("x", {0, kWide, 1}, 0.5, 2));
  }
  t["Reshape"] = Unary("Reshape", In("x", {0, kWide}), {{"shape", Ints{0, 4}}});
  for (const char* op : {"Hardtanh", "ReLU6", "Softplus"}) {
    t[op] = Unary(op, In("x", {0, kWide, 1}));
  }
  t["Clamp"] = {
      OpCase("Clamp", {In("x", {0, kWide})}, {{"min", 0.0}}),
      OpCase("Clamp", {In("x", {0, kWide}), In("lo", {1, kWide}), kAbsent})};
  t["Pow"] = {OpCase("Pow", {In("x", {0, kWide})}, {{"exponent", 2.0}}),
              OpCase("Pow", {In("x", {0, kWide}), In("e", {1, kWide})})};
  for (const char* op : {"Max", "Min"}) {
    t[op] = {
        Unary(op, In("x", {0, kWide}), {{"axes", Ints{1}}})[0],
        WithOutputs(Unary(op, In("x", {0, kWide}), {{"axes", Ints{1}}})[0], 2)};
  }
  t["Transpose"] = Unary("Transpose", In("x", {0, kWide}),
                         {{"dim0", int64_t{0}}, {"dim1", int64_t{1}}});
  t["Permute"] =
      Unary("Permute", In("x", {0, kWide, 2}), {{"dims", Ints{2, 0, 1}}});
  t["Squeeze"] = Unary("Squeeze", In("x", {0, kWide, 1}));
  t["Unsqueeze"] = Unary("Unsqueeze", In("x", {0, kWide}), {{"dims", Ints{1}}});
  t["Pad"] = {OpCase("Pad", {In("x", {0, kWide})}, {{"pads", Ints{kWide, 1}}}),
              OpCase("Pad", {In("x", {0, 2, kWide})},
                     {{"pads", Ints{2, 3}}, {"mode", "reflect"}})};
  t["Split"] = {
      WithOutputs(OpCase("Split", {In("x", {0, kWide})},
                         {{"split_size_or_sections", Ints{kWide - 1, 1}},
                          {"dim", int64_t{1}}}),
                  2)};
  t["Gather"] = {OpCase("Gather", {In("x", {0, kWide}), Labels("i", {0, 3}, 1)},
                        {{"dim", int64_t{1}}})};
  t["IndexSelect"] = {OpCase("IndexSelect",
                             {In("x", {0, kWide}), Labels("i", {3}, 1)},
                             {{"dim", int64_t{1}}})};
  t["Where"] = {OpCase("Where", {Labels("c", {0, kWide}, 2),
                                 In("x", {0, kWide}), In("y", {1, kWide})})};
  t["Sum"] = Unary("Sum", In("x", {0, kWide}), {{"axes", Ints{1}}});
  t["Mean"] = Unary("Mean", In("x", {0, kWide}), {{"axes", Ints{1}}});
  t["Concat"] = {OpCase("Concat", {In("a", {0, kWide}), In("b", {0, 3})})};
  t["Conv1d"] = {OpCase(
      "Conv1d", {In("x", {0, 2, kWide}), In("w", {3, 2, 2}), In("b", {3})})};
  t["Conv2d"] = {OpCase("Conv2d", {In("x", {0, 2, 1024, 1024}),
                                   In("w", {3, 2, 2, 2}), In("b", {3})})};
  for (const char* op : {"MaxPool2d", "AvgPool2d"}) {
    t[op] = {
        OpCase(op, {In("x", {0, 2, 2048, 2048})}, {{"kernel", Ints{2, 2}}})};
  }
  for (const char* op : {"AdaptiveAvgPool2d", "AdaptiveMaxPool2d"}) {
    t[op] = {OpCase(op, {In("x", {0, 2, 2048, 2048})},
                    {{"output_size", Ints{1, 1}}})};
  }
  // TRAIN needs more than one value per channel: EVAL only.
  t["BatchNorm"] = {BatchNorm({0, kChannels}, Mode::kEval, false, false),
                    BatchNorm({0, kChannels, 4}, Mode::kEval, true, true)};
  t["LayerNorm"] = {
      OpCase("LayerNorm", {In("x", {0, kWide}), kAbsent, kAbsent}),
      OpCase("LayerNorm", {In("x", {0, kChannels}), In("w", {kChannels}),
                           In("b", {kChannels})})};
  const OpCase drop("Dropout", {In("x", {0, kWide}), Mask("m", {0, kWide})});
  t["Dropout"] = {drop, WithOutputs(drop, 2), InMode(drop, Mode::kEval),
                  OpCase("Dropout", {In("x", {0, kWide})})};
  t["MSELoss"] = {
      OpCase("MSELoss", {In("p", {0, kWide}), In("t", {0, kWide})})};
  t["BCELoss"] = {OpCase(
      "BCELoss", {In("p", {0, kWide}, 0.1, 0.9), In("t", {0, kWide}, 0, 1)})};
  t["BCEWithLogitsLoss"] = {OpCase(
      "BCEWithLogitsLoss", {In("z", {0, kWide}), In("t", {0, kWide}, 0, 1)})};
  t["CrossEntropyLoss"] = {
      OpCase("CrossEntropyLoss", {In("z", {0, kWide}), Labels("t", 0, kWide)}),
      OpCase("CrossEntropyLoss",
             {In("z", {0, kWide}), {"t", {0, kWide}, Init::kProbabilities}})};
  t["NLLLoss"] = {
      OpCase("NLLLoss", {In("lp", {0, kWide}), Labels("t", 0, kWide)})};
  t["GroupNorm"] = {OpCase(
      "GroupNorm",
      {In("x", {0, kChannels, 4}), In("w", {kChannels}), In("b", {kChannels})},
      {{"num_groups", int64_t{4}}})};
  t["ConvTranspose1d"] = {
      OpCase("ConvTranspose1d",
             {In("x", {0, 2, kWide}), In("w", {2, 3, 2}), In("b", {3})})};
  t["ConvTranspose2d"] = {OpCase(
      "ConvTranspose2d",
      {In("x", {0, 2, 1024, 1024}), In("w", {2, 3, 2, 2}), In("b", {3})})};
  for (const char* op : {"InstanceNorm1d", "InstanceNorm2d"}) {
    Shape x = {0, kChannels, 4};
    if (op[12] == '2') x.push_back(4);
    // (Running statistics become NaN for an empty batch, as in torch: new
    // tensors; group_norm_test checks them.)
    t[op] = {OpCase(op, {In("x", x), In("w", {kChannels}), kAbsent})};
  }
  const OpCase drop2d(
      "Dropout2d", {In("x", {0, kChannels, 64}), Mask("m", {0, kChannels, 1})});
  t["Dropout2d"] = {drop2d, WithOutputs(drop2d, 2), InMode(drop2d, Mode::kEval),
                    OpCase("Dropout2d", {In("x", {0, kChannels, 64})})};
  t["Embedding"] = {
      OpCase("Embedding", {Labels("i", 0, kChannels), In("w", {kChannels, 64})},
             {{"scale_grad_by_freq", int64_t{1}}})};
  for (const char* op : {"L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss"}) {
    t[op] = {OpCase(op, {In("p", {0, kWide}), In("t", {0, kWide}, 0.1, 1)})};
  }
  return t;
}

}  // namespace

const std::map<std::string, std::vector<OpCase>>& SweepCases() {
  static const auto* const cases =
      new std::map<std::string, std::vector<OpCase>>(MakeSweepCases());
  return *cases;
}

const std::map<std::string, std::vector<OpCase>>& EmptyCases() {
  static const auto* const cases =
      new std::map<std::string, std::vector<OpCase>>(MakeEmptyCases());
  return *cases;
}

std::vector<std::string> RegisteredOps() {
  std::vector<std::string> names;
  for (const OpSchema* schema : OpRegistry::Global().All()) {
    names.push_back(schema->name);
  }
  return names;
}

void ForEachWrtSubset(const std::map<std::string, std::vector<OpCase>>& table,
                      const std::string& op,
                      const std::function<void(const OpCase&)>& f) {
  auto it = table.find(op);
  if (it == table.end() || it->second.empty()) {
    ADD_FAILURE() << "op " << op << " has no case in the table";
    return;
  }
  for (const OpCase& base : it->second) {
    const std::vector<int> floats = FloatInputs(base);
    EXPECT_FALSE(floats.empty()) << CaseName(base);
    for (const std::vector<int>& subset : NonEmptySubsets(floats)) {
      f(WithWrt(base, subset));
    }
  }
}

}  // namespace gradserve::testing
