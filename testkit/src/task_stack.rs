//! Running a check on the stack a task gets.

/// A tokio worker thread's stack (2 MiB), which the runtime's sources and planning run on.
pub const TASK_STACK: usize = 2 << 20;

/// `f` on a thread with [`TASK_STACK`], for tests of input that could recurse without bound:
/// such a recursion aborts the test binary there, where the main thread's larger stack could
/// hide it. A panic in `f` is the caller's, with its own message.
pub fn on_a_task_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::Builder::new()
        .stack_size(TASK_STACK)
        .spawn(f)
        .unwrap_or_else(|e| panic!("spawning a thread with a task's stack: {e}"));
    thread
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}
