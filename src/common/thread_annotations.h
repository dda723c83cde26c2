// Clang thread-safety annotations, and a mutex the analysis understands.
//
// Under clang with -Wthread-safety the compiler checks that a member marked
// GUARDED_BY(mu_) is only touched with mu_ held, that a function marked
// REQUIRES(mu_) is only called with it held, and so on (scripts/
// thread_safety.sh runs the check in CI). Under other compilers the macros
// expand to nothing. libstdc++'s std::mutex carries no annotations, so
// guarded members use `Mutex` and `MutexLock` from here (the same shape as
// Abseil's and LevelDB's port/thread_annotations.h).
#pragma once

#include <mutex>

#if defined(__clang__)
#define YARD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define YARD_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) YARD_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY YARD_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) YARD_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) YARD_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) YARD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) YARD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) YARD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) YARD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) YARD_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) YARD_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) YARD_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS YARD_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace yard {

// A std::mutex the analysis knows as a capability.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds this mutex (checked by nothing at
  // run time): for code it cannot follow, such as a callback run under it.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  // The underlying std::mutex, for std::unique_lock and condition variables.
  std::mutex& native() RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope. unique() is the std::unique_lock behind it,
// for std::condition_variable::wait (which releases and retakes the mutex
// inside the call; the analysis sees it held throughout, which is what the
// code around the wait may assume).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Releases and retakes the mutex before the scope ends.
  void Unlock() RELEASE() { lock_.unlock(); }
  void Lock() ACQUIRE() { lock_.lock(); }

  std::unique_lock<std::mutex>& unique() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace yard
