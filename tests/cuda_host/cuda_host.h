// CUDA built-ins for compiling kernels/*.cu as host C++ (g++ -std=c++20), so that their logic
// runs on the CPU in CI. mg::launch runs a grid one block at a time: each of the block's threads
// is a host thread, __shared__ is static storage (safe because blocks never overlap),
// __syncthreads() is a std::barrier, atomicAdd goes through std::atomic_ref.
//
// A thread that returns from the kernel drops out of the barrier, as an exited CUDA thread no
// longer holds back __syncthreads. Dynamic shared memory is the kernels' DYNAMIC_SHARED(T, name)
// macro, here a pointer into a buffer the launcher sizes per launch and fills with 0xFF bytes
// (NaN) before every block, so a kernel that reads shared memory it never wrote shows it.
#ifndef MINIGAN_CUDA_HOST_H
#define MINIGAN_CUDA_HOST_H
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(mg::dynamic_shared.data())

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;          // one launch at a time: the same for every thread

namespace mg {
inline std::unique_ptr<std::barrier<>> block_barrier;   // this block's __syncthreads
inline std::vector<unsigned char> dynamic_shared;

// Run body() for every thread of every block of the grid; blocks run one after another.
template <class Body>
void launch(dim3 grid, dim3 block, size_t shared_bytes, Body body) {
    gridDim = grid;
    blockDim = block;
    const unsigned nthreads = block.x * block.y * block.z;
    const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
    dynamic_shared.assign(shared_bytes + 16, 0xFF);
    block_barrier = std::make_unique<std::barrier<>>(nthreads);
    // runs once when every thread has finished a block, before any starts the next
    auto next_block = [&]() noexcept {
        block_barrier = std::make_unique<std::barrier<>>(nthreads);
        std::memset(dynamic_shared.data(), 0xFF, dynamic_shared.size());
    };
    std::barrier end_of_block(nthreads, next_block);
    std::vector<std::thread> threads;
    threads.reserve(nthreads);
    for (unsigned t = 0; t < nthreads; ++t) {
        threads.emplace_back([&, t] {
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            for (unsigned long long b = 0; b < nblocks; ++b) {
                blockIdx = {unsigned(b % grid.x), unsigned((b / grid.x) % grid.y),
                            unsigned(b / (1ull * grid.x * grid.y))};
                body();
                block_barrier->arrive_and_drop();   // exited: no longer awaited by syncs
                end_of_block.arrive_and_wait();
            }
        });
    }
    for (auto& th : threads) th.join();
}
}  // namespace mg

inline void __syncthreads() { mg::block_barrier->arrive_and_wait(); }

template <class T>
inline T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
using std::sqrt;
using std::fabs;

#endif  // MINIGAN_CUDA_HOST_H
