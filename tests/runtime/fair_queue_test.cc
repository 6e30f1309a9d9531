// The compute pool's queue takes keys (tenants, connections) in turns: a
// key's backlog does not make another key's task wait behind all of it.
#include "runtime/fair_queue.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/compute_pool.h"

namespace gradserve::runtime {
namespace {

// Runs every queued task in the order the queue gives them.
void RunAll(FairQueue& queue) {
  while (!queue.empty()) queue.Pop()();
}

TEST(FairQueue, KeysTakeTurnsAndEachKeyKeepsItsOrder) {
  FairQueue queue;
  std::vector<std::string> ran;
  auto task = [&ran](std::string name) {
    return [&ran, name] { ran.push_back(name); };
  };
  for (int i = 0; i < 3; ++i) queue.Push("a", task("a" + std::to_string(i)));
  queue.Push("b", task("b0"));
  queue.Push("c", task("c0"));
  queue.Push("b", task("b1"));
  EXPECT_EQ(queue.size(), 6u);
  EXPECT_EQ(queue.keys(), 3u);
  RunAll(queue);
  EXPECT_EQ(ran,
            (std::vector<std::string>{"a0", "b0", "c0", "a1", "b1", "a2"}));
  EXPECT_EQ(queue.keys(), 0u);
}

TEST(FairQueue, AKeyThatComesBackWaitsBehindTheOthers) {
  FairQueue queue;
  std::vector<std::string> ran;
  queue.Push("a", [&ran] { ran.push_back("a0"); });
  queue.Push("b", [&ran] { ran.push_back("b0"); });
  queue.Pop()();  // a0: a has nothing left and leaves the turns
  queue.Push("a", [&ran] { ran.push_back("a1"); });
  queue.Push("b", [&ran] { ran.push_back("b1"); });
  RunAll(queue);
  EXPECT_EQ(ran, (std::vector<std::string>{"a0", "b0", "a1", "b1"}));
}

// One worker, held busy while tenant A queues 100 tasks and tenant B one: B's
// runs first or second, where a FIFO would run it 101st.
TEST(ComputePool, AFloodingKeyDoesNotMakeAnotherWaitBehindItsBacklog) {
  ComputePool pool({1, 1}, 1000);
  std::mutex mu;
  std::condition_variable cv;
  bool started = false, open = false;
  std::vector<std::string> ran;
  ASSERT_TRUE(pool.Submit("gate", [&] {
    std::unique_lock<std::mutex> lock(mu);
    started = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }));
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return started; });
  }
  auto record = [&](std::string who) {
    return [&, who] {
      std::lock_guard<std::mutex> lock(mu);
      ran.push_back(who);
      cv.notify_all();
    };
  };
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(pool.Submit("tenant A", record("A")));
  ASSERT_TRUE(pool.Submit("tenant B", record("B")));
  EXPECT_EQ(pool.load().queued, 101);
  {
    std::unique_lock<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
    cv.wait(lock, [&] { return ran.size() == 101; });
  }
  const auto b = std::find(ran.begin(), ran.end(), "B");
  ASSERT_NE(b, ran.end());
  EXPECT_LE(b - ran.begin(), 1);
}

TEST(ComputePool, AFullQueueRefusesWhateverTheKey) {
  ComputePool pool({1, 1}, 2);
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  ASSERT_TRUE(pool.Submit("a", [&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
  }));
  EXPECT_TRUE(pool.Submit("a", [] {}));
  EXPECT_TRUE(pool.Submit("b", [] {}));
  EXPECT_FALSE(pool.Submit("c", [] {}));
  std::lock_guard<std::mutex> lock(mu);
  open = true;
  cv.notify_all();
}

}  // namespace
}  // namespace gradserve::runtime
