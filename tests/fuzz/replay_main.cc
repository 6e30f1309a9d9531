// Runs inputs through the request fuzzer's LLVMFuzzerTestOneInput without
// libFuzzer, so that any compiler can build it and ctest can replay the
// seed corpus and the regression inputs:
//   request_fuzz_replay FILE|DIR...
//   request_fuzz_replay --mutate=N FILE|DIR...   N rounds of the custom
//       mutator over the inputs (blind: no coverage guidance), each run
// A finding aborts (sanitizer reports too, in sanitized builds).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size,
                                          size_t max_size, unsigned seed);

namespace {

constexpr size_t kMaxMutatedSize = 1 << 16;

std::vector<std::filesystem::path> Inputs(const std::vector<char*>& args) {
  std::vector<std::filesystem::path> inputs;
  for (const char* a : args) {
    const std::filesystem::path arg(a);
    if (!std::filesystem::is_directory(arg)) {
      inputs.push_back(arg);
      continue;
    }
    for (const auto& entry : std::filesystem::directory_iterator(arg)) {
      if (entry.is_regular_file() && entry.path().extension() != ".md") {
        inputs.push_back(entry.path());
      }
    }
  }
  std::sort(inputs.begin(), inputs.end());
  return inputs;
}

std::string Read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

int Run(const std::string& bytes) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                                bytes.size());
}

// Round i mutates input i % n, three times over, with seed i.
void MutateRounds(const std::vector<std::filesystem::path>& inputs,
                  long rounds) {
  std::vector<std::string> corpus;
  for (const auto& path : inputs) corpus.push_back(Read(path));
  for (long i = 0; i < rounds && !corpus.empty(); ++i) {
    std::string bytes = corpus[i % corpus.size()];
    for (unsigned k = 0; k < 3; ++k) {
      const size_t size = bytes.size();
      bytes.resize(kMaxMutatedSize);
      bytes.resize(LLVMFuzzerCustomMutator(
          reinterpret_cast<uint8_t*>(bytes.data()), size, kMaxMutatedSize,
          static_cast<unsigned>(3 * i + k)));
    }
    Run(bytes);
  }
  std::printf("ran %ld mutated inputs, no finding\n", rounds);
}

}  // namespace

int main(int argc, char** argv) {
  long rounds = 0;
  std::vector<char*> args;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--mutate=", 9) == 0) {
      rounds = std::strtol(argv[i] + 9, nullptr, 10);
    } else {
      args.push_back(argv[i]);
    }
  }
  if (args.empty()) {
    std::fprintf(stderr, "usage: %s [--mutate=N] FILE|DIR...\n", argv[0]);
    return 2;
  }
  const auto inputs = Inputs(args);
  if (rounds > 0) {
    MutateRounds(inputs, rounds);
    return 0;
  }
  int parsed = 0;
  for (const auto& path : inputs) {
    std::fprintf(stderr, "%s\n", path.c_str());
    parsed += Run(Read(path)) == 0;
  }
  std::printf("replayed %zu inputs (%d parsed), no finding\n", inputs.size(),
              parsed);
  return 0;
}
