// The threading policy of the CPU kernels, including their behaviour after fork().
#include "cpu/threads.hpp"

#include <pthread.h>

#include <atomic>

namespace curvkit::cpu {
namespace {

// Below this much work waking the thread team costs more than it saves.
constexpr std::int64_t parallel_threshold = std::int64_t{1} << 15;

// libgomp's thread pool does not survive fork(): a child process (multiprocessing workers, data
// loaders) that opens a parallel region after its parent did would wait forever for threads
// that no longer exist. Children run the kernels on one thread instead.
std::atomic<bool> forked_child{false};
const bool fork_handler_registered =
    pthread_atfork(nullptr, nullptr, [] { forked_child.store(true); }) == 0;

}  // namespace

bool use_threads(std::int64_t work) noexcept {
    return work >= parallel_threshold && !forked_child.load();
}

}  // namespace curvkit::cpu
