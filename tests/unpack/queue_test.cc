#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stop_token>
#include <thread>
#include <vector>

#include "unpack/bounded_queue.h"
#include "unpack/buffer_pool.h"

namespace zsnap::unpack {
namespace {

TEST(BoundedQueueTest, FifoAndCloseDrains) {
  BoundedQueue<int> q(4);
  EXPECT_TRUE(q.Push(1));
  EXPECT_TRUE(q.Push(2));
  q.Close();
  EXPECT_FALSE(q.Push(3));
  EXPECT_EQ(q.Pop(), 1);
  EXPECT_EQ(q.Pop(), 2);
  EXPECT_EQ(q.Pop(), std::nullopt);
  EXPECT_EQ(q.Pop(), std::nullopt);
}

TEST(BoundedQueueTest, ProducerConsumerKeepsOrderAndBound) {
  BoundedQueue<int> q(3);
  constexpr int kN = 20'000;
  std::atomic<size_t> max_size{0};
  std::jthread producer([&] {
    for (int i = 0; i < kN; ++i) {
      ASSERT_TRUE(q.Push(i));
      size_t s = q.size();
      size_t m = max_size.load();
      while (s > m && !max_size.compare_exchange_weak(m, s)) {
      }
    }
    q.Close();
  });
  int expect = 0;
  while (auto v = q.Pop()) ASSERT_EQ(*v, expect++);
  EXPECT_EQ(expect, kN);
  EXPECT_LE(max_size.load(), 3u);
}

TEST(BoundedQueueTest, CloseWakesBlockedReader) {
  BoundedQueue<int> q(1);
  std::jthread reader([&] { EXPECT_EQ(q.Pop(), std::nullopt); });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  q.Close();
}

TEST(BoundedQueueTest, StopWakesBlockedReaderAndWriter) {
  BoundedQueue<int> q(1);
  ASSERT_TRUE(q.Push(0));
  std::stop_source stop;
  std::jthread writer([&] { EXPECT_FALSE(q.Push(1, stop.get_token())); });
  BoundedQueue<int> empty(1);
  std::jthread reader([&] { EXPECT_EQ(empty.Pop(stop.get_token()), std::nullopt); });
  stop.request_stop();
}

TEST(BoundedQueueTest, StoppedPopDiscardsQueuedItems) {
  BoundedQueue<int> q(2);
  ASSERT_TRUE(q.Push(1));
  std::stop_source stop;
  stop.request_stop();
  EXPECT_EQ(q.Pop(stop.get_token()), std::nullopt);
}

TEST(BufferPoolTest, HandlesReturnOnDestruction) {
  BufferPool pool(2, 1024);
  EXPECT_EQ(pool.available(), 2u);
  {
    auto a = pool.Acquire();
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->capacity(), 1024u);
    EXPECT_EQ(a->size(), 0u);
    a->set_size(10);
    EXPECT_EQ(a->bytes().size(), 10u);
    EXPECT_EQ(a->free_space().size(), 1014u);
    auto b = std::move(*a);  // moved-from handle returns nothing
    EXPECT_EQ(pool.available(), 1u);
  }
  EXPECT_EQ(pool.available(), 2u);
}

TEST(BufferPoolTest, AcquireBlocksUntilReleaseOrStop) {
  BufferPool pool(1, 64);
  auto held = pool.Acquire();
  std::stop_source stop;
  std::atomic<bool> got{false};
  std::jthread waiter([&] {
    auto b = pool.Acquire(stop.get_token());
    got = b.has_value();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(got.load());
  held.reset();
  waiter.join();
  EXPECT_TRUE(got.load());

  auto again = pool.Acquire();
  std::jthread stopped([&] { EXPECT_FALSE(pool.Acquire(stop.get_token()).has_value()); });
  stop.request_stop();
}

TEST(BufferPoolTest, BuffersFlowThroughAQueue) {
  BufferPool pool(3, 4096);
  BoundedQueue<BufferPool::Buffer> q(3);
  std::jthread producer([&] {
    for (int i = 0; i < 1000; ++i) {
      auto b = pool.Acquire();
      ASSERT_TRUE(b.has_value());
      std::memset(b->data(), i & 0xff, 100);
      b->set_size(100);
      ASSERT_TRUE(q.Push(std::move(*b)));
    }
    q.Close();
  });
  int i = 0;
  while (auto b = q.Pop()) {
    ASSERT_EQ(b->size(), 100u);
    ASSERT_EQ(std::to_integer<int>(b->bytes()[99]), i & 0xff);
    ++i;
  }
  EXPECT_EQ(i, 1000);
}

}  // namespace
}  // namespace zsnap::unpack
