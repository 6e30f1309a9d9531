// Strands run their tasks one at a time in submission order; different
// strands share the pool's workers.
#include "runtime/strand.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace gradserve::runtime {
namespace {

TEST(Strand, RunsTasksOneAtATimeInSubmissionOrder) {
  ComputePool pool({4, 1}, 1000);
  auto strand = Strand::Create(&pool, 1000);
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> running{0}, most{0};
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(strand->Submit([&, i] {
      const int now = ++running;
      most = std::max(most.load(), now);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
      }
      --running;
    }));
  }
  while (true) {
    std::lock_guard<std::mutex> lock(mu);
    if (order.size() == 200) break;
  }
  EXPECT_EQ(most.load(), 1);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(order[i], i);
}

TEST(Strand, DifferentStrandsRunInParallel) {
  ComputePool pool({2, 1}, 100);
  auto a = Strand::Create(&pool, 10);
  auto b = Strand::Create(&pool, 10);
  std::atomic<int> arrived{0};
  std::atomic<bool> both{false};
  // Each task waits for the other: they finish only if they run at once.
  auto meet = [&] {
    ++arrived;
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < until) {
    }
    if (arrived.load() == 2) both = true;
  };
  ASSERT_TRUE(a->Submit(meet));
  ASSERT_TRUE(b->Submit(meet));
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!both && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(both);
}

TEST(Strand, RefusesBeyondItsQueue) {
  ComputePool pool({1, 1}, 100);
  auto strand = Strand::Create(&pool, 2);
  std::atomic<bool> release{false};
  ASSERT_TRUE(strand->Submit([&] {
    while (!release) std::this_thread::yield();
  }));
  ASSERT_TRUE(strand->Submit([] {}));
  // The first task may already have left the queue to run, so a third fits
  // at most once more.
  bool refused = false;
  for (int i = 0; i < 3 && !refused; ++i) refused = !strand->Submit([] {});
  EXPECT_TRUE(refused);
  release = true;
}

}  // namespace
}  // namespace gradserve::runtime
