// ApplyStep against torch.optim 1.13: the 20-step trajectories that
// make_optim_reference.py writes (the optim_reference fixture). Each step
// starts from ApplyStep's own previous result, so errors would accumulate;
// every parameter and state tensor is compared after every step.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/npy.h"
#include "core/status_macros.h"
#include "core/train/optimizer.h"
#include "gtest/gtest.h"

namespace gradserve {
namespace {

constexpr int kSteps = 20;
constexpr double kTolerance = 1e-6;  // relative
const char* const kParameters[] = {"W1", "W2", "b1", "scale"};

std::string ReferencePath(const std::string& rel) {
  return absl::StrCat(GRADSERVE_OPTIM_REFERENCE, "/", rel);
}

absl::StatusOr<Tensor> LoadFloat32(const std::string& rel) {
  ASSIGN_OR_RETURN(v1::Tensor t, client::ReadNpy(ReferencePath(rel)));
  Tensor out =
      Tensor::Empty(DType::kFloat32, Shape(t.shape().begin(), t.shape().end()));
  if (t.dtype() != v1::DATA_TYPE_FLOAT32 ||
      t.data().size() != out.num_bytes()) {
    return absl::InvalidArgumentError(rel + ": expected raw float32 data");
  }
  std::memcpy(out.raw_data(), t.data().data(), out.num_bytes());
  return out;
}

// Step k of a [kSteps, *shape] stack.
Tensor StepOf(const Tensor& stacked, int k) {
  Tensor t = Tensor::Empty(DType::kFloat32, Shape(stacked.shape().begin() + 1,
                                                  stacked.shape().end()));
  std::memcpy(t.raw_data(), stacked.data<float>() + k * t.num_elements(),
              t.num_bytes());
  return t;
}

// A line of scenarios.txt.
struct Scenario {
  OptimizerConfig config;
  std::string state_names;  // torch's, comma-separated; "-" for none
  std::vector<double> lr_schedule;
};

absl::Status ParseDouble(absl::string_view text, double& value) {
  if (absl::SimpleAtod(text, &value)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("not a number: ", text));
}

// A hyper-parameter as the script names it: a number or a flag.
template <typename Config>
struct Field {
  const char* name;
  double Config::*number;
  bool Config::*flag;
};

const Field<SgdConfig> kSgdFields[] = {
    {"lr", &SgdConfig::lr, nullptr},
    {"momentum", &SgdConfig::momentum, nullptr},
    {"dampening", &SgdConfig::dampening, nullptr},
    {"weight_decay", &SgdConfig::weight_decay, nullptr},
    {"nesterov", nullptr, &SgdConfig::nesterov}};
const Field<AdamConfig> kAdamFields[] = {
    {"lr", &AdamConfig::lr, nullptr},
    {"beta1", &AdamConfig::beta1, nullptr},
    {"beta2", &AdamConfig::beta2, nullptr},
    {"eps", &AdamConfig::eps, nullptr},
    {"weight_decay", &AdamConfig::weight_decay, nullptr},
    {"amsgrad", nullptr, &AdamConfig::amsgrad},
    {"decoupled", nullptr, &AdamConfig::decoupled_weight_decay}};

template <typename Config, size_t N>
absl::Status SetConfigField(Config& c, const Field<Config> (&fields)[N],
                            absl::string_view key, absl::string_view value) {
  for (const Field<Config>& f : fields) {
    if (key != f.name) continue;
    if (f.flag == nullptr) return ParseDouble(value, c.*f.number);
    c.*f.flag = value == "true";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown field ", key));
}

absl::Status SetField(Scenario& s, absl::string_view key,
                      absl::string_view value) {
  if (key == "state") {
    s.state_names = std::string(value);
  } else if (key == "lr_schedule") {
    for (absl::string_view v : absl::StrSplit(value, ',')) {
      RETURN_IF_ERROR(ParseDouble(v, s.lr_schedule.emplace_back()));
    }
  } else if (key == "max_grad_norm") {
    return ParseDouble(value, s.config.max_grad_norm);
  } else if (auto* sgd = std::get_if<SgdConfig>(&s.config.kind)) {
    return SetConfigField(*sgd, kSgdFields, key, value);
  } else {
    return SetConfigField(std::get<AdamConfig>(s.config.kind), kAdamFields, key,
                          value);
  }
  return absl::OkStatus();
}

// "<name> kind=sgd|adam key=value..." for the scenario `name`.
absl::StatusOr<Scenario> LoadScenario(const std::string& name) {
  std::ifstream in(ReferencePath("scenarios.txt"));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    if (words[0] != name) continue;
    Scenario s;
    if (words[1] == "kind=adam") s.config.kind = AdamConfig{};
    for (size_t i = 2; i < words.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(words[i], '=');
      RETURN_IF_ERROR(SetField(s, kv.first, kv.second));
    }
    return s;
  }
  return absl::NotFoundError(absl::StrCat("no scenario ", name));
}

// ApplyStep repeats the float32 operations of torch's AVX2 kernels; where
// torch ran those it must agree bit for bit, elsewhere within kTolerance.
bool TorchRanAvx2() {
  std::ifstream in(ReferencePath("torch_capability.txt"));
  std::string capability;
  std::getline(in, capability);
  return capability == "AVX2";
}

double RelativeError(double got, double want) {
  const double error = std::abs(got - want);
  return error == 0 ? 0 : error / std::abs(want);
}

// Agreement of one run with torch, over all steps and tensors.
struct Agreement {
  int64_t elements = 0;
  int64_t bitwise = 0;
  double max_relative_error = 0;

  void Add(const std::string& what, const Tensor& got, const Tensor& want) {
    ASSERT_EQ(got.shape(), want.shape()) << what;
    const float* a = got.data<float>();
    const float* b = want.data<float>();
    for (int64_t i = 0; i < want.num_elements(); ++i) {
      const double relative = RelativeError(a[i], b[i]);
      max_relative_error = std::max(max_relative_error, relative);
      bitwise += std::memcmp(a + i, b + i, sizeof(float)) == 0;
      ASSERT_LE(relative, kTolerance)
          << what << "[" << i << "]: " << a[i] << " vs torch " << b[i];
    }
    elements += want.num_elements();
  }
};

// torch's side of one scenario.
struct Reference {
  std::map<std::string, Tensor> initial;
  std::map<std::string, Tensor> gradients;  // stacked over the steps
  std::map<std::string, Tensor> after;      // parameters and state, stacked
  Tensor grad_norms;
};

absl::StatusOr<Reference> LoadReference(
    const std::string& scenario, const std::vector<std::string>& states) {
  Reference r;
  for (const char* p : kParameters) {
    ASSIGN_OR_RETURN(r.initial[p],
                     LoadFloat32(absl::StrCat("initial/", p, ".npy")));
    ASSIGN_OR_RETURN(r.gradients[p],
                     LoadFloat32(absl::StrCat("gradients/", p, ".npy")));
    ASSIGN_OR_RETURN(r.after[p],
                     LoadFloat32(absl::StrCat(scenario, "/", p, ".npy")));
    for (const std::string& s : states) {
      ASSIGN_OR_RETURN(
          r.after[absl::StrCat(p, "/", s)],
          LoadFloat32(absl::StrCat(scenario, "/", p, ".", s, ".npy")));
    }
  }
  ASSIGN_OR_RETURN(r.grad_norms, LoadFloat32(scenario + "/grad_norm.npy"));
  return r;
}

const char* const kScenarios[] = {"sgd",
                                  "sgd_clip",
                                  "sgd_momentum",
                                  "sgd_momentum_clip",
                                  "sgd_dampening",
                                  "sgd_dampening_clip",
                                  "sgd_nesterov",
                                  "sgd_nesterov_clip",
                                  "sgd_weight_decay",
                                  "sgd_weight_decay_clip",
                                  "sgd_momentum_weight_decay",
                                  "sgd_momentum_weight_decay_clip",
                                  "adam",
                                  "adam_clip",
                                  "adam_weight_decay",
                                  "adam_weight_decay_clip",
                                  "adamw",
                                  "adamw_clip",
                                  "adam_amsgrad",
                                  "adam_amsgrad_clip",
                                  "adamw_amsgrad",
                                  "adamw_amsgrad_clip",
                                  "sgd_momentum_schedule",
                                  "adamw_schedule_clip"};

class TorchParity : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    absl::StatusOr<Scenario> s = LoadScenario(GetParam());
    ASSERT_TRUE(s.ok()) << s.status();
    scenario_ = *std::move(s);
    const std::vector<std::string> states =
        OptimizerStateNames(scenario_.config);
    // The state torch kept is the state ApplyStep keeps.
    ASSERT_EQ(absl::StrJoin(states, ","),
              scenario_.state_names == "-" ? "" : scenario_.state_names);
    absl::StatusOr<Reference> r = LoadReference(GetParam(), states);
    ASSERT_TRUE(r.ok()) << r.status();
    reference_ = *std::move(r);
  }

  // Step k (0-based) from `params` and `state`, replaced by its result.
  void Step(int k, std::map<std::string, Tensor>& params,
            OptimizerState& state) {
    std::map<std::string, Tensor> grads;
    for (const auto& [p, g] : reference_.gradients) grads[p] = StepOf(g, k);
    StepInput input{&params, &grads, &state, k + 1};
    if (!scenario_.lr_schedule.empty()) {
      input.learning_rate = scenario_.lr_schedule[k];
    }
    absl::StatusOr<StepResult> result = ApplyStep(scenario_.config, input);
    ASSERT_TRUE(result.ok()) << result.status();
    const float torch_norm = reference_.grad_norms.data<float>()[k];
    EXPECT_LE(RelativeError(result->grad_norm, torch_norm), kTolerance)
        << "step " << k + 1;
    bitwise_norms_ += static_cast<float>(result->grad_norm) == torch_norm;
    clipped_steps_ += torch_norm > scenario_.config.max_grad_norm &&
                      scenario_.config.max_grad_norm > 0;
    params = std::move(result->parameters);
    state = std::move(result->state);
  }

  Scenario scenario_;
  Reference reference_;
  int clipped_steps_ = 0;
  int bitwise_norms_ = 0;
};

TEST_P(TorchParity, TwentyStepsAgreeWithTorch) {
  std::map<std::string, Tensor> params = reference_.initial;
  OptimizerState state;
  Agreement agreement;
  for (int k = 0; k < kSteps; ++k) {
    ASSERT_NO_FATAL_FAILURE(Step(k, params, state));
    for (const auto& [key, stacked] : reference_.after) {
      const Tensor& got = params.count(key) ? params.at(key) : state.at(key);
      ASSERT_NO_FATAL_FAILURE(agreement.Add(
          absl::StrCat(key, " after step ", k + 1), got, StepOf(stacked, k)));
    }
  }
  if (scenario_.config.max_grad_norm > 0) {
    EXPECT_GT(clipped_steps_, 0);
  }
  if (TorchRanAvx2()) {
    EXPECT_EQ(agreement.bitwise, agreement.elements);
    EXPECT_EQ(bitwise_norms_, kSteps);
  }
  std::cout << GetParam() << ": " << agreement.bitwise << " of "
            << agreement.elements
            << " values bitwise equal to torch, max relative error "
            << agreement.max_relative_error << "; grad_norm bitwise on "
            << bitwise_norms_ << " of " << kSteps << " steps, clipped on "
            << clipped_steps_ << "\n";
  RecordProperty("bitwise", agreement.bitwise);
  RecordProperty("elements", agreement.elements);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, TorchParity,
                         ::testing::ValuesIn(kScenarios),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

// The script and this test list the same scenarios.
TEST(TorchParityManifest, ListsExactlyTheTestedScenarios) {
  std::ifstream in(ReferencePath("scenarios.txt"));
  std::set<std::string> written;
  for (std::string line; std::getline(in, line);) {
    written.insert(line.substr(0, line.find(' ')));
  }
  EXPECT_EQ(written, std::set<std::string>(std::begin(kScenarios),
                                           std::end(kScenarios)));
}

}  // namespace
}  // namespace gradserve
